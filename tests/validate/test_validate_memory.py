"""Validation streams: peak RSS stays flat when an ELF file in the tree grows by 248 MiB."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import elftools
import pytest

from pants_sysext.sandbox.manifest import ManifestEntry, open_tar_writer
from pants_sysext.sandbox.stage import PackageImage
from tests.validate.helpers import SRC, SYSTEM_PYTHON, glibc_base, member_bytes, stage_tree

MIB = 1024 * 1024
MAX_GROWTH_KIB = 48 * 1024
_PEAK_RSS_WRAPPER = (
    "import resource, subprocess, sys; "
    "r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); "
    "sys.exit(r.returncode)"
)


class _Padded:
    """An ELF file's bytes followed by `padding` zero bytes, generated as read."""

    def __init__(self, head: bytes, padding: int) -> None:
        self._head = head
        self._remaining = padding

    def read(self, size: int = -1) -> bytes:
        out, self._head = self._head[:size], self._head[size:]
        pad = min(size - len(out), self._remaining)
        self._remaining -= pad
        return out + bytes(pad)


def _package(root: Path, lib: bytes, padding: int) -> PackageImage:
    d = root / "pkg"
    d.mkdir(parents=True)
    entry = ManifestEntry("usr/lib64/libonig.so.5", "file", 0o755, 0, 0, size=len(lib) + padding,
                          sha256="0" * 64, package="dev-libs/oniguruma-6.9.8")
    with open_tar_writer(str(d / "image.tar")) as tar, open(d / "entries.jsonl", "w") as m:
        tar.addfile(entry.to_tarinfo(mtime=1), _Padded(lib, padding))
        m.write(entry.to_json() + "\n")
    return PackageImage(entry.package, str(d))


def _peak_kib(tmp_path: Path, lib: bytes, padding: int) -> int:
    work = tmp_path / f"pad{padding}"
    tree = stage_tree(work, [_package(work, lib, padding)], name="onig")
    with tarfile.open(tree / "staged.tar", "r:") as tar:
        assert tar.getmember("usr/lib64/libonig.so.5").size == len(lib) + padding
    sandbox = work / "sandbox"
    shutil.copytree(SRC / "pants_sysext", sandbox / "pants_sysext", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(os.path.dirname(elftools.__file__), sandbox / "elftools", ignore=shutil.ignore_patterns("__pycache__"))
    base = glibc_base(work)
    (sandbox / "validate.json").write_text(
        f'{{"name": "onig", "architecture": "x86-64", "tar": "{tree}/staged.tar", '
        f'"manifest": "{tree}/manifest.jsonl", "base": "{base}", "shadow": "warn"}}'
    )
    proc = subprocess.run(
        [SYSTEM_PYTHON, "-c", _PEAK_RSS_WRAPPER, SYSTEM_PYTHON, "-E", "-s", "-B", "-m",
         "pants_sysext.sandbox.validate", "validate.json", "out"],
        cwd=sandbox, capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "libonig" in (sandbox / "out/onig_contents.txt").read_text()
    return int(proc.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not os.access(SYSTEM_PYTHON, os.X_OK), reason="needs /usr/bin/python3")
def test_peak_memory_does_not_grow_with_elf_size(tmp_path, fixture_packages) -> None:
    lib = member_bytes(fixture_packages["onig"], "usr/lib64/libonig.so.5.3.0")
    small = _peak_kib(tmp_path, lib, 8 * MIB)
    large = _peak_kib(tmp_path, lib, 256 * MIB)
    assert large - small < MAX_GROWTH_KIB, (small, large)
