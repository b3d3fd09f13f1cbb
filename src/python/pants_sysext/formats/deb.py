"""Read a Debian binary package (`.deb`): its control data and, streamed, the files it installs.

A `.deb` is an `ar` archive (deb(5)) whose members are, in this order::

    debian-binary            "2.0\\n"
    control.tar[.gz|.xz|.zst]        ./control, ./conffiles, ./md5sums, maintainer scripts, …
    data.tar[.gz|.xz|.zst|.bz2]      the files, named "./usr/…"

Members whose names start with `_` (`_gpgorigin`, `_gpgbuilder` of debsigs and dpkg-sig) are
skipped wherever they appear after `debian-binary`, as dpkg does. Anything else — another
format version, members out of order, missing or repeated, unknown members, a compression that
dpkg does not use for that member, or a suffix that disagrees with the member's magic bytes — is
refused with a `BinpkgError` naming the `.deb` and the member.

The ar archive is read by offsets and each tar is streamed through `formats.compression`; the
entries of both tars go through `formats.image.iter_image_entries`, which refuses absolute names,
`..`, paths through symlinks, devices, FIFOs, dangling hard links and truncation. Nothing is
extracted, and only the small control files (`control`, `conffiles`, at most 16 MiB each) are
read into memory. Standard library only: this module runs in sandboxes on the system Python.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO, Iterator, Mapping

from pants_sysext.formats.compression import (
    DETECT_HEAD_SIZE,
    Compression,
    SegmentReader,
    compression_from_suffix,
    decompressed,
    describe_head,
    detect_compression,
)
from pants_sysext.formats.deb822 import (
    Deb822Error,
    Stanza,
    check_package_fields,
    parse_single_stanza,
)
from pants_sysext.formats.errors import BinpkgError
from pants_sysext.formats.image import DIR, ImageEntry, iter_image_entries

AR_MAGIC = b"!<arch>\n"
AR_HEADER_SIZE = 60
_AR_FMAG = b"`\n"

DEBIAN_BINARY = "debian-binary"
FORMAT_VERSION = b"2.0\n"
CONTROL_PREFIX = "control.tar"
DATA_PREFIX = "data.tar"
# The image root of both tars: their names are "./control", "./usr/bin/jq", …
DEB_IMAGE_ROOT = ""

# What dpkg-deb (1.21) reads for each member.
CONTROL_COMPRESSIONS = (Compression.NONE, Compression.GZIP, Compression.XZ, Compression.ZSTD)
DATA_COMPRESSIONS = (
    Compression.NONE,
    Compression.GZIP,
    Compression.XZ,
    Compression.ZSTD,
    Compression.BZIP2,
)

# Control members that are programs (or trigger declarations) run by dpkg, in the order dpkg
# runs them during an installation.
MAINTAINER_SCRIPTS = ("preinst", "postinst", "prerm", "postrm", "config", "triggers")
CONTROL_FILE = "control"
CONFFILES_FILE = "conffiles"
# conffiles flags (dpkg ≥ 1.20.1): such a line names a file the package no longer ships.
_CONFFILE_FLAGS = ("remove-on-upgrade",)

MAX_CONTROL_FILE_SIZE = 16 * 1024 * 1024
MAX_DEBIAN_BINARY_SIZE = 64
MAX_MEMBERS = 64


@dataclass(frozen=True)
class ArMember:
    """One member of an `ar` archive; `offset` is where its data starts in the file."""

    name: str
    offset: int
    size: int
    mode: int
    uid: int
    gid: int
    mtime: int


@dataclass(frozen=True)
class DebInfo:
    """What a `.deb` says about itself.

    `control` holds the fields of its `control` file as `(name, value)` pairs, in file order
    (values as `formats.deb822` gives them). `maintainer_scripts` lists those of
    `MAINTAINER_SCRIPTS` present in `control.tar`, in that order. `conffiles` are the absolute
    paths listed in `conffiles` (lines flagged `remove-on-upgrade` are left out: the package does
    not ship those files). `data_member` is the ar member holding the files (`data.tar.xz`) and
    `compression` its compression. `extra_members` are the skipped `_*` members (signatures).
    """

    path: str
    package: str
    version: str
    architecture: str
    control: tuple[tuple[str, str], ...]
    maintainer_scripts: tuple[str, ...]
    conffiles: tuple[str, ...]
    data_member: str
    compression: Compression
    control_member: str = "control.tar"
    control_compression: Compression = Compression.NONE
    extra_members: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """`package_version_architecture`, as in Debian's file names (the epoch is kept)."""
        return f"{self.package}_{self.version}_{self.architecture}"

    @property
    def stanza(self) -> Stanza:
        """The control fields as a case-insensitive mapping."""
        return Stanza(self.control)

    def field(self, name: str, default: str | None = None) -> str | None:
        """The value of control field `name` (case-insensitive), or `default`."""
        lower = name.lower()
        for key, value in self.control:
            if key.lower() == lower:
                return value
        return default


def _parse_number(raw: bytes, base: int, *, what: str, deb: str, member: str) -> int:
    text = raw.decode("ascii", "replace").strip()
    if not text:
        return 0
    try:
        value = int(text, base)
    except ValueError:
        raise BinpkgError(
            deb, f"corrupt ar member header: {what} field is {raw!r}", member=member
        ) from None
    if value < 0:
        raise BinpkgError(deb, f"corrupt ar member header: negative {what}", member=member)
    return value


def _member_name(raw: bytes, *, deb: str, offset: int) -> str:
    # dpkg-deb pads the name with spaces; GNU ar ends it with "/" too.
    try:
        name = raw.decode("ascii").rstrip(" ")
    except UnicodeDecodeError:
        raise BinpkgError(
            deb, f"corrupt ar member header at offset {offset}: member name {raw!r} is not ASCII"
        ) from None
    if name.endswith("/") and name not in ("/", "//"):
        name = name[:-1]
    if not name or "/" in name or not name.isprintable() or " " in name:
        raise BinpkgError(
            deb,
            f"unsupported ar member name {raw!r} at offset {offset} (symbol tables, long-name "
            "tables and BSD long names do not occur in .deb files)",
        )
    return name


def read_ar_members(f: BinaryIO, *, deb: str) -> tuple[ArMember, ...]:
    """The members of the `ar` archive `f` (the `.deb` named `deb` in errors), checked.

    Refuses a bad magic, a corrupt or truncated member header and a member whose data would
    extend past the end of the file.
    """
    file_size = f.seek(0, os.SEEK_END)
    f.seek(0)
    magic = f.read(len(AR_MAGIC))
    if magic != AR_MAGIC:
        raise BinpkgError(
            deb,
            f"not a Debian binary package: no ar archive magic `!<arch>` (starts with "
            f"{describe_head(magic)})",
        )
    members: list[ArMember] = []
    pos = len(AR_MAGIC)
    while pos < file_size:
        where = members[-1].name if members else None
        if len(members) >= MAX_MEMBERS:
            raise BinpkgError(deb, f"more than {MAX_MEMBERS} ar members; refusing", member=where)
        f.seek(pos)
        header = f.read(AR_HEADER_SIZE)
        if len(header) < AR_HEADER_SIZE:
            raise BinpkgError(
                deb,
                f"truncated archive: {len(header)} stray bytes after this member at offset "
                f"{pos}, where a {AR_HEADER_SIZE}-byte ar header would start",
                member=where,
            )
        if header[58:60] != _AR_FMAG:
            raise BinpkgError(
                deb,
                f"corrupt ar member header at offset {pos} (bad terminator "
                f"{header[58:60]!r}; the previous member's size is wrong or the file is "
                "damaged)",
                member=where,
            )
        name = _member_name(header[0:16], deb=deb, offset=pos)
        size_field = header[48:58].decode("ascii", "replace").strip()
        if not size_field.isdigit():
            raise BinpkgError(
                deb, f"corrupt ar member header: size field is {header[48:58]!r}", member=name
            )
        size = int(size_field)
        offset = pos + AR_HEADER_SIZE
        member = ArMember(
            name=name,
            offset=offset,
            size=size,
            mode=_parse_number(header[40:48], 8, what="mode", deb=deb, member=name),
            uid=_parse_number(header[28:34], 10, what="uid", deb=deb, member=name),
            gid=_parse_number(header[34:40], 10, what="gid", deb=deb, member=name),
            mtime=_parse_number(header[16:28], 10, what="mtime", deb=deb, member=name),
        )
        if offset + size > file_size:
            raise BinpkgError(
                deb,
                f"truncated member: the ar header says {size} bytes, but only "
                f"{file_size - offset} remain in the file",
                member=name,
            )
        members.append(member)
        pos = offset + size
        if size % 2 and pos < file_size:
            f.seek(pos)
            if f.read(1) != b"\n":
                raise BinpkgError(
                    deb, "corrupt ar archive: the padding byte after this member is not '\\n'",
                    member=name,
                )
            pos += 1
    return tuple(members)


@dataclass(frozen=True)
class DebLayout:
    """Where the parts of a `.deb` are: its control and data members, and the skipped ones."""

    control: ArMember
    control_compression: Compression
    data: ArMember
    data_compression: Compression
    extra: tuple[ArMember, ...]


def _member_compression(
    f: BinaryIO, member: ArMember, prefix: str, allowed: tuple[Compression, ...], *, deb: str
) -> Compression:
    compression = compression_from_suffix(member.name)
    if compression is None or compression not in allowed or not member.name.startswith(prefix):
        names = ", ".join(
            prefix + ("" if c == Compression.NONE else _SUFFIX[c]) for c in allowed
        )
        raise BinpkgError(
            deb, f"unsupported member compression (dpkg reads {names})", member=member.name
        )
    head = SegmentReader(f, member.offset, member.size).read(DETECT_HEAD_SIZE) or b""
    detected = detect_compression(head)
    if detected != compression and not (compression == Compression.NONE and detected is None):
        found = "no known compression" if detected is None else detected.value
        raise BinpkgError(
            deb,
            f"the member name says {compression.value}, but its content is {found} "
            f"(starts with {describe_head(head)})",
            member=member.name,
        )
    return compression


_SUFFIX = {
    Compression.GZIP: ".gz",
    Compression.BZIP2: ".bz2",
    Compression.XZ: ".xz",
    Compression.ZSTD: ".zst",
    Compression.LZ4: ".lz4",
}


def read_deb_layout(f: BinaryIO, *, deb: str) -> DebLayout:
    """Check the member sequence of the `.deb` `f` and locate its control and data members."""
    members = read_ar_members(f, deb=deb)
    if not members:
        raise BinpkgError(deb, "empty ar archive: not a Debian binary package")
    first = members[0]
    if first.name != DEBIAN_BINARY:
        raise BinpkgError(
            deb,
            f"the first member must be {DEBIAN_BINARY!r}, found {first.name!r}: not a Debian "
            "binary package, or members out of order",
            member=first.name,
        )
    if first.size > MAX_DEBIAN_BINARY_SIZE:
        raise BinpkgError(
            deb, f"{first.size} bytes, expected {FORMAT_VERSION!r}", member=DEBIAN_BINARY
        )
    f.seek(first.offset)
    version = f.read(first.size)
    if version != FORMAT_VERSION:
        raise BinpkgError(
            deb,
            f"unsupported package format version {version!r} (want {FORMAT_VERSION!r})",
            member=DEBIAN_BINARY,
        )

    control: ArMember | None = None
    data: ArMember | None = None
    extra: list[ArMember] = []
    for member in members[1:]:
        name = member.name
        if name.startswith("_"):
            extra.append(member)
        elif name.startswith(CONTROL_PREFIX):
            if control is not None:
                raise BinpkgError(
                    deb, f"second control member (the first is {control.name!r})", member=name
                )
            if data is not None:
                raise BinpkgError(
                    deb,
                    f"members out of order: the control member comes after {data.name!r}",
                    member=name,
                )
            control = member
        elif name.startswith(DATA_PREFIX):
            if data is not None:
                raise BinpkgError(
                    deb, f"second data member (the first is {data.name!r})", member=name
                )
            if control is None:
                raise BinpkgError(
                    deb,
                    "members out of order: the data member comes before the control member "
                    "(control.tar.*)",
                    member=name,
                )
            data = member
        else:
            raise BinpkgError(
                deb,
                "unknown member (a .deb holds debian-binary, control.tar.*, data.tar.* and "
                "members named _*)",
                member=name,
            )
    if control is None:
        raise BinpkgError(deb, "no control member (control.tar.*)")
    if data is None:
        raise BinpkgError(deb, "no data member (data.tar.*)")
    return DebLayout(
        control=control,
        control_compression=_member_compression(
            f, control, CONTROL_PREFIX, CONTROL_COMPRESSIONS, deb=deb
        ),
        data=data,
        data_compression=_member_compression(f, data, DATA_PREFIX, DATA_COMPRESSIONS, deb=deb),
        extra=tuple(extra),
    )


def _read_small_file(data: BinaryIO, entry: ImageEntry, *, deb: str, member: str) -> bytes:
    where = f"{member}:{entry.tar_name}"
    if entry.size > MAX_CONTROL_FILE_SIZE:
        raise BinpkgError(
            deb, f"{entry.size} bytes, more than {MAX_CONTROL_FILE_SIZE} allowed", member=where
        )
    chunks = []
    remaining = entry.size + 1  # One more, to notice data beyond the declared size.
    while remaining > 0:
        chunk = data.read(min(remaining, 1024 * 1024))
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    content = b"".join(chunks)
    if len(content) != entry.size:
        raise BinpkgError(deb, "truncated archive: file data ends early", member=where)
    return content


def _parse_conffiles(content: bytes, *, deb: str, member: str) -> tuple[str, ...]:
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BinpkgError(deb, f"not UTF-8 text: {e}", member=member) from None
    paths = []
    for lineno, line in enumerate(text.split("\n"), start=1):
        line = line.strip()
        if not line:
            continue
        words = line.split(None, 1)
        if words[0].startswith("/"):
            path = line
        elif words[0] in _CONFFILE_FLAGS and len(words) == 2:
            continue  # Not shipped: dpkg removes it on upgrade.
        else:
            raise BinpkgError(
                deb,
                f"line {lineno}: {line!r} is neither an absolute path nor "
                f"`{' | '.join(_CONFFILE_FLAGS)} <path>`",
                member=member,
            )
        paths.append(path)
    return tuple(paths)


def _read_control(
    f: BinaryIO, layout: DebLayout, *, deb: str, tools: Mapping[str, str] | None
) -> tuple[Stanza, str, tuple[str, ...], tuple[str, ...]]:
    """(control stanza, its member name, maintainer scripts, conffiles) from control.tar."""
    member = layout.control.name
    control: tuple[bytes, str] | None = None
    conffiles: tuple[str, ...] = ()
    scripts: set[str] = set()
    raw = SegmentReader(f, layout.control.offset, layout.control.size)
    with decompressed(
        raw, layout.control_compression, binpkg=deb, member=member, tools=tools
    ) as stream:
        entries = iter_image_entries(
            stream, root_prefix=DEB_IMAGE_ROOT, binpkg=deb, member=member
        )
        try:
            for entry, data in entries:
                if entry.type == DIR or "/" in entry.path:
                    continue
                if entry.path in MAINTAINER_SCRIPTS:
                    scripts.add(entry.path)
                elif entry.path == CONTROL_FILE and data is not None:
                    content = _read_small_file(data, entry, deb=deb, member=member)
                    control = (content, f"{member}:{entry.tar_name}")
                elif entry.path == CONFFILES_FILE and data is not None:
                    content = _read_small_file(data, entry, deb=deb, member=member)
                    conffiles = _parse_conffiles(
                        content, deb=deb, member=f"{member}:{entry.tar_name}"
                    )
        finally:
            entries.close()
    if control is None:
        raise BinpkgError(deb, "no `control` file in the control archive", member=member)
    content, where = control
    try:
        stanza = parse_single_stanza(content, source="control", comments=False)
        check_package_fields(stanza, source="control")
    except Deb822Error as e:
        message = e.message if e.lineno is None else f"line {e.lineno}: {e.message}"
        raise BinpkgError(deb, message, member=where) from None
    ordered = tuple(name for name in MAINTAINER_SCRIPTS if name in scripts)
    return stanza, where, ordered, conffiles


def _locate(f: BinaryIO, path: str, tools: Mapping[str, str] | None) -> tuple[DebInfo, DebLayout]:
    layout = read_deb_layout(f, deb=path)
    stanza, _, scripts, conffiles = _read_control(f, layout, deb=path, tools=tools)
    info = DebInfo(
        path=path,
        package=stanza["Package"].strip(),
        version=stanza["Version"].strip(),
        architecture=stanza["Architecture"].strip(),
        control=stanza.fields,
        maintainer_scripts=scripts,
        conffiles=conffiles,
        data_member=layout.data.name,
        compression=layout.data_compression,
        control_member=layout.control.name,
        control_compression=layout.control_compression,
        extra_members=tuple(m.name for m in layout.extra),
    )
    return info, layout


def read_deb_info(path: str, *, tools: Mapping[str, str] | None = None) -> DebInfo:
    """Read and check a `.deb`'s ar layout and control archive (the data tar is not read).

    `tools` maps "zstd" (and "lz4") to the binaries to use; missing ones are taken from PATH.
    """
    with open(path, "rb") as f:
        return _locate(f, path, tools)[0]


@contextmanager
def open_deb_image(
    path: str, *, tools: Mapping[str, str] | None = None
) -> Iterator[tuple[DebInfo, Iterator[tuple[ImageEntry, BinaryIO | None]]]]:
    """The `.deb`'s info and an iterator over the entries of its data tar.

    Entries are as `formats.image.iter_image_entries` gives them: paths relative to the image
    root ("usr/bin/jq"; the root directory "./" is the entry with path ""). Errors name the entry
    as `data.tar.xz:./usr/bin/jq`. Use the iterator only inside the `with` block; the data stream
    of a regular file is valid until the next iteration. Iterating to the end also checks the
    end of the tar and of its compressed stream.
    """
    with open(path, "rb") as f:
        info, layout = _locate(f, path, tools)
        raw = SegmentReader(f, layout.data.offset, layout.data.size)
        with decompressed(
            raw, info.compression, binpkg=path, member=info.data_member, tools=tools
        ) as stream:
            entries = iter_image_entries(
                stream, root_prefix=DEB_IMAGE_ROOT, binpkg=path, member=info.data_member
            )
            try:
                yield info, entries
            finally:
                entries.close()
