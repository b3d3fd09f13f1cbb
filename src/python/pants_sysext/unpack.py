"""Unpack one binary package in a sandbox: cached per binpkg, locally and remotely."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping

from pants.engine.fs import Digest, DigestContents, DigestSubset, MergeDigests, PathGlobs, RemovePrefix
from pants.engine.process import FallibleProcessResult, Process
from pants.engine.rules import Get, collect_rules, rule
from pants.util.frozendict import FrozenDict
from pants.util.logging import LogLevel

from pants_sysext.binpkg_types import BinpkgFile
from pants_sysext.process_util import raise_for_failure
from pants_sysext.sandbox_code import SandboxCode
from pants_sysext.system_tools import SysextTools


@dataclass(frozen=True)
class UnpackBinpkgRequest:
    binpkg: BinpkgFile


@dataclass(frozen=True)
class UnpackedBinpkg:
    """`image.tar`, `entries.jsonl` and `metadata.json` at the root of `digest`."""

    cpv: str
    digest: Digest
    info: FrozenDict[str, Any]

    @property
    def metadata(self) -> Mapping[str, str]:
        return self.info["metadata"]

    def text(self, key: str) -> str | None:
        value = self.metadata.get(key)
        return value.strip() if value is not None else None


@rule(desc="Unpack a binary package", level=LogLevel.DEBUG)
async def unpack_binpkg(
    request: UnpackBinpkgRequest, tools: SysextTools, code: SandboxCode
) -> UnpackedBinpkg:
    binpkg = request.binpkg
    input_digest = await Get(Digest, MergeDigests([code.digest, binpkg.digest]))
    argv = [
        *SandboxCode.module_argv(tools.python3.path, "unpack"),
        binpkg.filename,
        "out",
        *tools.decompressors,
        "--origin",
        binpkg.origin,
    ]
    if binpkg.expected_cpv:
        argv += ["--expect-cpv", binpkg.expected_cpv]
    if binpkg.expected_size is not None:
        argv += ["--expect-size", str(binpkg.expected_size)]
    if binpkg.expected_sha1:
        argv += ["--expect-sha1", binpkg.expected_sha1]
    if binpkg.expected_md5:
        argv += ["--expect-md5", binpkg.expected_md5]
    result = await Get(
        FallibleProcessResult,
        Process(
            argv,
            description=f"Unpacking {binpkg.filename}",
            input_digest=input_digest,
            output_directories=["out"],
            env=tools.env(tools.zstd, tools.lz4),
            level=LogLevel.INFO,
            remote_cache_speculation_delay_millis=tools.speculation_delay_millis,
        ),
    )
    raise_for_failure(result, what=f"Unpacking {binpkg.filename} (from {binpkg.origin})")
    digest = await Get(Digest, RemovePrefix(result.output_digest, "out"))
    contents = await Get(DigestContents, DigestSubset(digest, PathGlobs(["metadata.json"])))
    info = json.loads(contents[0].content)
    info["metadata"] = FrozenDict(info["metadata"])
    info["dropped_xattrs"] = tuple(info["dropped_xattrs"])
    return UnpackedBinpkg(cpv=info["cpv"], digest=digest, info=FrozenDict(info))


def rules():
    return collect_rules()
