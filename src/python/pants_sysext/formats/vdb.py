"""Portage's installed-package database (the "VDB"): `var/db/pkg/CATEGORY/PF/KEY`.

Every installed package is a directory named after its CPV holding one small text file per
metadata key (`SLOT`, `USE`, `RDEPEND`, `PROVIDES`, `REQUIRES`, `NEEDED.ELF.2`, …), the
`CONTENTS` list of the files it installed, and a few files that are not metadata keys: the
ebuild copy (`PF.ebuild`), the compressed build environment (`environment.bz2`) and, with
newer Portage, a consolidated `metadata` file (`#format=1`, one `KEY=value` line per key).

This is how a base OS image says what it already has. Standard library only: it runs in the
sandboxed steps with a plain `python3`, without Portage.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from typing import Iterable, Mapping

# Relative location of the database below a root filesystem (portage.const.VDB_PATH).
VDB_PATH = os.path.join("var", "db", "pkg")

# Key files bigger than this are not metadata (Portage's keys are a few KiB at most).
MAX_VALUE_SIZE = 1 << 20

# The consolidated metadata file that newer Portage writes next to the per-key files.
_METADATA_FILE = "metadata"
_METADATA_FORMAT = "#format=1"

# Directory entries Portage itself skips (vardbapi._excluded_dirs and temporary merge dirs).
_IGNORED_NAMES = frozenset({"CVS", "RCS", "SCCS", ".svn", ".git", ".bzr", ".hg", "lost+found"})
_MERGING_PREFIX = "-MERGING-"

# Files in a package directory that are not metadata keys.
_COMPRESSED_SUFFIXES = (".bz2", ".gz", ".xz", ".zst", ".lz4", ".lzma")

# CATEGORY and PF, as Portage's own regular expressions in portage.versions define them.
_CATEGORY_RE = re.compile(r"^[\w+][\w+.-]*$", re.ASCII)
_PF_RE = re.compile(
    r"^[\w+][\w+-]*?-\d+(\.\d+)*[a-z]?(_(pre|p|beta|alpha|rc)\d*)*(-r\d+)?$", re.ASCII
)

_JSON_FORMAT = "pants-sysext-vdb/1"


class VdbError(ValueError):
    """An installed-package database that cannot be read."""


@dataclass(frozen=True)
class InstalledPackage:
    """One package recorded in the installed-package database."""

    cpv: str
    values: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    contents: tuple[str, ...] = field(default=(), repr=False)

    def get(self, key: str, default: str | None = None) -> str | None:
        for k, v in self.values:
            if k == key:
                return v
        return default

    def as_dict(self) -> dict[str, str]:
        return dict(self.values)

    @property
    def slot(self) -> str:
        return (self.get("SLOT") or "").strip() or "0"

    @property
    def use(self) -> frozenset[str]:
        return frozenset((self.get("USE") or "").split())

    @property
    def provides(self) -> str:
        return " ".join((self.get("PROVIDES") or "").split())

    @property
    def requires(self) -> str:
        return " ".join((self.get("REQUIRES") or "").split())


def vdb_directory(root: str) -> str:
    """The `var/db/pkg` directory of `root` (a root filesystem or the database itself)."""
    below = os.path.join(root, VDB_PATH)
    if os.path.isdir(below):
        return below
    parts = os.path.normpath(os.path.abspath(root)).split(os.sep)
    if parts[-3:] == VDB_PATH.split(os.sep) and os.path.isdir(root):
        return root
    raise VdbError(
        f"{root}: no installed-package database: expected the directory {below} "
        f"(give the root of the base image) or a path that ends in {VDB_PATH}"
    )


def read_vdb(root: str) -> tuple[InstalledPackage, ...]:
    """Read every installed package under `root`, sorted by CPV."""
    dbdir = vdb_directory(root)
    packages = []
    for category in _subdirectories(dbdir):
        if not _CATEGORY_RE.match(category):
            raise VdbError(
                f"{os.path.join(dbdir, category)}: not a package category directory; "
                f"remove it from the installed-package database"
            )
        catdir = os.path.join(dbdir, category)
        for pf in _subdirectories(catdir):
            packages.append(_read_package(os.path.join(catdir, pf), category, pf))
    if not packages:
        raise VdbError(
            f"{dbdir}: the installed-package database lists no packages; "
            f"is this the root of a Portage-built image?"
        )
    return tuple(sorted(packages, key=lambda p: p.cpv))


def _subdirectories(path: str) -> list[str]:
    try:
        entries = list(os.scandir(path))
    except OSError as e:
        raise VdbError(f"{path}: cannot list the directory: {e.strerror or e}") from e
    names = []
    for entry in entries:
        name = entry.name
        if name.startswith(".") or name.startswith(_MERGING_PREFIX) or name in _IGNORED_NAMES:
            continue  # lock files, interrupted merges, VCS and fsck leftovers
        if entry.is_dir(follow_symlinks=False):
            names.append(name)
    return sorted(names)


def _read_package(pkgdir: str, category: str, pf: str) -> InstalledPackage:
    if not _PF_RE.match(pf):
        raise VdbError(
            f"{pkgdir}: the directory name {pf!r} is not a package name and version "
            f"(PN-VERSION[-rN]); remove it from the installed-package database"
        )
    values: dict[str, str] = {}
    contents: tuple[str, ...] = ()
    consolidated: dict[str, str] = {}
    for entry in sorted(os.scandir(pkgdir), key=lambda e: e.name):
        name = entry.name
        if not entry.is_file(follow_symlinks=False) or name.startswith("."):
            continue
        path = entry.path
        if name == "CONTENTS":
            contents = _read_contents(path)
        elif name == _METADATA_FILE:
            consolidated = _read_metadata_file(path)
        elif name.endswith(".ebuild") or name.endswith(_COMPRESSED_SUFFIXES):
            continue
        else:
            value = _read_key_file(path, entry.stat(follow_symlinks=False).st_size)
            if value is not None:
                values[name] = value
    # With `emaint vdb --delete-individual-files` the metadata file is the only copy of the
    # keys it carries; the individual files, when present, are the authoritative ones.
    for key, value in consolidated.items():
        values.setdefault(key, value)

    cpv = f"{category}/{pf}"
    for key, expected in (("CATEGORY", category), ("PF", pf)):
        recorded = values.get(key)
        if recorded is not None and recorded.strip() != expected:
            raise VdbError(
                f"{pkgdir}: its {key} file says {recorded.strip()!r} but the directory is "
                f"{cpv}; the database entry is corrupt (re-merge the package in the base "
                f"image or remove the directory)"
            )
    return InstalledPackage(cpv=cpv, values=tuple(sorted(values.items())), contents=contents)


def _read_key_file(path: str, size: int) -> str | None:
    if size > MAX_VALUE_SIZE:
        return None
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_VALUE_SIZE + 1)
    except OSError as e:
        raise VdbError(f"{path}: cannot read: {e.strerror or e}") from e
    if len(data) > MAX_VALUE_SIZE or b"\0" in data:
        return None  # not a metadata value
    text = data.decode("utf-8", errors="replace")
    return text[:-1] if text.endswith("\n") else text


def _read_contents(path: str) -> tuple[str, ...]:
    # Paths are bytes on disk; surrogateescape keeps a non-UTF-8 name intact.
    try:
        with open(path, encoding="utf-8", errors="surrogateescape", newline="\n") as f:
            return tuple(line.rstrip("\n") for line in f if line.strip())
    except OSError as e:
        raise VdbError(f"{path}: cannot read: {e.strerror or e}") from e


def _read_metadata_file(path: str) -> dict[str, str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read(MAX_VALUE_SIZE + 1).splitlines()
    except OSError as e:
        raise VdbError(f"{path}: cannot read: {e.strerror or e}") from e
    if not lines or lines[0] != _METADATA_FORMAT:
        return {}  # a format this reader does not know: the individual files are used
    result = {}
    for line in lines[1:]:
        if line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        result[key] = value
    return result


def vdb_to_json(packages: Iterable[InstalledPackage], *, include_contents: bool = True) -> str:
    """Serialize packages deterministically (sorted keys, sorted by CPV)."""
    doc = {
        "format": _JSON_FORMAT,
        "packages": [
            {
                "cpv": p.cpv,
                "values": dict(p.values),
                "contents": list(p.contents) if include_contents else [],
            }
            for p in sorted(packages, key=lambda p: p.cpv)
        ],
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))


def vdb_from_json(text: str) -> tuple[InstalledPackage, ...]:
    """Read what `vdb_to_json` wrote."""
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise VdbError(f"installed-package JSON: not JSON: {e}") from e
    if not isinstance(doc, Mapping) or doc.get("format") != _JSON_FORMAT:
        raise VdbError(
            f"installed-package JSON: expected an object with format {_JSON_FORMAT!r}; "
            f"regenerate it with vdb_to_json"
        )
    packages = []
    for index, item in enumerate(doc.get("packages") or ()):
        where = f"installed-package JSON: packages[{index}]"
        if not isinstance(item, Mapping) or not isinstance(item.get("cpv"), str):
            raise VdbError(f"{where}: expected an object with a string `cpv`")
        values = item.get("values", {})
        contents = item.get("contents", [])
        if not isinstance(values, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in values.items()
        ):
            raise VdbError(f"{where} ({item['cpv']}): `values` must map strings to strings")
        if not isinstance(contents, list) or not all(isinstance(x, str) for x in contents):
            raise VdbError(f"{where} ({item['cpv']}): `contents` must be a list of strings")
        packages.append(
            InstalledPackage(
                cpv=item["cpv"],
                values=tuple(sorted(values.items())),
                contents=tuple(contents),
            )
        )
    return tuple(sorted(packages, key=lambda p: p.cpv))
