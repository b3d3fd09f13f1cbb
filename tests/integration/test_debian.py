"""Debian `.deb` packages through the same pipeline: unpack, merged-usr, a dpkg-status base,
maintainer-script reports, and the real systemd-sysext merge of a Debian-built jq."""

from __future__ import annotations

import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.integration.repo import copy_repo, run_pants
from tests.integration.test_sysext_merge import _in_namespace


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path, str]:
    root = tmp_path_factory.mktemp("debian")
    repo = copy_repo(root / "repo")
    store = root / "cache"
    run = run_pants(repo, "package", "extensions/jq-debian:", "extensions/ppp-debian:", store=store)
    assert run.returncode == 0, run.output
    return repo, store, run.output


def _listing(image: Path) -> str:
    return subprocess.run(["unsquashfs", "-lln", str(image)], check=True, capture_output=True, text=True).stdout


def _cat(image: Path, path: str) -> str:
    return subprocess.run(["unsquashfs", "-cat", str(image), path], check=True, capture_output=True, text=True).stdout


def test_debian_jq_image_and_reports(built) -> None:
    repo, _, output = built
    out = repo / "dist/extensions.jq-debian"
    image = out / "jq-debian.raw"
    listing = _listing(image)
    assert "squashfs-root/usr/bin/jq" in listing
    assert "squashfs-root/usr/lib/x86_64-linux-gnu/libonig.so.5.3.0" in listing
    assert "usr/share/doc" not in listing  # strip=["docs", "man"]
    assert _cat(image, "usr/lib/extension-release.d/extension-release.jq-debian") == (
        "ID=debian\nVERSION_ID=12\nARCHITECTURE=x86-64\nSYSEXT_ID=jq-debian\n"
    )
    assert (out / "jq-debian_packages.txt").read_text() == (
        "jq_1.6-2.1+deb12u3_amd64::debian\nlibjq1_1.6-2.1+deb12u3_amd64::debian\n"
        "libonig5_6.9.8-1_amd64::debian\n"
    )
    assert (out / "jq-debian_maintainer_scripts.txt").read_text() == (
        "libjq1_1.6-2.1+deb12u3_amd64: triggers\nlibonig5_6.9.8-1_amd64: triggers\n"
    )


def test_debian_ppp_relocates_etc_maps_dip_and_reports_maintainer_scripts(built) -> None:
    repo, _, output = built
    image = repo / "dist/extensions.ppp-debian/ppp-debian.raw"
    listing = _listing(image)
    assert "-rwsr-xr-- 0/30" in listing and "squashfs-root/usr/sbin/pppd" in listing
    # Debian's ppp creates its secrets files in postinst (reported below); /etc/ppp itself is
    # root:dip and peers/ setgid 2750.
    assert "drwxr-s--- 0/30" in listing and "usr/share/ppp-debian/etc/ppp/peers" in listing
    conf = _cat(image, "usr/lib/tmpfiles.d/ppp-debian.conf")
    assert "d /etc/ppp/peers 2750 0 30 -" in conf
    assert "C /etc/ppp/options - - - - /usr/share/ppp-debian/etc/ppp/options" in conf
    assert (
        "maintainer scripts do not run in an extension: ppp_2.4.9-1+1.1+b1_amd64 (preinst, "
        "postinst, prerm, postrm)" in output
    )


def _deb(tmp: Path, name: str, files: dict[str, bytes]) -> Path:
    """A real .deb built by dpkg-deb."""
    root = tmp / f"{name}-root"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN/control").write_text(
        f"Package: {name}\nVersion: 1.0\nArchitecture: amd64\nMaintainer: Test <t@example.org>\n"
        f"Description: test package\n"
    )
    for path, data in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        target.chmod(0o755)
    deb = tmp / f"{name}_1.0_amd64.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zxz", "--build", str(root), str(deb)], check=True, capture_output=True)
    return deb


def test_merged_usr_moves_bin_and_lib_under_usr(tmp_path: Path) -> None:
    repo = copy_repo(tmp_path / "repo")
    ext = repo / "extensions/mu"
    ext.mkdir()
    shutil.copy(_deb(tmp_path, "mu", {"bin/mu-tool": b"#!/bin/sh\necho mu\n", "lib/mu/data": b"x"}), ext)
    (ext / "BUILD").write_text(textwrap.dedent(
        """
        binpkg_set(name="debs", sources=["*.deb"])
        sysext_image(name="mu", packages=[":debs"], base="3rdparty/bases:debian12")
        sysext_image(name="mu-nobase", packages=[":debs"])
        """
    ))
    run = run_pants(repo, "package", "extensions/mu:mu", store=tmp_path / "cache")
    assert run.returncode == 0, run.output
    listing = _listing(repo / "dist/extensions.mu/mu.raw")
    assert "squashfs-root/usr/bin/mu-tool" in listing and "squashfs-root/usr/lib/mu/data" in listing
    assert "squashfs-root/bin" not in listing
    # Without a merged-usr base, /bin is content outside /usr and /opt: an error that lists it.
    run = run_pants(repo, "package", "extensions/mu:mu-nobase", store=tmp_path / "cache")
    assert run.returncode != 0
    assert "/bin: /bin, /bin/mu-tool  [from mu_1.0_amd64]" in run.output, run.output


def test_merged_debian_jq_runs_with_its_own_libraries(built, tmp_path: Path) -> None:
    assert os.geteuid() == 0, "this test needs root: run ./run-tests as root (CI does)"
    repo, _, _ = built
    root = tmp_path / "root"
    libdir = root / "usr/lib/x86_64-linux-gnu"
    libdir.mkdir(parents=True)
    (root / "usr/lib64").mkdir()
    (root / "var/lib/extensions").mkdir(parents=True)
    (root / "usr/lib/os-release").write_text("ID=debian\nVERSION_ID=12\n")
    for lib in ("libc.so.6", "libm.so.6"):
        shutil.copy(os.path.realpath(f"/lib/x86_64-linux-gnu/{lib}"), libdir / lib)
    shutil.copy(os.path.realpath("/lib64/ld-linux-x86-64.so.2"), root / "usr/lib64/ld-linux-x86-64.so.2")
    for d in ("lib64", "lib", "bin"):
        os.symlink(f"usr/{d}", root / d)
    shutil.copy(repo / "dist/extensions.jq-debian/jq-debian.raw", root / "var/lib/extensions/jq-debian.raw")
    proc = _in_namespace(
        root,
        textwrap.dedent(
            f"""
            echo '{{"a": [1, 2]}}' | chroot {root} /usr/bin/jq -c '.a | map(. + 1)'
            chroot {root} /lib64/ld-linux-x86-64.so.2 --list /usr/bin/jq
            """
        ),
    )
    out = proc.stdout
    assert "merge failed" not in out, out + proc.stderr
    assert "[2,3]" in out, out + proc.stderr
    assert "libonig.so.5 => /lib/x86_64-linux-gnu/libonig.so.5" in out or (
        "libonig.so.5 => /usr/lib/x86_64-linux-gnu/libonig.so.5" in out
    ), out
    assert "not found" not in out
