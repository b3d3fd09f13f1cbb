"""Compression detection, segment reads, streaming decompression, errors, format detection."""

from __future__ import annotations

import io
import os
import pickle

import pytest
from binpkg_builders import compress, f, gpkg_bytes, tar_bytes, write, xpak_bytes

from pants_sysext.formats import compression as compression_module
from pants_sysext.formats.binpkg import BinpkgInfo, detect_format
from pants_sysext.formats.compression import (
    Compression,
    SegmentReader,
    compression_from_suffix,
    decompressed,
    detect_compression,
)
from pants_sysext.formats.errors import BinpkgError

COMPRESSIONS = ["none", "gzip", "bzip2", "xz", "zstd", "lz4"]
PAYLOAD = b"".join(b"line %d of the payload\n" % i for i in range(20000))


def test_binpkg_error() -> None:
    error = BinpkgError("a/b-1.tbz2", "broken", member="XPAK")
    assert (error.binpkg, error.member, error.message) == ("a/b-1.tbz2", "XPAK", "broken")
    assert str(error) == "a/b-1.tbz2: XPAK: broken"
    assert str(BinpkgError("a/b-1.tbz2", "broken")) == "a/b-1.tbz2: broken"
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.binpkg, copy.member, copy.message, str(copy)) == (
        "a/b-1.tbz2",
        "XPAK",
        "broken",
        "a/b-1.tbz2: XPAK: broken",
    )


@pytest.mark.parametrize("name", COMPRESSIONS)
def test_detect_compression(name: str) -> None:
    # "none" is detected as a tar header.
    head = compress(b"\x00" * 10240 if name != "none" else _a_tar(), name)[:512]
    assert detect_compression(head) == Compression(name)


def _a_tar() -> bytes:
    return tar_bytes([f("x")])


@pytest.mark.parametrize("head", [b"", b"\x00" * 512, b"PK\x03\x04", b"\x02\x21\x4c\x18", b"BZ"])
def test_detect_unknown_compression(head: bytes) -> None:
    assert detect_compression(head) is None


@pytest.mark.parametrize(
    "name, expected",
    [
        ("image.tar", Compression.NONE),
        ("jq-1.6-r3/image.tar.zst", Compression.ZSTD),
        ("metadata.tar.xz", Compression.XZ),
        ("image.tar.bz2", Compression.BZIP2),
        ("image.tar.gz", Compression.GZIP),
        ("image.tar.lz4", Compression.LZ4),
        ("image.tar.lz", None),
        ("image.tar.lzo", None),
        ("image.zst", None),
        ("image", None),
        ("Manifest", None),
    ],
)
def test_compression_from_suffix(name: str, expected) -> None:
    assert compression_from_suffix(name) is expected


def test_compression_is_a_str_enum() -> None:
    assert Compression.ZSTD == "zstd"
    assert Compression("lz4") is Compression.LZ4
    assert [c.value for c in Compression] == COMPRESSIONS


def test_segment_reader() -> None:
    base = io.BytesIO(bytes(range(100)))
    segment = SegmentReader(base, 10, 20)
    assert segment.readable() and segment.seekable()
    assert segment.read(5) == bytes(range(10, 15))
    base.seek(90)  # The shared file may be moved in between.
    assert segment.read() == bytes(range(15, 30))
    assert segment.read(1) == b""
    assert segment.seek(-3, os.SEEK_END) == 17
    assert segment.read() == bytes(range(27, 30))
    assert segment.seek(2) == 2 and segment.tell() == 2
    assert segment.read(3) == bytes(range(12, 15))
    # A segment past the end of the file reads short.
    assert SegmentReader(base, 95, 20).read() == bytes(range(95, 100))


@pytest.mark.parametrize("name", COMPRESSIONS)
def test_decompressed_round_trip(name: str) -> None:
    data = b"junk before" + compress(PAYLOAD, name) + b"junk after"
    raw = SegmentReader(io.BytesIO(data), 11, len(data) - 21)
    with decompressed(raw, Compression(name), binpkg="p.tbz2", member="image.tar") as stream:
        out = bytearray()
        while True:
            chunk = stream.read(10000)
            if not chunk:
                break
            out += chunk
    assert bytes(out) == PAYLOAD


@pytest.mark.parametrize("name", ["gzip", "bzip2", "xz", "zstd", "lz4"])
def test_decompressed_truncated(name: str) -> None:
    data = compress(PAYLOAD, name)
    raw = io.BytesIO(data[: len(data) // 2])
    with pytest.raises(BinpkgError) as exc:
        with decompressed(raw, Compression(name), binpkg="p.tbz2", member="image.tar") as stream:
            while stream.read(65536):
                pass
    assert (exc.value.binpkg, exc.value.member) == ("p.tbz2", "image.tar")
    assert "truncated" in exc.value.message


@pytest.mark.parametrize("name", ["gzip", "bzip2", "xz", "zstd", "lz4"])
def test_decompressed_corrupt(name: str) -> None:
    data = bytearray(compress(PAYLOAD, name))
    for i in range(20, len(data) - 20, 7):
        data[i] ^= 0x55
    with pytest.raises(BinpkgError) as exc:
        with decompressed(
            io.BytesIO(bytes(data)), Compression(name), binpkg="p.tbz2", member="image.tar"
        ) as stream:
            while stream.read(65536):
                pass
    assert str(exc.value).startswith("p.tbz2: image.tar: ")
    assert "corrupt" in exc.value.message


def test_tool_path_from_mapping() -> None:
    with decompressed(
        io.BytesIO(compress(b"hello", "zstd")),
        Compression.ZSTD,
        binpkg="p.gpkg.tar",
        member="p/image.tar.zst",
        tools={"zstd": "/usr/bin/zstd"},
    ) as stream:
        assert stream.read() == b"hello"


def test_tool_path_that_does_not_exist() -> None:
    with pytest.raises(BinpkgError) as exc:
        with decompressed(
            io.BytesIO(compress(b"hello", "lz4")),
            Compression.LZ4,
            binpkg="p.gpkg.tar",
            member="p/image.tar.lz4",
            tools={"lz4": "/nonexistent/lz4"},
        ):
            pass
    assert str(exc.value).startswith(
        "p.gpkg.tar: p/image.tar.lz4: cannot run `/nonexistent/lz4` to decompress lz4: "
    )


@pytest.mark.parametrize("name", ["zstd", "lz4"])
def test_tool_missing(monkeypatch, name: str) -> None:
    monkeypatch.setattr(compression_module.shutil, "which", lambda tool: None)
    with pytest.raises(BinpkgError) as exc:
        with decompressed(
            io.BytesIO(b""), Compression(name), binpkg="p.gpkg.tar", member="p/image.tar"
        ):
            pass
    assert str(exc.value) == (
        f"p.gpkg.tar: p/image.tar: cannot decompress {name}: the `{name}` tool was not found "
        f"(install the Debian package `{name}`)"
    )


def test_closing_early_stops_the_tool() -> None:
    big = compress(os.urandom(1024) * 8192, "zstd")  # 8 MiB of output.
    with decompressed(
        io.BytesIO(big), Compression.ZSTD, binpkg="p.tbz2", member="image.tar"
    ) as stream:
        assert len(stream.read(10)) == 10
        proc = stream.raw._proc  # type: ignore[attr-defined]
    # The tool was killed and reaped, its pipes closed; no error for stopping early.
    assert proc.returncode is not None
    assert proc.stdout.closed and proc.stderr.closed


def test_detect_format_by_content(tmp_path) -> None:
    xpak_named_gpkg = write(tmp_path / "foo-1.0.gpkg.tar", xpak_bytes(compress(_a_tar(), "bzip2")))
    gpkg_named_xpak = write(tmp_path / "foo-1.0.tbz2", gpkg_bytes())
    assert detect_format(xpak_named_gpkg) == "xpak"
    assert detect_format(gpkg_named_xpak) == "gpkg"


@pytest.mark.parametrize(
    "name, hint",
    [
        ("foo.gpkg.tar", " (the file name suggests GPKG)"),
        ("foo.xpak", " (the file name suggests XPAK)"),
        ("foo.bin", ""),
    ],
)
def test_detect_format_neither(tmp_path, name: str, hint: str) -> None:
    path = write(tmp_path / name, b"\x00" * 2048)
    with pytest.raises(BinpkgError) as exc:
        detect_format(path)
    assert str(exc.value) == (
        f"{path}: not a Portage binary package: neither a GPKG container (tar with <dir>/gpkg-1) "
        f"nor an XPAK binpkg (ends with XPAKSTOP...STOP){hint}"
    )


def test_binpkg_info_helpers() -> None:
    info = BinpkgInfo(
        path="x.tbz2",
        format="xpak",
        compression=Compression.BZIP2,
        metadata={"CATEGORY": b"  app-misc\n", "PF": b"foo-1.0\n", "BAD": b"\xff"},
        image_member="image.tar",
        container_dir=None,
    )
    assert info.cpv == "app-misc/foo-1.0"
    assert info.text("PF") == "foo-1.0"
    assert info.text("NOPE") is None
    with pytest.raises(BinpkgError) as exc:
        info.text("BAD")
    assert str(exc.value) == "x.tbz2: BAD: metadata value is not UTF-8"
    with pytest.raises(Exception):
        info.path = "y"  # type: ignore[misc]
    no_category = BinpkgInfo("x.tbz2", "xpak", Compression.BZIP2, {}, "image.tar", None)
    with pytest.raises(BinpkgError) as exc:
        no_category.cpv
    assert str(exc.value) == "x.tbz2: metadata lacks CATEGORY or PF"
