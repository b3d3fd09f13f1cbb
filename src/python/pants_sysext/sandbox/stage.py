"""Merge unpacked package images into the tree of one extension image.

Runs in a Pants sandbox with the system Python (standard library only):

    python3 -m pants_sysext.sandbox.stage SPEC.json OUTDIR

SPEC names the unpacked packages (directories holding `image.tar` + `entries.jsonl`, in merge
order), the top-level directories an extension may hold (`usr`, `opt`), paths to exclude, and
generated files to add (the extension-release file). Writes `OUTDIR/staged.tar` in tree order
and `OUTDIR/manifest.jsonl`, one `ManifestEntry` per member, naming the package of each.

Refused, with every problem listed at once: content outside the allowed top-level directories
(unless excluded), and a path written by two packages with different content or attributes.
File data is copied in chunks straight from the package tars: memory use grows with the number
of entries, not with their size.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import os
import sys
import tarfile
from dataclasses import dataclass, replace
from typing import BinaryIO, Iterable

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

GENERATED = "sysext"
_CHUNK = 1024 * 1024


class StageError(Exception):
    pass


@dataclass(frozen=True)
class _Source:
    """Where an entry's data is: a package tar and offset, or a file in the sandbox."""

    package_index: int
    offset: int = -1
    file: str | None = None


@dataclass(frozen=True)
class PackageImage:
    label: str
    directory: str


@dataclass(frozen=True)
class ExtraFile:
    path: str
    source: str
    mode: int = 0o644
    xattrs: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True)
class Ownership:
    """The base OS's users and groups: names in packages are mapped to these ids."""

    users: dict
    groups: dict


def tmpfiles_line(entry: ManifestEntry, source: str) -> str:
    """A tmpfiles.d(5) line that recreates `entry` (relocated to `source`) under /etc."""
    path = "/" + entry.path
    if entry.type == DIR:
        return f"d {path} {entry.mode:04o} {entry.uid} {entry.gid} -"
    if entry.type == SYMLINK:
        return f"L {path} - - - - {entry.linkname}"
    # C copies the file (contents and mode) unless it exists; z then sets mode and owner on
    # what C created, since the copy is made by root.
    return f"C {path} - - - - /{source}\nz {path} {entry.mode:04o} {entry.uid} {entry.gid} -"


def _tar_offsets(tar_path: str) -> Iterable[tuple[str, int]]:
    """(name, data offset) of every member, without keeping TarInfo objects around."""
    with tarfile.open(tar_path, "r:", encoding="utf-8") as tar:
        while True:
            member = tar.next()
            if member is None:
                break
            yield member.name, member.offset_data
            tar.members.clear()


def _normalize_pattern(pattern: str) -> str:
    return "/" + pattern.strip().strip("/")


def _excluded(path: str, patterns: tuple[str, ...]) -> bool:
    parts = path.split("/")
    for i in range(1, len(parts) + 1):
        candidate = "/" + "/".join(parts[:i])
        if any(fnmatch.fnmatchcase(candidate, p) for p in patterns):
            return True
    return False


class _Reader:
    """Reads exactly `size` bytes from `offset` of an open file (for TarFile.addfile)."""

    def __init__(self, f: BinaryIO, offset: int) -> None:
        self._f = f
        self._f.seek(offset)

    def read(self, size: int = -1) -> bytes:
        return self._f.read(size)


def stage(
    packages: list[PackageImage],
    outdir: str,
    *,
    include_top: tuple[str, ...] = ("usr", "opt"),
    exclude: tuple[str, ...] = (),
    extra_files: tuple[ExtraFile, ...] = (),
    mtime: int = 0,
    name: str = "",
    etc: str = "error",
    ownership: Ownership | None = None,
    required: tuple[tuple[str, str], ...] = (),
    merged_usr: bool = False,
) -> list[ManifestEntry]:
    """Merge `packages` into OUTDIR/staged.tar; see the module docstring.

    etc: "error" (list /etc content as outside the image), "drop", or "relocate" (move it to
    usr/share/NAME/etc and write usr/lib/tmpfiles.d/NAME.conf). `ownership` maps user and
    group names to the base's ids. `required`: (path, why) pairs that must be in the result.
    """
    patterns = tuple(_normalize_pattern(p) for p in exclude)
    relocated: list[tuple[ManifestEntry, str]] = []  # (entry at its /etc path, new path)
    renamed: dict[tuple[str, str], str] = {}
    owner_problems: list[str] = []
    chosen: dict[str, tuple[ManifestEntry, _Source]] = {}
    conflicts: list[str] = []
    outside: dict[str, list[ManifestEntry]] = {}
    # Every file of every package, excluded ones too: hard links may point at them.
    files: dict[tuple[str, str], tuple[int, int, ManifestEntry]] = {}

    for index, pkg in enumerate(packages):
        tar_path = os.path.join(pkg.directory, "image.tar")
        with open(os.path.join(pkg.directory, "entries.jsonl"), encoding="utf-8") as f:
            entries = read_manifest(f)
            for (member_name, offset), entry in zip(_tar_offsets(tar_path), entries):
                if member_name != entry.path:
                    raise StageError(
                        f"{pkg.label}: image.tar and entries.jsonl disagree at {member_name!r} vs "
                        f"{entry.path!r}; the unpack step's output is corrupt"
                    )
                entry = entry.with_package(pkg.label)
                if merged_usr:
                    entry = _merge_usr(entry)
                if entry.type == FILE:
                    files[(pkg.label, entry.path)] = (index, offset, entry)
                if _excluded(entry.path, patterns):
                    continue
                if ownership is not None:
                    entry = _map_owner(entry, ownership, owner_problems)
                top = entry.path.split("/", 1)[0]
                if top == "etc" and etc == "drop":
                    continue
                if top == "etc" and etc == "relocate":
                    if entry.path == "etc":
                        continue
                    new_path = f"usr/share/{name}/{entry.path}"
                    relocated.append((entry, new_path))
                    renamed[(entry.package, entry.path)] = new_path
                    entry = replace(entry, path=new_path)
                    top = "usr"
                if top not in include_top:
                    outside.setdefault(top, []).append(entry)
                    continue
                previous = chosen.get(entry.path)
                if previous is None:
                    chosen[entry.path] = (entry, _Source(index, offset))
                    continue
                prev_entry = previous[0]
                if prev_entry.same_content(entry) or (
                    prev_entry.type == entry.type == HARDLINK
                ):
                    continue
                conflicts.append(
                    f"/{entry.path} is written by {prev_entry.package} and {entry.package} "
                    f"with different {', '.join(prev_entry.differences(entry))}"
                )

    problems = []
    if owner_problems:
        problems.append(
            "Files are owned by users or groups the base OS does not have:\n"
            + "\n".join(f"  {p}" for p in owner_problems[:50])
            + (f"\n  … and {len(owner_problems) - 50} more" if len(owner_problems) > 50 else "")
            + "\nAdd them to the base (its passwd/group, e.g. usr/share/baselayout/) or fix the "
            "package; ids that exist only on the build host must not reach the image."
        )
    if outside:
        lines = []
        for top, entries in sorted(outside.items()):
            owners = sorted({e.package for e in entries})
            sample = ", ".join("/" + e.path for e in entries[:4])
            more = f", … ({len(entries)} entries)" if len(entries) > 4 else ""
            lines.append(f"  /{top}: {sample}{more}  [from {', '.join(owners)}]")
        allowed = " and ".join("/" + t for t in include_top)
        suggestion = ", ".join(f'"/{t}"' for t in sorted(outside))
        problems.append(
            f"The packages install content outside {allowed}, which systemd-sysext would "
            f"ignore:\n" + "\n".join(lines) + f"\nDrop it explicitly with "
            f"`exclude=[{suggestion}]` on the sysext_image target (or move what is needed "
            f"under /usr)."
            + (
                "\nFor /etc, `etc=\"relocate\"` keeps it (under /usr/share/NAME/etc, copied to "
                "/etc at boot by systemd-tmpfiles) and `etc=\"drop\"` leaves it out."
                if "etc" in outside
                else ""
            )
        )
    if conflicts:
        problems.append(
            "Packages conflict:\n"
            + "\n".join(f"  {c}" for c in conflicts)
            + "\nRemove one of the packages from the set, or exclude the path with `exclude=`."
        )
    if problems:
        raise StageError("\n\n".join(problems))

    if relocated:
        lines = [
            f"# Generated for the sysext {name}: /etc content of its packages, kept under",
            f"# /usr/share/{name}/etc and copied into /etc at boot by systemd-tmpfiles.",
        ]
        for entry, new_path in sorted(relocated, key=lambda r: sort_key(r[0].path)):
            if entry.type == HARDLINK:
                target = renamed.get((entry.package, entry.linkname or ""), entry.linkname)
                lines.append(tmpfiles_line(replace(entry, type=FILE), target or new_path))
            else:
                lines.append(tmpfiles_line(entry, new_path))
        conf = os.path.join(outdir + ".tmpfiles", f"{name}.conf")
        os.makedirs(os.path.dirname(conf), exist_ok=True)
        with open(conf, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        extra_files = (*extra_files, ExtraFile(f"usr/lib/tmpfiles.d/{name}.conf", conf))

    # Generated files (the extension-release file) override nothing silently.
    for extra in extra_files:
        if extra.path in chosen:
            raise StageError(
                f"/{extra.path} is generated for the extension, but "
                f"{chosen[extra.path][0].package} ships it too; exclude it from the package."
            )
        chosen[extra.path] = (
            ManifestEntry(
                path=extra.path,
                type=FILE,
                mode=extra.mode,
                uid=0,
                gid=0,
                uname="root",
                gname="root",
                size=os.path.getsize(extra.source),
                sha256=_hash_file(extra.source, "sha256"),
                md5=_hash_file(extra.source, "md5"),
                xattrs=extra.xattrs,
                package=GENERATED,
            ),
            _Source(-1, file=extra.source),
        )

    # Missing parent directories become root-owned 0755 directories.
    for path in list(chosen):
        parts = path.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            existing = chosen.get(parent)
            if existing is None:
                chosen[parent] = (
                    ManifestEntry(
                        path=parent, type=DIR, mode=0o755, uid=0, gid=0,
                        uname="root", gname="root", package=GENERATED,
                    ),
                    _Source(-1),
                )
            elif existing[0].type != DIR:
                raise StageError(
                    f"/{parent} is a {existing[0].type} from {existing[0].package}, but "
                    f"{chosen[path][0].package} installs /{path} below it"
                )

    # Hard links: within a package, a group shares the data of its target member. The member
    # that comes first in tree order carries the data; the others link to it. If the target
    # was excluded, the first kept link carries the data instead.
    groups: dict[tuple[str, str], list[str]] = {}
    for path, (entry, source) in chosen.items():
        if entry.type == HARDLINK:
            groups.setdefault((entry.package, entry.linkname or ""), []).append(path)
    for (package, target), links in groups.items():
        target_chosen = chosen.get(renamed.get((package, target), target))
        target_src = files.get((package, target))
        if target_src is None:
            raise StageError(f"{package}: hard link target /{target} not found in its image")
        target_index, target_offset, target_entry = target_src
        members = list(links)
        if target_chosen is not None and target_chosen[0].package == package:
            members.append(renamed.get((package, target), target))
        members.sort(key=sort_key)
        primary = members[0]
        for member in members:
            entry = chosen[member][0]
            if member == primary:
                chosen[member] = (
                    replace(
                        target_entry,
                        path=member,
                        package=package,
                        mode=entry.mode,
                        uid=entry.uid,
                        gid=entry.gid,
                        uname=entry.uname,
                        gname=entry.gname,
                    ),
                    _Source(target_index, target_offset),
                )
            else:
                chosen[member] = (
                    replace(
                        target_entry,
                        path=member,
                        type=HARDLINK,
                        linkname=primary,
                        size=0,
                        package=package,
                    ),
                    _Source(-1),
                )

    missing = [f"/{path} ({why})" for path, why in required if path not in chosen]
    if missing:
        raise StageError(
            "The image lacks files its target needs:\n"
            + "\n".join(f"  {m}" for m in missing)
            + "\nAdd them (a package, `add_files`) or drop the setting that needs them."
        )

    os.makedirs(outdir, exist_ok=True)
    tars = [open(os.path.join(p.directory, "image.tar"), "rb") for p in packages]
    result = []
    try:
        with open_tar_writer(os.path.join(outdir, "staged.tar")) as out, open(
            os.path.join(outdir, "manifest.jsonl"), "w", encoding="utf-8"
        ) as manifest:
            for path in sorted(chosen, key=sort_key):
                entry, source = chosen[path]
                info = entry.to_tarinfo(mtime=mtime, with_names=False)
                if entry.type == FILE:
                    if source.file is not None:
                        with open(source.file, "rb") as f:
                            out.addfile(info, f)
                    else:
                        out.addfile(info, _Reader(tars[source.package_index], source.offset))
                else:
                    out.addfile(info)
                manifest.write(entry.to_json() + "\n")
                result.append(entry)
    finally:
        for t in tars:
            t.close()
    return result


MERGED_USR_DIRS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")


def _usr_path(path: str) -> str:
    top, _, rest = path.partition("/")
    if top in MERGED_USR_DIRS:
        return f"usr/{top}" + (f"/{rest}" if rest else "")
    return path


def _merge_usr(entry: ManifestEntry) -> ManifestEntry:
    """On a merged-usr base, /bin/x is /usr/bin/x: move it there before anything is checked."""
    path = _usr_path(entry.path)
    linkname = _usr_path(entry.linkname) if entry.type == HARDLINK and entry.linkname else entry.linkname
    if (path, linkname) == (entry.path, entry.linkname):
        return entry
    return replace(entry, path=path, linkname=linkname)


def _map_owner(entry: ManifestEntry, ownership: Ownership, problems: list[str]) -> ManifestEntry:
    uid, gid = entry.uid, entry.gid
    if entry.uname:
        if entry.uname in ownership.users:
            uid = ownership.users[entry.uname]
        elif entry.uname != "root" or entry.uid != 0:
            problems.append(f"/{entry.path} ({entry.package}): user {entry.uname!r} (uid {entry.uid})")
    elif uid != 0 and uid not in ownership.users.values():
        problems.append(f"/{entry.path} ({entry.package}): uid {uid}, which the base has no user for")
    if entry.gname:
        if entry.gname in ownership.groups:
            gid = ownership.groups[entry.gname]
        elif entry.gname != "root" or entry.gid != 0:
            problems.append(f"/{entry.path} ({entry.package}): group {entry.gname!r} (gid {entry.gid})")
    elif gid != 0 and gid not in ownership.groups.values():
        problems.append(f"/{entry.path} ({entry.package}): gid {gid}, which the base has no group for")
    if (uid, gid) == (entry.uid, entry.gid):
        return entry
    return replace(entry, uid=uid, gid=gid)


def _hash_file(path: str, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="stage", description=__doc__)
    parser.add_argument("spec")
    parser.add_argument("outdir")
    args = parser.parse_args(argv)
    with open(args.spec, encoding="utf-8") as f:
        spec = json.load(f)
    try:
        entries = stage(
            [PackageImage(p["label"], p["dir"]) for p in spec["packages"]],
            args.outdir,
            include_top=tuple(spec.get("include_top", ("usr", "opt"))),
            exclude=tuple(spec.get("exclude", ())),
            extra_files=tuple(
                ExtraFile(
                    e["path"],
                    e["source"],
                    int(e.get("mode", "0644"), 8),
                    tuple((k, v.encode()) for k, v in sorted(e.get("xattrs", {}).items())),
                )
                for e in spec.get("extra_files", ())
            ),
            mtime=int(spec.get("mtime", 0)),
            name=spec.get("name", ""),
            etc=spec.get("etc", "error"),
            ownership=(
                Ownership(spec["ownership"]["users"], spec["ownership"]["groups"])
                if spec.get("ownership")
                else None
            ),
            required=tuple((r["path"], r["why"]) for r in spec.get("required", ())),
            merged_usr=bool(spec.get("merged_usr")),
        )
    except StageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    files = sum(1 for e in entries if e.type == FILE)
    size = sum(e.size for e in entries)
    print(f"staged {len(entries)} entries, {files} files, {size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
