"""The lockfile of a resolved `binpkg_set`: a versioned, deterministic JSON document.

Pure data, no Pants. One file per resolve; `pants generate-lockfiles --resolve=NAME` writes it,
`pants package` reads only it (plus the binpkgs it pins, fetched by URL and checked by sha256
and size).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

LOCKFILE_VERSION = 1


class LockfileError(Exception):
    """A lockfile that cannot be used; the message says how to regenerate it."""


def regenerate_hint(resolve: str) -> str:
    return f"Run `./pants generate-lockfiles --resolve={resolve}` and commit the result."


@dataclass(frozen=True)
class LockedBinpkg:
    cpv: str
    path: str  # relative to the binhost
    size: int
    sha256: str
    build_id: int | None = None
    md5: str | None = None
    sha1: str | None = None
    slot: str = "0"
    use: str = ""
    rdepend: str = ""
    provides: str = ""
    requires: str = ""
    repo: str | None = None
    chost: str | None = None
    why: tuple[str, ...] = ()
    # Set when the binhost's index names another location for its packages (header `URI`).
    url: str | None = None
    # Debian packages: the control fields the resolver used (for stacking on this lock).
    deb_control: tuple[tuple[str, str], ...] = ()

    def to_json_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"url": self.url}
        if self.deb_control:
            data["deb_control"] = dict(self.deb_control)
        return {
            **data,
            "cpv": self.cpv,
            "build_id": self.build_id,
            "path": self.path,
            "size": self.size,
            "sha256": self.sha256,
            "md5": self.md5,
            "sha1": self.sha1,
            "slot": self.slot,
            "use": self.use,
            "rdepend": self.rdepend,
            "provides": self.provides,
            "requires": self.requires,
            "repo": self.repo,
            "chost": self.chost,
            "why": list(self.why),
        }

    @classmethod
    def from_json_dict(cls, data: Mapping[str, Any]) -> "LockedBinpkg":
        return cls(
            cpv=data["cpv"],
            path=data["path"],
            size=int(data["size"]),
            sha256=data["sha256"],
            build_id=data.get("build_id"),
            md5=data.get("md5"),
            sha1=data.get("sha1"),
            slot=data.get("slot", "0"),
            use=data.get("use", ""),
            rdepend=data.get("rdepend", ""),
            provides=data.get("provides", ""),
            requires=data.get("requires", ""),
            repo=data.get("repo"),
            chost=data.get("chost"),
            why=tuple(data.get("why", ())),
            url=data.get("url"),
            deb_control=tuple(sorted((data.get("deb_control") or {}).items())),
        )

    def as_index_values(self) -> dict[str, str]:
        """The package as a `Packages`-index-like mapping (for resolving stacked extensions)."""
        values = {
            "CPV": self.cpv,
            "SLOT": self.slot,
            "USE": self.use,
            "RDEPEND": self.rdepend,
            "PROVIDES": self.provides,
            "REQUIRES": self.requires,
        }
        if self.build_id is not None:
            values["BUILD_ID"] = str(self.build_id)
        if self.chost:
            values["CHOST"] = self.chost
        return values


@dataclass(frozen=True)
class Satisfied:
    """A dependency the lock does not ship, because the base or a stacked extension has it."""

    atom: str
    by: str
    source: str  # "base" or "stacked extension //addr"
    needed_by: str

    def to_json_dict(self) -> dict[str, str]:
        return {"atom": self.atom, "by": self.by, "source": self.source, "needed_by": self.needed_by}

    @classmethod
    def from_json_dict(cls, data: Mapping[str, str]) -> "Satisfied":
        return cls(data["atom"], data["by"], data["source"], data["needed_by"])


@dataclass(frozen=True)
class LockInputs:
    """What a lock was generated from: if any of it changes, the lock is stale."""

    binhost: str
    requested: tuple[str, ...]
    exclude: tuple[str, ...] = ()
    base: str | None = None  # "address sha256:…" fingerprint of the base's package database
    stacked: tuple[str, ...] = ()  # "address: cpv cpv …" per stacked extension

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "binhost": self.binhost,
            "requested": list(self.requested),
            "exclude": list(self.exclude),
            "base": self.base,
            "stacked": list(self.stacked),
        }

    @classmethod
    def from_json_dict(cls, data: Mapping[str, Any]) -> "LockInputs":
        return cls(
            binhost=data["binhost"],
            requested=tuple(data["requested"]),
            exclude=tuple(data.get("exclude", ())),
            base=data.get("base"),
            stacked=tuple(data.get("stacked", ())),
        )

    def differences(self, other: "LockInputs") -> list[str]:
        out = []
        for name in ("binhost", "requested", "exclude", "base", "stacked"):
            mine, theirs = getattr(self, name), getattr(other, name)
            if mine != theirs:
                out.append(f"{name}: the lock has {_show(mine)}, the target now has {_show(theirs)}")
        return out


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(value) + "]"
    return repr(value)


@dataclass(frozen=True)
class BinpkgLockfile:
    resolve: str
    inputs: LockInputs
    packages: tuple[LockedBinpkg, ...]
    satisfied: tuple[Satisfied, ...] = ()
    version: int = field(default=LOCKFILE_VERSION)

    def to_json(self) -> str:
        data = {
            "_comment": (
                f"Generated by `./pants generate-lockfiles --resolve={self.resolve}`. "
                f"Do not edit by hand."
            ),
            "version": self.version,
            "resolve": self.resolve,
            "inputs": self.inputs.to_json_dict(),
            "packages": [p.to_json_dict() for p in sorted(self.packages, key=lambda p: p.cpv)],
            "satisfied": [
                s.to_json_dict()
                for s in sorted(self.satisfied, key=lambda s: (s.needed_by, s.atom, s.by))
            ],
        }
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes, *, path: str, resolve: str) -> "BinpkgLockfile":
        try:
            data = json.loads(text)
        except ValueError as e:
            raise LockfileError(f"{path} is not valid JSON ({e}). {regenerate_hint(resolve)}")
        version = data.get("version") if isinstance(data, dict) else None
        if version != LOCKFILE_VERSION:
            raise LockfileError(
                f"{path} has lockfile version {version!r}; this backend reads version "
                f"{LOCKFILE_VERSION}. {regenerate_hint(resolve)}"
            )
        try:
            return cls(
                resolve=data["resolve"],
                inputs=LockInputs.from_json_dict(data["inputs"]),
                packages=tuple(LockedBinpkg.from_json_dict(p) for p in data["packages"]),
                satisfied=tuple(Satisfied.from_json_dict(s) for s in data.get("satisfied", ())),
                version=version,
            )
        except (KeyError, TypeError, ValueError) as e:
            raise LockfileError(f"{path} is malformed ({e!r}). {regenerate_hint(resolve)}")

    def check_inputs(self, current: LockInputs, *, path: str) -> None:
        problems = self.inputs.differences(current)
        if problems:
            raise LockfileError(
                f"The lockfile {path} no longer matches its binpkg_set:\n"
                + "\n".join(f"  {p}" for p in problems)
                + f"\n{regenerate_hint(self.resolve)}"
            )


def stacked_fingerprint(address: str, cpvs: Iterable[str]) -> str:
    return f"{address}: {' '.join(sorted(cpvs))}"
