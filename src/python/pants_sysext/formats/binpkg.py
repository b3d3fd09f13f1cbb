"""Read a Portage binary package (binpkg) of either format: GPKG (`.gpkg.tar`) or XPAK (`.tbz2`).

The format is found by content, never by file name.
"""

from __future__ import annotations

import os
import re
import tarfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import BinaryIO, Iterator, Mapping

from pants_sysext.formats.compression import (
    DETECT_HEAD_SIZE,
    Compression,
    SegmentReader,
    decompressed,
    describe_head,
    detect_compression,
)
from pants_sysext.formats.errors import BinpkgError
from pants_sysext.formats.gpkg import GpkgLayout, read_gpkg_layout, read_gpkg_metadata
from pants_sysext.formats.image import ImageEntry, iter_image_entries
from pants_sysext.formats.xpak import (
    XpakLayout,
    read_xpak_index,
    read_xpak_layout,
    read_xpak_metadata,
)

GPKG = "gpkg"
XPAK = "xpak"

# The name XPAK binpkgs give their (unnamed) image tar stream in errors and in `image_member`.
XPAK_IMAGE_MEMBER = "image.tar"
GPKG_IMAGE_ROOT = "image/"
XPAK_IMAGE_ROOT = ""

_GPKG_HEAD_MARKER = b"/gpkg-1\x00"
_BUILD_ID_SUFFIX = re.compile(r"-[0-9]+$")


@dataclass(frozen=True)
class BinpkgInfo:
    """What a binpkg says about itself: format, image compression and metadata.

    `image_member` is the GPKG container member holding the image (`jq-1.6-r3/image.tar.zst`), or
    `image.tar` for XPAK. `container_dir` is the GPKG container directory (`<PF>` or
    `<PF>-<BUILD_ID>`), None for XPAK.
    """

    path: str
    format: str
    compression: Compression
    metadata: dict[str, bytes] = field(hash=False)
    image_member: str
    container_dir: str | None

    def text(self, key: str) -> str | None:
        """The metadata value of `key`, decoded and stripped; None if absent."""
        value = self.metadata.get(key)
        if value is None:
            return None
        try:
            return value.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise BinpkgError(self.path, "metadata value is not UTF-8", member=key) from None

    @property
    def cpv(self) -> str:
        """`CATEGORY/PF`, e.g. `app-misc/jq-1.6-r3`."""
        category = self.text("CATEGORY")
        pf = self.text("PF")
        if not category or not pf:
            raise BinpkgError(self.path, "metadata lacks CATEGORY or PF")
        return f"{category}/{pf}"


def _format_hint(path: str) -> str:
    name = os.path.basename(path)
    if name.endswith(".gpkg.tar"):
        return " (the file name suggests GPKG)"
    if name.endswith((".tbz2", ".xpak")):
        return " (the file name suggests XPAK)"
    return ""


def _has_xpak_trailer(f: BinaryIO, file_size: int) -> bool:
    if file_size < 16:
        return False
    f.seek(file_size - 16)
    tail = f.read(16)
    return tail[0:8] == b"XPAKSTOP" and tail[12:16] == b"STOP"


def _is_gpkg_container(f: BinaryIO) -> bool:
    """Whether `f` is a tar with a `<dir>/gpkg-1` member (in any position)."""
    f.seek(0)
    try:
        with tarfile.open(fileobj=f, mode="r:") as tar:
            for tarinfo in tar:
                parts = tarinfo.name.split("/")
                if len(parts) == 2 and parts[1] == "gpkg-1":
                    return True
    except (tarfile.TarError, EOFError, UnicodeError):
        return False
    return False


def _detect_format(f: BinaryIO, path: str) -> str:
    file_size = f.seek(0, os.SEEK_END)
    f.seek(0)
    head = f.read(512)
    if _GPKG_HEAD_MARKER in head[:100] and head[257:262] == b"ustar":
        return GPKG
    if _has_xpak_trailer(f, file_size):
        return XPAK
    if head[257:262] == b"ustar" and _is_gpkg_container(f):
        return GPKG
    raise BinpkgError(
        path,
        "not a Portage binary package: neither a GPKG container (tar with <dir>/gpkg-1) nor an "
        f"XPAK binpkg (ends with XPAKSTOP...STOP){_format_hint(path)}",
    )


def detect_format(path: str) -> str:
    """"gpkg" or "xpak", found by content; the file name is only used as a hint in errors."""
    with open(path, "rb") as f:
        return _detect_format(f, path)


@dataclass(frozen=True)
class _Located:
    """A binpkg's info plus where its image tar lies in the file."""

    info: BinpkgInfo
    image_offset: int
    image_length: int
    image_root: str


def _check_container_dir(info: BinpkgInfo, layout: GpkgLayout) -> None:
    pf = info.text("PF")
    if not pf:
        raise BinpkgError(info.path, "metadata lacks PF", member=layout.metadata_member.name)
    directory = layout.container_dir
    if directory != pf and not (
        directory.startswith(pf) and _BUILD_ID_SUFFIX.fullmatch(directory[len(pf) :])
    ):
        raise BinpkgError(
            info.path,
            f"container directory {directory!r} does not match PF {pf!r} "
            "(want <PF> or <PF>-<BUILD_ID>)",
            member=directory,
        )


def _locate_gpkg(
    f: BinaryIO, path: str, tools: Mapping[str, str] | None
) -> _Located:
    layout = read_gpkg_layout(f, binpkg=path)
    metadata = read_gpkg_metadata(f, layout, binpkg=path, tools=tools)
    info = BinpkgInfo(
        path=path,
        format=GPKG,
        compression=layout.compression,
        metadata=metadata,
        image_member=layout.image_member.name,
        container_dir=layout.container_dir,
    )
    _check_container_dir(info, layout)
    return _Located(
        info, layout.image_member.offset_data, layout.image_member.size, GPKG_IMAGE_ROOT
    )


def _xpak_compression(f: BinaryIO, layout: XpakLayout, path: str) -> Compression:
    head = SegmentReader(f, layout.tar_stream_offset, layout.tar_stream_length).read(
        DETECT_HEAD_SIZE
    ) or b""
    compression = detect_compression(head)
    if compression is None:
        raise BinpkgError(
            path,
            f"unknown compression: magic bytes {describe_head(head)} match no supported "
            "compression (bzip2, gzip, xz, zstd, lz4, or an uncompressed tar)",
            member=XPAK_IMAGE_MEMBER,
        )
    return compression


def _locate_xpak(f: BinaryIO, path: str) -> _Located:
    layout = read_xpak_layout(f, binpkg=path)
    index = read_xpak_index(f, layout, binpkg=path)
    metadata = read_xpak_metadata(f, layout, index, binpkg=path)
    info = BinpkgInfo(
        path=path,
        format=XPAK,
        compression=_xpak_compression(f, layout, path),
        metadata=metadata,
        image_member=XPAK_IMAGE_MEMBER,
        container_dir=None,
    )
    return _Located(info, layout.tar_stream_offset, layout.tar_stream_length, XPAK_IMAGE_ROOT)


def _locate(f: BinaryIO, path: str, tools: Mapping[str, str] | None) -> _Located:
    if _detect_format(f, path) == GPKG:
        return _locate_gpkg(f, path, tools)
    return _locate_xpak(f, path)


def read_binpkg_info(path: str, *, tools: Mapping[str, str] | None = None) -> BinpkgInfo:
    """Read and check a binpkg's container (GPKG Manifest included) and metadata."""
    with open(path, "rb") as f:
        return _locate(f, path, tools).info


@contextmanager
def open_binpkg_image(
    path: str, *, tools: Mapping[str, str] | None = None
) -> Iterator[tuple[BinpkgInfo, Iterator[tuple[ImageEntry, BinaryIO | None]]]]:
    """The binpkg's info and an iterator over its image entries (see `iter_image_entries`).

    Use the iterator only inside the `with` block; the data stream of a regular file is valid
    until the next iteration.
    """
    with open(path, "rb") as f:
        located = _locate(f, path, tools)
        info = located.info
        raw = SegmentReader(f, located.image_offset, located.image_length)
        with decompressed(
            raw, info.compression, binpkg=path, member=info.image_member, tools=tools
        ) as stream:
            entries = iter_image_entries(
                stream, root_prefix=located.image_root, binpkg=path, member=info.image_member
            )
            try:
                yield info, entries
            finally:
                entries.close()
