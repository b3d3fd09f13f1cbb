"""Reader for the XPAK binpkg format (`.tbz2` / `.xpak`).

Layout, as written by Portage (`portage/xpak.py`)::

    [compressed tar]["XPAKPACK" index_len data_len index data "XPAKSTOP"][xpak_len]["STOP"]

All integers are 4-byte big-endian. `xpak_len` covers "XPAKPACK" up to and including "XPAKSTOP".
An index entry is `name_len name data_offset data_len`, with `data_offset` relative to the start
of the data area.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import BinaryIO

from pants_sysext.formats.errors import BinpkgError

XPAK_MEMBER = "XPAK"

_XPAKPACK = b"XPAKPACK"
_XPAKSTOP = b"XPAKSTOP"
_STOP = b"STOP"
# "XPAKPACK" + index_len + data_len
_HEADER_SIZE = 16
# "XPAKSTOP" + xpak_len + "STOP"
_TRAILER_SIZE = 16
# A metadata value larger than this is refused (metadata is read into memory).
MAX_METADATA_VALUE_SIZE = 16 * 1024 * 1024


@dataclass(frozen=True)
class XpakLayout:
    """Where the tar stream and the XPAK block lie in an XPAK binpkg (absolute file offsets)."""

    file_size: int
    tar_stream_offset: int
    tar_stream_length: int
    xpak_offset: int
    xpak_length: int
    index_length: int
    data_length: int
    index_offset: int
    data_offset: int


@dataclass(frozen=True)
class XpakIndexEntry:
    """One metadata key of the XPAK index; `data_offset` is relative to the data area."""

    name: str
    data_offset: int
    data_length: int


def _read_exact(f: BinaryIO, offset: int, length: int, *, binpkg: str, what: str) -> bytes:
    f.seek(offset)
    data = f.read(length)
    if len(data) != length:
        raise BinpkgError(
            binpkg,
            f"truncated: wanted {length} bytes of {what} at offset {offset}, got {len(data)}",
            member=XPAK_MEMBER,
        )
    return data


def read_xpak_layout(f: BinaryIO, *, binpkg: str) -> XpakLayout:
    """Locate the tar stream and the XPAK block from the trailer at the end of the file."""
    file_size = f.seek(0, os.SEEK_END)
    if file_size < _HEADER_SIZE + _TRAILER_SIZE:
        raise BinpkgError(
            binpkg, f"file too small ({file_size} bytes) for an XPAK binpkg", member=XPAK_MEMBER
        )
    trailer = _read_exact(
        f, file_size - _TRAILER_SIZE, _TRAILER_SIZE, binpkg=binpkg, what="the trailer"
    )
    if trailer[12:16] != _STOP:
        raise BinpkgError(
            binpkg,
            f"bad trailer: the file does not end with {_STOP!r} (got {trailer[12:16]!r})",
            member=XPAK_MEMBER,
        )
    if trailer[0:8] != _XPAKSTOP:
        raise BinpkgError(
            binpkg,
            f"bad trailer: expected {_XPAKSTOP!r} before the XPAK length "
            f"(got {trailer[0:8]!r})",
            member=XPAK_MEMBER,
        )
    (xpak_length,) = struct.unpack(">I", trailer[8:12])
    xpak_offset = file_size - 8 - xpak_length
    if xpak_length < _HEADER_SIZE + len(_XPAKSTOP) or xpak_offset < 0:
        raise BinpkgError(
            binpkg,
            f"bad trailer: XPAK length {xpak_length} does not fit a file of {file_size} bytes",
            member=XPAK_MEMBER,
        )
    header = _read_exact(f, xpak_offset, _HEADER_SIZE, binpkg=binpkg, what="the XPAK header")
    if header[0:8] != _XPAKPACK:
        raise BinpkgError(
            binpkg,
            f"bad XPAK block: expected {_XPAKPACK!r} at offset {xpak_offset} "
            f"(got {header[0:8]!r}); the trailer's XPAK length {xpak_length} is wrong",
            member=XPAK_MEMBER,
        )
    index_length, data_length = struct.unpack(">II", header[8:16])
    if _HEADER_SIZE + index_length + data_length + len(_XPAKSTOP) != xpak_length:
        raise BinpkgError(
            binpkg,
            f"bad XPAK block: index length {index_length} + data length {data_length} "
            f"do not add up to the XPAK length {xpak_length}",
            member=XPAK_MEMBER,
        )
    if xpak_offset == 0:
        raise BinpkgError(binpkg, "no tar stream before the XPAK block", member=XPAK_MEMBER)
    index_offset = xpak_offset + _HEADER_SIZE
    return XpakLayout(
        file_size=file_size,
        tar_stream_offset=0,
        tar_stream_length=xpak_offset,
        xpak_offset=xpak_offset,
        xpak_length=xpak_length,
        index_length=index_length,
        data_length=data_length,
        index_offset=index_offset,
        data_offset=index_offset + index_length,
    )


def read_xpak_index(
    f: BinaryIO, layout: XpakLayout, *, binpkg: str
) -> tuple[XpakIndexEntry, ...]:
    """Parse the XPAK index, checking that every entry points inside the data area."""
    index = _read_exact(
        f, layout.index_offset, layout.index_length, binpkg=binpkg, what="the XPAK index"
    )
    entries: list[XpakIndexEntry] = []
    seen: set[str] = set()
    pos = 0
    while pos < len(index):
        if pos + 4 > len(index):
            raise BinpkgError(
                binpkg, f"bad XPAK index: truncated entry at index offset {pos}", member=XPAK_MEMBER
            )
        (name_length,) = struct.unpack_from(">I", index, pos)
        end = pos + 4 + name_length + 8
        if name_length == 0 or end > len(index):
            raise BinpkgError(
                binpkg,
                f"bad XPAK index: entry at index offset {pos} has a bad name length {name_length}",
                member=XPAK_MEMBER,
            )
        raw_name = index[pos + 4 : pos + 4 + name_length]
        try:
            name = raw_name.decode("utf-8")
        except UnicodeDecodeError:
            raise BinpkgError(
                binpkg, f"bad XPAK index: key {raw_name!r} is not UTF-8", member=XPAK_MEMBER
            ) from None
        if "\x00" in name or "/" in name or name in (".", ".."):
            raise BinpkgError(binpkg, f"bad XPAK index: invalid key {name!r}", member=XPAK_MEMBER)
        data_offset, data_length = struct.unpack_from(">II", index, pos + 4 + name_length)
        if data_offset + data_length > layout.data_length:
            raise BinpkgError(
                binpkg,
                f"bad XPAK index: key {name!r} points outside the data area "
                f"(offset {data_offset}, length {data_length}, data area {layout.data_length})",
                member=XPAK_MEMBER,
            )
        if name in seen:
            raise BinpkgError(binpkg, f"bad XPAK index: duplicate key {name!r}", member=XPAK_MEMBER)
        seen.add(name)
        entries.append(XpakIndexEntry(name, data_offset, data_length))
        pos = end
    return tuple(entries)


def read_xpak_metadata(
    f: BinaryIO, layout: XpakLayout, index: tuple[XpakIndexEntry, ...], *, binpkg: str
) -> dict[str, bytes]:
    """The metadata values named by `index`, in index order."""
    metadata: dict[str, bytes] = {}
    for entry in index:
        if entry.data_offset + entry.data_length > layout.data_length:
            raise BinpkgError(
                binpkg,
                f"bad XPAK index: key {entry.name!r} points outside the data area",
                member=XPAK_MEMBER,
            )
        if entry.data_length > MAX_METADATA_VALUE_SIZE:
            raise BinpkgError(
                binpkg,
                f"metadata key {entry.name!r} is too large ({entry.data_length} bytes)",
                member=XPAK_MEMBER,
            )
        metadata[entry.name] = _read_exact(
            f,
            layout.data_offset + entry.data_offset,
            entry.data_length,
            binpkg=binpkg,
            what=f"metadata key {entry.name!r}",
        )
    return metadata
