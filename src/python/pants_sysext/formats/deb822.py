"""RFC 822-style control data as Debian writes it ("deb822"): stanzas of `Field: value` lines.

The same syntax carries a `.deb`'s `control` file, an archive's `Packages` and `Release` files,
dpkg's `status` database and apt's `.sources` files:

- stanzas are separated by one or more blank lines (lines holding only spaces and tabs count as
  blank, as Debian Policy §5.1 allows);
- a field is `Name: value`; lines that start with a space or a tab continue the previous field
  (folded and multiline fields: `Description`, `Depends`, the `SHA256` list of a `Release`);
- lines starting with `#` are comments (apt's `.sources` files use them, also between the fields
  of a stanza); pass `comments=False` to refuse them, as dpkg does for its own files;
- field names are case-insensitive, and their original spelling is kept.

A value is stored as dpkg and python-debian present it: the text of the first line without its
surrounding white space, then one `"\\n" + line` per continuation line, each with its leading
white space kept and its trailing white space removed. So `Description: short` followed by
` long` gives `"short\\n long"`, and a `SHA256:` list gives `"\\n <hash> <size> <path>\\n …"`;
`field_lines()` turns such values into their stripped lines.

Also here: the package relationship syntax of binary packages (`Depends`, `Provides`, …) and the
checks for package names, versions and architectures. Standard library only: this module runs in
sandboxes on the system Python.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import BinaryIO, Iterable, Iterator, TextIO, Union

StanzaSource = Union[str, bytes, Iterable[str], BinaryIO, TextIO]

# Debian Policy §5.1: US-ASCII printable characters except space and colon; not starting with
# `#` (a comment) or `-` (which would be confused with PGP armor lines).
_FIELD_NAME = re.compile(r"[!-9;-~]+")
_FIELD_LINE = re.compile(r"([^ \t:]+)[ \t]*:(.*)\Z", re.DOTALL)

# Debian Policy §5.6.1 (the underscore is deprecated but still accepted by dpkg).
PACKAGE_NAME = re.compile(r"[a-z0-9][a-z0-9+._-]*")
# Debian Policy §5.6.12: [epoch:]upstream_version[-debian_revision].
VERSION = re.compile(r"(?:[0-9]+:)?[A-Za-z0-9][A-Za-z0-9.+~-]*")
ARCHITECTURE = re.compile(r"[a-z0-9][a-z0-9-]*")

RELATION_OPERATORS = ("<<", "<=", "=", ">=", ">>")
# dpkg still reads the obsolete `<` and `>` as `<=` and `>=`.
_OBSOLETE_OPERATORS = {"<": "<=", ">": ">="}
_RELATION = re.compile(
    r"\s*(?P<name>[^\s:(),|\[\]<>]+)"
    r"(?::(?P<arch>[^\s(),|\[\]<>]+))?"
    r"\s*(?:\(\s*(?P<op><<|<=|>=|>>|=|<|>)\s*(?P<version>[^\s()<>=]+)\s*\))?\s*\Z"
)
_SOURCE = re.compile(r"\s*(?P<name>[^\s()]+)\s*(?:\(\s*(?P<version>[^\s()<>=]+)\s*\))?\s*\Z")


class Deb822Error(ValueError):
    """Control data that cannot be parsed; the message names its source and line."""

    def __init__(self, source: str, message: str, *, lineno: int | None = None) -> None:
        self.source = source
        self.message = message
        self.lineno = lineno
        super().__init__(source, message, lineno)

    def __str__(self) -> str:
        if self.lineno is None:
            return f"{self.source}: {self.message}"
        return f"{self.source}:{self.lineno}: {self.message}"

    def __reduce__(self):  # Keep the keyword-only `lineno` across pickling.
        return (_rebuild_error, (self.source, self.message, self.lineno))


def _rebuild_error(source: str, message: str, lineno: int | None) -> Deb822Error:
    return Deb822Error(source, message, lineno=lineno)


class Stanza(Mapping):
    """One stanza: an ordered, case-insensitive, read-only mapping of field name to value.

    Iteration gives the field names as spelled in the input; lookups ignore case. Two stanzas are
    equal when they have the same fields with the same spelling, values and order. `lineno` (the
    line the stanza starts at, 0 if not parsed) takes no part in equality.
    """

    __slots__ = ("_fields", "_index", "lineno")

    def __init__(self, fields: Iterable[tuple[str, str]] = (), *, lineno: int = 0) -> None:
        pairs = tuple((str(name), str(value)) for name, value in fields)
        index: dict[str, int] = {}
        for i, (name, _) in enumerate(pairs):
            key = name.lower()
            if key in index:
                raise ValueError(f"duplicate field {name!r} (also {pairs[index[key]][0]!r})")
            index[key] = i
        object.__setattr__(self, "_fields", pairs)
        object.__setattr__(self, "_index", index)
        object.__setattr__(self, "lineno", lineno)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only")

    def __getitem__(self, name: str) -> str:
        if not isinstance(name, str):
            raise KeyError(name)
        i = self._index.get(name.lower())
        if i is None:
            raise KeyError(name)
        return self._fields[i][1]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._index

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Stanza):
            return self._fields == other._fields
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._fields)

    def __repr__(self) -> str:
        return f"Stanza({list(self._fields)!r})"

    def __reduce__(self):
        return (_rebuild_stanza, (self._fields, self.lineno))

    @property
    def fields(self) -> tuple[tuple[str, str], ...]:
        """The `(name, value)` pairs in input order, names as spelled in the input."""
        return self._fields

    def spelling(self, name: str) -> str:
        """The spelling the input used for field `name` (KeyError if absent)."""
        i = self._index.get(name.lower())
        if i is None:
            raise KeyError(name)
        return self._fields[i][0]

    def lines(self, name: str) -> tuple[str, ...]:
        """The non-blank lines of field `name`, stripped; () if the field is absent."""
        value = self.get(name)
        return field_lines(value) if value is not None else ()

    def words(self, name: str) -> tuple[str, ...]:
        """The white-space separated words of field `name`; () if the field is absent."""
        value = self.get(name)
        return tuple(value.split()) if value is not None else ()

    def dump(self) -> str:
        """The stanza in deb822 syntax, ending with a newline (no blank line after it)."""
        return "".join(format_field(name, value) for name, value in self._fields)


def _rebuild_stanza(fields: tuple[tuple[str, str], ...], lineno: int) -> Stanza:
    return Stanza(fields, lineno=lineno)


def format_field(name: str, value: str) -> str:
    """One field in deb822 syntax (`Name: value\\n` plus its continuation lines)."""
    first, *rest = value.split("\n")
    out = [f"{name}: {first}".rstrip() + "\n"]
    for line in rest:
        if not line.strip():
            raise ValueError(f"field {name!r}: empty continuation line (write ' .' instead)")
        if line[0] not in " \t":
            line = " " + line
        out.append(line + "\n")
    return "".join(out)


def field_lines(value: str) -> tuple[str, ...]:
    """The non-blank lines of a (multiline) value, stripped."""
    return tuple(stripped for stripped in (line.strip() for line in value.split("\n")) if stripped)


def _iter_lines(data: StanzaSource, source: str) -> Iterator[str]:
    """The lines of `data`, split on LF only, without their line ending (LF or CRLF)."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise Deb822Error(source, f"not UTF-8 text: {e}") from None
    if isinstance(data, str):
        # Not str.splitlines(): it would also split on form feeds, U+2028 and the like.
        lines: Iterable[str] = data.split("\n")
        if data.endswith("\n"):
            lines = data[:-1].split("\n")
        for line in lines:
            yield line[:-1] if line.endswith("\r") else line
        return

    buffered: io.BufferedReader | None = None
    if isinstance(data, io.RawIOBase):
        # Line iteration on a raw stream reads byte by byte: buffer it (and detach at the end).
        buffered = io.BufferedReader(data)
        data = buffered
    # A binary stream iterates over b"\n"-terminated lines; each is decoded on its own, so a
    # decoding error names its line.
    try:
        for lineno, line in enumerate(data, start=1):  # type: ignore[arg-type]
            if isinstance(line, bytes):
                try:
                    line = line.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise Deb822Error(source, f"not UTF-8 text: {e}", lineno=lineno) from None
            if line.endswith("\n"):
                line = line[:-1]
            if line.endswith("\r"):
                line = line[:-1]
            yield line
    finally:
        if buffered is not None:
            buffered.detach()  # Leave the caller's stream open.


def iter_stanzas(
    data: StanzaSource, *, source: str = "<control data>", comments: bool = True
) -> Iterator[Stanza]:
    """Yield the stanzas of `data`: a str, UTF-8 bytes, an iterable of lines, or a binary or text
    stream (read line by line, so a large `Packages` file is never held in memory).

    Raises `Deb822Error` naming `source` and the line for: a line that is neither a field, a
    continuation line, a comment nor blank; a continuation line at the start of a stanza; a field
    given twice in one stanza (whatever the case); an invalid field name; non-UTF-8 data.
    """
    fields: list[tuple[str, str]] = []
    seen: dict[str, str] = {}
    start = 0
    name: str | None = None
    value: list[str] = []

    def flush_field() -> None:
        nonlocal name
        if name is not None:
            fields.append((name, "\n".join(value)))
            name = None

    lineno = 0
    for lineno, line in enumerate(_iter_lines(data, source), start=1):
        if not line.strip(" \t"):
            flush_field()
            if fields:
                yield Stanza(fields, lineno=start)
                fields = []
                seen = {}
            continue
        first = line[0]
        if first == "#":
            if comments:
                continue
            raise Deb822Error(source, "comment lines are not allowed here", lineno=lineno)
        if first in " \t":
            if name is None:
                raise Deb822Error(
                    source,
                    f"continuation line outside a field: {line!r}",
                    lineno=lineno,
                )
            value.append(line.rstrip())
            continue
        match = _FIELD_LINE.match(line)
        if match is None:
            raise Deb822Error(source, f"expected `Field: value`, got {line!r}", lineno=lineno)
        field_name = match.group(1)
        if not _FIELD_NAME.fullmatch(field_name) or field_name[0] == "-":
            raise Deb822Error(source, f"invalid field name {field_name!r}", lineno=lineno)
        flush_field()
        key = field_name.lower()
        if key in seen:
            raise Deb822Error(
                source,
                f"duplicate field {field_name!r} in one stanza (also {seen[key]!r})",
                lineno=lineno,
            )
        seen[key] = field_name
        if not fields:
            start = lineno
        name = field_name
        value = [match.group(2).strip()]
    flush_field()
    if fields:
        yield Stanza(fields, lineno=start)


def parse_stanzas(
    data: StanzaSource, *, source: str = "<control data>", comments: bool = True
) -> tuple[Stanza, ...]:
    """All the stanzas of `data` (see `iter_stanzas`)."""
    return tuple(iter_stanzas(data, source=source, comments=comments))


def parse_single_stanza(
    data: StanzaSource, *, source: str = "<control data>", comments: bool = True
) -> Stanza:
    """The one stanza of `data` (a `.deb`'s control file, a `Release` file); an error otherwise."""
    stanzas = parse_stanzas(data, source=source, comments=comments)
    if len(stanzas) != 1:
        raise Deb822Error(source, f"expected exactly one stanza, found {len(stanzas)}")
    return stanzas[0]


@dataclass(frozen=True)
class Relation:
    """One package in a relationship field: `name[:arch] [(op version)]`.

    `op` is one of `RELATION_OPERATORS` (the obsolete `<` and `>` are read as `<=` and `>=`, as
    dpkg does); `arch` is the Multi-Arch qualifier (`any`, `native` or an architecture).
    """

    name: str
    arch: str | None = None
    op: str | None = None
    version: str | None = None

    def __str__(self) -> str:
        text = self.name if self.arch is None else f"{self.name}:{self.arch}"
        if self.op is not None:
            text += f" ({self.op} {self.version})"
        return text


def _parse_relation(text: str, *, field: str, source: str) -> Relation:
    match = _RELATION.match(text)
    if match is None:
        raise Deb822Error(
            source,
            f"{field}: cannot parse {text.strip()!r} (want `name[:arch] [(op version)]`; "
            "architecture restrictions and build profiles are not valid in binary packages)",
        )
    name = match.group("name")
    if not PACKAGE_NAME.fullmatch(name):
        raise Deb822Error(source, f"{field}: invalid package name {name!r}")
    arch = match.group("arch")
    if arch is not None and not ARCHITECTURE.fullmatch(arch):
        raise Deb822Error(source, f"{field}: invalid architecture qualifier {arch!r} of {name!r}")
    op = match.group("op")
    version = match.group("version")
    if op is not None:
        op = _OBSOLETE_OPERATORS.get(op, op)
        if not VERSION.fullmatch(version):
            raise Deb822Error(source, f"{field}: invalid version {version!r} of {name!r}")
    return Relation(name=name, arch=arch, op=op, version=version)


def parse_relations(
    value: str | None, *, field: str = "Depends", source: str = "<control data>"
) -> tuple[tuple[Relation, ...], ...]:
    """A `Depends`-style field: a conjunction (`,`) of alternatives (`|`); () if None or empty."""
    if value is None or not value.strip():
        return ()
    groups = []
    for group in value.split(","):
        if not group.strip():
            raise Deb822Error(source, f"{field}: empty entry in {' '.join(value.split())!r}")
        groups.append(
            tuple(_parse_relation(alt, field=field, source=source) for alt in group.split("|"))
        )
    return tuple(groups)


def parse_relation_list(
    value: str | None, *, field: str = "Provides", source: str = "<control data>"
) -> tuple[Relation, ...]:
    """A field that allows no alternatives (`Provides`, `Conflicts`, `Breaks`, `Replaces`)."""
    groups = parse_relations(value, field=field, source=source)
    for group in groups:
        if len(group) > 1:
            raise Deb822Error(
                source,
                f"{field}: alternatives (`|`) are not allowed: "
                f"{' | '.join(str(r) for r in group)!r}",
            )
    return tuple(group[0] for group in groups)


def parse_source_field(
    value: str | None, *, package: str, version: str, source: str = "<control data>"
) -> tuple[str, str]:
    """The source package name and version from a `Source: name [(version)]` field.

    Without the field the source is named like the package; without a version in it, the source
    version is the package's.
    """
    if value is None or not value.strip():
        return package, version
    match = _SOURCE.match(value)
    if match is None:
        raise Deb822Error(source, f"Source: cannot parse {value!r} (want `name [(version)]`)")
    return match.group("name"), match.group("version") or version


def check_package_fields(
    stanza: Mapping[str, str], *, source: str, required: Iterable[str] = ()
) -> tuple[str, str, str]:
    """`(Package, Version, Architecture)` of a binary package stanza, checked.

    They must be present and valid (Debian Policy §5.6.1, §5.6.12): they end up in file names
    and labels. The fields in `required` must be present and non-empty too.
    """
    for name in ("Package", "Version", "Architecture", *required):
        if not (stanza.get(name) or "").strip():
            raise Deb822Error(source, f"missing or empty field {name!r}")
    package = stanza["Package"].strip()
    version = stanza["Version"].strip()
    architecture = stanza["Architecture"].strip()
    if not PACKAGE_NAME.fullmatch(package):
        raise Deb822Error(source, f"invalid package name {package!r}")
    if not VERSION.fullmatch(version):
        raise Deb822Error(source, f"{package}: invalid version {version!r}")
    if not ARCHITECTURE.fullmatch(architecture):
        raise Deb822Error(source, f"{package}: invalid architecture {architecture!r}")
    return package, version, architecture


def parse_yes_no(
    value: str | None, *, field: str, source: str = "<control data>", default: bool = False
) -> bool:
    """A `yes`/`no` field such as `Essential` (absent: `default`)."""
    if value is None:
        return default
    word = value.strip().lower()
    if word == "yes":
        return True
    if word == "no":
        return False
    raise Deb822Error(source, f"{field}: expected `yes` or `no`, got {value!r}")
