"""The file-metadata model carried between build steps.

Pants digests keep only the executable bit of a file, so every step passes its tree as a tar
(which keeps type, mode with setuid/setgid/sticky bits, numeric owner, owner names, symlinks,
hard links and xattrs) plus a manifest: one JSON object per line, one line per entry, in the
order of the tar. Standard library only: this runs in sandboxes with the system Python.
"""

from __future__ import annotations

import base64
import json
import tarfile
from dataclasses import dataclass, replace
from typing import IO, Iterator

FILE = "file"
DIR = "dir"
SYMLINK = "symlink"
HARDLINK = "hardlink"

_TAR_TYPES = {
    FILE: tarfile.REGTYPE,
    DIR: tarfile.DIRTYPE,
    SYMLINK: tarfile.SYMTYPE,
    HARDLINK: tarfile.LNKTYPE,
}

XATTR_PAX_PREFIX = "SCHILY.xattr."


@dataclass(frozen=True)
class ManifestEntry:
    """One entry of a staged tree, with everything a file system image needs to know."""

    path: str  # relative, no leading "/", e.g. "usr/bin/jq"
    type: str  # file | dir | symlink | hardlink
    mode: int  # permission bits including setuid/setgid/sticky (0o7777)
    uid: int
    gid: int
    uname: str = ""
    gname: str = ""
    size: int = 0
    sha256: str | None = None  # files only
    md5: str | None = None  # files only: Portage's CONTENTS records MD5
    linkname: str | None = None  # symlink target (verbatim), or hard link target path
    xattrs: tuple[tuple[str, bytes], ...] = ()
    package: str = ""  # who put it there: a CPV, or "sysext" for generated files

    def to_json(self) -> str:
        data: dict = {
            "path": self.path,
            "type": self.type,
            "mode": f"{self.mode:04o}",
            "uid": self.uid,
            "gid": self.gid,
            "uname": self.uname,
            "gname": self.gname,
        }
        if self.type == FILE:
            data["size"] = self.size
            data["sha256"] = self.sha256
            if self.md5:
                data["md5"] = self.md5
        if self.linkname is not None:
            data["linkname"] = self.linkname
        if self.xattrs:
            data["xattrs"] = {k: base64.b64encode(v).decode("ascii") for k, v in self.xattrs}
        if self.package:
            data["package"] = self.package
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, line: str) -> "ManifestEntry":
        data = json.loads(line)
        return cls(
            path=data["path"],
            type=data["type"],
            mode=int(data["mode"], 8),
            uid=data["uid"],
            gid=data["gid"],
            uname=data.get("uname", ""),
            gname=data.get("gname", ""),
            size=data.get("size", 0),
            sha256=data.get("sha256"),
            md5=data.get("md5"),
            linkname=data.get("linkname"),
            xattrs=tuple(
                sorted((k, base64.b64decode(v)) for k, v in data.get("xattrs", {}).items())
            ),
            package=data.get("package", ""),
        )

    def with_package(self, package: str) -> "ManifestEntry":
        return replace(self, package=package)

    def same_content(self, other: "ManifestEntry") -> bool:
        """Equal in everything that ends up in the image (the owning package aside)."""
        return (
            self.type == other.type
            and self.mode == other.mode
            and self.uid == other.uid
            and self.gid == other.gid
            and self.sha256 == other.sha256
            and self.size == other.size
            and self.linkname == other.linkname
            and self.xattrs == other.xattrs
        )

    def differences(self, other: "ManifestEntry") -> list[str]:
        """Human-readable differences, for conflict errors."""
        out = []
        if self.type != other.type:
            return [f"type {self.type} vs {other.type}"]
        if self.mode != other.mode:
            out.append(f"mode {self.mode:04o} vs {other.mode:04o}")
        if (self.uid, self.gid) != (other.uid, other.gid):
            out.append(f"owner {self.uid}:{self.gid} vs {other.uid}:{other.gid}")
        if self.sha256 != other.sha256 or self.size != other.size:
            out.append(
                f"content sha256:{(self.sha256 or '')[:12]}… ({self.size} bytes) vs "
                f"sha256:{(other.sha256 or '')[:12]}… ({other.size} bytes)"
            )
        if self.linkname != other.linkname:
            out.append(f"link target {self.linkname!r} vs {other.linkname!r}")
        if self.xattrs != other.xattrs:
            out.append("xattrs differ")
        return out

    def to_tarinfo(self, *, mtime: int, with_names: bool = True) -> tarfile.TarInfo:
        """A tar header for this entry.

        `with_names=False` leaves user and group names out: `sqfstar` would otherwise map a
        name to the build host's id for it (e.g. `daemon` to the host's uid), making the image
        depend on the machine that builds it.
        """
        info = tarfile.TarInfo(self.path)
        info.type = _TAR_TYPES[self.type]
        info.mode = self.mode
        info.uid = self.uid
        info.gid = self.gid
        info.uname = self.uname if with_names else ""
        info.gname = self.gname if with_names else ""
        info.mtime = mtime
        info.size = self.size if self.type == FILE else 0
        if self.linkname is not None:
            info.linkname = self.linkname
        if self.xattrs:
            info.pax_headers = {
                XATTR_PAX_PREFIX + name: value.decode("utf-8", "surrogateescape")
                for name, value in self.xattrs
            }
        return info


def read_manifest(stream: IO[str]) -> Iterator[ManifestEntry]:
    for line in stream:
        if line.strip():
            yield ManifestEntry.from_json(line)


def sort_key(path: str) -> tuple[str, ...]:
    """Tree order: a directory comes right before its contents."""
    return tuple(path.split("/")) if path else ()


def open_tar_writer(path: str) -> tarfile.TarFile:
    """A PAX tar writer whose output depends only on the entries written to it."""
    return tarfile.open(path, "w", format=tarfile.PAX_FORMAT, encoding="utf-8")
