"""Squash a staged tree into a reproducible squashfs image."""

from __future__ import annotations

from dataclasses import dataclass

from pants.engine.fs import Digest, MergeDigests
from pants.engine.process import FallibleProcessResult, Process
from pants.engine.rules import Get, collect_rules, rule
from pants.util.logging import LogLevel

from pants_sysext.process_util import raise_for_failure
from pants_sysext.sandbox_code import SandboxCode
from pants_sysext.stage import StagedTree
from pants_sysext.subsystem import SysextSubsystem
from pants_sysext.system_tools import SysextTools

IMAGE_FILE = "image.raw"


@dataclass(frozen=True)
class SquashRequest:
    name: str
    staged: StagedTree
    compression: str
    mtime: int


@dataclass(frozen=True)
class SquashedImage:
    """`image.raw` at the root of `digest`."""

    digest: Digest


@rule(desc="Squash an extension image", level=LogLevel.DEBUG)
async def squash_image(
    request: SquashRequest, tools: SysextTools, code: SandboxCode, subsystem: SysextSubsystem
) -> SquashedImage:
    input_digest = await Get(Digest, MergeDigests([code.digest, request.staged.digest]))
    result = await Get(
        FallibleProcessResult,
        Process(
            [
                *SandboxCode.module_argv(tools.python3.path, "squash"),
                "--sqfstar", tools.sqfstar.path,
                "--tar", "staged.tar",
                "--out", IMAGE_FILE,
                "--compression", request.compression,
                "--mtime", str(request.mtime),
                "--processors", str(subsystem.squash_processors),
            ],
            description=f"Squashing {request.name}.raw ({request.compression})",
            input_digest=input_digest,
            output_files=[IMAGE_FILE],
            env=tools.env(tools.sqfstar),
            level=LogLevel.INFO,
            remote_cache_speculation_delay_millis=tools.speculation_delay_millis,
        ),
    )
    raise_for_failure(result, what=f"Squashing {request.name}.raw")
    return SquashedImage(result.output_digest)


def rules():
    return collect_rules()
