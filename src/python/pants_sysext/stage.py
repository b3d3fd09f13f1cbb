"""Merge unpacked packages and generated files into the staged tree of an extension."""

from __future__ import annotations

import json
from dataclasses import dataclass

from pants.engine.fs import AddPrefix, CreateDigest, Digest, FileContent, MergeDigests, RemovePrefix
from pants.engine.process import FallibleProcessResult, Process
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.util.logging import LogLevel

from pants_sysext.process_util import raise_for_failure
from pants_sysext.sandbox_code import SandboxCode
from pants_sysext.system_tools import SysextTools
from pants_sysext.unpack import UnpackedBinpkg


@dataclass(frozen=True)
class GeneratedFile:
    path: str  # in the image, e.g. "usr/lib/extension-release.d/extension-release.jq"
    content: bytes
    mode: int = 0o644
    xattrs: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class StageRequest:
    name: str  # for messages
    packages: tuple[UnpackedBinpkg, ...]  # in merge order
    generated: tuple[GeneratedFile, ...]
    include_top: tuple[str, ...] = ("usr", "opt")
    exclude: tuple[str, ...] = ()
    mtime: int = 0
    etc: str = "error"
    # The base's users and groups (name, id), when it has a passwd/group: names are mapped.
    users: tuple[tuple[str, int], ...] | None = None
    groups: tuple[tuple[str, int], ...] | None = None
    required: tuple[tuple[str, str], ...] = ()  # (path, why) that must be in the image
    merged_usr: bool = False  # move /bin, /sbin, /lib* under /usr first (a merged-usr base)


@dataclass(frozen=True)
class StagedTree:
    """`staged.tar` and `manifest.jsonl` at the root of `digest`."""

    digest: Digest


@rule(desc="Stage an extension's tree", level=LogLevel.DEBUG)
async def stage_tree(request: StageRequest, tools: SysextTools, code: SandboxCode) -> StagedTree:
    package_digests = await MultiGet(
        Get(Digest, AddPrefix(pkg.digest, f"pkgs/{i}")) for i, pkg in enumerate(request.packages)
    )
    extra_files = [
        FileContent(f"generated/{i}", g.content) for i, g in enumerate(request.generated)
    ]
    spec = {
        "packages": [
            {"label": pkg.cpv, "dir": f"pkgs/{i}"} for i, pkg in enumerate(request.packages)
        ],
        "include_top": list(request.include_top),
        "exclude": list(request.exclude),
        "extra_files": [
            {
                "path": g.path,
                "source": f"generated/{i}",
                "mode": f"{g.mode:04o}",
                "xattrs": dict(g.xattrs),
            }
            for i, g in enumerate(request.generated)
        ],
        "mtime": request.mtime,
        "name": request.name,
        "etc": request.etc,
        "ownership": (
            {"users": dict(request.users), "groups": dict(request.groups or ())}
            if request.users is not None
            else None
        ),
        "required": [{"path": p, "why": w} for p, w in request.required],
        "merged_usr": request.merged_usr,
    }
    spec_digest = await Get(
        Digest,
        CreateDigest(
            [FileContent("stage.json", json.dumps(spec, indent=1, sort_keys=True).encode()), *extra_files]
        ),
    )
    input_digest = await Get(Digest, MergeDigests([code.digest, spec_digest, *package_digests]))
    result = await Get(
        FallibleProcessResult,
        Process(
            [*SandboxCode.module_argv(tools.python3.path, "stage"), "stage.json", "out"],
            description=f"Staging {request.name} ({len(request.packages)} packages)",
            input_digest=input_digest,
            output_directories=["out"],
            env=tools.env(),
            level=LogLevel.INFO,
            remote_cache_speculation_delay_millis=tools.speculation_delay_millis,
        ),
    )
    raise_for_failure(result, what=f"Staging the extension {request.name}")
    return StagedTree(await Get(Digest, RemovePrefix(result.output_digest, "out")))


@dataclass(frozen=True)
class PkginfoRequest:
    name: str
    packages: tuple[UnpackedBinpkg, ...]
    staged: StagedTree
    mtime: int = 0


@rule(desc="Write an extension's package database", level=LogLevel.DEBUG)
async def pkginfo_tree(request: PkginfoRequest, tools: SysextTools, code: SandboxCode) -> StagedTree:
    """The `var/db/pkg` entries of the extension's packages, as a tree for the squash step."""
    package_digests = await MultiGet(
        Get(Digest, AddPrefix(pkg.digest, f"pkgs/{i}")) for i, pkg in enumerate(request.packages)
    )
    staged = await Get(Digest, AddPrefix(request.staged.digest, "staged"))
    spec = {
        "packages": [
            {"label": pkg.cpv, "metadata": f"pkgs/{i}/metadata.json"}
            for i, pkg in enumerate(request.packages)
        ],
        "manifest": "staged/manifest.jsonl",
        "mtime": request.mtime,
    }
    spec_digest = await Get(
        Digest, CreateDigest([FileContent("pkginfo.json", json.dumps(spec, sort_keys=True).encode())])
    )
    result = await Get(
        FallibleProcessResult,
        Process(
            [*SandboxCode.module_argv(tools.python3.path, "pkginfo"), "pkginfo.json", "out"],
            description=f"Writing the package database of {request.name}",
            input_digest=await Get(
                Digest, MergeDigests([code.digest, spec_digest, staged, *package_digests])
            ),
            output_directories=["out"],
            env=tools.env(),
            level=LogLevel.INFO,
            remote_cache_speculation_delay_millis=tools.speculation_delay_millis,
        ),
    )
    raise_for_failure(result, what=f"Writing the package database of {request.name}")
    return StagedTree(await Get(Digest, RemovePrefix(result.output_digest, "out")))


def rules():
    return collect_rules()
