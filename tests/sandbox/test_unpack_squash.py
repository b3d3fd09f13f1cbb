"""The unpack and squash steps, run as the sandbox runs them (system python3, real sqfstar)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from pants_sysext.sandbox.manifest import read_manifest
from tests.formats.binpkg_builders import DEFAULT_METADATA, compress, d, f, tar_bytes, write, xpak_bytes

SRC = Path(__file__).resolve().parents[2] / "src/python"
PY = "/usr/bin/python3"


def _run(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PY, "-E", "-s", "-B", "-m", f"pants_sysext.sandbox.{module}", *args],
        cwd=SRC, capture_output=True, text=True,
    )


def _binpkg(tmp_path: Path, name: str = "foo-1.0.tbz2") -> Path:
    overlay = {"SCHILY.xattr.trusted.overlay.opaque": "y", "SCHILY.xattr.user.pax.flags": "em"}
    image = tar_bytes(
        [
            d("."),
            d("./usr"),
            d("./usr/bin"),
            f("./usr/bin/foo", b"#!/bin/sh\necho foo\n", mode=0o4755, gid=30, gname="dip", pax_headers=overlay),
            d("./usr/share", mode=0o2750),
        ],
        format=tarfile.PAX_FORMAT,
    )
    return Path(write(str(tmp_path / name), xpak_bytes(compress(image, "zstd"))))


def test_unpack_writes_normalized_tar_manifest_and_metadata(tmp_path: Path) -> None:
    binpkg = _binpkg(tmp_path)
    out = tmp_path / "out"
    proc = _run("unpack", str(binpkg), str(out), "--tool", "zstd=/usr/bin/zstd", "--expect-cpv", "app-misc/foo-1.0")
    assert proc.returncode == 0, proc.stderr
    assert "app-misc/foo-1.0: 4 entries (xpak, zstd)" in proc.stdout
    assert "dropped xattr usr/bin/foo: trusted.overlay.opaque" in proc.stdout

    with open(out / "entries.jsonl") as fh:
        entries = {e.path: e for e in read_manifest(fh)}
    assert list(entries) == ["usr", "usr/bin", "usr/bin/foo", "usr/share"]
    foo = entries["usr/bin/foo"]
    assert (foo.mode, foo.uid, foo.gid, foo.gname) == (0o4755, 0, 30, "dip")
    assert foo.sha256 == hashlib.sha256(b"#!/bin/sh\necho foo\n").hexdigest()
    assert foo.xattrs == (("user.pax.flags", b"em"),)
    assert entries["usr/share"].mode == 0o2750

    with tarfile.open(out / "image.tar") as tar:
        assert tar.getnames() == ["usr", "usr/bin", "usr/bin/foo", "usr/share"]
        member = tar.getmember("usr/bin/foo")
        assert member.mode == 0o4755 and member.gid == 30
        assert member.pax_headers["SCHILY.xattr.user.pax.flags"] == "em"
        assert not any(k.startswith("SCHILY.xattr.trusted.") for k in member.pax_headers)

    info = json.loads((out / "metadata.json").read_text())
    assert info["cpv"] == "app-misc/foo-1.0" and info["format"] == "xpak" and info["compression"] == "zstd"
    assert info["metadata"]["RDEPEND"] == DEFAULT_METADATA["RDEPEND"].decode()
    assert "environment.bz2" not in info["metadata"]  # binary: not carried


def test_unpack_refuses_a_binpkg_that_is_not_what_the_index_says(tmp_path: Path) -> None:
    binpkg = _binpkg(tmp_path)
    proc = _run("unpack", str(binpkg), str(tmp_path / "out"), "--tool", "zstd=/usr/bin/zstd",
                "--expect-cpv", "app-misc/bar-2", "--origin", "binhost/Packages (entry app-misc/bar-2)")
    assert proc.returncode == 2
    assert "error: foo-1.0.tbz2: holds app-misc/foo-1.0, but binhost/Packages (entry app-misc/bar-2) lists it as app-misc/bar-2" in proc.stderr
    proc = _run("unpack", str(binpkg), str(tmp_path / "out2"), "--expect-size", "1")
    assert proc.returncode == 2 and "expected 1" in proc.stderr


def test_unpack_refuses_hostile_members_naming_binpkg_and_member(tmp_path: Path) -> None:
    image = tar_bytes([d("."), f("./usr/../../etc/passwd", b"root::0:0::/:/bin/sh\n")])
    binpkg = write(str(tmp_path / "evil-1.tbz2"), xpak_bytes(compress(image, "bzip2")))
    proc = _run("unpack", binpkg, str(tmp_path / "out"))
    assert proc.returncode == 2
    assert "evil-1.tbz2: image.tar:./usr/../../etc/passwd: name './usr/../../etc/passwd' has a '..' component" in proc.stderr
    assert not (tmp_path / "etc").exists()


@pytest.fixture(scope="module")
def staged(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("staged")
    binpkg = _binpkg(tmp)
    assert _run("unpack", str(binpkg), str(tmp / "pkg"), "--tool", "zstd=/usr/bin/zstd").returncode == 0
    spec = tmp / "stage.json"
    spec.write_text(json.dumps({"packages": [{"label": "app-misc/foo-1.0", "dir": str(tmp / "pkg")}]}))
    proc = _run("stage", str(spec), str(tmp / "staged"))
    assert proc.returncode == 0, proc.stderr
    return tmp / "staged/staged.tar"


@pytest.mark.parametrize(
    "compression, shown",
    [("zstd", "Compression zstd"), ("xz", "Compression xz"), ("gzip", "Compression gzip"),
     ("lz4", "Compression lz4"), ("none", "Data is uncompressed")],
)
def test_squash_every_compression_reproducibly(staged: Path, tmp_path: Path, compression: str, shown: str) -> None:
    digests = set()
    for processors in ("1", "2"):
        out = tmp_path / f"img-{processors}.raw"
        proc = _run("squash", "--sqfstar", "/usr/bin/sqfstar", "--tar", str(staged), "--out", str(out),
                    "--compression", compression, "--mtime", "1700000000", "--processors", processors)
        assert proc.returncode == 0, proc.stderr
        assert not Path(str(out) + ".partial").exists()
        digests.add(hashlib.sha256(out.read_bytes()).hexdigest())
    assert len(digests) == 1, "the image must not depend on the number of threads"
    superblock = subprocess.run(["unsquashfs", "-s", str(out)], capture_output=True, text=True, check=True).stdout
    assert shown in superblock
    listing = subprocess.run(
        ["unsquashfs", "-lln", str(out)], capture_output=True, text=True, check=True, env={"TZ": "UTC"}
    ).stdout
    assert "-rwsr-xr-x 0/30" in listing and "2023-11-14 22:13 squashfs-root/usr/bin/foo" in listing
    assert "drwxr-s--- 0/0" in listing


def test_squash_failure_leaves_no_image(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"not a tar" * 100)
    out = tmp_path / "x.raw"
    proc = _run("squash", "--sqfstar", "/usr/bin/sqfstar", "--tar", str(bad), "--out", str(out))
    assert proc.returncode == 2 and "sqfstar failed" in proc.stderr
    assert not out.exists() and not Path(str(out) + ".partial").exists()
