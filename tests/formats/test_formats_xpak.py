"""XPAK binpkgs: layout, index, broken trailers, every compression, truncation."""

from __future__ import annotations

import struct

import pytest
from binpkg_builders import (
    DEFAULT_METADATA,
    compress,
    d,
    f,
    sample_image,
    tar_bytes,
    write,
    xpak_block,
    xpak_bytes,
)

from pants_sysext.formats.binpkg import detect_format, open_binpkg_image, read_binpkg_info
from pants_sysext.formats.compression import Compression
from pants_sysext.formats.errors import BinpkgError
from pants_sysext.formats.xpak import (
    XpakIndexEntry,
    XpakLayout,
    read_xpak_index,
    read_xpak_layout,
    read_xpak_metadata,
)

COMPRESSIONS = ["none", "gzip", "bzip2", "xz", "zstd", "lz4"]


def image_summary(path: str) -> list:
    with open_binpkg_image(path) as (info, entries):
        return [
            (e.path, e.type, e.linkname, data.read() if data is not None else None)
            for e, data in entries
        ]


def layout_error(tmp_path, data: bytes) -> BinpkgError:
    path = write(tmp_path / "foo-1.0.tbz2", data)
    with open(path, "rb") as fh, pytest.raises(BinpkgError) as exc:
        read_xpak_layout(fh, binpkg=path)
    return exc.value


def test_layout_index_and_metadata(tmp_path) -> None:
    tar_stream = compress(tar_bytes(sample_image(".")), "bzip2")
    metadata = {"CATEGORY": b"app-misc\n", "PF": b"foo-1.0\n", "EMPTY": b""}
    path = write(tmp_path / "foo-1.0.tbz2", xpak_bytes(tar_stream, metadata))
    with open(path, "rb") as fh:
        layout = read_xpak_layout(fh, binpkg=path)
        index = read_xpak_index(fh, layout, binpkg=path)
        values = read_xpak_metadata(fh, layout, index, binpkg=path)
    index_length = 3 * 12 + len("CATEGORY") + len("PF") + len("EMPTY")
    data_length = len(b"app-misc\n") + len(b"foo-1.0\n")
    xpak_length = 16 + index_length + data_length + 8
    assert layout == XpakLayout(
        file_size=len(tar_stream) + xpak_length + 8,
        tar_stream_offset=0,
        tar_stream_length=len(tar_stream),
        xpak_offset=len(tar_stream),
        xpak_length=xpak_length,
        index_length=index_length,
        data_length=data_length,
        index_offset=len(tar_stream) + 16,
        data_offset=len(tar_stream) + 16 + index_length,
    )
    assert index == (
        XpakIndexEntry("CATEGORY", 0, 9),
        XpakIndexEntry("PF", 9, 8),
        XpakIndexEntry("EMPTY", 17, 0),
    )
    assert values == metadata


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_every_compression_by_magic(tmp_path, compression: str) -> None:
    tar_stream = compress(tar_bytes(sample_image(".")), compression)
    # The file name says nothing about the compression.
    path = write(tmp_path / "foo-1.0.xpak", xpak_bytes(tar_stream))
    assert detect_format(path) == "xpak"
    info = read_binpkg_info(path)
    assert info.compression == Compression(compression)
    assert info.format == "xpak"
    assert info.cpv == "app-misc/foo-1.0"
    assert info.metadata == DEFAULT_METADATA
    assert image_summary(path) == [
        ("", "dir", "", None),
        ("usr", "dir", "", None),
        ("usr/bin", "dir", "", None),
        ("usr/bin/foo", "file", "", b"\x7fELF fake binary\n" * 100),
        ("usr/bin/foo-link", "symlink", "foo", None),
        ("usr/bin/foo-hard", "hardlink", "usr/bin/foo", None),
        ("usr/bin/empty", "file", "", b""),
    ]


def test_unknown_compression_magic(tmp_path) -> None:
    path = write(tmp_path / "foo-1.0.tbz2", xpak_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 600))
    with pytest.raises(BinpkgError) as exc:
        read_binpkg_info(path)
    assert str(exc.value) == (
        f"{path}: image.tar: unknown compression: magic bytes 89 50 4e 47 0d 0a 1a 0a match no "
        "supported compression (bzip2, gzip, xz, zstd, lz4, or an uncompressed tar)"
    )


def test_truncated_bzip2_tar_stream(tmp_path) -> None:
    entries = [d("."), f("./big", bytes(range(256)) * 4000)]
    tar_stream = compress(tar_bytes(entries), "bzip2")
    path = write(tmp_path / "foo-1.0.tbz2", xpak_bytes(tar_stream[: len(tar_stream) // 2]))
    with pytest.raises(BinpkgError) as exc:
        image_summary(path)
    assert str(exc.value) == (
        f"{path}: image.tar: truncated bzip2 stream: Compressed file ended before the "
        "end-of-stream marker was reached"
    )


def test_truncated_zstd_tar_stream(tmp_path) -> None:
    entries = [d("."), f("./big", bytes(range(256)) * 4000)]
    tar_stream = compress(tar_bytes(entries), "zstd")
    path = write(tmp_path / "foo-1.0.tbz2", xpak_bytes(tar_stream[: len(tar_stream) // 2]))
    with pytest.raises(BinpkgError) as exc:
        image_summary(path)
    error = exc.value
    assert (error.binpkg, error.member) == (path, "image.tar")
    assert error.message.startswith("truncated or corrupt zstd stream: `")
    assert "-dc` exited with status 1: " in error.message


def test_truncated_uncompressed_tar_stream(tmp_path) -> None:
    tar_stream = tar_bytes([d("."), f("./a", b"A" * 5000), f("./b", b"B")])
    path = write(tmp_path / "foo-1.0.tbz2", xpak_bytes(tar_stream[:3000]))
    with pytest.raises(BinpkgError) as exc:
        image_summary(path)
    assert str(exc.value) == (
        f"{path}: image.tar:./a: truncated archive: file data ends early (unexpected end of data)"
    )


def test_hostile_entry_names_the_binpkg_and_member(tmp_path) -> None:
    tar_stream = compress(tar_bytes([d("."), f("./../../etc/passwd")]), "bzip2")
    path = write(tmp_path / "foo-1.0.tbz2", xpak_bytes(tar_stream))
    with pytest.raises(BinpkgError) as exc:
        image_summary(path)
    assert str(exc.value) == (
        f"{path}: image.tar:./../../etc/passwd: name './../../etc/passwd' has a '..' component"
    )


GOOD = xpak_bytes(compress(tar_bytes(sample_image(".")), "bzip2"))


def test_wrong_stop(tmp_path) -> None:
    error = layout_error(tmp_path, GOOD[:-4] + b"STOQ")
    assert str(error) == (
        f"{error.binpkg}: XPAK: bad trailer: the file does not end with b'STOP' (got b'STOQ')"
    )


def test_wrong_xpakstop(tmp_path) -> None:
    error = layout_error(tmp_path, GOOD[:-16] + b"XPAKSTOX" + GOOD[-8:])
    assert str(error) == (
        f"{error.binpkg}: XPAK: bad trailer: expected b'XPAKSTOP' before the XPAK length "
        "(got b'XPAKSTOX')"
    )


@pytest.mark.parametrize("delta", [-1, 1, 7])
def test_wrong_xpak_length(tmp_path, delta: int) -> None:
    (length,) = struct.unpack(">I", GOOD[-8:-4])
    error = layout_error(tmp_path, GOOD[:-8] + struct.pack(">I", length + delta) + b"STOP")
    assert error.member == "XPAK"
    assert error.message.startswith("bad XPAK block: expected b'XPAKPACK' at offset ")
    assert error.message.endswith(f"the trailer's XPAK length {length + delta} is wrong")


def test_xpak_length_beyond_file(tmp_path) -> None:
    error = layout_error(tmp_path, GOOD[:-8] + struct.pack(">I", len(GOOD)) + b"STOP")
    assert str(error) == (
        f"{error.binpkg}: XPAK: bad trailer: XPAK length {len(GOOD)} does not fit a file of "
        f"{len(GOOD)} bytes"
    )


def test_inconsistent_index_and_data_lengths(tmp_path) -> None:
    block = bytearray(xpak_block({"PF": b"foo-1.0\n"}))
    block[12:16] = struct.pack(">I", 9)  # data_len 8 -> 9
    data = b"x" * 1024 + bytes(block) + struct.pack(">I", len(block)) + b"STOP"
    error = layout_error(tmp_path, data)
    assert str(error) == (
        f"{error.binpkg}: XPAK: bad XPAK block: index length 14 + data length 9 do not add up "
        f"to the XPAK length {len(block)}"
    )


def test_too_small(tmp_path) -> None:
    error = layout_error(tmp_path, b"STOP")
    assert str(error) == f"{error.binpkg}: XPAK: file too small (4 bytes) for an XPAK binpkg"


def test_no_tar_stream(tmp_path) -> None:
    error = layout_error(tmp_path, xpak_bytes(b""))
    assert str(error) == f"{error.binpkg}: XPAK: no tar stream before the XPAK block"


def _index_error(tmp_path, block: bytes) -> BinpkgError:
    trailer = struct.pack(">I", len(block)) + b"STOP"
    path = write(tmp_path / "foo.tbz2", b"x" * 512 + block + trailer)
    with open(path, "rb") as fh, pytest.raises(BinpkgError) as exc:
        layout = read_xpak_layout(fh, binpkg=path)
        read_xpak_index(fh, layout, binpkg=path)
    return exc.value


def test_index_entry_outside_data(tmp_path) -> None:
    index = struct.pack(">I", 2) + b"PF" + struct.pack(">II", 4, 8)
    data = b"foo-1.0\n"
    block = b"XPAKPACK" + struct.pack(">II", len(index), len(data)) + index + data + b"XPAKSTOP"
    error = _index_error(tmp_path, block)
    assert str(error) == (
        f"{error.binpkg}: XPAK: bad XPAK index: key 'PF' points outside the data area "
        "(offset 4, length 8, data area 8)"
    )


def test_index_duplicate_key(tmp_path) -> None:
    index = (struct.pack(">I", 2) + b"PF" + struct.pack(">II", 0, 1)) * 2
    block = b"XPAKPACK" + struct.pack(">II", len(index), 1) + index + b"x" + b"XPAKSTOP"
    error = _index_error(tmp_path, block)
    assert str(error) == f"{error.binpkg}: XPAK: bad XPAK index: duplicate key 'PF'"


def test_index_bad_name_length(tmp_path) -> None:
    index = struct.pack(">I", 200) + b"PF" + struct.pack(">II", 0, 1)
    block = b"XPAKPACK" + struct.pack(">II", len(index), 1) + index + b"x" + b"XPAKSTOP"
    error = _index_error(tmp_path, block)
    assert str(error) == (
        f"{error.binpkg}: XPAK: bad XPAK index: entry at index offset 0 has a bad name length 200"
    )


def test_bad_trailer_via_binpkg(tmp_path) -> None:
    """With a broken trailer the file is no longer recognised as a binpkg at all."""
    path = write(tmp_path / "foo-1.0.tbz2", GOOD[:-4] + b"STOQ")
    with pytest.raises(BinpkgError) as exc:
        read_binpkg_info(path)
    assert str(exc.value) == (
        f"{path}: not a Portage binary package: neither a GPKG container (tar with <dir>/gpkg-1) "
        "nor an XPAK binpkg (ends with XPAKSTOP...STOP) (the file name suggests XPAK)"
    )
