"""Unpack one binary package (Portage GPKG/XPAK, or Debian `.deb`) into a normalized image
tar, a manifest and its metadata.

Runs in a Pants sandbox with the system Python (standard library only):

    python3 -m pants_sysext.sandbox.unpack BINPKG OUTDIR [--tool zstd=/usr/bin/zstd] ...

Writes `OUTDIR/image.tar` (PAX; paths relative to the image root; hard links point at the
first member of their group; `trusted.overlay.*` xattrs dropped), `OUTDIR/entries.jsonl` (one
`ManifestEntry` per tar member, with sha256 of every file) and `OUTDIR/metadata.json` (the
binpkg's metadata keys as text). Nothing is extracted to the file system, so no member can
write outside the sandbox whatever its name. The package is streamed: memory use does not grow
with its size.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import BinaryIO, Iterator, Mapping

from pants_sysext.formats.binpkg import open_binpkg_image
from pants_sysext.formats.deb import open_deb_image
from pants_sysext.formats.errors import BinpkgError
from pants_sysext.sandbox.manifest import FILE, ManifestEntry, open_tar_writer

DROPPED_XATTR_PREFIXES = ("trusted.overlay.",)
# Metadata keys that are not text, or too large to be worth carrying.
_MAX_METADATA_VALUE = 256 * 1024
_CHUNK = 1024 * 1024


class _HashingReader:
    """Passes reads through while computing sha256 and counting bytes."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.sha256 = hashlib.sha256()
        self.md5 = hashlib.md5()
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self.sha256.update(data)
        self.md5.update(data)
        self.count += len(data)
        return data


@dataclass(frozen=True)
class PackageHeader:
    """What the unpack step needs of a package, whatever its format."""

    label: str  # a Portage CPV, or a Debian `package_version_arch`
    format: str  # gpkg | xpak | deb
    compression: str
    image_member: str
    metadata: Mapping[str, bytes]


def is_deb(path: str) -> bool:
    with open(path, "rb") as f:
        return f.read(8) == b"!<arch>\n"


@contextmanager
def open_package(path: str, *, tools: Mapping[str, str]) -> Iterator[tuple[PackageHeader, Iterator]]:
    """A Portage binpkg (GPKG/XPAK) or a Debian `.deb`, found by content."""
    if is_deb(path):
        with open_deb_image(path, tools=tools) as (info, entries):
            metadata = {k: v.encode("utf-8") for k, v in info.control}
            metadata["MAINTAINER_SCRIPTS"] = " ".join(info.maintainer_scripts).encode()
            metadata["CONFFILES"] = "\n".join(info.conffiles).encode()
            yield PackageHeader(
                info.label, "deb", str(info.compression.value), info.data_member, metadata
            ), entries
        return
    with open_binpkg_image(path, tools=tools) as (info, entries):
        yield PackageHeader(
            info.cpv,
            info.format,
            str(getattr(info.compression, "value", info.compression)),
            info.image_member,
            info.metadata,
        ), entries


def _check_file(path: str, *, size: int | None, sha1: str | None, md5: str | None, origin: str):
    if size is None and sha1 is None and md5 is None:
        return
    actual_size = os.path.getsize(path)
    h_sha1, h_md5 = hashlib.sha1(), hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h_sha1.update(chunk)
            h_md5.update(chunk)
    problems = []
    if size is not None and actual_size != size:
        problems.append(f"size {actual_size}, expected {size}")
    if sha1 and h_sha1.hexdigest() != sha1.lower():
        problems.append(f"SHA1 {h_sha1.hexdigest()}, expected {sha1}")
    if md5 and h_md5.hexdigest() != md5.lower():
        problems.append(f"MD5 {h_md5.hexdigest()}, expected {md5}")
    if problems:
        raise BinpkgError(
            os.path.basename(path),
            f"does not match {origin}: {'; '.join(problems)}. The binhost changed under its "
            f"index, or the file was replaced: refresh the binhost's Packages index or restore "
            f"the file.",
        )


def unpack(
    binpkg: str,
    outdir: str,
    *,
    tools: dict[str, str],
    expect_size: int | None = None,
    expect_sha1: str | None = None,
    expect_md5: str | None = None,
    expect_cpv: str | None = None,
    origin: str = "the binhost index",
    log=None,
) -> dict:
    _check_file(binpkg, size=expect_size, sha1=expect_sha1, md5=expect_md5, origin=origin)
    os.makedirs(outdir, exist_ok=True)
    dropped_xattrs = []
    count = 0
    with open_package(binpkg, tools=tools) as (info, entries):
        cpv = info.label
        if expect_cpv and cpv != expect_cpv:
            raise BinpkgError(
                os.path.basename(binpkg),
                f"holds {cpv}, but {origin} lists it as {expect_cpv}",
            )
        with open_tar_writer(os.path.join(outdir, "image.tar")) as tar, open(
            os.path.join(outdir, "entries.jsonl"), "w", encoding="utf-8"
        ) as manifest:
            for image_entry, data in entries:
                if image_entry.path == "":
                    continue  # the image root: its attributes are the squash step's to set
                xattrs = []
                for name, value in image_entry.xattrs:
                    if name.startswith(DROPPED_XATTR_PREFIXES):
                        dropped_xattrs.append(f"{image_entry.path}: {name}")
                    else:
                        xattrs.append((name, value))
                entry = ManifestEntry(
                    path=image_entry.path,
                    type=image_entry.type,
                    mode=image_entry.mode,
                    uid=image_entry.uid,
                    gid=image_entry.gid,
                    uname=image_entry.uname,
                    gname=image_entry.gname,
                    size=image_entry.size if image_entry.type == FILE else 0,
                    linkname=image_entry.linkname or None,
                    xattrs=tuple(xattrs),
                    package=cpv,
                )
                tarinfo = entry.to_tarinfo(mtime=image_entry.mtime)
                if entry.type == FILE:
                    assert data is not None
                    reader = _HashingReader(data)
                    tar.addfile(tarinfo, reader)
                    if reader.count != entry.size:
                        raise BinpkgError(
                            os.path.basename(binpkg),
                            f"truncated: {reader.count} of {entry.size} bytes",
                            member=f"{info.image_member}:{image_entry.tar_name}",
                        )
                    entry = replace(
                        entry, sha256=reader.sha256.hexdigest(), md5=reader.md5.hexdigest()
                    )
                else:
                    tar.addfile(tarinfo)
                manifest.write(entry.to_json() + "\n")
                count += 1
                if log and count % 5000 == 0:
                    log(f"{cpv}: {count} entries")

    metadata = {}
    for key, value in sorted(info.metadata.items()):
        if len(value) > _MAX_METADATA_VALUE:
            continue
        try:
            metadata[key] = value.decode("utf-8")
        except UnicodeDecodeError:
            continue
    result = {
        "cpv": cpv,
        "binpkg": os.path.basename(binpkg),
        "format": info.format,
        "compression": info.compression,
        "image_member": info.image_member,
        "entries": count,
        "dropped_xattrs": dropped_xattrs,
        "metadata": metadata,
    }
    with open(os.path.join(outdir, "metadata.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1, sort_keys=True)
        f.write("\n")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="unpack", description=__doc__)
    parser.add_argument("binpkg")
    parser.add_argument("outdir")
    parser.add_argument("--tool", action="append", default=[], metavar="NAME=PATH")
    parser.add_argument("--expect-size", type=int)
    parser.add_argument("--expect-sha1")
    parser.add_argument("--expect-md5")
    parser.add_argument("--expect-cpv")
    parser.add_argument("--origin", default="the binhost index")
    args = parser.parse_args(argv)
    tools = dict(t.split("=", 1) for t in args.tool)
    try:
        result = unpack(
            args.binpkg,
            args.outdir,
            tools=tools,
            expect_size=args.expect_size,
            expect_sha1=args.expect_sha1,
            expect_md5=args.expect_md5,
            expect_cpv=args.expect_cpv,
            origin=args.origin,
            log=lambda m: print(m, file=sys.stderr),
        )
    except BinpkgError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(
        f"{result['cpv']}: {result['entries']} entries ({result['format']}, "
        f"{result['compression']})"
    )
    for dropped in result["dropped_xattrs"]:
        print(f"dropped xattr {dropped}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
