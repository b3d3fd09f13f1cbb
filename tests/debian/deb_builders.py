"""Build (possibly broken) `.deb` files and read the oracle tools' view of real ones.

Written independently of the readers, following deb(5) and ar(5).
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import os
import subprocess
import tarfile
from dataclasses import dataclass, field
from typing import Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(os.path.dirname(HERE), "fixtures", "debian")
FIXTURE_DEBS = tuple(sorted(name for name in os.listdir(FIXTURES) if name.endswith(".deb")))

SUFFIXES = {"none": "", "gzip": ".gz", "bzip2": ".bz2", "xz": ".xz", "zstd": ".zst"}


def fixture_deb(name: str) -> str:
    return os.path.join(FIXTURES, name)


@dataclass
class Entry:
    name: str
    type: bytes = tarfile.REGTYPE
    data: bytes = b""
    linkname: str = ""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    uname: str = "root"
    gname: str = "root"
    mtime: int = 1700000000
    pax_headers: dict = field(default_factory=dict)


def d(name: str, mode: int = 0o755) -> Entry:
    return Entry(name, tarfile.DIRTYPE, mode=mode)


def f(name: str, data: bytes = b"data\n", mode: int = 0o644, **kwargs) -> Entry:
    return Entry(name, tarfile.REGTYPE, data=data, mode=mode, **kwargs)


def sym(name: str, target: str) -> Entry:
    return Entry(name, tarfile.SYMTYPE, linkname=target, mode=0o777)


def hard(name: str, target: str) -> Entry:
    return Entry(name, tarfile.LNKTYPE, linkname=target, mode=0o755)


def tar_bytes(entries: Sequence[Entry], *, format: int = tarfile.GNU_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=format, encoding="utf-8") as tar:
        for entry in entries:
            info = tarfile.TarInfo(entry.name)
            info.type = entry.type
            info.mode = entry.mode
            info.uid, info.gid = entry.uid, entry.gid
            info.uname, info.gname = entry.uname, entry.gname
            info.mtime = entry.mtime
            info.linkname = entry.linkname
            info.pax_headers = dict(entry.pax_headers)
            if entry.type == tarfile.REGTYPE:
                info.size = len(entry.data)
                tar.addfile(info, io.BytesIO(entry.data))
            else:
                tar.addfile(info)
    return buf.getvalue()


def compress(data: bytes, compression: str) -> bytes:
    if compression == "none":
        return data
    if compression == "gzip":
        return gzip.compress(data, mtime=0)
    if compression == "bzip2":
        return bz2.compress(data)
    if compression == "xz":
        return lzma.compress(data, format=lzma.FORMAT_XZ)
    if compression == "zstd":
        return subprocess.run(
            ["/usr/bin/zstd", "-c", "-q"], input=data, stdout=subprocess.PIPE, check=True
        ).stdout
    raise ValueError(compression)


def ar_header(name: str, size: int, *, mode: int = 0o100644, gnu_names: bool = False) -> bytes:
    raw_name = (name + "/") if gnu_names else name
    header = (
        raw_name.encode().ljust(16)
        + b"0".ljust(12)
        + b"0".ljust(6)
        + b"0".ljust(6)
        + f"{mode:o}".encode().ljust(8)
        + str(size).encode().ljust(10)
        + b"`\n"
    )
    assert len(header) == 60
    return header


def ar_bytes(members: Sequence[tuple[str, bytes]], *, gnu_names: bool = False) -> bytes:
    out = bytearray(b"!<arch>\n")
    for name, data in members:
        out += ar_header(name, len(data), gnu_names=gnu_names)
        out += data
        if len(data) % 2:
            out += b"\n"
    return bytes(out)


CONTROL = (
    "Package: hello\n"
    "Version: 1:2.0-1\n"
    "Architecture: amd64\n"
    "Maintainer: Test <test@example.org>\n"
    "Depends: libc6 (>= 2.34), libfoo1 | libbar1\n"
    "Description: a test package\n"
    " with a long description\n"
    " .\n"
    " and a second paragraph\n"
)


def control_entries(
    control: str = CONTROL,
    *,
    conffiles: str | None = None,
    scripts: Sequence[str] = (),
) -> list[Entry]:
    entries = [d("./"), f("./control", control.encode())]
    if conffiles is not None:
        entries.append(f("./conffiles", conffiles.encode()))
    for script in scripts:
        entries.append(f(f"./{script}", b"#!/bin/sh\nexit 0\n", mode=0o755))
    return entries


def sample_data() -> list[Entry]:
    """A small data tar: dirs, files (one setuid), a symlink, a hard link, an /etc file."""
    return [
        d("./"),
        d("./usr/"),
        d("./usr/bin/"),
        f("./usr/bin/hello", b"\x7fELF fake\n" * 50, mode=0o4755),
        sym("./usr/bin/hi", "hello"),
        hard("./usr/bin/hello2", "./usr/bin/hello"),
        d("./usr/share/"),
        d("./usr/share/doc/"),
        d("./usr/share/doc/hello/"),
        f("./usr/share/doc/hello/copyright", b"public domain\n"),
        f("./usr/share/empty", b""),
        d("./etc/"),
        f("./etc/hello.conf", b"greeting=hi\n", uid=0, gid=4, gname="adm", mode=0o640),
    ]


def deb_bytes(
    *,
    control: str = CONTROL,
    conffiles: str | None = "/etc/hello.conf\n",
    scripts: Sequence[str] = ("postinst", "prerm"),
    data_entries: Sequence[Entry] | None = None,
    control_compression: str = "xz",
    data_compression: str = "xz",
    control_tar: bytes | None = None,
    data_tar: bytes | None = None,
    debian_binary: bytes = b"2.0\n",
    members: Sequence[tuple[str, bytes]] | None = None,
    extra_after: Sequence[tuple[str, bytes]] = (),
    gnu_names: bool = False,
) -> bytes:
    """A `.deb`; `members` replaces the whole member list when given."""
    if members is None:
        if control_tar is None:
            control_tar = compress(
                tar_bytes(control_entries(control, conffiles=conffiles, scripts=scripts)),
                control_compression,
            )
        if data_tar is None:
            data_tar = compress(
                tar_bytes(sample_data() if data_entries is None else data_entries),
                data_compression,
            )
        members = [
            ("debian-binary", debian_binary),
            ("control.tar" + SUFFIXES[control_compression], control_tar),
            ("data.tar" + SUFFIXES[data_compression], data_tar),
            *extra_after,
        ]
    return ar_bytes(members, gnu_names=gnu_names)


def write(path, data: bytes) -> str:
    with open(path, "wb") as out:
        out.write(data)
    return str(path)


# --- oracles --------------------------------------------------------------------------------


def normalize_tar_name(name: str) -> str:
    parts = [p for p in name.split("/") if p not in ("", ".")]
    return "/".join(parts)


def dpkg_fsys_entries(deb: str) -> list[tuple]:
    """Every entry of the data tar as `dpkg-deb --fsys-tarfile` gives it, read by tarfile."""
    tar_data = subprocess.run(
        ["dpkg-deb", "--fsys-tarfile", deb], stdout=subprocess.PIPE, check=True
    ).stdout
    rows = []
    with tarfile.open(fileobj=io.BytesIO(tar_data), mode="r:") as tar:
        for info in tar:
            if info.isreg():
                kind, sha256, size, link = "file", _sha256(tar.extractfile(info).read()), info.size, ""
            elif info.isdir():
                kind, sha256, size, link = "dir", None, 0, ""
            elif info.issym():
                kind, sha256, size, link = "symlink", None, 0, info.linkname
            elif info.islnk():
                kind, sha256, size, link = "hardlink", None, 0, normalize_tar_name(info.linkname)
            else:
                raise AssertionError(f"unexpected entry type {info.type!r} in {deb}")
            rows.append(
                (
                    normalize_tar_name(info.name),
                    kind,
                    info.mode & 0o7777,
                    info.uid,
                    info.gid,
                    info.uname,
                    info.gname,
                    int(info.mtime),
                    size,
                    sha256,
                    link,
                )
            )
    return rows


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def reader_entries(entries) -> list[tuple]:
    """The same rows from `open_deb_image`'s iterator."""
    rows = []
    for entry, data in entries:
        sha256 = None
        if data is not None:
            digest = hashlib.sha256()
            for chunk in iter(lambda: data.read(65536), b""):
                digest.update(chunk)
            sha256 = digest.hexdigest()
        rows.append(
            (
                entry.path,
                entry.type,
                entry.mode,
                entry.uid,
                entry.gid,
                entry.uname,
                entry.gname,
                entry.mtime,
                entry.size,
                sha256,
                entry.linkname,
            )
        )
    return rows
