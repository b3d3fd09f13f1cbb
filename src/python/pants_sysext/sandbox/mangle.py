"""Run a user's mangle script over a staged tree, and turn the result back into a tree.

Runs in a Pants sandbox with the system Python (standard library only):

    python3 -m pants_sysext.sandbox.mangle --bash /usr/bin/bash --script S.sh \
        --tar staged/staged.tar --manifest staged/manifest.jsonl --mtime 0 OUTDIR

The tree is extracted under a work directory and the script is run as `bash S.sh ROOT` (umask
022, PATH=/usr/bin:/bin), like Flatcar's `sysext_mangle_*` scripts. Afterwards every path is
read back: a file whose content and type did not change keeps all its metadata; a changed
file keeps its owner and xattrs and takes the mode it now has; a new one is root-owned.
Writes OUTDIR/staged.tar and OUTDIR/manifest.jsonl, like the stage step.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import replace

from pants_sysext.sandbox.manifest import (
    DIR,
    FILE,
    HARDLINK,
    SYMLINK,
    ManifestEntry,
    open_tar_writer,
    read_manifest,
    sort_key,
)

MANGLED = "mangle"
_CHUNK = 1024 * 1024


class MangleError(Exception):
    pass


def _extract(tar_path: str, root: str) -> None:
    """Extract our own staged tar (trusted: written by the stage step) without owners."""
    with tarfile.open(tar_path, "r:") as tar:
        for member in tar:
            target = os.path.join(root, member.name)
            if member.isdir():
                os.makedirs(target, exist_ok=True)
                os.chmod(target, 0o755)  # final modes are restored from the manifest
            elif member.issym():
                os.symlink(member.linkname, target)
            elif member.islnk():
                os.link(os.path.join(root, member.linkname), target)
            else:
                src = tar.extractfile(member)
                assert src is not None
                with open(target, "wb") as out:
                    shutil.copyfileobj(src, out, _CHUNK)
                os.chmod(target, member.mode & 0o777)


def _hashes(path: str) -> tuple[str, str, int]:
    sha256, md5, size = hashlib.sha256(), hashlib.md5(), 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            sha256.update(chunk)
            md5.update(chunk)
            size += len(chunk)
    return sha256.hexdigest(), md5.hexdigest(), size


def _walk(root: str) -> list[str]:
    paths = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        for name in dirnames + filenames:
            paths.append(name if rel == "." else f"{rel}/{name}")
    return sorted(paths, key=sort_key)


def mangle(bash: str, script: str, tar_path: str, manifest_path: str, outdir: str, *, mtime: int) -> list[ManifestEntry]:
    with open(manifest_path, encoding="utf-8") as f:
        before = {e.path: e for e in read_manifest(f)}
    work = os.path.abspath(tempfile.mkdtemp(prefix="mangle-", dir="."))
    root = os.path.join(work, "root")
    os.makedirs(root)
    old_umask = os.umask(0o022)
    try:
        _extract(tar_path, root)
        proc = subprocess.run(
            [bash, os.path.abspath(script), root],
            cwd=work,
            env={"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", "HOME": work},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        output = proc.stdout.decode("utf-8", "replace")
        if output.strip():
            print(output.rstrip())
        if proc.returncode != 0:
            raise MangleError(f"the mangle script {script} failed (exit {proc.returncode}):\n{output[-4000:]}")

        entries: list[tuple[ManifestEntry, str | None]] = []
        inodes: dict[tuple[int, int], str] = {}
        for path in _walk(root):
            full = os.path.join(root, path)
            st = os.lstat(full)
            old = before.get(path)
            if stat.S_ISDIR(st.st_mode):
                entry = _keep(old, DIR, path, st) 
                entries.append((entry, None))
            elif stat.S_ISLNK(st.st_mode):
                target = os.readlink(full)
                if old is not None and old.type == SYMLINK and old.linkname == target:
                    entry = old
                else:
                    entry = _new(old, SYMLINK, path, 0o777, linkname=target)
                entries.append((entry, None))
            elif stat.S_ISREG(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if st.st_nlink > 1 and key in inodes:
                    primary = inodes[key]
                    base = old if old is not None and old.type in (FILE, HARDLINK) else None
                    entry = _new(base, HARDLINK, path, st.st_mode & 0o7777, linkname=primary)
                    if base is not None:
                        entry = replace(entry, mode=base.mode if base.type == HARDLINK else entry.mode)
                    entries.append((entry, None))
                    continue
                inodes[key] = path
                sha256, md5, size = _hashes(full)
                if old is not None and old.type in (FILE, HARDLINK) and old.sha256 == sha256:
                    entry = replace(old, type=FILE, linkname=None, size=size, sha256=sha256, md5=md5)
                else:
                    entry = replace(
                        _new(old, FILE, path, st.st_mode & 0o7777), size=size, sha256=sha256, md5=md5
                    )
                entries.append((entry, full))
            else:
                raise MangleError(f"the mangle script created /{path}, which is not a file, directory or symlink")

        os.makedirs(outdir, exist_ok=True)
        with open_tar_writer(os.path.join(outdir, "staged.tar")) as out, open(
            os.path.join(outdir, "manifest.jsonl"), "w", encoding="utf-8"
        ) as manifest:
            for entry, source in entries:
                info = entry.to_tarinfo(mtime=mtime, with_names=False)
                if source is not None:
                    with open(source, "rb") as f:
                        out.addfile(info, f)
                else:
                    out.addfile(info)
                manifest.write(entry.to_json() + "\n")
        return [e for e, _ in entries]
    finally:
        os.umask(old_umask)
        shutil.rmtree(work, ignore_errors=True)


def _keep(old: ManifestEntry | None, type_: str, path: str, st: os.stat_result) -> ManifestEntry:
    if old is not None and old.type == type_:
        return old
    return _new(old, type_, path, st.st_mode & 0o7777)


def _new(old: ManifestEntry | None, type_: str, path: str, mode: int, *, linkname: str | None = None) -> ManifestEntry:
    """A new or changed entry: keeps the old owner and xattrs, if there was one."""
    if old is not None:
        return replace(old, type=type_, mode=mode, linkname=linkname, sha256=None, md5=None, size=0, package=old.package)
    return ManifestEntry(
        path=path, type=type_, mode=mode, uid=0, gid=0, uname="root", gname="root",
        linkname=linkname, package=MANGLED,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mangle", description=__doc__)
    parser.add_argument("--bash", required=True)
    parser.add_argument("--script", required=True)
    parser.add_argument("--tar", required=True)
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--mtime", type=int, default=0)
    parser.add_argument("outdir")
    args = parser.parse_args(argv)
    try:
        entries = mangle(args.bash, args.script, args.tar, args.manifest, args.outdir, mtime=args.mtime)
    except MangleError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"mangled tree: {len(entries)} entries")
    return 0


if __name__ == "__main__":
    sys.exit(main())
