"""Which binary packages an extension needs: `emerge --usepkgonly --root=<base overlay>`, explicit.

Given requested atoms, the binary packages of a binhost (the candidates), the packages of the base
OS image (installed) and of the extensions stacked under this one, `resolve` picks the binary
packages to put in the extension: the RDEPEND closure of the request, minus what the base image
or a stacked extension already has, the way emerge skips what the root already has.

Atoms, versions, slots, USE dependencies and soname dependencies are Portage's own: this module
uses `portage.dep` and `portage.versions` for all of them and only decides what emerge decides
around them (best version per slot, `||` preferences, blockers, slot conflicts). What it adds is
strictness an image needs: a package of the base image is never replaced (an extension that
shipped another version in the same slot would shadow the base's files), and every soname a
selected package REQUIRES must be PROVIDED by something that will be there at run time.

Like emerge's depgraph: a dependency already satisfied by the base or a stacked extension is left
alone (no --update, no --deep); the best candidate is the highest version, then the highest
BUILD_ID; `||` groups are decided after the plain atoms (so an alternative another package pulls
in wins), preferring one that is already present, else the first one available; a failed
alternative or a slot conflict that one version can settle is retried (backtracking).

Unlike emerge, on purpose (tests/resolve/test_against_portage.py pins both behaviours): emerge
would uninstall a package of the root that a soft blocker names, or upgrade/rebuild one to meet
a dependency; for an extension these are errors (BlockerError, SlotConflictError), and an `||`
alternative that would need them is passed over.
"""

from __future__ import annotations

import functools
from collections import deque
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Iterable, Mapping, Sequence, Union

from portage.dep import Atom, match_from_list, use_reduce
from portage.dep.soname.parse import parse_soname_deps
from portage.exception import InvalidAtom, InvalidData, InvalidDependString
from portage.versions import _pkg_str, vercmp

BASE = "base"

# Keys of a Packages block / VDB entry that PackageRecord has a field for. "repository" is the
# VDB's name for what a Packages index calls REPO.
_RECORD_KEYS = (
    "CPV",
    "SLOT",
    "USE",
    "IUSE",
    "RDEPEND",
    "PROVIDES",
    "REQUIRES",
    "BUILD_ID",
    "CHOST",
)


def stacked_source(name: str) -> str:
    """How `SatisfiedElsewhere.source` names a stacked extension."""
    return f"stacked extension {name}"


# -- Data -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PackageRecord:
    """A binary package candidate (a binhost's `Packages` block) or an installed package."""

    cpv: str
    slot: str = "0"
    use: frozenset[str] = frozenset()
    iuse: tuple[str, ...] = ()
    rdepend: str = ""
    provides: str = ""
    requires: str = ""
    build_id: int | None = None
    repo: str | None = None
    chost: str | None = None
    extra: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    @classmethod
    def from_mapping(cls, values: Mapping[str, str], cpv: str | None = None) -> PackageRecord:
        """Build a record from `Packages` index keys or VDB keys (see `_RECORD_KEYS`)."""
        given = values.get("CPV")
        cpv = cpv or given
        if not cpv:
            raise InvalidInputError(
                f"a package record without a CPV (keys: {', '.join(sorted(values)) or 'none'})"
            )
        if given and given != cpv:
            raise InvalidInputError(f"{cpv}: the record's CPV says {given!r}")

        build_id_text = (values.get("BUILD_ID") or "").strip()
        if build_id_text and not build_id_text.isdigit():
            raise InvalidInputError(
                f"{cpv}: BUILD_ID must be a non-negative integer, got {build_id_text!r}"
            )
        used = set(_RECORD_KEYS)
        repo = values.get("REPO")
        if repo is not None:
            used.add("REPO")
        else:
            repo = values.get("repository")
            used.add("repository")
        return cls(
            cpv=cpv,
            slot=(values.get("SLOT") or "").strip() or "0",
            use=frozenset((values.get("USE") or "").split()),
            iuse=tuple((values.get("IUSE") or "").split()),
            rdepend=" ".join((values.get("RDEPEND") or "").split()),
            provides=" ".join((values.get("PROVIDES") or "").split()),
            requires=" ".join((values.get("REQUIRES") or "").split()),
            build_id=int(build_id_text) if build_id_text else None,
            repo=(repo or "").strip() or None,
            chost=(values.get("CHOST") or "").strip() or None,
            extra=tuple(sorted((k, v) for k, v in values.items() if k not in used)),
        )

    def get(self, key: str, default: str | None = None) -> str | None:
        """A value carried in `extra` (PATH, SIZE, MD5, SHA1, …)."""
        for k, v in self.extra:
            if k == key:
                return v
        return default


@dataclass(frozen=True)
class ResolvedPackage:
    record: PackageRecord
    why: tuple[str, ...]


@dataclass(frozen=True)
class SatisfiedElsewhere:
    """An atom that a package already present (base image, stacked extension) satisfies."""

    atom: str
    by: str
    source: str  # "base" or "stacked extension <name>"
    needed_by: str  # a CPV, or "requested"


@dataclass(frozen=True)
class Resolution:
    packages: tuple[ResolvedPackage, ...]
    satisfied: tuple[SatisfiedElsewhere, ...]

    @property
    def cpvs(self) -> tuple[str, ...]:
        return tuple(p.record.cpv for p in self.packages)


# -- Errors -----------------------------------------------------------------------------------


class ResolveError(Exception):
    """The request cannot be resolved; the message says why and what to change."""


class InvalidInputError(ResolveError, ValueError):
    """A requested atom, an exclude pattern or a package's metadata cannot be parsed."""


class UnsatisfiableAtomError(ResolveError):
    def __init__(self, message: str, *, atom: str, needed_by: str) -> None:
        super().__init__(message)
        self.atom = atom
        self.needed_by = needed_by


class SlotConflictError(ResolveError):
    pass


class BlockerError(ResolveError):
    pass


class MissingSonameError(ResolveError):
    def __init__(self, message: str, *, missing: tuple[tuple[str, str, str], ...]) -> None:
        super().__init__(message)
        self.missing = missing  # (cpv, multilib category, soname)


# -- Packages as Portage's matching code sees them ----------------------------------------------


class _Use:
    __slots__ = ("enabled",)

    def __init__(self, enabled: frozenset[str]) -> None:
        self.enabled = enabled


class _IUse:
    """The `iuse` attribute match_from_list expects of a package (like _emerge.Package._iuse)."""

    __slots__ = ("all",)

    def __init__(self, iuse: Iterable[str], use: frozenset[str]) -> None:
        # USE holds implicit flags (arch, ELIBC, KERNEL, …) that are valid without being in IUSE.
        self.all = frozenset(flag.lstrip("+-") for flag in iuse) | use

    def is_valid_flag(self, flags: str | Iterable[str]) -> bool:
        if isinstance(flags, str):
            flags = (flags,)
        return all(flag in self.all for flag in flags)


class _Pkg:
    """A PackageRecord with the attributes portage.dep.match_from_list reads."""

    def __init__(self, record: PackageRecord, source: str) -> None:
        try:
            cpv = _pkg_str(record.cpv, slot=record.slot or "0", build_id=record.build_id)
        except InvalidData:
            raise InvalidInputError(
                f"{record.cpv!r} ({_describe_source(source)}): not a valid "
                f"CATEGORY/PN-VERSION"
            ) from None
        if "slot_invalid" in cpv.__dict__:
            raise InvalidInputError(
                f"{record.cpv} ({_describe_source(source)}): invalid SLOT {record.slot!r}"
            )
        self.record = record
        self.source = source
        self.cpv = cpv
        self.cp: str = cpv.cp
        self.version: str = cpv.version
        self.cpv_split = cpv.cpv_split
        self.slot: str = cpv.slot
        self.sub_slot: str = cpv.sub_slot
        self.repo = record.repo
        self.build_id = record.build_id
        self.use = _Use(record.use)
        self.iuse = _IUse(record.iuse, record.use)
        self.slot_key = (self.cp, self.slot)
        self.excluded_by: str | None = None
        self._provides: frozenset[tuple[str, str]] | None = None

    @property
    def label(self) -> str:
        if self.build_id is None:
            return str(self.cpv)
        return f"{self.cpv} (BUILD_ID {self.build_id})"

    def sonames(self, which: str) -> frozenset[tuple[str, str]]:
        if which == "PROVIDES" and self._provides is not None:
            return self._provides
        text = self.record.provides if which == "PROVIDES" else self.record.requires
        try:
            result = frozenset((a.multilib_category, a.soname) for a in parse_soname_deps(text))
        except InvalidData as e:
            raise InvalidInputError(
                f"{self.cpv} ({_describe_source(self.source)}): cannot parse {which} "
                f"{text!r}: {e}"
            ) from None
        if which == "PROVIDES":
            self._provides = result
        return result

    def __repr__(self) -> str:
        return f"_Pkg({self.label}, {self.source})"


def _compare(a: _Pkg, b: _Pkg) -> int:
    """Portage's preference: highest version, then highest BUILD_ID; then a fixed order."""
    if a.cp != b.cp:
        return -1 if a.cp < b.cp else 1
    by_version = vercmp(a.version, b.version)
    if by_version:
        return by_version
    keys_a = (-1 if a.build_id is None else a.build_id, a.repo or "", repr(a.record))
    keys_b = (-1 if b.build_id is None else b.build_id, b.repo or "", repr(b.record))
    return (keys_a > keys_b) - (keys_a < keys_b)


_ORDER = functools.cmp_to_key(_compare)


def _best(pkgs: Iterable[_Pkg]) -> _Pkg:
    return max(pkgs, key=_ORDER)


def _describe_source(source: str) -> str:
    return {"candidate": "binhost", BASE: "base image"}.get(source, source)


# A dependency tree as use_reduce(opconvert=True) returns it: atoms, ["||", alt, …], [all-of …].
_Tree = Union[Atom, list]


def _render(tree: _Tree) -> str:
    if isinstance(tree, list):
        if tree and tree[0] == "||":
            return "|| ( " + " ".join(_render(x) for x in tree[1:]) + " )"
        return "( " + " ".join(_render(x) for x in tree) + " )"
    return str(tree)


# -- The resolver -----------------------------------------------------------------------------


@dataclass
class _Need:
    """One dependency to satisfy: an atom or an any-of group, and who needs it."""

    tree: _Tree
    parent: _Pkg | None
    requested_as: str = ""
    group: str = ""  # the `|| ( … )` group an atom was picked from
    # The innermost any-of choice this need descends from: (needed_by, group, alternative).
    choice: tuple[str, str, int] | None = None

    @property
    def needed_by(self) -> str:
        return str(self.parent.cpv) if self.parent is not None else "requested"

    def reason(self, atom: Atom) -> str:
        if self.parent is None:
            return f"requested: {self.requested_as or atom}"
        where = f"RDEPEND of {self.parent.cpv}"
        if self.group:
            where += f", from {self.group}"
        return f"{atom} ({where})"

    @property
    def parent_use(self) -> frozenset[str]:
        return self.parent.record.use if self.parent is not None else frozenset()


class _Repin(Exception):
    def __init__(self, slot_key: tuple[str, str], pkg: _Pkg) -> None:
        self.slot_key = slot_key
        self.pkg = pkg


class _Reject(Exception):
    """An any-of alternative whose dependencies cannot be resolved: try the next one."""

    def __init__(self, choice: tuple[str, str, int], error: ResolveError) -> None:
        self.choice = choice
        self.error = error


class _State:
    def __init__(self, pins: Mapping[tuple[str, str], _Pkg]) -> None:
        self.pins = pins
        self.chosen: dict[tuple[str, str], _Pkg] = {}
        self.chosen_by_cp: dict[str, list[_Pkg]] = {}
        self.why: dict[tuple[str, str], list[str]] = {}
        self.pulled_by: dict[tuple[str, str], list[tuple[Atom, str]]] = {}
        self.blockers: dict[tuple[str, str], list[Atom]] = {}
        self.choice_of: dict[tuple[str, str], tuple[str, str, int] | None] = {}
        self.satisfied: set[SatisfiedElsewhere] = set()
        self.queue: deque[_Need] = deque()
        # Like emerge's depgraph (_queue_disjunctive_deps / _pop_disjunction), any-of groups
        # wait until every plain atom is resolved, so that their choice sees what other
        # packages pull in.
        self.disjunctions: deque[_Need] = deque()

    def push(self, need: _Need) -> None:
        (self.disjunctions if isinstance(need.tree, list) else self.queue).append(need)

    def note(self, pkg: _Pkg, atom: Atom, evaluated: Atom, need: _Need) -> None:
        reason = need.reason(atom)
        if reason not in self.why[pkg.slot_key]:
            self.why[pkg.slot_key].append(reason)
        self.pulled_by[pkg.slot_key].append((evaluated, reason))


class _Resolver:
    def __init__(
        self,
        requested: Sequence[str],
        candidates: Sequence[PackageRecord],
        installed: Sequence[PackageRecord],
        stacked: Mapping[str, Sequence[PackageRecord]],
        exclude: Sequence[str],
        check_sonames: bool,
    ) -> None:
        self.check_sonames = check_sonames
        self.requested = sorted(
            {text: _parse_requested(text) for text in requested}.items(), key=lambda kv: kv[0]
        )
        if not self.requested:
            raise InvalidInputError("nothing requested: give at least one package atom")

        self.candidates = sorted((_Pkg(r, "candidate") for r in candidates), key=_ORDER)
        self.by_cp: dict[str, list[_Pkg]] = {}
        for pkg in self.candidates:
            self.by_cp.setdefault(pkg.cp, []).append(pkg)

        for text in sorted(set(exclude)):
            pattern = _parse_exclude(text)
            for pkg in match_from_list(pattern, self.candidates):
                if pkg.excluded_by is None:
                    pkg.excluded_by = text

        # Packages already there, in the order they are consulted.
        self.elsewhere: list[tuple[str, dict[str, list[_Pkg]]]] = []
        sources = [(BASE, installed)] + [
            (stacked_source(name), stacked[name]) for name in sorted(stacked)
        ]
        for source, records in sources:
            index: dict[str, list[_Pkg]] = {}
            for pkg in sorted((_Pkg(r, source) for r in records), key=_ORDER):
                index.setdefault(pkg.cp, []).append(pkg)
            self.elsewhere.append((source, index))

    # Resolution with a little backtracking, as emerge does: a slot conflict that one candidate
    # could settle (it satisfies every atom pulling into that slot) pins that candidate, and an
    # any-of alternative whose dependencies fail is rejected; then it starts again. Every retry
    # adds to a finite set, so this ends.
    def run(self) -> Resolution:
        pins: dict[tuple[str, str], _Pkg] = {}
        self._tried: set[tuple[tuple[str, str], int]] = set()
        self._rejected: dict[tuple[str, str, int], ResolveError] = {}
        while True:
            try:
                return self._attempt(pins)
            except _Repin as repin:
                self._tried.add((repin.slot_key, id(repin.pkg)))
                pins[repin.slot_key] = repin.pkg
            except _Reject as reject:
                self._rejected[reject.choice] = reject.error

    def _attempt(self, pins: Mapping) -> Resolution:
        st = _State(pins)
        for text, atom in self.requested:
            st.push(_Need(atom, None, requested_as=text))
        while st.queue or st.disjunctions:
            if st.queue:
                need = st.queue.popleft()
                self._atom(st, need, need.tree)
            else:
                self._any_of(st, st.disjunctions.popleft())

        self._check_blockers(st)
        if self.check_sonames:
            self._check_sonames(st)

        packages = []
        for key, pkg in st.chosen.items():
            reasons = st.why[key]
            ordered = [r for r in reasons if r.startswith("requested: ")]
            ordered += sorted(r for r in reasons if not r.startswith("requested: "))
            packages.append(ResolvedPackage(record=pkg.record, why=tuple(ordered)))
        packages.sort(key=lambda p: (p.record.cpv, -1 if p.record.build_id is None
                                     else p.record.build_id))
        satisfied = sorted(
            st.satisfied, key=lambda s: (s.needed_by != "requested", s.needed_by, s.atom,
                                         s.source, s.by)
        )
        return Resolution(packages=tuple(packages), satisfied=tuple(satisfied))

    # -- one atom ---------------------------------------------------------------------------

    def _atom(self, st: _State, need: _Need, atom: Atom) -> None:
        evaluated = atom.evaluate_conditionals(need.parent_use) if atom.use else atom

        for source, index in self.elsewhere:
            found = match_from_list(evaluated, index.get(evaluated.cp, ()))
            if found:
                by = _best(found)
                st.satisfied.add(SatisfiedElsewhere(
                    atom=need.requested_as or str(atom), by=str(by.cpv), source=source,
                    needed_by=need.needed_by,
                ))
                return

        found = match_from_list(evaluated, st.chosen_by_cp.get(evaluated.cp, ()))
        if found:
            st.note(_best(found), atom, evaluated, need)
            return

        matches = [
            p for p in match_from_list(evaluated, self.by_cp.get(evaluated.cp, ()))
            if p.excluded_by is None
        ]
        if not matches:
            raise self._fail(need, self._unsatisfiable(need, atom, evaluated))

        # A package of the base image or a stacked extension is never replaced: prefer a match
        # in a slot nothing there occupies.
        free = [p for p in matches if self._occupant(p.slot_key) is None]
        if not free:
            pkg = _best(matches)
            raise self._fail(
                need, self._replaces_present(need, atom, pkg, self._occupant(pkg.slot_key))
            )
        pkg = _best(free)
        pinned = st.pins.get(pkg.slot_key)
        if pinned is not None and pinned in free:
            pkg = pinned

        existing = st.chosen.get(pkg.slot_key)
        if existing is not None:
            self._slot_conflict(st, existing, pkg, atom, evaluated, need)

        st.chosen[pkg.slot_key] = pkg
        st.chosen_by_cp.setdefault(pkg.cp, []).append(pkg)
        st.why[pkg.slot_key] = []
        st.pulled_by[pkg.slot_key] = []
        st.choice_of[pkg.slot_key] = need.choice
        st.note(pkg, atom, evaluated, need)
        self._expand(st, pkg)

    @staticmethod
    def _fail(need: _Need, error: ResolveError) -> Exception:
        """The error, or a retry without the any-of alternative that led to it."""
        return error if need.choice is None else _Reject(need.choice, error)

    def _expand(self, st: _State, pkg: _Pkg) -> None:
        try:
            tree = use_reduce(
                pkg.record.rdepend, uselist=pkg.record.use, opconvert=True, token_class=Atom
            )
        except (InvalidDependString, InvalidAtom) as e:
            raise InvalidInputError(
                f"{pkg.cpv} ({_describe_source(pkg.source)}): cannot parse RDEPEND "
                f"{pkg.record.rdepend!r}: {e}"
            ) from None
        blockers: list[Atom] = []
        choice = st.choice_of[pkg.slot_key]
        for item in _flatten_all_of(tree):
            if not isinstance(item, list) and item.blocker:
                blockers.append(item)
            else:
                st.push(_Need(item, pkg, choice=choice))
        st.blockers[pkg.slot_key] = blockers

    def _occupant(self, slot_key: tuple[str, str]) -> _Pkg | None:
        for _source, index in self.elsewhere:
            for pkg in index.get(slot_key[0], ()):
                if pkg.slot_key == slot_key:
                    return pkg
        return None

    # -- any-of groups ----------------------------------------------------------------------

    def _any_of(self, st: _State, need: _Need) -> None:
        group = need.tree
        alternatives = group[1:]
        text = _render(group)
        open_ = [i for i in range(len(alternatives))
                 if (need.needed_by, text, i) not in self._rejected]
        index = next((i for i in open_ if self._present(st, alternatives[i], need)), None)
        if index is None:
            index = next((i for i in open_ if self._available(st, alternatives[i], need)), None)
        if index is None:
            raise self._fail(need, self._unsatisfiable_any_of(need, alternatives, text))
        choice = (need.needed_by, text, index)
        for item in _flatten_all_of([alternatives[index]]):
            if not isinstance(item, list) and item.blocker:
                st.blockers[need.parent.slot_key].append(item)
            else:
                st.push(_Need(item, need.parent, group=text, choice=choice))

    def _present(self, st: _State, tree: _Tree, need: _Need) -> bool:
        """Whether the base, a stacked extension or the packages chosen so far satisfy it."""
        if isinstance(tree, list):
            if tree and tree[0] == "||":
                return any(self._present(st, t, need) for t in tree[1:])
            return all(self._present(st, t, need) for t in tree)
        if tree.blocker:
            return True
        atom = tree.evaluate_conditionals(need.parent_use) if tree.use else tree
        pools = [index.get(atom.cp, ()) for _source, index in self.elsewhere]
        pools.append(st.chosen_by_cp.get(atom.cp, ()))
        return any(match_from_list(atom, pool) for pool in pools)

    def _available(self, st: _State, tree: _Tree, need: _Need) -> bool:
        """Whether it is present or a candidate that is not excluded satisfies it."""
        if isinstance(tree, list):
            if tree and tree[0] == "||":
                return any(self._available(st, t, need) for t in tree[1:])
            return all(self._available(st, t, need) for t in tree)
        if self._present(st, tree, need):
            return True
        atom = tree.evaluate_conditionals(need.parent_use) if tree.use else tree
        return any(
            p.excluded_by is None and self._occupant(p.slot_key) is None
            for p in match_from_list(atom, self.by_cp.get(atom.cp, ()))
        )

    # -- slot conflicts ---------------------------------------------------------------------

    def _slot_conflict(
        self, st: _State, existing: _Pkg, new: _Pkg, atom: Atom, evaluated: Atom, need: _Need
    ) -> None:
        key = existing.slot_key
        atoms = [a for a, _ in st.pulled_by[key]] + [evaluated]
        together = [
            p for p in self.by_cp.get(key[0], ())
            if p.slot_key == key and p.excluded_by is None
            and all(match_from_list(a, [p]) for a in atoms)
        ]
        if together:
            best = _best(together)
            if (key, id(best)) not in self._tried:
                raise _Repin(key, best)
        first = "; ".join(r for _, r in st.pulled_by[key])
        raise self._fail(need, SlotConflictError(
            f"slot conflict in {key[0]}:{key[1]}: two versions would be installed in one slot:\n"
            f"  {existing.label}, pulled in by: {first}\n"
            f"  {new.label}, pulled in by: {need.reason(atom)}\n"
            f"No binary package in that slot satisfies all of these atoms. Fix: add one that "
            f"does to the binhost, pin compatible versions in the request, or rebuild the "
            f"packages whose dependencies disagree against one version."
        ))

    def _replaces_present(self, need: _Need, atom: Atom, pkg: _Pkg, present: _Pkg) -> ResolveError:
        where = _describe_source(present.source)
        return SlotConflictError(
            f"slot conflict in {pkg.cp}:{pkg.slot}: {need.reason(atom)} needs {pkg.label} "
            f"from the binhost, but the {where} has {present.label} (SLOT {present.record.slot}) "
            f"in that slot. An extension cannot replace a package of the {where}: its files "
            f"would shadow the ones there. Fix: use binary packages built against "
            f"{present.label}, or update the {where} to a version that satisfies {atom}."
        )

    # -- blockers ---------------------------------------------------------------------------

    def _check_blockers(self, st: _State) -> None:
        chosen = sorted(st.chosen.values(), key=_ORDER)
        problems: list[str] = []

        def check(owner: _Pkg, owner_use: frozenset[str], blocker: Atom,
                  pools: list[tuple[str, Iterable[_Pkg]]]) -> None:
            evaluated = blocker.evaluate_conditionals(owner_use) if blocker.use else blocker
            kind = "hard blocker" if blocker.blocker.overlap.forbid else "blocker"
            for where, pool in pools:
                for victim in match_from_list(evaluated, list(pool)):
                    if victim is owner or victim.cpv == owner.cpv:
                        continue  # a package does not block itself
                    problems.append(
                        f"  {owner.label} ({_role(owner)}) has the {kind} {blocker} against "
                        f"{victim.label} ({where})"
                    )

        present_pools = [
            (_describe_source(source), [p for pkgs in index.values() for p in pkgs])
            for source, index in self.elsewhere
        ]
        for pkg in chosen:
            for blocker in st.blockers.get(pkg.slot_key, ()):
                check(pkg, pkg.record.use, blocker,
                      present_pools + [("to be installed", chosen)])
        # Blockers of what is already there against what would be added.
        for _source, pkgs in present_pools:
            for present in pkgs:
                if "!" not in present.record.rdepend:
                    continue
                try:
                    tree = use_reduce(present.record.rdepend, uselist=present.record.use,
                                      opconvert=True, token_class=Atom)
                except (InvalidDependString, InvalidAtom) as e:
                    raise InvalidInputError(
                        f"{present.cpv} ({_describe_source(present.source)}): cannot parse "
                        f"RDEPEND {present.record.rdepend!r}: {e}"
                    ) from None
                for item in _iter_atoms(tree):
                    if item.blocker:
                        check(present, present.record.use, item, [("to be installed", chosen)])
        if problems:
            raise BlockerError(
                "blocked packages: these cannot be installed together:\n"
                + "\n".join(sorted(set(problems)))
                + "\nFix: leave one of them out of the request (or exclude it), or use builds "
                "whose dependencies do not block each other. An extension cannot uninstall "
                "a package of the base image or of a stacked extension."
            )

    # -- sonames ----------------------------------------------------------------------------

    def _check_sonames(self, st: _State) -> None:
        chosen = sorted(st.chosen.values(), key=_ORDER)
        provided: set[tuple[str, str]] = set()
        for pkg in chosen:
            provided |= pkg.sonames("PROVIDES")
        for _source, index in self.elsewhere:
            for pkgs in index.values():
                for pkg in pkgs:
                    provided |= pkg.sonames("PROVIDES")
        chosen_ids = {id(p) for p in chosen}
        missing = []
        lines = []
        for pkg in chosen:
            for category, soname in sorted(pkg.sonames("REQUIRES") - provided):
                missing.append((str(pkg.cpv), category, soname))
                providers = [
                    c.label for c in self.candidates
                    if id(c) not in chosen_ids and (category, soname) in c.sonames("PROVIDES")
                ]
                line = f"  {pkg.label} requires {soname} ({category})"
                if providers:
                    line += (f"; the binhost's {', '.join(providers)} provides it but nothing "
                             f"pulls it in (add it to the request)")
                lines.append(line)
        if missing:
            raise MissingSonameError(
                "shared libraries that nothing provides (REQUIRES without a matching PROVIDES "
                "in the packages to install, the base image or a stacked extension):\n"
                + "\n".join(lines)
                + "\nFix: give the base image's packages their PROVIDES (read them from the "
                "image's var/db/pkg), request the package that provides the library, or fix "
                "the package's RDEPEND; check_sonames=False skips this check.",
                missing=tuple(missing),
            )

    # -- explanations -----------------------------------------------------------------------

    def _candidate_report(self, evaluated: Atom) -> list[str]:
        lines = []
        pool = self.by_cp.get(evaluated.cp, ())
        if not pool:
            lines.append(
                f"  the binhost has no binary package of {evaluated.cp} "
                f"({len(self.candidates)} candidates in all)"
            )
        for pkg in pool:
            reasons = self._why_not(pkg, evaluated)
            if not reasons and self._occupant(pkg.slot_key) is not None:
                occupant = self._occupant(pkg.slot_key)
                reasons = [f"its slot is taken by {occupant.label} in the "
                           f"{_describe_source(occupant.source)}"]
            lines.append(f"  {pkg.label}: {'; '.join(reasons) or 'matches'}")
        for source, index in self.elsewhere:
            for pkg in index.get(evaluated.cp, ()):
                reasons = self._why_not(pkg, evaluated)
                lines.append(
                    f"  {pkg.label} in the {_describe_source(source)}: "
                    f"{'; '.join(reasons) or 'matches'}"
                )
        return lines

    def _why_not(self, pkg: _Pkg, evaluated: Atom) -> list[str]:
        reasons = []
        if pkg.excluded_by is not None:
            reasons.append(f"excluded by `{pkg.excluded_by}`")
        versioned = evaluated.without_use.without_slot.without_repo
        if versioned.operator and not match_from_list(versioned, [pkg]):
            reasons.append(f"version {pkg.version} does not satisfy {versioned}")
        if evaluated.slot is not None:
            wanted = evaluated.slot + (f"/{evaluated.sub_slot}" if evaluated.sub_slot else "")
            if pkg.slot != evaluated.slot or (
                evaluated.sub_slot and evaluated.sub_slot != pkg.sub_slot
            ):
                reasons.append(f"SLOT {pkg.record.slot} does not match :{wanted}")
        if evaluated.repo and pkg.repo and pkg.repo != evaluated.repo:
            reasons.append(f"repository {pkg.repo} is not ::{evaluated.repo}")
        reasons.extend(_use_reasons(pkg, evaluated))
        return reasons

    def _unsatisfiable(self, need: _Need, atom: Atom, evaluated: Atom) -> ResolveError:
        who = "requested" if need.parent is None else f"RDEPEND of {need.parent.cpv}"
        if need.group:
            who += f", from {need.group}"
        shown = need.requested_as or str(atom.unevaluated_atom)
        if need.parent is not None and str(evaluated) != shown:
            shown += f" (with {need.parent.cpv}'s USE: {evaluated})"
        lines = self._candidate_report(evaluated)
        excluded = sorted({p.excluded_by for p in self.by_cp.get(evaluated.cp, ())
                           if p.excluded_by is not None
                           and match_from_list(evaluated, [p])})
        fixes = [f"add a binary package that satisfies {evaluated} to the binhost"]
        if excluded:
            fixes.insert(0, "drop " + ", ".join(f"`{e}`" for e in excluded) + " from exclude "
                         "(the only matching packages are excluded)")
        if need.parent is not None:
            fixes.append(f"use a build of {need.parent.cpv} with dependencies the binhost can "
                         f"satisfy")
        return UnsatisfiableAtomError(
            f"cannot satisfy {shown} ({who}):\n" + "\n".join(lines)
            + "\nFix: " + ", or ".join(fixes) + ".",
            atom=str(atom), needed_by=need.needed_by,
        )

    def _unsatisfiable_any_of(self, need: _Need, alternatives: list, text: str) -> ResolveError:
        lines = []
        for index, alternative in enumerate(alternatives):
            rejected = self._rejected.get((need.needed_by, text, index))
            if rejected is not None:
                first, _, rest = str(rejected).partition("\n")
                lines.append(f"  {_render(alternative)}: its dependencies fail: {first}")
                lines.extend("    " + line for line in rest.splitlines()
                             if not line.startswith("Fix: "))
                continue
            for item in _iter_atoms([alternative]):
                if item.blocker:
                    continue
                evaluated = item.evaluate_conditionals(need.parent_use) if item.use else item
                lines.append(f"  {evaluated}:")
                lines.extend("  " + line for line in self._candidate_report(evaluated))
        return UnsatisfiableAtomError(
            f"cannot satisfy any alternative of {text} (RDEPEND of {need.needed_by}):\n"
            + "\n".join(lines)
            + f"\nFix: add a binary package that satisfies one of the alternatives to the "
            f"binhost, or use a build of {need.needed_by} whose dependencies it can satisfy.",
            atom=text, needed_by=need.needed_by,
        )


def _role(pkg: _Pkg) -> str:
    return "to be installed" if pkg.source == "candidate" else _describe_source(pkg.source)


def _use_reasons(pkg: _Pkg, evaluated: Atom) -> list[str]:
    """Why a package fails a USE dependency, following match_from_list's rules."""
    reasons = []
    valid = pkg.iuse.is_valid_flag
    enabled = pkg.use.enabled
    unevaluated = evaluated.unevaluated_atom
    if unevaluated.use:
        for flag in sorted(unevaluated.use.required):
            if not valid(flag):
                reasons.append(f"USE dependency on {flag}: {flag} is not in its IUSE")
    use = evaluated.use
    if use:
        for flag in sorted(use.enabled):
            if flag in enabled or not valid(flag):
                continue
            reasons.append(f"USE dependency [{flag}]: built with USE=-{flag}")
        for flag in sorted(use.disabled):
            if flag in enabled:
                reasons.append(f"USE dependency [-{flag}]: built with USE={flag}")
        for flag in sorted(use.enabled & use.missing_disabled):
            if not valid(flag):
                reasons.append(f"USE dependency [{flag}(-)]: {flag} is not in its IUSE")
        for flag in sorted(use.disabled & use.missing_enabled):
            if not valid(flag):
                reasons.append(f"USE dependency [-{flag}(+)]: {flag} is not in its IUSE")
    return list(dict.fromkeys(reasons))


def _flatten_all_of(tree: list) -> Iterable[_Tree]:
    """Atoms and any-of groups of a reduced dependency tree, all-of groups opened up."""
    for item in tree:
        if isinstance(item, list) and not (item and item[0] == "||"):
            yield from _flatten_all_of(item)
        else:
            yield item


def _iter_atoms(tree: list) -> Iterable[Atom]:
    for item in tree:
        if isinstance(item, list):
            yield from _iter_atoms(item[1:] if item and item[0] == "||" else item)
        else:
            yield item


def _parse_requested(text: str) -> Atom:
    try:
        atom = Atom(text.strip(), allow_repo=True)
    except InvalidAtom:
        hint = " (write it as CATEGORY/PN, e.g. app-misc/jq)" if "/" not in text else ""
        raise InvalidInputError(f"requested {text!r}: not a valid package atom{hint}") from None
    if atom.blocker:
        raise InvalidInputError(f"requested {text!r}: a blocker cannot be requested")
    if atom.use and atom.use.conditional:
        raise InvalidInputError(
            f"requested {text!r}: conditional USE dependencies ([flag?], [flag=]) only make "
            f"sense in a package's dependencies; write [flag] or [-flag]"
        )
    return atom


def _parse_exclude(text: str) -> Atom:
    try:
        atom = Atom(text.strip(), allow_wildcard=True, allow_repo=True)
    except InvalidAtom:
        raise InvalidInputError(
            f"exclude {text!r}: not a valid package atom (e.g. dev-libs/foo, <dev-libs/foo-2, "
            f"dev-libs/*)"
        ) from None
    if atom.blocker:
        raise InvalidInputError(f"exclude {text!r}: write the atom without `!`")
    return atom


def resolve(
    requested: Sequence[str],
    candidates: Sequence[PackageRecord],
    *,
    installed: Sequence[PackageRecord] = (),
    stacked: Mapping[str, Sequence[PackageRecord]] = MappingProxyType({}),
    exclude: Sequence[str] = (),
    check_sonames: bool = True,
) -> Resolution:
    """The binary packages to install for `requested`, on top of `installed` and `stacked`.

    Raises a `ResolveError` subclass that names the atom, who needs it and the fix.
    """
    if isinstance(requested, str):
        requested = [requested]
    return _Resolver(requested, candidates, installed, stacked, exclude, check_sonames).run()
