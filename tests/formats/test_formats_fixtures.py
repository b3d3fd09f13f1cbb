"""The readers against real binpkgs written by Portage, compared with `fixtures/expected/*.json`."""

from __future__ import annotations

import hashlib
import json

import pytest
from binpkg_builders import FIXTURE_BINPKGS, expected_path, fixture_path

from pants_sysext.formats.binpkg import (
    detect_format,
    open_binpkg_image,
    read_binpkg_info,
)
from pants_sysext.formats.compression import Compression
from pants_sysext.formats.gpkg import read_gpkg_layout, read_gpkg_metadata
from pants_sysext.formats.xpak import read_xpak_index, read_xpak_layout, read_xpak_metadata

GPKG_FIXTURES = [p for p in FIXTURE_BINPKGS if p.endswith(".gpkg.tar")]
XPAK_FIXTURES = [p for p in FIXTURE_BINPKGS if p.endswith(".tbz2")]


def load_expected(relpath: str) -> dict:
    with open(expected_path(relpath)) as f:
        return json.load(f)


def check_metadata(metadata: dict, expected: dict) -> None:
    assert sorted(metadata) == sorted(expected)
    for key, want in expected.items():
        got = metadata[key]
        assert isinstance(got, bytes), key
        if isinstance(want, str):
            assert got == want.encode("utf-8"), key
        else:
            assert len(got) == want["size"], key
            assert hashlib.sha256(got).hexdigest() == want["sha256"], key
            if "text" in want:
                assert got.decode("utf-8") == want["text"], key


@pytest.mark.parametrize("relpath", FIXTURE_BINPKGS)
def test_detect_format(relpath: str) -> None:
    assert detect_format(fixture_path(relpath)) == load_expected(relpath)["format"]


@pytest.mark.parametrize("relpath", FIXTURE_BINPKGS)
def test_binpkg_info(relpath: str) -> None:
    expected = load_expected(relpath)
    path = fixture_path(relpath)
    info = read_binpkg_info(path)
    assert info.path == path
    assert info.format == expected["format"]
    assert info.compression == Compression(expected["compression"])
    check_metadata(info.metadata, expected["metadata"])
    assert info.cpv == relpath.rsplit(".gpkg.tar", 1)[0].rsplit(".tbz2", 1)[0]
    assert info.text("SLOT") == expected["metadata"]["SLOT"].strip()
    assert info.text("DEBUGBUILD") == ""
    assert info.text("NO_SUCH_KEY") is None
    if info.format == "gpkg":
        image = [m for m in expected["container_members"] if "/image.tar" in m["name"]]
        assert info.image_member == image[0]["name"]
        assert info.container_dir == expected["container_dir"]
    else:
        assert info.image_member == "image.tar"
        assert info.container_dir is None
    hash(info)  # Frozen and hashable despite the metadata dict.


@pytest.mark.parametrize("relpath", GPKG_FIXTURES)
def test_gpkg_layout(relpath: str) -> None:
    expected = load_expected(relpath)
    path = fixture_path(relpath)
    with open(path, "rb") as f:
        layout = read_gpkg_layout(f, binpkg=path)
        metadata = read_gpkg_metadata(f, layout, binpkg=path)
    assert [
        {
            "name": m.name,
            "size": m.size,
            "mode": f"{m.mode:04o}",
            "uid": m.uid,
            "gid": m.gid,
            "uname": m.uname,
            "gname": m.gname,
            "mtime": m.mtime,
            "offset_data": m.offset_data,
        }
        for m in layout.members
    ] == expected["container_members"]
    assert layout.container_dir == expected["container_dir"]
    assert layout.manifest_text == expected["manifest"]
    assert layout.compression == Compression(expected["compression"])
    assert list(layout.signatures) == expected["signatures"]
    assert layout.image_member.name == next(
        m["name"] for m in expected["container_members"] if "/image.tar" in m["name"]
    )
    assert layout.metadata_member.name == next(
        m["name"] for m in expected["container_members"] if "/metadata.tar" in m["name"]
    )
    assert [f"metadata/{key}" for key in metadata] == expected["metadata_tar_names_in_order"]
    check_metadata(metadata, expected["metadata"])


@pytest.mark.parametrize("relpath", XPAK_FIXTURES)
def test_xpak_layout_and_index(relpath: str) -> None:
    expected = load_expected(relpath)
    path = fixture_path(relpath)
    with open(path, "rb") as f:
        layout = read_xpak_layout(f, binpkg=path)
        index = read_xpak_index(f, layout, binpkg=path)
        metadata = read_xpak_metadata(f, layout, index, binpkg=path)
    want_layout = {k: v for k, v in expected["layout"].items() if k != "trailer"}
    assert {k: getattr(layout, k) for k in want_layout} == want_layout
    assert [
        {"name": e.name, "data_offset": e.data_offset, "data_length": e.data_length}
        for e in index
    ] == expected["xpak_index"]
    assert list(metadata) == [e["name"] for e in expected["xpak_index"]]
    check_metadata(metadata, expected["metadata"])


def _expected_entry(want: dict, root_names: tuple) -> dict:
    """The expected JSON entry in the shape of an `ImageEntry`."""
    entry = {
        "path": "" if want["tar_name"] in root_names else want["path"].lstrip("/"),
        "tar_name": want["tar_name"],
        "type": want["type"],
        "mode": int(want["mode"], 8),
        "uid": want["uid"],
        "gid": want["gid"],
        "uname": want["uname"],
        "gname": want["gname"],
        "mtime": want["mtime"],
        "size": want["size"],
        "sha256": want.get("sha256"),
        "elf": want.get("elf"),
        "linkname": want.get("linkname", ""),
        "xattrs": {k: v.encode("utf-8") for k, v in want.get("xattrs", {}).items()},
    }
    if want["type"] == "hardlink":
        # The reader reports a hard link target as a normalised image path.
        target = want["linkname"]
        for prefix in ("image/", "./"):
            if target.startswith(prefix):
                target = target[len(prefix) :]
        entry["linkname"] = target
    return entry


@pytest.mark.parametrize("relpath", FIXTURE_BINPKGS)
def test_image_entries(relpath: str) -> None:
    expected = load_expected(relpath)
    path = fixture_path(relpath)
    got = []
    with open_binpkg_image(path) as (info, entries):
        for entry, data in entries:
            sha256 = elf = None
            if entry.type == "file":
                assert data is not None
                hasher = hashlib.sha256()
                first = b""
                while True:
                    chunk = data.read(7919)
                    if not chunk:
                        break
                    first = first or chunk[:4]
                    hasher.update(chunk)
                sha256 = hasher.hexdigest()
                elf = first == b"\x7fELF"
            else:
                assert data is None
            assert entry.xattrs == tuple(sorted(entry.xattrs))
            got.append(
                {
                    "path": entry.path,
                    "tar_name": entry.tar_name,
                    "type": entry.type,
                    "mode": entry.mode,
                    "uid": entry.uid,
                    "gid": entry.gid,
                    "uname": entry.uname,
                    "gname": entry.gname,
                    "mtime": entry.mtime,
                    "size": entry.size,
                    "sha256": sha256,
                    "elf": elf,
                    "linkname": entry.linkname,
                    "xattrs": dict(entry.xattrs),
                }
            )
    want_by_name = {
        w["tar_name"]: _expected_entry(w, ("image", ".")) for w in expected["image"]
    }
    assert len(want_by_name) == len(expected["image"])
    got_by_name = {g["tar_name"]: g for g in got}
    assert len(got_by_name) == len(got)
    assert [g["tar_name"] for g in got] == [w["tar_name"] for w in expected["image"]]
    assert got_by_name == want_by_name


def test_ppp_special_entries() -> None:
    """Spot the features the ppp fixture exists for (the full comparison is above)."""
    path = fixture_path("net-dialup/ppp-2.4.9-r1.tbz2")
    with open_binpkg_image(path) as (_, entries):
        by_path = {entry.path: entry for entry, _ in entries}
    assert by_path[""].tar_name == "."
    pppd = by_path["usr/sbin/pppd"]
    assert (pppd.mode, pppd.gid, pppd.gname) == (0o4754, 30, "dip")
    assert pppd.xattrs == (("user.pax.flags", b"em"),)
    assert by_path["etc/ppp/peers"].mode == 0o2750
    assert by_path["etc/ppp/pap-secrets"].mode == 0o600


def test_fuse_special_entries() -> None:
    path = fixture_path("sys-fs/fuse-3.14.0.gpkg.tar")
    with open_binpkg_image(path) as (_, entries):
        by_path = {entry.path: entry for entry, _ in entries}
    assert by_path["usr/bin/fusermount3"].mode == 0o4755
    assert by_path["usr/bin/fusermount"].linkname == "/usr/bin/fusermount3"
    hardlink = by_path["usr/sbin/mount.fuse3"]
    assert (hardlink.type, hardlink.linkname) == ("hardlink", "usr/sbin/mount.fuse")
    assert by_path["usr/lib64/fuse3/.keep_sys-fs_fuse-3"].size == 0
