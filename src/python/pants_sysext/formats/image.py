"""Streaming reader for the image tar of a binpkg: the files the package installs.

The tar is read strictly in stream mode (`tarfile` mode `r|`), and anything that could escape the
image root or that has no place in a system extension is refused: absolute names, `..`, paths
through symlinks, devices, FIFOs, dangling hard links, duplicates and truncated archives.
"""

from __future__ import annotations

import base64
import binascii
import io
import tarfile
import urllib.parse
from dataclasses import dataclass
from typing import BinaryIO, Iterator

from pants_sysext.formats.errors import BinpkgError

DIR = "dir"
FILE = "file"
SYMLINK = "symlink"
HARDLINK = "hardlink"

_BLOCK_SIZE = tarfile.BLOCKSIZE
_CHUNK_SIZE = 64 * 1024
# How much of the most recently read tar bytes is kept to check the end-of-archive marker. tarfile
# reads its input in records of `tarfile.RECORDSIZE` bytes, so this is plenty.
_TAIL_KEEP = 64 * 1024

_SCHILY_XATTR = "SCHILY.xattr."
_LIBARCHIVE_XATTR = "LIBARCHIVE.xattr."

_SPECIAL_TYPES = {
    tarfile.CHRTYPE: "character device",
    tarfile.BLKTYPE: "block device",
    tarfile.FIFOTYPE: "FIFO",
}


@dataclass(frozen=True)
class ImageEntry:
    """One entry of a binpkg image tar.

    `path` is relative to the image root, normalised, without a leading "/" or "./"; the root
    directory itself is "". `linkname` is the symlink target verbatim, the normalised `path` of the
    target of a hard link, and "" otherwise. `xattrs` are sorted by name.
    """

    path: str
    tar_name: str
    type: str
    mode: int
    uid: int
    gid: int
    uname: str
    gname: str
    mtime: int
    size: int
    linkname: str
    xattrs: tuple[tuple[str, bytes], ...]

    @property
    def is_dir(self) -> bool:
        return self.type == DIR

    @property
    def is_file(self) -> bool:
        return self.type == FILE

    @property
    def is_symlink(self) -> bool:
        return self.type == SYMLINK

    @property
    def is_hardlink(self) -> bool:
        return self.type == HARDLINK


class _Refused(Exception):
    """An entry is refused; turned into a `BinpkgError` naming the entry."""


class _TailTrackingReader(io.RawIOBase):
    """Passes a stream through, counting bytes and keeping the last few for inspection."""

    def __init__(self, inner: BinaryIO) -> None:
        super().__init__()
        self._inner = inner
        self.pos = 0
        self._tail = bytearray()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        data = self._inner.read(len(view))
        n = len(data)
        view[:n] = data
        self.pos += n
        self._tail += data
        if len(self._tail) > _TAIL_KEEP:
            del self._tail[: len(self._tail) - _TAIL_KEEP]
        return n

    def bytes_at(self, offset: int, length: int) -> bytes | None:
        """The bytes at absolute `offset` if still kept (possibly short at end of stream)."""
        start = self.pos - len(self._tail)
        if offset < start:
            return None
        return bytes(self._tail[offset - start : offset - start + length])


class _MemberReader(io.RawIOBase):
    """The data of one regular file of the image; valid until the iteration moves on."""

    def __init__(self, fileobj: BinaryIO, *, binpkg: str, member: str) -> None:
        super().__init__()
        self._fileobj: BinaryIO | None = fileobj
        self._binpkg = binpkg
        self._member = member

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        if self._fileobj is None:
            raise ValueError(f"{self._member}: the entry stream is no longer valid")
        view = memoryview(buffer).cast("B")
        try:
            data = self._fileobj.read(len(view))
        except (tarfile.ReadError, EOFError) as e:
            raise BinpkgError(
                self._binpkg, f"truncated archive: file data ends early ({e})", member=self._member
            ) from e
        n = len(data)
        view[:n] = data
        return n

    def release(self) -> None:
        self._fileobj = None
        self.close()


def _check_utf8(value: str, what: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _Refused(f"{what} is not valid UTF-8: {value!r}") from None


def _normalize(name: str, prefix: tuple[str, ...], what: str) -> str:
    """The path of tar name `name` relative to the image root `prefix`."""
    if not name:
        raise _Refused(f"empty {what}")
    _check_utf8(name, what)
    if name.startswith("/"):
        raise _Refused(f"absolute {what} {name!r}")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise _Refused(f"{what} {name!r} has a '..' component")
    if tuple(parts[: len(prefix)]) != prefix:
        root = "/".join(prefix) + "/" if prefix else "."
        raise _Refused(f"{what} {name!r} is outside the image root {root!r}")
    return "/".join(parts[len(prefix) :])


def _xattrs(tarinfo: tarfile.TarInfo) -> tuple[tuple[str, bytes], ...]:
    """Extended attributes from PAX headers (GNU tar/star `SCHILY.xattr.*`, libarchive's own)."""
    schily: dict[str, bytes] = {}
    libarchive: dict[str, bytes] = {}
    for key, value in tarinfo.pax_headers.items():
        if key.startswith(_SCHILY_XATTR):
            name = key[len(_SCHILY_XATTR) :]
            schily[name] = value.encode("utf-8", "surrogateescape")
        elif key.startswith(_LIBARCHIVE_XATTR):
            # libarchive URL-encodes the name and base64-encodes the value (without padding).
            try:
                name = urllib.parse.unquote(key[len(_LIBARCHIVE_XATTR) :], errors="strict")
                encoded = value.strip()
                libarchive[name] = base64.b64decode(
                    encoded + "=" * (-len(encoded) % 4), validate=True
                )
            except (UnicodeDecodeError, binascii.Error, ValueError):
                raise _Refused(f"malformed PAX header {key!r}") from None
        else:
            continue
    merged = {**libarchive, **schily}
    for name in merged:
        if not name or "\x00" in name:
            raise _Refused(f"invalid extended attribute name {name!r}")
        _check_utf8(name, "extended attribute name")
    return tuple(sorted(merged.items()))


def _entry_type(tarinfo: tarfile.TarInfo) -> str:
    if tarinfo.isreg():
        return FILE
    if tarinfo.isdir():
        return DIR
    if tarinfo.issym():
        return SYMLINK
    if tarinfo.islnk():
        return HARDLINK
    special = _SPECIAL_TYPES.get(tarinfo.type)
    if special:
        raise _Refused(f"{special} entries are not allowed")
    raise _Refused(f"unsupported tar entry type {tarinfo.type!r}")


class _ImageState:
    """What has been seen so far, to refuse entries that conflict with earlier ones."""

    def __init__(self, prefix: tuple[str, ...]) -> None:
        self.prefix = prefix
        self.kinds: dict[str, str] = {}

    def entry(self, tarinfo: tarfile.TarInfo) -> ImageEntry:
        entry_type = _entry_type(tarinfo)
        path = _normalize(tarinfo.name, self.prefix, "name")

        if path == "" and entry_type != DIR:
            raise _Refused("the image root is not a directory")
        # Every ancestor seen so far must be a real directory.
        pos = path.find("/")
        while pos != -1:
            ancestor = path[:pos]
            kind = self.kinds.get(ancestor)
            if kind == SYMLINK:
                raise _Refused(f"path goes through the symlink {ancestor!r}")
            if kind is not None and kind != DIR:
                raise _Refused(f"parent {ancestor!r} is not a directory (it is a {kind})")
            pos = path.find("/", pos + 1)
        previous = self.kinds.get(path)
        if previous is not None and not (previous == DIR and entry_type == DIR):
            raise _Refused(f"duplicate path {path!r} (already seen as a {previous})")

        linkname = ""
        if entry_type == SYMLINK:
            linkname = tarinfo.linkname
            if not linkname or "\x00" in linkname:
                raise _Refused("symlink with an empty target")
            _check_utf8(linkname, "symlink target")
        elif entry_type == HARDLINK:
            linkname = _normalize(tarinfo.linkname, self.prefix, "hard link target")
            if self.kinds.get(linkname) != FILE:
                raise _Refused(
                    f"hard link to {tarinfo.linkname!r}, which is not an earlier regular file "
                    "of the archive"
                )

        _check_utf8(tarinfo.uname, "user name")
        _check_utf8(tarinfo.gname, "group name")
        entry = ImageEntry(
            path=path,
            tar_name=tarinfo.name,
            type=entry_type,
            mode=tarinfo.mode & 0o7777,
            uid=tarinfo.uid,
            gid=tarinfo.gid,
            uname=tarinfo.uname,
            gname=tarinfo.gname,
            mtime=int(tarinfo.mtime),
            size=tarinfo.size if entry_type == FILE else 0,
            linkname=linkname,
            xattrs=_xattrs(tarinfo),
        )
        self.kinds[path] = entry_type
        return entry


def _prefix_parts(root_prefix: str) -> tuple[str, ...]:
    parts = tuple(part for part in root_prefix.split("/") if part not in ("", "."))
    if ".." in parts or root_prefix.startswith("/"):
        raise ValueError(f"invalid image root prefix {root_prefix!r}")
    return parts


def iter_tar_members(
    stream: BinaryIO, *, binpkg: str, member: str
) -> Iterator[tuple[tarfile.TarFile, tarfile.TarInfo]]:
    """Yield the headers of the tar read from `stream` in stream mode, strictly.

    A broken or truncated archive raises `BinpkgError(binpkg, ..., member=member)`. Data of the
    current member can be read with `tar.extractfile(tarinfo)` until the next iteration. When the
    iteration runs to its end the end-of-archive marker is checked (tarfile itself stops silently
    at a missing or short header) and `stream` is read to its end, so that decompression errors
    surface.
    """
    tracked = _TailTrackingReader(stream)
    try:
        tar = tarfile.open(
            fileobj=tracked,  # type: ignore[arg-type]
            mode="r|",
            encoding="utf-8",
            errors="surrogateescape",
        )
    except (tarfile.ReadError, EOFError) as e:
        raise BinpkgError(binpkg, f"not a tar archive, or truncated: {e}", member=member) from e

    last_name: str | None = None
    try:
        while True:
            try:
                tarinfo = tar.next()
            except (tarfile.ReadError, EOFError) as e:
                raise BinpkgError(
                    binpkg,
                    f"truncated or corrupt archive (after this entry): {e}",
                    member=member if last_name is None else f"{member}:{last_name}",
                ) from e
            if tarinfo is None:
                break
            # Stream mode needs no member list; do not let it grow with the archive.
            tar.members = []
            last_name = tarinfo.name
            yield tar, tarinfo
        _check_end_of_archive(tar, tracked, binpkg=binpkg, member=member, last_name=last_name)
        while tracked.read(_CHUNK_SIZE):
            pass
    finally:
        tar.close()


def read_member_data(
    tar: tarfile.TarFile, tarinfo: tarfile.TarInfo, *, binpkg: str, member: str
) -> bytes:
    """All the data of a (small) regular file member; the caller bounds its size."""
    fileobj = tar.extractfile(tarinfo)
    assert fileobj is not None
    try:
        data = fileobj.read()
    except (tarfile.ReadError, EOFError) as e:
        raise BinpkgError(
            binpkg, f"truncated archive: file data ends early ({e})", member=member
        ) from e
    if len(data) != tarinfo.size:
        raise BinpkgError(binpkg, "truncated archive: file data ends early", member=member)
    return data


def iter_image_entries(
    stream: BinaryIO, *, root_prefix: str, binpkg: str, member: str
) -> Iterator[tuple[ImageEntry, BinaryIO | None]]:
    """Yield each entry of the image tar read from `stream`, with its data for regular files.

    `root_prefix` is the directory of the image root inside the tar: "image/" for GPKG, "" for
    XPAK. The data stream of a regular file is only valid until the next iteration. Refused and
    broken entries raise `BinpkgError(binpkg, ..., member=f"{member}:{tar_name}")`; a broken or
    truncated archive raises `BinpkgError(binpkg, ..., member=member)`.

    When the iteration runs to its end, the end-of-archive marker is checked and `stream` is read
    to its end (so that decompression errors surface).
    """
    state = _ImageState(_prefix_parts(root_prefix))
    members = iter_tar_members(stream, binpkg=binpkg, member=member)
    try:
        for tar, tarinfo in members:
            entry_member = f"{member}:{tarinfo.name}"
            try:
                entry = state.entry(tarinfo)
            except _Refused as e:
                raise BinpkgError(binpkg, str(e), member=entry_member) from None
            reader: _MemberReader | None = None
            if entry.type == FILE:
                fileobj = tar.extractfile(tarinfo)
                assert fileobj is not None
                reader = _MemberReader(
                    fileobj, binpkg=binpkg, member=entry_member  # type: ignore[arg-type]
                )
            try:
                yield entry, reader  # type: ignore[misc]
            finally:
                if reader is not None:
                    reader.release()
    finally:
        members.close()


def _check_end_of_archive(
    tar: tarfile.TarFile,
    tracked: _TailTrackingReader,
    *,
    binpkg: str,
    member: str,
    last_name: str | None,
) -> None:
    """tarfile ends its iteration silently on a missing or short header: tell those apart."""
    offset = tar.offset
    where = member if last_name is None else f"{member}:{last_name}"
    block = tracked.bytes_at(offset, _BLOCK_SIZE)
    if block is None:
        raise BinpkgError(
            binpkg, f"cannot check the end of the archive at offset {offset}", member=where
        )
    if len(block) < _BLOCK_SIZE:
        raise BinpkgError(
            binpkg,
            f"truncated archive (after this entry): no end-of-archive marker at offset {offset}",
            member=where,
        )
    if block.count(0) != _BLOCK_SIZE:
        raise BinpkgError(
            binpkg,
            f"corrupt archive (after this entry): invalid tar header at offset {offset}",
            member=where,
        )
