"""The backend's sandbox programs, as a Digest to put into every sandboxed step.

The programs in `pants_sysext.sandbox` and the readers in `pants_sysext.formats` use only the
standard library, so they run with the system `python3` in a sandbox (or on a remote
execution worker). Their source is part of each step's input, hence of its cache key.
"""

from __future__ import annotations

import os
import pkgutil
from dataclasses import dataclass

from pants.engine.fs import CreateDigest, Digest, FileContent
from pants.engine.rules import Get, collect_rules, rule

_MODULES = (
    "__init__.py",
    "formats/__init__.py",
    "formats/apt_archive.py",
    "formats/binpkg.py",
    "formats/compression.py",
    "formats/deb.py",
    "formats/deb822.py",
    "formats/dpkg_status.py",
    "formats/errors.py",
    "formats/gpkg.py",
    "formats/image.py",
    "formats/vdb.py",
    "formats/xpak.py",
    "sandbox/__init__.py",
    "sandbox/fetch.py",
    "sandbox/elf_closure.py",
    "sandbox/mangle.py",
    "sandbox/manifest.py",
    "sandbox/pkginfo.py",
    "sandbox/read_base.py",
    "sandbox/reports.py",
    "sandbox/squash.py",
    "sandbox/stage.py",
    "sandbox/unpack.py",
    "sandbox/validate.py",
)


@dataclass(frozen=True)
class SandboxCode:
    digest: Digest

    @staticmethod
    def module_argv(python3: str, module: str) -> tuple[str, ...]:
        # -E: ignore PYTHON* variables; -s: no user site; -B: no .pyc in the sandbox.
        return (python3, "-E", "-s", "-B", "-m", f"pants_sysext.sandbox.{module}")


def _elftools_files() -> list[FileContent]:
    """pyelftools (pure Python) goes into the sandbox with our code, for the ELF checks."""
    import elftools

    root = os.path.dirname(elftools.__file__)
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for name in sorted(filenames):
            if name.endswith(".py"):
                path = os.path.join(dirpath, name)
                with open(path, "rb") as f:
                    files.append(FileContent(os.path.join("elftools", os.path.relpath(path, root)), f.read()))
    return files


@rule
async def sandbox_code() -> SandboxCode:
    files = []
    for relpath in _MODULES:
        content = pkgutil.get_data("pants_sysext", relpath)
        assert content is not None, relpath
        files.append(FileContent(f"pants_sysext/{relpath}", content))
    files.extend(_elftools_files())
    return SandboxCode(await Get(Digest, CreateDigest(files)))


def rules():
    return collect_rules()
