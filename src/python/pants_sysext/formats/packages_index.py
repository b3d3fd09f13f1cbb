"""Portage's binhost index, `Packages` (or `Packages.gz`).

The file is a header block followed by one block per binary package, blocks separated by blank
lines, each line `KEY: value`. Package blocks inherit `CHOST` and `REPO` from the header and
take Portage's defaults for missing keys (most notably `SLOT: 0`). Pure functions, no Pants.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass, field
from typing import Iterable, Mapping

# Keys a package block inherits from the header (bintree._pkgindex_inherited_keys).
_INHERITED_KEYS = ("CHOST", "REPO")

# Portage's defaults for keys missing from a package block (bintree._pkgindex_default_pkg_data).
_DEFAULTS = {
    "BUILD_ID": "",
    "EAPI": "0",
    "SLOT": "0",
}


class PackagesIndexError(ValueError):
    """A `Packages` index that cannot be read."""


@dataclass(frozen=True)
class PackagesEntry:
    """One binary package listed in a `Packages` index."""

    cpv: str
    values: tuple[tuple[str, str], ...] = field(repr=False)

    def get(self, key: str, default: str | None = None) -> str | None:
        for k, v in self.values:
            if k == key:
                return v
        return default

    @property
    def build_id(self) -> int | None:
        value = self.get("BUILD_ID") or ""
        return int(value) if value.isdigit() else None

    @property
    def slot(self) -> str:
        return self.get("SLOT") or "0"

    @property
    def size(self) -> int | None:
        value = self.get("SIZE")
        return int(value) if value and value.isdigit() else None

    @property
    def path(self) -> str:
        """The binpkg's path relative to the binhost root.

        `PATH` when given (GPKG and multi-instance binhosts always write it), else the flat
        legacy layout `CATEGORY/PF.tbz2`.
        """
        return self.get("PATH") or f"{self.cpv}.tbz2"

    def as_dict(self) -> dict[str, str]:
        return dict(self.values)


@dataclass(frozen=True)
class PackagesIndex:
    header: tuple[tuple[str, str], ...]
    packages: tuple[PackagesEntry, ...]

    def header_value(self, key: str) -> str | None:
        return dict(self.header).get(key)

    def find(self, cpv: str) -> tuple[PackagesEntry, ...]:
        """All instances of `cpv`, highest BUILD_ID first."""
        found = [p for p in self.packages if p.cpv == cpv]
        return tuple(sorted(found, key=lambda p: -(p.build_id or 0)))


def _blocks(text: str, *, source: str) -> Iterable[tuple[int, list[tuple[str, str]]]]:
    block: list[tuple[str, str]] = []
    start = 1
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            if block:
                yield start, block
            block = []
            start = lineno + 1
            continue
        key, sep, value = line.partition(":")
        if not sep or not key or key != key.strip():
            raise PackagesIndexError(f"{source}:{lineno}: expected `KEY: value`, got {line!r}")
        block.append((key, value.strip()))
    if block:
        yield start, block


def parse_packages_index(data: bytes, *, source: str = "Packages") -> PackagesIndex:
    """Parse a `Packages` index (gzip-compressed data is detected and decompressed)."""
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as e:
            raise PackagesIndexError(f"{source}: corrupt gzip data: {e}") from e
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise PackagesIndexError(f"{source}: not UTF-8 text: {e}") from e

    blocks = list(_blocks(text, source=source))
    if not blocks:
        raise PackagesIndexError(f"{source}: empty index, expected a header block")
    _, header = blocks[0]
    if any(k == "CPV" for k, _ in header):
        raise PackagesIndexError(f"{source}: the first block must be the header, not a package")
    header_map = dict(header)

    packages = []
    for lineno, block in blocks[1:]:
        values: dict[str, str] = {}
        for key in _INHERITED_KEYS:
            if key in header_map:
                values[key] = header_map[key]
        values.update(_DEFAULTS)
        values.update(block)
        cpv = values.get("CPV")
        if not cpv or "/" not in cpv:
            raise PackagesIndexError(f"{source}:{lineno}: package block without a valid CPV")
        packages.append(PackagesEntry(cpv=cpv, values=tuple(sorted(values.items()))))

    declared = header_map.get("PACKAGES")
    if declared is not None and declared.isdigit() and int(declared) != len(packages):
        raise PackagesIndexError(
            f"{source}: the header says PACKAGES: {declared} but {len(packages)} are listed; "
            f"the index is truncated or was edited by hand"
        )
    return PackagesIndex(header=tuple(header), packages=tuple(packages))


def render_packages_index(header: Mapping[str, str], packages: Iterable[Mapping[str, str]]) -> str:
    """Write an index in Portage's layout (used by tests to make binhosts)."""
    out = [f"{k}: {v}\n" for k, v in sorted(header.items())]
    for pkg in packages:
        out.append("\n")
        out.extend(f"{k}: {v}\n" for k, v in sorted(pkg.items()))
    return "".join(out)
