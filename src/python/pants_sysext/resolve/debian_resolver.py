"""Which Debian binary packages an extension needs: `apt-get install` on the base, explicit.

Given requested packages, the binary packages of an archive (the candidates, as a `Packages`
index lists them), the packages of the base OS (its dpkg status) and of the extensions stacked
under this one, `resolve` picks the packages to put in the extension: the Depends and
Pre-Depends closure of the request, minus what the base or a stacked extension already has, the
way apt-get leaves alone what dpkg already has.

Versions and relations are Debian's own: this module uses python-debian
(`debian.debian_support.version_compare`, `debian.deb822.PkgRelation.parse_relations`) for them
and only decides what apt decides around them.

Like apt (`pkgDepCache::MarkInstall`, checked against `apt-get --simulate` in
tests/resolve_debian/test_against_apt.py): every requested package is marked first, then their
dependencies are installed depth first, Pre-Depends before Depends, each in field order. The
requests are taken in sorted order, virtual names last (apt takes the command line's order),
so the result does not depend on the order of any input; a virtual name requested with
several providers is an error, as in apt. A
relation that a package already present (base, stacked extension) or already chosen satisfies
is left alone. An `|` group takes the first alternative that is already satisfied, else the
first one that can be installed; an alternative whose own dependencies fail, or that conflicts,
is passed over. A real package of the relation's name is preferred over a provider of it;
among providers, apt's order: Essential first, then the higher Priority, then (where apt falls
back to its cache order) the name. Multi-Arch follows dpkg: a plain relation is satisfied by a
package of the native architecture (or `all`) or by a `Multi-Arch: foreign` one of any
architecture; `name:any` only by a `Multi-Arch: allowed` package (of any architecture);
`name:native` only by the native architecture (or `all`). An unversioned Provides satisfies
only unversioned relations; `Provides: foo (= 1)` satisfies versioned ones too. Conflicts and
Breaks are checked both ways between the packages chosen, the base and the stacked extensions
(never a package against itself, so a package may provide and conflict with one virtual name);
Replaces does not excuse a conflict.

Unlike apt, on purpose (tests/resolve_debian/test_against_apt.py pins both behaviours): apt
only ever considers a package's candidate version (the highest); here the highest version that
satisfies the relation is taken (so `foo (<< 3)` gets foo 2 when foo 3 is in the archive too),
a version chosen for one relation that another one rejects is retried with a version that
satisfies both, and `name=version` needs no `=version` for the dependencies that follow. apt would upgrade a package of the base, or remove one that a new package
conflicts with; for an extension these are errors (ReplacesInstalledError, ConflictError), and
an `|` alternative that would need them is passed over. A requested package that the base has
at a version satisfying the request is left alone even when the archive has a newer one.
"""

from __future__ import annotations

import fnmatch
import functools
import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Iterable, Iterator, Mapping, Sequence, Union

from debian.deb822 import Deb822, PkgRelation
from debian.debian_support import Version, version_compare

BASE = "base"
REQUESTED = "requested"

# Field names of a Packages stanza / dpkg status entry that DebRecord has a field for (lower
# case: deb822 field names are case-insensitive).
_RECORD_FIELDS = {
    "package": "package",
    "version": "version",
    "architecture": "architecture",
    "depends": "depends",
    "pre-depends": "pre_depends",
    "provides": "provides",
    "conflicts": "conflicts",
    "breaks": "breaks",
    "multi-arch": "multi_arch",
    "essential": "essential",
}
_RELATION_FIELDS = ("depends", "pre_depends", "provides", "conflicts", "breaks")
_MULTI_ARCH = ("", "same", "foreign", "allowed")
# Debian Policy 5.6.1: lower case letters, digits, `+`, `-` and `.`, starting alphanumeric.
_NAME = re.compile(r"[a-z0-9][a-z0-9+.\-]*\Z")
_ARCH = re.compile(r"[a-z0-9][a-z0-9\-]*\Z")
# `<` and `>` are dpkg's obsolete spellings of `<=` and `>=`.
_OPERATORS = {"<<": "<<", "<=": "<=", "=": "=", ">=": ">=", ">>": ">>", "<": "<=", ">": ">="}
# apt's pkgCache::State::VerPriority order (CompareProviders prefers the lower one).
_PRIORITY = {"required": 1, "important": 2, "standard": 3, "optional": 4, "extra": 5}
# dpkg status values for which a package satisfies dependencies.
_INSTALLED_STATES = ("installed", "triggers-awaited", "triggers-pending")


def stacked_source(name: str) -> str:
    """How `SatisfiedElsewhere.source` names a stacked extension."""
    return f"stacked extension {name}"


# -- Data -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DebRecord:
    """A binary package candidate (a `Packages` stanza) or an installed package (dpkg status)."""

    package: str
    version: str
    architecture: str  # "amd64", "all", …
    depends: str = ""
    pre_depends: str = ""
    provides: str = ""
    conflicts: str = ""
    breaks: str = ""
    multi_arch: str = ""  # "same", "foreign", "allowed" or ""
    essential: bool = False
    extra: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    @classmethod
    def from_mapping(cls, fields: Mapping[str, str]) -> DebRecord:
        """Build a record from the fields of a `Packages` stanza or a dpkg status entry.

        Field names are case-insensitive, as in deb822. The fields without a DebRecord field
        (Filename, Size, SHA256, Priority, Replaces, Status, …) are kept in `extra`.
        """
        values: dict[str, str] = {}
        extra: list[tuple[str, str]] = []
        seen: dict[str, str] = {}
        for key, value in fields.items():
            lower = key.lower()
            if lower in seen:
                raise InvalidInputError(
                    f"a package record has the field {key!r} twice (as {seen[lower]!r} too)"
                )
            seen[lower] = key
            if lower in _RECORD_FIELDS:
                values[_RECORD_FIELDS[lower]] = value if value is not None else ""
            else:
                extra.append((key, value))

        name = (values.get("package") or "").strip()
        if not name:
            raise InvalidInputError(
                f"a package record without a Package field (fields: "
                f"{', '.join(sorted(fields)) or 'none'})"
            )
        version = (values.get("version") or "").strip()
        architecture = (values.get("architecture") or "").strip()
        if not version:
            raise InvalidInputError(f"{name}: the record has no Version")
        if not architecture:
            raise InvalidInputError(f"{name} {version}: the record has no Architecture")
        multi_arch = (values.get("multi_arch") or "").strip().lower()
        if multi_arch == "no":
            multi_arch = ""
        essential_text = (values.get("essential") or "").strip().lower()
        if essential_text not in ("", "yes", "no"):
            raise InvalidInputError(
                f"{name} {version}: Essential must be yes or no, got {essential_text!r}"
            )
        record = cls(
            package=name,
            version=version,
            architecture=architecture,
            multi_arch=multi_arch,
            essential=essential_text == "yes",
            extra=tuple(sorted(extra)),
            **{f: " ".join((values.get(f) or "").split()) for f in _RELATION_FIELDS},
        )
        _check_record(record, "package record")
        return record

    def get(self, key: str, default: str | None = None) -> str | None:
        """A field carried in `extra` (Filename, Size, SHA256, …), case-insensitively."""
        lower = key.lower()
        for k, v in self.extra:
            if k.lower() == lower:
                return v
        return default


@dataclass(frozen=True)
class ResolvedDeb:
    record: DebRecord
    why: tuple[str, ...]


@dataclass(frozen=True)
class SatisfiedElsewhere:
    """A relation that a package already present (base, stacked extension) satisfies."""

    relation: str
    by: str  # "NAME VERSION" ("NAME:ARCH VERSION" for another architecture)
    source: str  # "base" or "stacked extension <name>"
    needed_by: str  # "NAME VERSION" of the package that needs it, or "requested"


@dataclass(frozen=True)
class DebResolution:
    packages: tuple[ResolvedDeb, ...]
    satisfied: tuple[SatisfiedElsewhere, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.record.package for p in self.packages)


def parse_packages_file(text: str | bytes) -> tuple[DebRecord, ...]:
    """The records of a `Packages` index (or any deb822 file of package stanzas)."""
    return tuple(DebRecord.from_mapping(p) for p in _paragraphs(text))


def parse_dpkg_status(text: str | bytes) -> tuple[DebRecord, ...]:
    """The installed packages of a dpkg status file (`Status: … installed` and the like)."""
    records = []
    for paragraph in _paragraphs(text):
        status = (paragraph.get("Status") or "").split()
        if len(status) == 3 and status[2] in _INSTALLED_STATES:
            records.append(DebRecord.from_mapping(paragraph))
    return tuple(records)


def _paragraphs(text: str | bytes) -> Iterator[Deb822]:
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    for paragraph in Deb822.iter_paragraphs(text.splitlines(keepends=True), use_apt_pkg=False):
        if paragraph:
            yield paragraph


# -- Errors -----------------------------------------------------------------------------------


class DebResolveError(Exception):
    """The request cannot be resolved; the message says why and what to change."""


class InvalidInputError(DebResolveError, ValueError):
    """A request, an exclude pattern or a package's fields cannot be parsed."""


class UnsatisfiableRelationError(DebResolveError):
    """Nothing satisfies a relation; the message lists every package of the name and why not."""

    def __init__(self, message: str, *, relation: str, needed_by: str) -> None:
        super().__init__(message)
        self.relation = relation
        self.needed_by = needed_by


class ReplacesInstalledError(UnsatisfiableRelationError):
    """Only a new version of a package of the base or a stacked extension would satisfy it."""


class VersionConflictError(UnsatisfiableRelationError):
    """Relations need versions of one package that no single version satisfies."""


class ConflictError(DebResolveError):
    """Conflicts/Breaks between packages to install and packages present or chosen."""

    def __init__(self, message: str, *, conflicts: tuple[tuple[str, str, str, str], ...]) -> None:
        super().__init__(message)
        # (owner "NAME VERSION", "Conflicts"/"Breaks", relation, victim "NAME VERSION")
        self.conflicts = conflicts


# -- Relations --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Rel:
    name: str
    archqual: str | None
    op: str | None
    version: str | None

    def __str__(self) -> str:
        text = self.name + (f":{self.archqual}" if self.archqual else "")
        if self.op:
            text += f" ({self.op} {self.version})"
        return text


def _render_group(group: Sequence[_Rel]) -> str:
    return " | ".join(str(r) for r in group)


def _parse_relations(text: str, what: str) -> list[tuple[_Rel, ...]]:
    """A relation field as groups of alternatives, with python-debian's parser."""
    if not text.strip():
        return []
    groups = []
    for group in PkgRelation.parse_relations(text):
        if len(group) == 1 and not group[0]["name"]:
            continue  # a trailing comma
        rels = []
        for parsed in group:
            name = parsed["name"]
            if not _NAME.match(name or ""):
                raise InvalidInputError(f"{what}: cannot parse {text!r} (at {name!r})")
            if parsed["arch"] or parsed["restrictions"]:
                raise InvalidInputError(
                    f"{what}: {text!r}: architecture restrictions ([…]) and build profiles "
                    f"(<…>) belong in source packages' build relations, not here"
                )
            archqual = parsed["archqual"]
            if archqual is not None and not _ARCH.match(archqual):
                raise InvalidInputError(f"{what}: {text!r}: invalid architecture {archqual!r}")
            op = version = None
            if parsed["version"] is not None:
                raw_op, version = parsed["version"]
                op = _OPERATORS.get(raw_op or "")
                if op is None or not version:
                    raise InvalidInputError(
                        f"{what}: {text!r}: invalid version relation {raw_op!r} in {name} "
                        f"(use <<, <=, =, >= or >>)"
                    )
                _check_version(version, f"{what}: {text!r}")
            rels.append(_Rel(name, archqual, op, version))
        groups.append(tuple(rels))
    return groups


def _check_version(version: str, what: str) -> None:
    try:
        Version(version)
    except ValueError:
        raise InvalidInputError(f"{what}: {version!r} is not a valid Debian version") from None


def _version_ok(version: str, op: str | None, wanted: str | None) -> bool:
    if op is None:
        return True
    cmp = version_compare(version, wanted)
    return {
        "<<": cmp < 0, "<=": cmp <= 0, "=": cmp == 0, ">=": cmp >= 0, ">>": cmp > 0,
    }[op]


def _check_record(record: DebRecord, what: str) -> None:
    label = f"{record.package} {record.version}"
    if not _NAME.match(record.package):
        raise InvalidInputError(
            f"{what}: {record.package!r} is not a valid package name (lower case letters, "
            f"digits, +, - and ., starting with a letter or digit)"
        )
    _check_version(record.version, f"{what} {record.package}")
    if not _ARCH.match(record.architecture):
        raise InvalidInputError(f"{what} {label}: invalid Architecture {record.architecture!r}")
    if record.multi_arch not in _MULTI_ARCH:
        raise InvalidInputError(
            f"{what} {label}: Multi-Arch must be same, foreign, allowed or no, got "
            f"{record.multi_arch!r}"
        )


# -- Packages as the resolver sees them -------------------------------------------------------


class _Pkg:
    """A DebRecord with its relations parsed, where it comes from and its native arch."""

    def __init__(self, record: DebRecord, source: str, native: str) -> None:
        _check_record(record, _describe_source(source))
        self.record = record
        self.source = source
        self.name = record.package
        self.version = record.version
        self.arch = record.architecture
        # dpkg installs an `all` package as one of the native architecture.
        self.eff_arch = native if record.architecture == "all" else record.architecture
        self.native = native
        self.multi_arch = record.multi_arch
        self.excluded_by: str | None = None
        what = f"{self.label} ({_describe_source(source)})"
        self.provides: list[_Rel] = []
        for group in _parse_relations(record.provides, f"{what}: Provides"):
            rel = group[0]
            if len(group) > 1 or rel.archqual or rel.op not in (None, "="):
                raise InvalidInputError(
                    f"{what}: Provides {record.provides!r}: each entry must be a plain name or "
                    f"`name (= version)`"
                )
            self.provides.append(rel)
        self.negative: list[tuple[str, _Rel]] = []
        for field_name, text in (("Conflicts", record.conflicts), ("Breaks", record.breaks)):
            for group in _parse_relations(text, f"{what}: {field_name}"):
                if len(group) > 1:
                    raise InvalidInputError(
                        f"{what}: {field_name} {text!r}: alternatives (|) are not allowed there"
                    )
                self.negative.append((field_name, group[0]))
        self._depends: list[tuple[str, tuple[_Rel, ...]]] | None = None

    @property
    def label(self) -> str:
        if self.eff_arch == self.native:
            return f"{self.name} {self.version}"
        return f"{self.name}:{self.arch} {self.version}"

    @property
    def depends(self) -> list[tuple[str, tuple[_Rel, ...]]]:
        """(field, alternatives) in apt's order: Pre-Depends, then Depends."""
        if self._depends is None:
            what = f"{self.label} ({_describe_source(self.source)})"
            self._depends = [
                (field_name, group)
                for field_name, text in (("Pre-Depends", self.record.pre_depends),
                                         ("Depends", self.record.depends))
                for group in _parse_relations(text, f"{what}: {field_name}")
            ]
        return self._depends

    @property
    def priority(self) -> int:
        return _PRIORITY.get((self.record.get("Priority") or "").strip().lower(), 6)

    def __repr__(self) -> str:
        return f"_Pkg({self.label}, {self.source})"


def _compare(a: _Pkg, b: _Pkg) -> int:
    """Name, then the highest version first; then a fixed order (architecture, fields)."""
    if a.name != b.name:
        return -1 if a.name < b.name else 1
    by_version = version_compare(b.version, a.version)
    if by_version:
        return by_version
    keys_a = (a.eff_arch != a.native, a.arch, repr(a.record), a.record.extra)
    keys_b = (b.eff_arch != b.native, b.arch, repr(b.record), b.record.extra)
    return (keys_a > keys_b) - (keys_a < keys_b)


_ORDER = functools.cmp_to_key(_compare)


def _describe_source(source: str) -> str:
    return {"candidate": "archive", BASE: "base"}.get(source, source)


def _arch_ok(pkg: _Pkg, rel: _Rel, negative: bool = False) -> bool:
    """dpkg's archsatisfied(): whether `pkg`'s architecture fits the relation's qualifier.

    The depending package is always of the native architecture (or `all`): only candidates'
    dependencies are followed.
    """
    if rel.archqual is None:
        if negative:
            return True  # Conflicts/Breaks without a qualifier concern every architecture
        return pkg.multi_arch == "foreign" or pkg.eff_arch == pkg.native
    if rel.archqual == "any":
        return negative or pkg.multi_arch == "allowed"
    wanted = pkg.native if rel.archqual == "native" else rel.archqual
    return pkg.eff_arch == wanted


def _real_match(pkg: _Pkg, rel: _Rel, negative: bool = False) -> bool:
    return (pkg.name == rel.name and _arch_ok(pkg, rel, negative)
            and _version_ok(pkg.version, rel.op, rel.version))


def _provide_match(pkg: _Pkg, rel: _Rel, negative: bool = False) -> _Rel | None:
    """The Provides entry of `pkg` that satisfies `rel`, if any."""
    if not _arch_ok(pkg, rel, negative):
        return None
    for provided in pkg.provides:
        if provided.name != rel.name:
            continue
        if rel.op is None:
            return provided
        # An unversioned Provides does not satisfy a versioned relation.
        if provided.version is not None and _version_ok(provided.version, rel.op, rel.version):
            return provided
    return None


def _matches(pkg: _Pkg, rel: _Rel, negative: bool = False) -> bool:
    return _real_match(pkg, rel, negative) or _provide_match(pkg, rel, negative) is not None


def _provider_key(pkg: _Pkg) -> tuple:
    """apt's CompareProviders, as far as it decides: Essential, then Priority; then the name."""
    return (not pkg.record.essential, pkg.priority, pkg.name)


# -- The resolver -----------------------------------------------------------------------------

_Choice = tuple  # (needed_by, group text, index of the alternative)


@dataclass
class _Need:
    """One relation group to satisfy and who needs it."""

    group: tuple[_Rel, ...]
    parent: Union[_Pkg, None]
    field: str = "Depends"
    requested_as: str = ""
    from_group: str = ""  # the `a | b` group a relation was picked from
    # The innermost alternative this need descends from: (needed_by, group, alternative).
    choice: Union[_Choice, None] = None

    @property
    def needed_by(self) -> str:
        return self.parent.label if self.parent is not None else REQUESTED

    def reason(self, rel: _Rel) -> str:
        if self.parent is None:
            return f"requested: {self.requested_as or rel}"
        where = f"{self.field} of {self.parent.label}"
        if self.from_group:
            where += f", from {self.from_group}"
        return f"{rel} ({where})"

    def who(self) -> str:
        if self.parent is None:
            return REQUESTED
        where = f"{self.field} of {self.parent.label}"
        if self.from_group:
            where += f", from {self.from_group}"
        return where


class _Repin(Exception):
    def __init__(self, name: str, pkg: _Pkg) -> None:
        self.name = name
        self.pkg = pkg


class _Reject(Exception):
    """An alternative whose dependencies cannot be resolved, or that conflicts: try the next."""

    def __init__(self, choice: _Choice, error: DebResolveError) -> None:
        self.choice = choice
        self.error = error


class _State:
    def __init__(self, pins: Mapping[str, _Pkg]) -> None:
        self.pins = pins
        self.chosen: dict[str, _Pkg] = {}
        self.why: dict[str, list[str]] = {}
        self.pulled_by: dict[str, list[tuple[_Rel, str]]] = {}
        self.choice_of: dict[str, Union[_Choice, None]] = {}
        self.satisfied: set[SatisfiedElsewhere] = set()
        self.conflicts: list[tuple[_Pkg, str, _Rel, _Pkg]] = []

    def note(self, pkg: _Pkg, rel: _Rel, need: _Need) -> None:
        reason = need.reason(rel)
        if reason not in self.why[pkg.name]:
            self.why[pkg.name].append(reason)
        self.pulled_by[pkg.name].append((rel, reason))


class _Resolver:
    def __init__(
        self,
        requested: Sequence[str],
        candidates: Sequence[DebRecord],
        installed: Sequence[DebRecord],
        stacked: Mapping[str, Sequence[DebRecord]],
        architecture: str,
        exclude: Sequence[str],
    ) -> None:
        if not _ARCH.match(architecture or "") or architecture in ("all", "any"):
            raise InvalidInputError(f"architecture {architecture!r}: not a Debian architecture")
        self.native = architecture
        self.requested = sorted(
            {text: _parse_requested(text) for text in requested}.items(), key=lambda kv: kv[0]
        )
        if not self.requested:
            raise InvalidInputError("nothing requested: give at least one package name")
        known = {r.package for r in candidates} | {r.package for r in installed} | {
            r.package for records in stacked.values() for r in records}
        # Virtual names last, so that a provider requested too is chosen before them.
        self.requested.sort(key=lambda kv: (kv[1].name not in known, kv[0]))

        every = sorted((_Pkg(r, "candidate", architecture) for r in candidates), key=_ORDER)
        # Packages of another architecture are no candidates (they stay in error reports).
        self.by_name: dict[str, list[_Pkg]] = {}
        self.by_provided: dict[str, list[_Pkg]] = {}
        self.other_arch: dict[str, list[_Pkg]] = {}
        for pkg in every:
            if pkg.eff_arch != architecture:
                self.other_arch.setdefault(pkg.name, []).append(pkg)
                continue
            self.by_name.setdefault(pkg.name, []).append(pkg)
            for provided in pkg.provides:
                providers = self.by_provided.setdefault(provided.name, [])
                if pkg not in providers:
                    providers.append(pkg)
        self.candidate_count = len(every)

        for text in sorted(set(exclude)):
            name_glob, op, version = _parse_exclude(text)
            for pkgs in self.by_name.values():
                for pkg in pkgs:
                    if (pkg.excluded_by is None and fnmatch.fnmatchcase(pkg.name, name_glob)
                            and _version_ok(pkg.version, op, version)):
                        pkg.excluded_by = text

        # Packages already there, in the order they are consulted.
        self.elsewhere: list[tuple[str, list[_Pkg]]] = []
        sources = [(BASE, installed)] + [
            (stacked_source(name), stacked[name]) for name in sorted(stacked)
        ]
        for source, records in sources:
            self.elsewhere.append(
                (source, sorted((_Pkg(r, source, architecture) for r in records), key=_ORDER))
            )
        self.present_by_name: dict[str, list[_Pkg]] = {}
        self.present_by_provided: dict[str, list[_Pkg]] = {}
        self.present_negative: list[_Pkg] = []
        for _source, pkgs in self.elsewhere:
            for pkg in pkgs:
                self.present_by_name.setdefault(pkg.name, []).append(pkg)
                for provided in pkg.provides:
                    self.present_by_provided.setdefault(provided.name, []).append(pkg)
                if pkg.negative:
                    self.present_negative.append(pkg)

    # Resolution with a little backtracking: a version that one relation needs and another
    # rejects is retried with a version that satisfies both (pinned), and an `|` alternative
    # whose dependencies fail or conflict is rejected; then it starts again. Every retry adds
    # to a finite set, so this ends.
    def run(self) -> DebResolution:
        pins: dict[str, _Pkg] = {}
        self._tried: set[tuple[str, int]] = set()
        self._rejected: dict[_Choice, DebResolveError] = {}
        while True:
            try:
                return self._attempt(pins)
            except _Repin as repin:
                self._tried.add((repin.name, id(repin.pkg)))
                pins[repin.name] = repin.pkg
            except _Reject as reject:
                self._rejected[reject.choice] = reject.error

    def _attempt(self, pins: Mapping[str, _Pkg]) -> DebResolution:
        st = _State(pins)
        # Like apt-get install: every requested package is marked first, then their
        # dependencies are resolved, request by request.
        marked = []
        for text, rel in self.requested:
            pkg = self._relation(st, _Need((rel,), None, requested_as=text), rel)
            if pkg is not None:
                marked.append(pkg)
        for pkg in marked:
            self._expand(st, pkg)

        if st.conflicts:
            raise self._conflict_error(st.conflicts)

        packages = []
        for name, pkg in st.chosen.items():
            reasons = st.why[name]
            ordered = [r for r in reasons if r.startswith("requested: ")]
            ordered += sorted(r for r in reasons if not r.startswith("requested: "))
            packages.append(ResolvedDeb(record=pkg.record, why=tuple(ordered)))
        packages.sort(key=lambda p: (p.record.package, p.record.architecture))
        satisfied = sorted(
            st.satisfied, key=lambda s: (s.needed_by != REQUESTED, s.needed_by, s.relation,
                                         s.source, s.by)
        )
        return DebResolution(packages=tuple(packages), satisfied=tuple(satisfied))

    # -- what is there ----------------------------------------------------------------------

    def _present(self, rel: _Rel) -> tuple[str, _Pkg] | None:
        """The package of the base or a stacked extension that satisfies `rel`, if any."""
        pools = self.present_by_name.get(rel.name, ()), self.present_by_provided.get(rel.name, ())
        for source, _pkgs in self.elsewhere:
            for pool in pools:
                for pkg in pool:
                    if pkg.source == source and _matches(pkg, rel):
                        return source, pkg
        return None

    def _chosen(self, st: _State, rel: _Rel) -> _Pkg | None:
        pkg = st.chosen.get(rel.name)
        if pkg is not None and _real_match(pkg, rel):
            return pkg
        providers = [p for p in st.chosen.values() if _provide_match(p, rel) is not None]
        return min(providers, key=_provider_key) if providers else None

    def _occupant(self, pkg: _Pkg) -> _Pkg | None:
        """A package present that a candidate would replace (dpkg: the same package, or one of
        another architecture that is not Multi-Arch: same at the same version)."""
        for present in self.present_by_name.get(pkg.name, ()):
            if present.eff_arch == pkg.eff_arch:
                return present
            if not (present.multi_arch == "same" and pkg.multi_arch == "same"
                    and version_compare(present.version, pkg.version) == 0):
                return present
        return None

    def _usable(self, pkg: _Pkg) -> bool:
        return pkg.excluded_by is None and self._occupant(pkg) is None

    # -- one relation -----------------------------------------------------------------------

    def _relation(self, st: _State, need: _Need, rel: _Rel) -> _Pkg | None:
        """Satisfy one relation; returns the package newly chosen for it, if any (its own
        dependencies are the caller's to follow)."""
        found = self._present(rel)
        if found is not None:
            source, by = found
            st.satisfied.add(SatisfiedElsewhere(
                relation=need.requested_as or need.from_group or str(rel),
                by=by.label, source=source, needed_by=need.needed_by,
            ))
            return None

        chosen = self._chosen(st, rel)
        if chosen is not None:
            st.note(chosen, rel, need)
            return None

        pkg = self._select(st, need, rel)
        existing = st.chosen.get(pkg.name)
        if existing is not None:
            self._version_conflict(st, existing, pkg, rel, need)

        st.chosen[pkg.name] = pkg
        st.why[pkg.name] = []
        st.pulled_by[pkg.name] = []
        st.choice_of[pkg.name] = need.choice
        st.note(pkg, rel, need)
        self._check_conflicts(st, pkg, need)
        return pkg

    def _select(self, st: _State, need: _Need, rel: _Rel) -> _Pkg:
        """The candidate to install for `rel`: a real package of the name, else a provider."""
        real = [p for p in self.by_name.get(rel.name, ()) if _real_match(p, rel)]
        usable = [p for p in real if self._usable(p)]
        if usable:
            return self._pinned(st, usable)

        providers = [p for p in self.by_provided.get(rel.name, ())
                     if _provide_match(p, rel) is not None and self._usable(p)]
        if providers:
            by_name: dict[str, list[_Pkg]] = {}
            for p in providers:
                by_name.setdefault(p.name, []).append(p)
            names = sorted(by_name, key=lambda n: _provider_key(by_name[n][0]))
            if need.parent is None and len(names) > 1:
                raise InvalidInputError(
                    f"requested {need.requested_as!r}: {rel.name} is a virtual package provided "
                    f"by {', '.join(sorted(names))}; request one of them"
                )
            return self._pinned(st, by_name[names[0]])

        occupied = [p for p in real if p.excluded_by is None and self._occupant(p) is not None]
        if occupied:
            raise self._fail(need, self._replaces_present(need, rel, occupied[0]))
        raise self._fail(need, self._unsatisfiable(need, rel))

    @staticmethod
    def _pinned(st: _State, pkgs: list[_Pkg]) -> _Pkg:
        pinned = st.pins.get(pkgs[0].name)
        if pinned is not None and pinned in pkgs:
            return pinned
        return pkgs[0]  # sorted: the highest version first

    @staticmethod
    def _fail(need: _Need, error: DebResolveError) -> Exception:
        """The error, or a retry without the alternative that led to it."""
        return error if need.choice is None else _Reject(need.choice, error)

    def _expand(self, st: _State, root: _Pkg) -> None:
        """Follow the dependencies of `root` depth first, as apt's MarkInstall recursion does
        (with a stack of its own: dependency chains can be deeper than Python's recursion)."""
        stack = [(root, iter(root.depends))]
        while stack:
            pkg, groups = stack[-1]
            item = next(groups, None)
            if item is None:
                stack.pop()
                continue
            field_name, group = item
            need = _Need(group, pkg, field=field_name, choice=st.choice_of[pkg.name])
            if len(group) == 1:
                new = self._relation(st, need, group[0])
            else:
                new = self._alternatives(st, need)
            if new is not None:
                stack.append((new, iter(new.depends)))

    # -- alternatives -----------------------------------------------------------------------

    def _alternatives(self, st: _State, need: _Need) -> _Pkg | None:
        group = need.group
        text = _render_group(group)
        # apt: an or-group that something installed or marked already satisfies is left alone.
        for rel in group:
            if self._present(rel) is not None or self._chosen(st, rel) is not None:
                return self._relation(st, _Need((rel,), need.parent, need.field,
                                                from_group=text, choice=need.choice), rel)
        for index, rel in enumerate(group):
            choice = (need.needed_by, text, index)
            if choice in self._rejected or not self._available(rel):
                continue
            return self._relation(st, _Need((rel,), need.parent, need.field, from_group=text,
                                            choice=choice), rel)
        raise self._fail(need, self._unsatisfiable_alternatives(need, text))

    def _available(self, rel: _Rel) -> bool:
        """Whether a candidate that is not excluded and replaces nothing satisfies `rel`."""
        real = self.by_name.get(rel.name, ())
        providers = self.by_provided.get(rel.name, ())
        return (any(_real_match(p, rel) and self._usable(p) for p in real)
                or any(_provide_match(p, rel) is not None and self._usable(p) for p in providers))

    # -- versions ---------------------------------------------------------------------------

    def _version_conflict(self, st: _State, existing: _Pkg, new: _Pkg, rel: _Rel,
                          need: _Need) -> None:
        name = existing.name
        rels = [r for r, _ in st.pulled_by[name]] + [rel]
        together = [p for p in self.by_name.get(name, ())
                    if self._usable(p) and all(_matches(p, r) for r in rels)]
        if together:
            best = together[0]
            if (name, id(best)) not in self._tried:
                raise _Repin(name, best)
        first = "; ".join(r for _, r in st.pulled_by[name])
        raise self._fail(need, VersionConflictError(
            f"version conflict in {name}: two versions would be installed:\n"
            f"  {existing.label}, pulled in by: {first}\n"
            f"  {new.label}, pulled in by: {need.reason(rel)}\n"
            f"No version of {name} in the archive satisfies all of these relations. Fix: add "
            f"one that does to the archive, request compatible versions, or use builds whose "
            f"dependencies agree.",
            relation=str(rel), needed_by=need.needed_by,
        ))

    # -- conflicts --------------------------------------------------------------------------

    def _check_conflicts(self, st: _State, pkg: _Pkg, need: _Need) -> None:
        """Conflicts/Breaks between `pkg` and what is present or chosen, both ways."""
        found: list[tuple[_Pkg, str, _Rel, _Pkg]] = []
        for field_name, rel in pkg.negative:
            pools = (self.present_by_name.get(rel.name, ()),
                     self.present_by_provided.get(rel.name, ()), st.chosen.values())
            hit: list[_Pkg] = []
            for pool in pools:
                for victim in pool:
                    if victim is not pkg and victim not in hit and _matches(victim, rel, True):
                        hit.append(victim)
            found.extend((pkg, field_name, rel, victim) for victim in hit)
        owners = self.present_negative + [p for p in st.chosen.values()
                                          if p is not pkg and p.negative]
        for owner in owners:
            for field_name, rel in owner.negative:
                if _matches(pkg, rel, True):
                    found.append((owner, field_name, rel, pkg))
        if not found:
            return
        if need.choice is not None:
            raise _Reject(need.choice, self._conflict_error(found))
        for owner, _field, _rel, victim in found:
            other = victim if owner is pkg else owner
            choice = st.choice_of.get(other.name) if other.source == "candidate" else None
            if choice is not None and st.chosen.get(other.name) is other:
                raise _Reject(choice, self._conflict_error(found))
        st.conflicts.extend(found)

    def _conflict_error(self, found: Iterable[tuple[_Pkg, str, _Rel, _Pkg]]) -> ConflictError:
        lines = []
        conflicts = []
        for owner, field_name, rel, victim in found:
            conflicts.append((owner.label, field_name, str(rel), victim.label))
            how = ""
            provided = _provide_match(victim, rel, True) if not _real_match(victim, rel, True) \
                else None
            if provided is not None:
                how = f", which provides {provided}"
            lines.append(
                f"  {owner.label} ({_role(owner)}) {field_name}: {rel} — against "
                f"{victim.label} ({_role(victim)}{how})"
            )
        return ConflictError(
            "conflicting packages: these cannot be installed together:\n"
            + "\n".join(sorted(set(lines)))
            + "\nFix: leave one of them out of the request (or exclude it), or use versions that "
            "do not conflict. An extension cannot remove or replace a package of the base or of "
            "a stacked extension (Replaces does not change that).",
            conflicts=tuple(sorted(set(conflicts))),
        )

    # -- explanations -----------------------------------------------------------------------

    def _candidate_report(self, rel: _Rel) -> list[str]:
        lines = []
        real = self.by_name.get(rel.name, [])
        other = self.other_arch.get(rel.name, [])
        providers = [p for p in self.by_provided.get(rel.name, ()) if p.name != rel.name]
        if not real and not other and not providers:
            lines.append(
                f"  the archive has no package {rel.name} and none provides it "
                f"({self.candidate_count} candidates in all)"
            )
        for pkg in sorted(real + other, key=_ORDER):
            lines.append(f"  {pkg.label} ({pkg.arch}): "
                         f"{'; '.join(self._why_not(pkg, rel)) or 'matches'}")
        for pkg in providers:
            lines.append(f"  {pkg.label} ({pkg.arch}), provides {rel.name}: "
                         f"{'; '.join(self._why_not(pkg, rel)) or 'matches'}")
        for source, pkgs in self.elsewhere:
            for pkg in pkgs:
                if pkg.name == rel.name or any(p.name == rel.name for p in pkg.provides):
                    lines.append(f"  {pkg.label} ({pkg.arch}) in the {_describe_source(source)}: "
                                 f"{'; '.join(self._why_not(pkg, rel)) or 'matches'}")
        return lines

    def _why_not(self, pkg: _Pkg, rel: _Rel) -> list[str]:
        reasons = []
        if pkg.source == "candidate" and pkg.eff_arch != self.native:
            reasons.append(f"architecture {pkg.arch} is neither {self.native} nor all")
        if pkg.excluded_by is not None:
            reasons.append(f"excluded by `{pkg.excluded_by}`")
        if pkg.name == rel.name:
            if not _version_ok(pkg.version, rel.op, rel.version):
                reasons.append(f"version {pkg.version} does not satisfy {rel.op} {rel.version}")
        else:
            provided = [p for p in pkg.provides if p.name == rel.name]
            versioned = [p for p in provided if p.version is not None]
            if rel.op is not None and not versioned:
                reasons.append(f"its Provides: {rel.name} has no version, so it does not "
                               f"satisfy a versioned relation")
            elif rel.op is not None and not any(_version_ok(p.version, rel.op, rel.version)
                                                for p in versioned):
                reasons.append(f"it provides {', '.join(str(p) for p in versioned)}, which does "
                               f"not satisfy {rel.op} {rel.version}")
        if pkg.source != "candidate" or pkg.eff_arch == self.native:
            if rel.archqual is None and not _arch_ok(pkg, rel):
                reasons.append(f"architecture {pkg.arch} is not {self.native} and it is not "
                               f"Multi-Arch: foreign")
            elif rel.archqual == "any" and not _arch_ok(pkg, rel):
                has = f"Multi-Arch: {pkg.multi_arch}" if pkg.multi_arch else "not Multi-Arch"
                reasons.append(f":any needs Multi-Arch: allowed, it is {has}")
            elif rel.archqual not in (None, "any") and not _arch_ok(pkg, rel):
                reasons.append(f"architecture {pkg.arch} is not :{rel.archqual}")
        if pkg.source == "candidate" and pkg.excluded_by is None and pkg.eff_arch == self.native:
            occupant = self._occupant(pkg)
            if occupant is not None:
                reasons.append(f"it would replace {occupant.label} of the "
                               f"{_describe_source(occupant.source)}")
        return reasons

    def _unsatisfiable(self, need: _Need, rel: _Rel) -> UnsatisfiableRelationError:
        shown = need.requested_as or str(rel)
        lines = self._candidate_report(rel)
        excluded = sorted({p.excluded_by for p in self.by_name.get(rel.name, [])
                           + self.by_provided.get(rel.name, [])
                           if p.excluded_by is not None and _matches(p, rel)})
        fixes = [f"add a package that satisfies {rel} to the archive"]
        if excluded:
            fixes.insert(0, "drop " + ", ".join(f"`{e}`" for e in excluded) + " from exclude "
                         "(the only matching packages are excluded)")
        if need.parent is not None:
            fixes.append(f"use a build of {need.parent.name} with dependencies the archive can "
                         f"satisfy")
        return UnsatisfiableRelationError(
            f"cannot satisfy {shown} ({need.who()}):\n" + "\n".join(lines)
            + "\nFix: " + ", or ".join(fixes) + ".",
            relation=shown, needed_by=need.needed_by,
        )

    def _replaces_present(self, need: _Need, rel: _Rel, pkg: _Pkg) -> ReplacesInstalledError:
        present = self._occupant(pkg)
        assert present is not None
        where = _describe_source(present.source)
        shown = need.requested_as or str(rel)
        return ReplacesInstalledError(
            f"cannot satisfy {shown} ({need.who()}) without replacing a package of the {where}: "
            f"the {where} has {present.label} ({present.arch}), the archive's {pkg.label} "
            f"would replace it.\n" + "\n".join(self._candidate_report(rel))
            + f"\nAn extension cannot replace a package of the {where}: its files would shadow "
            f"the ones there. Fix: use packages built against {present.label}, or update the "
            f"{where} to a version that satisfies {rel}.",
            relation=shown, needed_by=need.needed_by,
        )

    def _unsatisfiable_alternatives(self, need: _Need, text: str) -> UnsatisfiableRelationError:
        lines = []
        for index, rel in enumerate(need.group):
            rejected = self._rejected.get((need.needed_by, text, index))
            if rejected is not None:
                first, _, rest = str(rejected).partition("\n")
                lines.append(f"  {rel}: cannot be installed: {first}")
                lines.extend("    " + line for line in rest.splitlines()
                             if not line.startswith("Fix: "))
                continue
            lines.append(f"  {rel}:")
            lines.extend("  " + line for line in self._candidate_report(rel))
        return UnsatisfiableRelationError(
            f"cannot satisfy any alternative of {text} ({need.who()}):\n" + "\n".join(lines)
            + f"\nFix: add a package that satisfies one of the alternatives to the archive, or "
            f"use a build of {need.parent.name if need.parent else text} whose dependencies "
            f"it can satisfy.",
            relation=text, needed_by=need.needed_by,
        )


def _role(pkg: _Pkg) -> str:
    return "to be installed" if pkg.source == "candidate" else _describe_source(pkg.source)


def _parse_requested(text: str) -> _Rel:
    stripped = text.strip()
    if "=" in stripped and "(" not in stripped:
        name, _, version = stripped.partition("=")
        stripped = f"{name.strip()} (= {version.strip()})"
    if not stripped or "," in stripped or "|" in stripped:
        raise InvalidInputError(
            f"requested {text!r}: give one package, as `name`, `name (>= 1.2)` or "
            f"`name=1.2-1`"
        )
    groups = _parse_relations(stripped, f"requested {text!r}")
    return groups[0][0]


def _parse_exclude(text: str) -> tuple[str, str | None, str | None]:
    """`name`, a glob (`libfoo*`), `name (<< 2)` or `name=1.0-1`."""
    match = re.fullmatch(r"\s*([^\s(=]+)\s*(?:\(\s*([<>=]+)\s*([^\s)]+)\s*\)|=\s*(\S+))?\s*",
                         text)
    if not match:
        raise InvalidInputError(
            f"exclude {text!r}: write a package name or glob, optionally with a version "
            f"(`libfoo*`, `foo (<< 2)`, `foo=1.0-1`)"
        )
    name, raw_op, version, exact = match.groups()
    if not re.fullmatch(r"[a-z0-9+.\-*?\[\]!]+", name):
        raise InvalidInputError(f"exclude {text!r}: {name!r} is not a package name or glob")
    if exact is not None:
        raw_op, version = "=", exact
    op = None
    if raw_op is not None:
        op = _OPERATORS.get(raw_op)
        if op is None:
            raise InvalidInputError(f"exclude {text!r}: invalid version relation {raw_op!r}")
        _check_version(version, f"exclude {text!r}")
    return name, op, version


def resolve(
    requested: Sequence[str],
    candidates: Sequence[DebRecord],
    *,
    installed: Sequence[DebRecord] = (),
    stacked: Mapping[str, Sequence[DebRecord]] = MappingProxyType({}),
    architecture: str = "amd64",
    exclude: Sequence[str] = (),
) -> DebResolution:
    """The Debian packages to install for `requested`, on top of `installed` and `stacked`.

    `requested`: package names, optionally `name (>= 1.2)` or `name=1.2-1`. `candidates`: the
    archive's packages (several versions of one package are fine). `installed`: the base's
    installed packages; `stacked`: extension name → its packages. `exclude`: names or globs
    (optionally with a version relation) of candidates never to use.

    Raises a `DebResolveError` subclass that names the relation, who needs it and the fix.
    """
    if isinstance(requested, str):
        requested = [requested]
    return _Resolver(requested, candidates, installed, stacked, architecture, exclude).run()
