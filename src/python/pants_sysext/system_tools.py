"""The system tools run in sandboxes, found on the `[sysext].search_path` with their versions."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from pants.core.util_rules.system_binaries import (
    BinaryNotFoundError,
    BinaryPath,
    BinaryPathRequest,
    BinaryPaths,
    BinaryPathTest,
)
from pants.engine.rules import Get, MultiGet, collect_rules, rule

from pants_sysext.subsystem import SysextSubsystem

# binary → (Debian package, version test arguments)
_TOOLS = {
    "python3": ("python3", ("-c", "import sys, bz2, lzma; print(sys.version)")),
    "sqfstar": ("squashfs-tools", ("-version",)),
    "unsquashfs": ("squashfs-tools", ("-help",)),  # -version exits 1; -help names the release
    "zstd": ("zstd", ("--version",)),
    "lz4": ("lz4", ("--version",)),
    "gpgv": ("gpgv", ("--version",)),
}


@dataclass(frozen=True)
class SysextTools:
    speculation_delay_millis: int
    python3: BinaryPath
    sqfstar: BinaryPath
    unsquashfs: BinaryPath
    zstd: BinaryPath
    lz4: BinaryPath
    gpgv: BinaryPath

    @property
    def decompressors(self) -> tuple[str, ...]:
        """`--tool NAME=PATH` arguments for the unpack step."""
        return ("--tool", f"zstd={self.zstd.path}", "--tool", f"lz4={self.lz4.path}")

    def env(self, *tools: BinaryPath) -> dict[str, str]:
        """The environment of a sandboxed step, carrying the versions of the tools it runs.

        The binaries' paths are in argv; their version fingerprints go into the environment so
        that they are part of the process's cache key (locally and in a remote cache).
        """
        fingerprint = hashlib.sha256(
            "\n".join(f"{t.path}={t.fingerprint}" for t in (self.python3, *tools)).encode()
        ).hexdigest()
        return {
            "LC_ALL": "C.UTF-8",
            "PYTHONHASHSEED": "0",
            "PYTHONDONTWRITEBYTECODE": "1",
            "SYSEXT_TOOLS_FINGERPRINT": fingerprint,
        }


@rule(desc="Find the system tools for building sysext images")
async def find_sysext_tools(subsystem: SysextSubsystem) -> SysextTools:
    requests = [
        BinaryPathRequest(
            binary_name=name,
            search_path=subsystem.search_path,
            test=BinaryPathTest(args=args),
        )
        for name, (_, args) in _TOOLS.items()
    ]
    all_paths = await MultiGet(Get(BinaryPaths, BinaryPathRequest, r) for r in requests)
    found = {}
    missing = []
    for request, paths in zip(requests, all_paths):
        if paths.first_path is None:
            missing.append(request)
        else:
            found[request.binary_name] = paths.first_path
    if missing:
        packages = sorted({_TOOLS[r.binary_name][0] for r in missing})
        raise BinaryNotFoundError(
            f"Cannot find {', '.join(f'`{r.binary_name}`' for r in missing)} on "
            f"{list(subsystem.search_path)}, needed to build sysext images. Install them with "
            f"`apt-get install {' '.join(packages)}` (the ./pants launcher does this when run "
            f"as root), or point `[sysext].search_path` at them."
        )
    return SysextTools(speculation_delay_millis=subsystem.remote_cache_speculation_delay, **found)


def rules():
    return collect_rules()
