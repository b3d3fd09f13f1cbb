"""Build (possibly broken) binpkgs for the format reader tests.

Written independently of the readers, following Portage's `xpak.py` and `gpkg.py`.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import os
import struct
import subprocess
import tarfile
from dataclasses import dataclass, field
from typing import Callable, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(os.path.dirname(HERE), "fixtures", "portage")
BINHOST = os.path.join(FIXTURES, "binhost")
EXPECTED = os.path.join(FIXTURES, "expected")

FIXTURE_BINPKGS = (
    "app-misc/jq-1.6-r3.gpkg.tar",
    "dev-libs/oniguruma-6.9.8.gpkg.tar",
    "sys-fs/fuse-3.14.0.gpkg.tar",
    "net-dialup/ppp-2.4.9-r1.tbz2",
)

SUFFIXES = {"none": "", "gzip": ".gz", "bzip2": ".bz2", "xz": ".xz", "zstd": ".zst", "lz4": ".lz4"}


def fixture_path(relpath: str) -> str:
    return os.path.join(BINHOST, relpath)


def expected_path(relpath: str) -> str:
    return os.path.join(EXPECTED, relpath.replace("/", "__") + ".json")


@dataclass
class Entry:
    """A tar entry to write: type is one of tarfile's type constants."""

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
            if entry.type in (tarfile.REGTYPE, tarfile.AREGTYPE):
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
    if compression in ("zstd", "lz4"):
        return subprocess.run(
            [compression, "-c", "-q"], input=data, stdout=subprocess.PIPE, check=True
        ).stdout
    raise ValueError(compression)


DEFAULT_METADATA = {
    "CATEGORY": b"app-misc\n",
    "PF": b"foo-1.0\n",
    "SLOT": b"0\n",
    "EAPI": b"8\n",
    "RDEPEND": b">=sys-libs/glibc-2.36\n",
    "environment.bz2": bz2.compress(b"declare -x FOO=bar\n"),
}


def sample_image(prefix: str) -> list[Entry]:
    """A small image with a dir, files, a symlink and a hard link, under `prefix`."""
    root = prefix.rstrip("/") or "."
    p = root + "/"
    return [
        d(root),
        d(p + "usr"),
        d(p + "usr/bin"),
        f(p + "usr/bin/foo", b"\x7fELF fake binary\n" * 100, mode=0o755),
        sym(p + "usr/bin/foo-link", "foo"),
        hard(p + "usr/bin/foo-hard", p + "usr/bin/foo"),
        f(p + "usr/bin/empty", b""),
    ]


# --- XPAK -------------------------------------------------------------------------------------


def xpak_block(metadata: dict) -> bytes:
    index = b""
    data = b""
    for key, value in metadata.items():
        name = key.encode("utf-8")
        index += struct.pack(">I", len(name)) + name + struct.pack(">II", len(data), len(value))
        data += value
    return b"XPAKPACK" + struct.pack(">II", len(index), len(data)) + index + data + b"XPAKSTOP"


def xpak_bytes(tar_stream: bytes, metadata: dict | None = None) -> bytes:
    block = xpak_block(DEFAULT_METADATA if metadata is None else metadata)
    return tar_stream + block + struct.pack(">I", len(block)) + b"STOP"


def write(path: str, data: bytes) -> str:
    with open(path, "wb") as out:
        out.write(data)
    return str(path)


# --- GPKG -------------------------------------------------------------------------------------


def manifest_line(name: str, data: bytes) -> str:
    return (
        f"DATA {name} {len(data)} BLAKE2B {hashlib.blake2b(data).hexdigest()} "
        f"SHA512 {hashlib.sha512(data).hexdigest()}\n"
    )


def gpkg_bytes(
    image_entries: Sequence[Entry] | None = None,
    *,
    compression: str = "none",
    metadata_compression: str | None = None,
    container_dir: str = "foo-1.0",
    metadata: dict | None = None,
    image_suffix: str | None = None,
    image_data: bytes | None = None,
    extra_members: Sequence[tuple[str, bytes]] = (),
    edit_manifest: Callable[[str], str] | None = None,
    omit: Sequence[str] = (),
) -> bytes:
    """A GPKG container; `edit_manifest` may tamper with the Manifest text."""
    if image_entries is None:
        image_entries = sample_image("image")
    metadata = DEFAULT_METADATA if metadata is None else metadata
    metadata_compression = metadata_compression or compression
    metadata_tar = tar_bytes(
        [f(f"metadata/{key}", value) for key, value in metadata.items()],
        format=tarfile.USTAR_FORMAT,
    )
    if image_data is None:
        image_data = compress(tar_bytes(image_entries), compression)
    image_suffix = SUFFIXES[compression] if image_suffix is None else image_suffix
    members = [
        ("gpkg-1", b""),
        (
            "metadata.tar" + SUFFIXES[metadata_compression],
            compress(metadata_tar, metadata_compression),
        ),
        ("image.tar" + image_suffix, image_data),
        *extra_members,
    ]
    manifest = "".join(manifest_line(name, data) for name, data in members)
    if edit_manifest is not None:
        manifest = edit_manifest(manifest)
    members.append(("Manifest", manifest.encode("utf-8")))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            if name in omit:
                continue
            info = tarfile.TarInfo(f"{container_dir}/{name}")
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 1700000000
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()
