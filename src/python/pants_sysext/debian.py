"""Debian apt archives: finding the mirror, fetching and verifying the Packages indexes."""

from __future__ import annotations

import os
from dataclasses import dataclass

from pants.engine.fs import Digest, MergeDigests, PathGlobs
from pants.engine.process import FallibleProcessResult, Process, ProcessCacheScope
from pants.engine.rules import Get, collect_rules, rule
from pants.engine.target import Target
from pants.util.logging import LogLevel

from pants_sysext.process_util import SysextBuildError, raise_for_failure
from pants_sysext.sandbox_code import SandboxCode
from pants_sysext.subsystem import DebianSubsystem
from pants_sysext.system_tools import SysextTools
from pants_sysext.target_types import (
    AptArchitectureField,
    AptComponentsField,
    AptMirrorField,
    AptSuiteField,
)

APT_PREFIX = "apt:"


def apt_location(target: Target) -> str:
    """What a Debian lock records as its `binhost`: the suite, never the mirror's host."""
    return (
        f"{APT_PREFIX}{target[AptSuiteField].value}/"
        f"{','.join(target[AptComponentsField].value or ('main',))}/"
        f"{target[AptArchitectureField].value or 'amd64'}"
    )


def apt_mirror(target: Target, subsystem: DebianSubsystem) -> str:
    """The archive to download from: the target's, the option's, or the machine's apt sources."""
    mirror = target[AptMirrorField].value or subsystem.mirror
    if mirror:
        return mirror.rstrip("/")
    from pants_sysext.formats.apt_archive import AptArchiveError, discover_mirror

    suite = target[AptSuiteField].value or ""
    try:
        return discover_mirror(suite=suite).rstrip("/")
    except AptArchiveError as e:
        raise SysextBuildError(
            f"{target.address}: no apt mirror for the suite {suite}: {e} Set `apt_mirror` on the "
            f"target or `[debian].mirror` in pants.toml."
        ) from e


@dataclass(frozen=True)
class AptIndexRequest:
    description: str
    mirror: str
    suite: str
    components: tuple[str, ...]
    architecture: str
    keyring: str  # absolute path, or a repository path for `//`-prefixed keyrings


@dataclass(frozen=True)
class AptIndex:
    """`Packages-COMPONENT` files (decompressed, verified against InRelease) in `digest`."""

    digest: Digest


@rule(desc="Fetch and verify an apt archive's indexes", level=LogLevel.DEBUG)
async def fetch_apt_index(request: AptIndexRequest, tools: SysextTools, code: SandboxCode) -> AptIndex:
    inputs = [code.digest]
    keyring = request.keyring
    if keyring.startswith("//"):
        inputs.append(await Get(Digest, PathGlobs([keyring[2:]])))
        keyring = keyring[2:]
    elif not os.path.isabs(keyring):
        raise SysextBuildError(f"{request.description}: `apt_keyring` must be absolute or `//`-prefixed.")
    result = await Get(
        FallibleProcessResult,
        Process(
            [
                *SandboxCode.module_argv(tools.python3.path, "fetch"),
                "apt",
                request.mirror,
                request.suite,
                ",".join(request.components),
                request.architecture,
                keyring,
                tools.gpgv.path,
                "out",
            ],
            description=f"Fetching and verifying the {request.suite} indexes of {request.mirror}",
            input_digest=await Get(Digest, MergeDigests(inputs)),
            output_directories=["out"],
            env=tools.env(tools.gpgv, tools.zstd, tools.lz4),
            # Archives change: never reuse an index beyond this run.
            cache_scope=ProcessCacheScope.PER_SESSION,
            level=LogLevel.INFO,
        ),
    )
    raise_for_failure(result, what=f"Reading the apt archive for {request.description}")
    return AptIndex(result.output_digest)


def rules():
    return collect_rules()


__all__ = ["APT_PREFIX", "AptIndex", "AptIndexRequest", "apt_location", "apt_mirror", "rules"]
