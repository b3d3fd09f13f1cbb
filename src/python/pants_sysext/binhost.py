"""Reading a binhost (URL or repository directory) for lockfile generation."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from pants.engine.fs import (
    CreateDigest,
    Digest,
    DigestContents,
    FileContent,
    GlobMatchErrorBehavior,
    MergeDigests,
    PathGlobs,
)
from pants.engine.process import FallibleProcessResult, Process, ProcessCacheScope
from pants.engine.rules import Get, collect_rules, rule
from pants.util.logging import LogLevel

from pants_sysext.formats.packages_index import (
    PackagesEntry,
    PackagesIndex,
    PackagesIndexError,
    parse_packages_index,
)
from pants_sysext.process_util import SysextBuildError, raise_for_failure
from pants_sysext.sandbox_code import SandboxCode
from pants_sysext.system_tools import SysextTools


def is_url(location: str) -> bool:
    return "://" in location


def binpkg_url(binhost: str, path: str) -> str:
    return binhost.rstrip("/") + "/" + path


@dataclass(frozen=True)
class BinhostIndexRequest:
    location: str  # URL, or directory relative to the build root
    description_of_origin: str


@dataclass(frozen=True)
class BinhostIndex:
    location: str
    index: PackagesIndex


@rule(desc="Read a binhost's Packages index", level=LogLevel.DEBUG)
async def read_binhost_index(
    request: BinhostIndexRequest, tools: SysextTools, code: SandboxCode
) -> BinhostIndex:
    if not is_url(request.location):
        path = os.path.join(request.location, "Packages")
        contents = await Get(
            DigestContents,
            PathGlobs(
                [path],
                glob_match_error_behavior=GlobMatchErrorBehavior.error,
                description_of_origin=request.description_of_origin,
            ),
        )
        data, source = contents[0].content, path
    else:
        # Indexes change: never cache the download beyond this run.
        result = await Get(
            FallibleProcessResult,
            Process(
                [
                    *SandboxCode.module_argv(tools.python3.path, "fetch"),
                    "index",
                    request.location,
                    "Packages",
                ],
                description=f"Fetching the Packages index of {request.location}",
                input_digest=code.digest,
                output_files=["Packages"],
                env=tools.env(),
                cache_scope=ProcessCacheScope.PER_SESSION,
                level=LogLevel.INFO,
            ),
        )
        raise_for_failure(result, what=f"Reading the binhost of {request.description_of_origin}")
        contents = await Get(DigestContents, Digest, result.output_digest)
        data, source = contents[0].content, binpkg_url(request.location, "Packages")
    try:
        index = parse_packages_index(data, source=source)
    except PackagesIndexError as e:
        raise SysextBuildError(f"{request.description_of_origin}: {e}") from e
    return BinhostIndex(request.location, index)


@dataclass(frozen=True)
class BinpkgHashesRequest:
    location: str
    entries: tuple[PackagesEntry, ...]


@dataclass(frozen=True)
class BinpkgHashes:
    """path → (sha256, size) of each binpkg, checked against the index's SIZE/MD5/SHA1."""

    hashes: tuple[tuple[str, str, int], ...]

    def get(self, path: str) -> tuple[str, int]:
        for p, sha256, size in self.hashes:
            if p == path:
                return sha256, size
        raise KeyError(path)


@rule(desc="Hash binary packages for a lockfile", level=LogLevel.DEBUG)
async def hash_binpkgs(
    request: BinpkgHashesRequest, tools: SysextTools, code: SandboxCode
) -> BinpkgHashes:
    spec = [
        {
            "cpv": e.cpv,
            "path": e.path,
            "size": e.size,
            "md5": e.get("MD5"),
            "sha1": e.get("SHA1"),
        }
        for e in request.entries
    ]
    spec_digest = await Get(
        Digest, CreateDigest([FileContent("spec.json", json.dumps(spec, sort_keys=True).encode())])
    )
    inputs = [code.digest, spec_digest]
    if not is_url(request.location):
        inputs.append(
            await Get(
                Digest,
                PathGlobs(
                    [os.path.join(request.location, e.path) for e in request.entries],
                    glob_match_error_behavior=GlobMatchErrorBehavior.error,
                    description_of_origin=f"the Packages index of {request.location}",
                ),
            )
        )
    result = await Get(
        FallibleProcessResult,
        Process(
            [
                *SandboxCode.module_argv(tools.python3.path, "fetch"),
                "hash",
                request.location,
                "spec.json",
                "hashes.json",
            ],
            description=f"Hashing {len(spec)} binary packages from {request.location}",
            input_digest=await Get(Digest, MergeDigests(inputs)),
            output_files=["hashes.json"],
            env=tools.env(),
            cache_scope=(
                ProcessCacheScope.PER_SESSION if is_url(request.location) else ProcessCacheScope.SUCCESSFUL
            ),
            level=LogLevel.INFO,
        ),
    )
    raise_for_failure(result, what=f"Hashing binary packages from {request.location}")
    (content,) = await Get(DigestContents, Digest, result.output_digest)
    data = json.loads(content.content)
    return BinpkgHashes(tuple(sorted((p, v["sha256"], v["size"]) for p, v in data.items())))


def rules():
    return collect_rules()
