"""dpkg's database of installed packages, `/var/lib/dpkg/status`.

One deb822 stanza per package dpkg knows about, with `Status: <want> <flag> <state>`
(dpkg-query(1)). Only packages that are **fully installed** are kept: flag `ok` and state
`installed`, whatever the selection (`want`): `hold ok installed` (held) and
`deinstall ok installed` (selected for removal, still on disk) count as installed, because their
files are in the image. Dropped: `not-installed`, `config-files` (removed, conffiles kept),
`half-installed`, `unpacked`, `half-configured`, `triggers-awaited`, `triggers-pending`, and any
flag `reinstreq` — a base image taken after apt or dpkg finished has none of these, and a package
in such a state cannot be relied on to provide anything.

Standard library only: this module runs in sandboxes on the system Python.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from pants_sysext.formats.deb822 import (
    Deb822Error,
    Relation,
    StanzaSource,
    check_package_fields,
    iter_stanzas,
    parse_relation_list,
    parse_relations,
    parse_source_field,
    parse_yes_no,
)

STATUS_PATH = "/var/lib/dpkg/status"

WANTS = ("unknown", "install", "hold", "deinstall", "purge")
FLAGS = ("ok", "reinstreq")
STATES = (
    "not-installed",
    "config-files",
    "half-installed",
    "unpacked",
    "half-configured",
    "triggers-awaited",
    "triggers-pending",
    "installed",
)
MULTI_ARCH_VALUES = ("no", "same", "foreign", "allowed")


class DpkgStatusError(Deb822Error):
    """A dpkg status file that cannot be read; the message names the file and line."""


@dataclass(frozen=True)
class InstalledDeb:
    """A fully installed package of a dpkg status database.

    `status` is the `Status` field (`install ok installed`). Relationship fields are parsed:
    `depends` and `pre_depends` are conjunctions of alternatives, `provides`, `conflicts` and
    `breaks` plain lists. `multi_arch` is `no` when the field is absent. `source` and
    `source_version` default to the package's own name and version.
    """

    package: str
    version: str
    architecture: str
    status: str
    provides: tuple[Relation, ...]
    depends: tuple[tuple[Relation, ...], ...]
    pre_depends: tuple[tuple[Relation, ...], ...]
    conflicts: tuple[Relation, ...]
    breaks: tuple[Relation, ...]
    essential: bool
    multi_arch: str
    source: str
    source_version: str = ""

    @property
    def want(self) -> str:
        """The selection: `install`, `hold`, `deinstall`, … ."""
        return self.status.split()[0]

    @property
    def label(self) -> str:
        return f"{self.package}_{self.version}_{self.architecture}"


def _split_status(value: str | None, *, source: str, lineno: int, package: str):
    words = (value or "").split()
    if (
        len(words) != 3
        or words[0] not in WANTS
        or words[1] not in FLAGS
        or words[2] not in STATES
    ):
        raise DpkgStatusError(
            source,
            f"package {package!r}: invalid Status {value!r} (want `<want> <flag> <state>`)",
            lineno=lineno,
        )
    return words


def iter_installed(data: StanzaSource, *, source: str = "status") -> Iterator[InstalledDeb]:
    """Yield the fully installed packages of status data `data` (text, bytes, lines or a stream).

    Raises `DpkgStatusError` (a `Deb822Error`) for syntax errors, a stanza without `Package` or
    with an invalid `Status`, and — for installed packages only — invalid names, versions,
    architectures or relationship fields, or a package installed twice for one architecture.
    """
    seen: dict[tuple[str, str], int] = {}
    try:
        for stanza in iter_stanzas(data, source=source, comments=False):
            package = (stanza.get("Package") or "").strip()
            if not package:
                raise DpkgStatusError(
                    source, "stanza without a Package field", lineno=stanza.lineno
                )
            _, flag, state = _split_status(
                stanza.get("Status"), source=source, lineno=stanza.lineno, package=package
            )
            if flag != "ok" or state != "installed":
                continue
            where = f"{source}:{stanza.lineno}"
            try:
                package, version, architecture = check_package_fields(stanza, source=where)
                multi_arch = (stanza.get("Multi-Arch") or "no").strip()
                if multi_arch not in MULTI_ARCH_VALUES:
                    raise Deb822Error(where, f"{package}: invalid Multi-Arch {multi_arch!r}")
                source_name, source_version = parse_source_field(
                    stanza.get("Source"), package=package, version=version, source=where
                )

                def relations(field: str):
                    return parse_relations(stanza.get(field), field=field, source=where)

                def relation_list(field: str):
                    return parse_relation_list(stanza.get(field), field=field, source=where)

                installed = InstalledDeb(
                    package=package,
                    version=version,
                    architecture=architecture,
                    status=" ".join(stanza["Status"].split()),
                    provides=relation_list("Provides"),
                    depends=relations("Depends"),
                    pre_depends=relations("Pre-Depends"),
                    conflicts=relation_list("Conflicts"),
                    breaks=relation_list("Breaks"),
                    essential=parse_yes_no(
                        stanza.get("Essential"), field="Essential", source=where
                    ),
                    multi_arch=multi_arch,
                    source=source_name,
                    source_version=source_version,
                )
            except DpkgStatusError:
                raise
            except Deb822Error as e:
                raise DpkgStatusError(
                    source, f"package {package!r}: {e.message}", lineno=stanza.lineno
                ) from None
            key = (package, architecture)
            if key in seen:
                raise DpkgStatusError(
                    source,
                    f"package {package}:{architecture} is listed twice (also at line {seen[key]})",
                    lineno=stanza.lineno,
                )
            seen[key] = stanza.lineno
            yield installed
    except DpkgStatusError:
        raise
    except Deb822Error as e:
        raise DpkgStatusError(e.source, e.message, lineno=e.lineno) from None


def parse_dpkg_status(data: StanzaSource, *, source: str = "status") -> tuple[InstalledDeb, ...]:
    """The fully installed packages of status data `data` (see `iter_installed`)."""
    return tuple(iter_installed(data, source=source))


def read_dpkg_status(path: str = STATUS_PATH) -> tuple[InstalledDeb, ...]:
    """The fully installed packages of the dpkg status file at `path` (streamed)."""
    with open(path, "rb") as f:
        return parse_dpkg_status(f, source=path)
