"""Read a base OS image's identity and package database into `base.json`.

Runs in a Pants sandbox with the system Python (standard library only):

    python3 -m pants_sysext.sandbox.read_base root DIR OUT.json
    python3 -m pants_sysext.sandbox.read_base image FILE OUT.json [--unsquashfs PATH] [--tool zstd=PATH]

DIR holds `var/db/pkg` (Portage's VDB) and optionally `usr/lib/os-release`. FILE is a squashfs
image (Flatcar's `*_sysext.squashfs` or `*_pkginfo.raw`) or a tarball holding them. Only the
package database and os-release are taken; nothing else of the image is extracted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile

from pants_sysext.formats.compression import Compression, decompressed, detect_compression
from pants_sysext.formats.errors import BinpkgError
from pants_sysext.formats.dpkg_status import read_dpkg_status
from pants_sysext.formats.vdb import InstalledPackage, read_vdb, vdb_to_json

_OS_RELEASE = ("usr/lib/os-release", "etc/os-release")
# Where a base keeps its users and groups: Flatcar's baselayout first, then /etc.
_PASSWD = ("usr/share/baselayout/passwd", "etc/passwd")
_GROUP = ("usr/share/baselayout/group", "etc/group")


def parse_id_file(text: str) -> dict[str, int]:
    """name → id from passwd(5)/group(5) lines."""
    out = {}
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) >= 3 and fields[0] and fields[2].isdigit():
            out.setdefault(fields[0], int(fields[2]))
    return out


def _read_ids(root: str, candidates: tuple[str, ...]) -> dict[str, int] | None:
    for rel in candidates:
        path = os.path.join(root, rel)
        if os.path.isfile(path) and not os.path.islink(path):
            with open(path, encoding="utf-8", errors="replace") as f:
                return parse_id_file(f.read())
    return None
_MAX_VDB_FILE = 16 * 1024 * 1024


class BaseImageError(Exception):
    pass


def parse_os_release(text: str) -> dict[str, str]:
    """os-release(5): KEY=value lines, values optionally quoted (shell-like)."""
    import shlex

    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        try:
            parts = shlex.split(value)
        except ValueError:
            continue
        out[key.strip()] = parts[0] if parts else ""
    return out


MERGED_USR_DIRS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
_DPKG_STATUS = "var/lib/dpkg/status"
_NO_MD5 = "0" * 32


def canonical_path(path: str, merged_usr: bool) -> str:
    """Where `path` really is: on a merged-usr system /bin/x is /usr/bin/x."""
    if merged_usr:
        top, _, rest = path.lstrip("/").partition("/")
        if top in MERGED_USR_DIRS:
            return f"/usr/{top}" + (f"/{rest}" if rest else "")
    return path


def _read_dpkg(root: str) -> tuple[list[InstalledPackage], bool]:
    """A dpkg database as package records with CONTENTS-style file lists (from info/*.list).

    dpkg does not record file types: a listed path that is the parent of another is a `dir`,
    anything else an `obj`. On a merged-usr system (`usr-is-merged` installed) paths are given
    at their real place under /usr, and /bin, /lib, … are recorded as the symlinks they are.
    """
    installed = read_dpkg_status(os.path.join(root, _DPKG_STATUS))
    merged_usr = any(p.package == "usr-is-merged" for p in installed) or os.path.islink(
        os.path.join(root, "bin")
    )
    lists: dict[str, list[str]] = {}
    parents: set[str] = set()
    for p in installed:
        paths: list[str] = []
        for name in (f"{p.package}:{p.architecture}.list", f"{p.package}.list"):
            path = os.path.join(root, "var/lib/dpkg/info", name)
            if os.path.isfile(path):
                with open(path, encoding="utf-8", errors="surrogateescape") as f:
                    paths = [canonical_path(l.rstrip("\n"), merged_usr) for l in f if l.strip() not in ("", "/.")]
                break
        lists[p.label] = paths
        for path in paths:
            parents.add(os.path.dirname(path))
    packages = []
    for p in installed:
        contents = []
        for path in sorted(set(lists[p.label])):
            contents.append(f"dir {path}" if path in parents else f"obj {path} {_NO_MD5} 0")
        if p.package == "usr-is-merged" or (merged_usr and p.package == "base-files"):
            contents.extend(f"sym /{d} -> usr/{d} 0" for d in MERGED_USR_DIRS if d != "libx32")
        values = {
            "PACKAGE": p.package,
            "VERSION": p.version,
            "ARCHITECTURE": p.architecture,
            "MULTI_ARCH": p.multi_arch,
        }
        packages.append(InstalledPackage(cpv=p.label, values=tuple(sorted(values.items())), contents=tuple(contents)))
    return packages, merged_usr


def _read_root(root: str) -> dict:
    os_release = {}
    for rel in _OS_RELEASE:
        path = os.path.join(root, rel)
        if os.path.isfile(path) and not os.path.islink(path):
            with open(path, encoding="utf-8", errors="replace") as f:
                os_release = parse_os_release(f.read())
            break
    dpkg_status = None
    if os.path.isfile(os.path.join(root, _DPKG_STATUS)):
        packages, merged_usr = _read_dpkg(root)
        kind = "dpkg"
        with open(os.path.join(root, _DPKG_STATUS), encoding="utf-8", errors="replace") as f:
            dpkg_status = f.read()
    else:
        packages, merged_usr, kind = list(read_vdb(root)), os.path.islink(os.path.join(root, "bin")), "vdb"
    return {
        "kind": kind,
        "merged_usr": merged_usr,
        "dpkg_status": dpkg_status,
        "os_release": os_release,
        "packages": json.loads(vdb_to_json(packages)),
        "users": _read_ids(root, _PASSWD),
        "groups": _read_ids(root, _GROUP),
    }


def _safe_member(name: str) -> str | None:
    if name.startswith("./"):
        name = name[2:]
    name = name.lstrip("/")
    parts = name.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return None
    if name.startswith(("var/db/pkg/", "var/lib/dpkg/info/")) or name in _OS_RELEASE + _PASSWD + _GROUP + (_DPKG_STATUS,):
        return name
    return None


def _extract_tar(path: str, dest: str, tools: dict[str, str]) -> None:
    with open(path, "rb") as raw:
        head = raw.read(512)
        raw.seek(0)
        compression = detect_compression(head) or Compression.NONE
        with decompressed(raw, compression, binpkg=os.path.basename(path), member="", tools=tools) as stream:
            with tarfile.open(fileobj=stream, mode="r|") as tar:
                for member in tar:
                    rel = _safe_member(member.name)
                    if rel is None or not member.isfile() or member.size > _MAX_VDB_FILE:
                        continue
                    target = os.path.join(dest, rel)
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                    src = tar.extractfile(member)
                    assert src is not None
                    with open(target, "wb") as out:
                        shutil.copyfileobj(src, out)


def _extract_squashfs(path: str, dest: str, unsquashfs: str) -> None:
    # Extract as plain files (no owners, no xattrs): this only reads the package database.
    cmd = [unsquashfs, "-no-xattrs", "-quiet", "-no-progress", "-d", os.path.join(dest, "x"),
           path, "var/db/pkg", "var/lib/dpkg/status", "var/lib/dpkg/info", *_OS_RELEASE, *_PASSWD, *_GROUP]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    extracted = os.path.join(dest, "x")
    if not any(os.path.exists(os.path.join(extracted, p)) for p in ("var/db/pkg", _DPKG_STATUS)):
        output = proc.stdout.decode("utf-8", "replace").strip()
        raise BaseImageError(
            f"{os.path.basename(path)}: the squashfs image holds no var/db/pkg (unsquashfs exit "
            f"{proc.returncode}: {output[-2000:]}). A base image must carry Portage's package "
            f"database, like Flatcar's flatcar_production_image_sysext.squashfs."
        )
    for name in os.listdir(extracted):
        os.replace(os.path.join(extracted, name), os.path.join(dest, name))


def read_image(path: str, *, unsquashfs: str | None, tools: dict[str, str]) -> dict:
    with open(path, "rb") as f:
        magic = f.read(4)
    work = tempfile.mkdtemp(prefix="base-", dir=".")
    try:
        if magic == b"hsqs":
            if not unsquashfs:
                raise BaseImageError("reading a squashfs base image needs --unsquashfs")
            _extract_squashfs(path, work, unsquashfs)
        else:
            try:
                _extract_tar(path, work, tools)
            except (tarfile.TarError, BinpkgError) as e:
                raise BaseImageError(
                    f"{os.path.basename(path)} is neither a squashfs image nor a readable "
                    f"tarball: {e}"
                ) from e
        if not any(os.path.exists(os.path.join(work, p)) for p in ("var/db/pkg", _DPKG_STATUS)):
            raise BaseImageError(
                f"{os.path.basename(path)} holds no var/db/pkg: a base image must carry "
                f"Portage's package database."
            )
        return _read_root(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="read_base", description=__doc__)
    parser.add_argument("kind", choices=("root", "image"))
    parser.add_argument("path")
    parser.add_argument("out")
    parser.add_argument("--unsquashfs")
    parser.add_argument("--tool", action="append", default=[], metavar="NAME=PATH")
    args = parser.parse_args(argv)
    tools = dict(t.split("=", 1) for t in args.tool)
    try:
        if args.kind == "root":
            result = _read_root(args.path)
        else:
            result = read_image(args.path, unsquashfs=args.unsquashfs, tools=tools)
    except (BaseImageError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1, sort_keys=True)
        f.write("\n")
    print(f"read {len(result['packages']['packages'])} installed packages")
    return 0


if __name__ == "__main__":
    sys.exit(main())
