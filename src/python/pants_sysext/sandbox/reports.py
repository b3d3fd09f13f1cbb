"""Reports about an extension's tree, like the ones Flatcar writes next to its images.

Written by `pants_sysext.sandbox.validate` (standard library only):

- `NAME_packages.txt`: one `CATEGORY/PF::repo` per line, sorted.
- `NAME_contents.txt`: an `ls -l`-like listing of every entry in tree order: file type and mode,
  numeric owner and group, size, path, `-> target` for symlinks and `link to PATH` for hard
  links. No time stamps: the report depends only on the tree.
- `NAME_disk_usage.txt`: bytes and files per top-level directory under /usr and /opt and per
  package, largest first, each with a total. Sizes are apparent sizes (what `du -b` counts);
  a hard link adds no bytes and no file.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from typing import Iterable, Iterator, Mapping, TextIO

from pants_sysext.sandbox.manifest import DIR, FILE, HARDLINK, SYMLINK, ManifestEntry

DEFAULT_REPO = "gentoo"
GENERATED = "sysext"

_TYPE_BITS = {
    FILE: stat.S_IFREG,
    HARDLINK: stat.S_IFREG,
    DIR: stat.S_IFDIR,
    SYMLINK: stat.S_IFLNK,
}


@dataclass(frozen=True)
class Usage:
    name: str
    bytes: int
    files: int


def report_names(name: str) -> tuple[str, str, str]:
    return (f"{name}_packages.txt", f"{name}_contents.txt", f"{name}_disk_usage.txt")


def packages_lines(
    repos: Mapping[str, str | None], entries: Iterable[ManifestEntry] = ()
) -> list[str]:
    """`CATEGORY/PF::repo` for each package given, and each package owning an entry."""
    packages = {cpv: (repo or "").strip() or DEFAULT_REPO for cpv, repo in repos.items()}
    for entry in entries:
        if entry.package and entry.package != GENERATED:
            packages.setdefault(entry.package, DEFAULT_REPO)
    return sorted(f"{cpv}::{repo}" for cpv, repo in packages.items())


def contents_lines(entries: Iterable[ManifestEntry]) -> Iterator[str]:
    """One `ls -l`-like line per entry, in the order given (the tree order of the manifest)."""
    sizes: dict[str, int] = {}
    for e in entries:
        mode = stat.filemode(_TYPE_BITS.get(e.type, 0) | (e.mode & 0o7777))
        if e.type == FILE:
            size = e.size
            sizes[e.path] = size
        elif e.type == HARDLINK:
            size = sizes.get(e.linkname or "", e.size)
        elif e.type == SYMLINK:
            size = len((e.linkname or "").encode("utf-8", "surrogateescape"))
        else:
            size = 0
        line = f"{mode} {e.uid:>5} {e.gid:>5} {size:>10} /{e.path}"
        if e.type == SYMLINK:
            line += f" -> {e.linkname}"
        elif e.type == HARDLINK:
            line += f" link to /{e.linkname}"
        yield line


def disk_usage(entries: Iterable[ManifestEntry]) -> tuple[list[Usage], list[Usage]]:
    """(per directory, per package) usage, largest first; a hard link counts nothing."""
    by_dir: dict[str, list[int]] = {}
    by_pkg: dict[str, list[int]] = {}
    for e in entries:
        if e.type != FILE:
            continue
        parts = e.path.split("/")
        top = "/" + "/".join(parts[:2]) if len(parts) > 2 else "/" + parts[0]
        for table, key in ((by_dir, top), (by_pkg, e.package or "unknown")):
            usage = table.setdefault(key, [0, 0])
            usage[0] += e.size
            usage[1] += 1

    def ordered(table: dict[str, list[int]]) -> list[Usage]:
        rows = [Usage(k, v[0], v[1]) for k, v in table.items()]
        return sorted(rows, key=lambda u: (-u.bytes, -u.files, u.name))

    return ordered(by_dir), ordered(by_pkg)


def disk_usage_lines(name: str, entries: Iterable[ManifestEntry]) -> list[str]:
    by_dir, by_pkg = disk_usage(entries)
    total_bytes = sum(u.bytes for u in by_dir)
    total_files = sum(u.files for u in by_dir)
    lines = [f"# {name}: apparent size of regular files in bytes (hard links counted once)"]
    for title, rows in (("directory", by_dir), ("package", by_pkg)):
        lines.append("")
        lines.append(f"{'bytes':>12} {'files':>7}  {title}")
        lines.extend(f"{u.bytes:>12} {u.files:>7}  {u.name}" for u in rows)
        lines.append(f"{total_bytes:>12} {total_files:>7}  total")
    return lines


def _write_lines(path: str, lines: Iterable[str]) -> None:
    with open(path, "w", encoding="utf-8", errors="surrogateescape", newline="\n") as f:
        _emit(f, lines)


def _emit(f: TextIO, lines: Iterable[str]) -> None:
    for line in lines:
        f.write(line + "\n")


def write_reports(
    outdir: str,
    name: str,
    entries: Iterable[ManifestEntry],
    repos: Mapping[str, str | None],
) -> list[str]:
    """Write the three reports into `outdir`; returns their paths."""
    entries = list(entries) if not isinstance(entries, (list, tuple)) else entries
    os.makedirs(outdir, exist_ok=True)
    packages_txt, contents_txt, usage_txt = (os.path.join(outdir, n) for n in report_names(name))
    _write_lines(packages_txt, packages_lines(repos, entries))
    _write_lines(contents_txt, contents_lines(entries))
    _write_lines(usage_txt, disk_usage_lines(name, entries))
    return [packages_txt, contents_txt, usage_txt]
