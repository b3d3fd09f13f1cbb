"""The jq image merged by the real systemd-sysext: the merged jq runs with its own libonig.

Needs root (mount namespaces, overlayfs). It runs for real in CI, which runs as root; as
another user it fails rather than skipping, unless PANTS_SYSEXT_ALLOW_NO_ROOT=1 is set.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.integration.conftest import Build

if os.geteuid() != 0 and os.environ.get("PANTS_SYSEXT_ALLOW_NO_ROOT") == "1":
    pytest.skip("needs root for a private mount namespace (PANTS_SYSEXT_ALLOW_NO_ROOT=1)", allow_module_level=True)

# glibc from the build host stands in for the base OS's libc: the test root is a minimal
# Gentoo/Flatcar-like /usr with a lib64 library directory and nothing else.
_BASE_LIBS = ("ld-linux-x86-64.so.2", "libc.so.6", "libm.so.6")


def _make_root(root: Path, image: Path, name: str) -> None:
    (root / "usr/lib").mkdir(parents=True)
    (root / "usr/lib64").mkdir()
    (root / "etc").mkdir()
    (root / "var/lib/extensions").mkdir(parents=True)
    (root / "usr/lib/os-release").write_text("ID=debian\nVERSION_ID=12\n")
    for lib in _BASE_LIBS:
        for d in ("/lib/x86_64-linux-gnu", "/lib64", "/usr/lib/x86_64-linux-gnu"):
            if os.path.exists(f"{d}/{lib}"):
                shutil.copy(os.path.realpath(f"{d}/{lib}"), root / "usr/lib64" / lib)
                break
        else:
            raise AssertionError(f"{lib} not found on the build host")
    os.symlink("usr/lib64", root / "lib64")
    (root / "etc/ld.so.conf").write_text("/usr/lib64\n")
    shutil.copy(image, root / "var/lib/extensions" / f"{name}.raw")  # a real file, not a link


def _in_namespace(root: Path, script: str) -> subprocess.CompletedProcess:
    """Run `script` in a private mount namespace where ROOT has the extension merged."""
    prologue = textwrap.dedent(
        f"""
        set -eu
        mount --make-rshared /
        mount -t tmpfs tmpfs /run
        systemd-sysext --root={root} merge || echo "merge failed: $?"
        """
    )
    return subprocess.run(
        ["unshare", "-m", "--propagation", "private", "bash", "-c", prologue + script],
        capture_output=True, text=True, timeout=120,
    )


def test_merged_jq_runs_with_the_extensions_libonig(built: Build, tmp_path: Path) -> None:
    assert os.geteuid() == 0, "this test needs root: run ./run-tests as root (CI does)"
    root = tmp_path / "root"
    _make_root(root, built.jq, "jq")
    assert not (root / "usr/bin/jq").exists()

    proc = _in_namespace(
        root,
        textwrap.dedent(
            f"""
            echo "== merged files"
            ls {root}/usr/bin/jq {root}/usr/lib64/libonig.so.5
            cat {root}/usr/lib/extension-release.d/extension-release.jq
            ldconfig -r {root}
            echo "== jq --version"
            chroot {root} /usr/bin/jq --version
            echo "== jq filter"
            echo '{{"a": [1, 2, 3]}}' | chroot {root} /usr/bin/jq -c '.a | map(. * 10)'
            echo "== libraries"
            chroot {root} /lib64/ld-linux-x86-64.so.2 --list /usr/bin/jq
            echo "== status"
            systemd-sysext --root={root} status --no-pager || true
            """
        ),
    )
    out = proc.stdout
    assert proc.returncode == 0 and "merge failed" not in out, out + proc.stderr
    assert "Using extensions 'jq'." in proc.stderr + out, proc.stderr
    assert "SYSEXT_ID=jq" in out
    assert "== jq --version\njq-1.6\n" in out
    assert "== jq filter\n[10,20,30]\n" in out
    libs = out.split("== libraries\n", 1)[1].split("== status", 1)[0]
    # libonig.so.5 exists in this root only because the extension brought it.
    assert "libonig.so.5 => /usr/lib64/libonig.so.5" in libs, libs
    assert "libjq.so.1 => /usr/lib64/libjq.so.1" in libs, libs
    assert "not found" not in libs, libs
    # Outside the namespace nothing was merged.
    assert not (root / "usr/bin/jq").exists()


def test_renamed_image_is_refused_by_systemd(built: Build, tmp_path: Path) -> None:
    """Why `output_path` must be NAME.raw: systemd refuses a file named unlike its release file."""
    assert os.geteuid() == 0, "this test needs root: run ./run-tests as root (CI does)"
    root = tmp_path / "root"
    _make_root(root, built.jq, "jq")
    # An image whose file name does not match its extension-release NAME is refused.
    os.rename(root / "var/lib/extensions/jq.raw", root / "var/lib/extensions/jq-renamed.raw")
    proc = _in_namespace(root, f"test -e {root}/usr/bin/jq && echo MERGED || echo NOT-MERGED\n")
    assert "NOT-MERGED" in proc.stdout, proc.stdout + proc.stderr
    assert "Failed to read metadata for image jq-renamed: No medium found" in proc.stderr
