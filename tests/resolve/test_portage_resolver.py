"""The resolver: the fixture binhost on a base image, then crafted dependency graphs."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path
from typing import Any

import pytest

from pants_sysext.formats.packages_index import parse_packages_index
from pants_sysext.formats.vdb import read_vdb
from pants_sysext.resolve.portage_resolver import (
    BlockerError,
    InvalidInputError,
    MissingSonameError,
    PackageRecord,
    Resolution,
    ResolvedPackage,
    ResolveError,
    SatisfiedElsewhere,
    SlotConflictError,
    UnsatisfiableAtomError,
    resolve,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "portage"
GLIBC_PROVIDES = "x86_64: ld-linux-x86-64.so.2 libc.so.6 libm.so.6 libcrypt.so.1 libdl.so.2"


# -- The fixture binhost on a base image ------------------------------------------------------


def _binhost() -> list[PackageRecord]:
    index = parse_packages_index((FIXTURES / "binhost" / "Packages").read_bytes())
    return [PackageRecord.from_mapping(e.as_dict()) for e in index.packages]


def _base(*, glibc_provides: str = GLIBC_PROVIDES) -> list[PackageRecord]:
    """sys-libs/glibc and virtual/libc as the fixture VDB has them (glibc without PROVIDES)."""
    base = []
    for pkg in read_vdb(str(FIXTURES / "vdb")):
        if pkg.cpv in ("sys-libs/glibc-2.36-r7", "virtual/libc-1-r1"):
            values = pkg.as_dict()
            if pkg.cpv.startswith("sys-libs/glibc-"):
                values["PROVIDES"] = glibc_provides
            base.append(PackageRecord.from_mapping(values, cpv=pkg.cpv))
    return base


def test_jq_on_a_base_with_glibc() -> None:
    resolution = resolve(["app-misc/jq"], _binhost(), installed=_base())
    assert resolution.cpvs == ("app-misc/jq-1.6-r3", "dev-libs/oniguruma-6.9.8")
    jq, onig = resolution.packages
    assert jq.why == ("requested: app-misc/jq",)
    assert onig.why == ("dev-libs/oniguruma:0/5= (RDEPEND of app-misc/jq-1.6-r3)",)
    assert resolution.satisfied == (
        SatisfiedElsewhere(">=sys-libs/glibc-2.36-r7", "sys-libs/glibc-2.36-r7", "base",
                           "app-misc/jq-1.6-r3"),
        SatisfiedElsewhere(">=sys-libs/glibc-2.36-r7", "sys-libs/glibc-2.36-r7", "base",
                           "dev-libs/oniguruma-6.9.8"),
    )
    # The binhost's own keys travel with the records.
    assert jq.record.get("PATH") == "app-misc/jq-1.6-r3.gpkg.tar"
    assert jq.record.get("SHA1") == "2f487ce9d5506505788e3a4473f9eaccf9de56ae"
    assert jq.record.get("SIZE") == "194560"
    assert jq.record.repo == "portage-stable"
    assert jq.record.chost == "x86_64-pc-linux-gnu"
    assert onig.record.slot == "0/5"
    assert jq.record.use == {"amd64", "elibc_glibc", "kernel_linux", "oniguruma"}
    assert jq.record.iuse == ("+oniguruma", "static-libs", "test")


def test_jq_without_glibc_provides_is_a_missing_soname() -> None:
    with pytest.raises(MissingSonameError) as e:
        resolve(["app-misc/jq"], _binhost(), installed=_base(glibc_provides=""))
    message = str(e.value)
    assert "app-misc/jq-1.6-r3 requires libc.so.6 (x86_64)" in message
    assert "dev-libs/oniguruma-6.9.8 requires libc.so.6 (x86_64)" in message
    assert ("app-misc/jq-1.6-r3", "x86_64", "libm.so.6") in e.value.missing
    # libonig.so.5 comes with the set itself.
    assert not any(soname == "libonig.so.5" for _, _, soname in e.value.missing)
    assert "PROVIDES" in message
    assert resolve(["app-misc/jq"], _binhost(), installed=_base(glibc_provides=""),
                   check_sonames=False).cpvs == ("app-misc/jq-1.6-r3", "dev-libs/oniguruma-6.9.8")


def test_jq_already_in_the_base() -> None:
    full_base = [PackageRecord.from_mapping(p.as_dict(), cpv=p.cpv)
                 for p in read_vdb(str(FIXTURES / "vdb"))]
    resolution = resolve(["app-misc/jq"], _binhost(), installed=full_base)
    assert resolution.packages == ()
    assert resolution.satisfied == (
        SatisfiedElsewhere("app-misc/jq", "app-misc/jq-1.6-r3", "base", "requested"),
    )


def test_fixture_packages_with_unavailable_dependencies() -> None:
    with pytest.raises(UnsatisfiableAtomError) as e:
        resolve(["sys-fs/fuse"], _binhost(), installed=_base())
    assert ">=sys-fs/fuse-common-3.3.0-r1" in str(e.value)
    assert "RDEPEND of sys-fs/fuse-3.14.0" in str(e.value)
    assert "no binary package of sys-fs/fuse-common" in str(e.value)
    assert e.value.needed_by == "sys-fs/fuse-3.14.0"

    with pytest.raises(UnsatisfiableAtomError, match="dev-libs/openssl:0"):
        resolve(["net-dialup/ppp"], _binhost(), installed=_base())


def test_fixture_without_a_base() -> None:
    with pytest.raises(UnsatisfiableAtomError) as e:
        resolve(["app-misc/jq"], _binhost())
    assert ">=sys-libs/glibc-2.36-r7" in str(e.value)


def test_stacking_on_an_oniguruma_extension() -> None:
    onig = [r for r in _binhost() if r.cpv.startswith("dev-libs/oniguruma-")]
    resolution = resolve(["app-misc/jq"], _binhost(), installed=_base(),
                         stacked={"extensions/oniguruma:oniguruma": onig})
    assert resolution.cpvs == ("app-misc/jq-1.6-r3",)
    assert SatisfiedElsewhere(
        "dev-libs/oniguruma:0/5=", "dev-libs/oniguruma-6.9.8",
        "stacked extension extensions/oniguruma:oniguruma", "app-misc/jq-1.6-r3",
    ) in resolution.satisfied


# -- Records ------------------------------------------------------------------------------------


def test_record_from_mapping() -> None:
    record = PackageRecord.from_mapping({
        "CPV": "dev-libs/foo-1.2", "SLOT": "", "USE": "a  b\nc", "IUSE": "+a -b c",
        "RDEPEND": "dev-libs/bar\n  >=dev-libs/baz-2", "BUILD_ID": "7", "REPO": "gentoo",
        "PATH": "dev-libs/foo/foo-1.2-7.xpak", "MD5": "x", "repository": "ignored",
    })
    assert record.slot == "0"
    assert record.use == {"a", "b", "c"}
    assert record.iuse == ("+a", "-b", "c")
    assert record.rdepend == "dev-libs/bar >=dev-libs/baz-2"
    assert record.build_id == 7
    assert record.repo == "gentoo"
    assert record.extra == (("MD5", "x"), ("PATH", "dev-libs/foo/foo-1.2-7.xpak"),
                            ("repository", "ignored"))
    assert PackageRecord.from_mapping({"repository": "x"}, cpv="a/b-1").repo == "x"
    with pytest.raises(InvalidInputError, match="BUILD_ID"):
        PackageRecord.from_mapping({"CPV": "a/b-1", "BUILD_ID": "seven"})
    with pytest.raises(InvalidInputError, match="without a CPV"):
        PackageRecord.from_mapping({"SLOT": "0"})
    with pytest.raises(InvalidInputError, match="says"):
        PackageRecord.from_mapping({"CPV": "a/b-1"}, cpv="a/b-2")


# -- Crafted graphs -----------------------------------------------------------------------------


def rec(cpv: str, rdepend: str = "", *, slot: str = "0", use: str = "", iuse: str = "",
        provides: str = "", requires: str = "", build_id: int | None = None) -> PackageRecord:
    return PackageRecord(cpv=cpv, slot=slot, use=frozenset(use.split()), iuse=tuple(iuse.split()),
                         rdepend=rdepend, provides=provides, requires=requires, build_id=build_id)


@dataclasses.dataclass
class Case:
    name: str
    request: list[str]
    candidates: list[PackageRecord]
    installed: list[PackageRecord] = dataclasses.field(default_factory=list)
    stacked: dict[str, list[PackageRecord]] = dataclasses.field(default_factory=dict)
    exclude: list[str] = dataclasses.field(default_factory=list)
    # Success: the CPVs (with "-bBUILD_ID" for multi-instance) and optionally more checks.
    expect: tuple[str, ...] | None = None
    why: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    satisfied: tuple[tuple[str, str, str, str], ...] | None = None
    # Failure: the error type and substrings of its message.
    error: type[ResolveError] | None = None
    message: tuple[str, ...] = ()

    def __str__(self) -> str:
        return self.name


def _cpvs(resolution: Resolution) -> tuple[str, ...]:
    return tuple(
        p.record.cpv + (f"-b{p.record.build_id}" if p.record.build_id is not None else "")
        for p in resolution.packages
    )


CASES = [
    Case(
        "deep chain",
        ["app-misc/a"],
        [rec("app-misc/a-1", "dev-libs/b"), rec("dev-libs/b-1", "dev-libs/c"),
         rec("dev-libs/c-1", ">=dev-libs/d-2"), rec("dev-libs/d-2"), rec("dev-libs/d-1"),
         rec("dev-libs/unrelated-1")],
        expect=("app-misc/a-1", "dev-libs/b-1", "dev-libs/c-1", "dev-libs/d-2"),
        why={
            "app-misc/a-1": ("requested: app-misc/a",),
            "dev-libs/b-1": ("dev-libs/b (RDEPEND of app-misc/a-1)",),
            "dev-libs/c-1": ("dev-libs/c (RDEPEND of dev-libs/b-1)",),
            "dev-libs/d-2": (">=dev-libs/d-2 (RDEPEND of dev-libs/c-1)",),
        },
    ),
    Case(
        "a dependency cycle",
        ["app-misc/a"],
        [rec("app-misc/a-1", "dev-libs/b"), rec("dev-libs/b-1", "app-misc/a")],
        expect=("app-misc/a-1", "dev-libs/b-1"),
        why={"app-misc/a-1": ("requested: app-misc/a", "app-misc/a (RDEPEND of dev-libs/b-1)")},
    ),
    Case(
        "version range",
        ["app-misc/a"],
        [rec("app-misc/a-1", ">=dev-libs/b-2 <dev-libs/b-4"), rec("dev-libs/b-1"),
         rec("dev-libs/b-2"), rec("dev-libs/b-3.1_rc2"), rec("dev-libs/b-4")],
        expect=("app-misc/a-1", "dev-libs/b-3.1_rc2"),
    ),
    Case(
        "~ and =* operators",
        ["app-misc/a"],
        [rec("app-misc/a-1", "~dev-libs/b-2 =dev-libs/c-1.2*"), rec("dev-libs/b-2-r3"),
         rec("dev-libs/b-2.1"), rec("dev-libs/c-1.2.9"), rec("dev-libs/c-1.20")],
        expect=("app-misc/a-1", "dev-libs/b-2-r3", "dev-libs/c-1.2.9"),
    ),
    Case(
        "highest version wins over input order and revision",
        ["dev-libs/b"],
        [rec("dev-libs/b-1.10"), rec("dev-libs/b-1.9-r9"), rec("dev-libs/b-1.10-r1")],
        expect=("dev-libs/b-1.10-r1",),
    ),
    Case(
        "slot",
        ["app-misc/a"],
        [rec("app-misc/a-1", "dev-libs/b:1"), rec("dev-libs/b-1.0", slot="1"),
         rec("dev-libs/b-1.5", slot="1"), rec("dev-libs/b-2", slot="2")],
        expect=("app-misc/a-1", "dev-libs/b-1.5"),
    ),
    Case(
        "sub-slot of a built slot-operator dependency",
        ["app-misc/a"],
        [rec("app-misc/a-1", "dev-libs/b:1/1.0="), rec("dev-libs/b-1.0", slot="1/1.0"),
         rec("dev-libs/b-1.5", slot="1/1.5")],
        expect=("app-misc/a-1", "dev-libs/b-1.0"),
    ),
    Case(
        "unbuilt := and :* take any slot",
        ["app-misc/a"],
        [rec("app-misc/a-1", "dev-libs/b:= dev-libs/c:*"), rec("dev-libs/b-1", slot="1"),
         rec("dev-libs/b-2", slot="2/2.1"), rec("dev-libs/c-3", slot="3")],
        expect=("app-misc/a-1", "dev-libs/b-2", "dev-libs/c-3"),
    ),
    Case(
        "two slots of one package",
        ["app-misc/a"],
        [rec("app-misc/a-1", "dev-libs/b:1 dev-libs/b:2"), rec("dev-libs/b-1", slot="1"),
         rec("dev-libs/b-2", slot="2")],
        expect=("app-misc/a-1", "dev-libs/b-1", "dev-libs/b-2"),
    ),
    Case(
        "sub-slot not available",
        ["app-misc/a"],
        [rec("app-misc/a-1", "dev-libs/b:0/5="), rec("dev-libs/b-6", slot="0/6")],
        error=UnsatisfiableAtomError,
        message=("dev-libs/b:0/5=", "RDEPEND of app-misc/a-1",
                 "dev-libs/b-6: SLOT 0/6 does not match :0/5"),
    ),
    Case(
        "any-of prefers the base",
        ["app-misc/a"],
        [rec("app-misc/a-1", "|| ( dev-libs/x dev-libs/y )"), rec("dev-libs/x-1"),
         rec("dev-libs/y-1")],
        installed=[rec("dev-libs/y-1")],
        expect=("app-misc/a-1",),
        satisfied=(("dev-libs/y", "dev-libs/y-1", "base", "app-misc/a-1"),),
    ),
    Case(
        "any-of prefers a stacked extension",
        ["app-misc/a"],
        [rec("app-misc/a-1", "|| ( dev-libs/x dev-libs/y )"), rec("dev-libs/x-1"),
         rec("dev-libs/y-1")],
        stacked={"y-ext": [rec("dev-libs/y-1")]},
        expect=("app-misc/a-1",),
        satisfied=(("dev-libs/y", "dev-libs/y-1", "stacked extension y-ext", "app-misc/a-1"),),
    ),
    Case(
        "any-of takes the first alternative otherwise",
        ["app-misc/a"],
        [rec("app-misc/a-1", "|| ( dev-libs/x dev-libs/y )"), rec("dev-libs/x-1"),
         rec("dev-libs/y-1")],
        expect=("app-misc/a-1", "dev-libs/x-1"),
        why={"dev-libs/x-1": ("dev-libs/x (RDEPEND of app-misc/a-1, from "
                              "|| ( dev-libs/x dev-libs/y ))",)},
    ),
    Case(
        "any-of skips an unavailable alternative",
        ["app-misc/a"],
        [rec("app-misc/a-1", "|| ( dev-libs/x >=dev-libs/y-2 dev-libs/z )"), rec("dev-libs/y-1"),
         rec("dev-libs/z-1")],
        expect=("app-misc/a-1", "dev-libs/z-1"),
    ),
    Case(
        "any-of prefers what the set already has",
        ["app-misc/a"],
        [rec("app-misc/a-1", "dev-libs/y || ( dev-libs/x dev-libs/y )"), rec("dev-libs/x-1"),
         rec("dev-libs/y-1")],
        expect=("app-misc/a-1", "dev-libs/y-1"),
    ),
    Case(
        "any-of with an all-of alternative",
        ["app-misc/a"],
        [rec("app-misc/a-1", "|| ( ( dev-libs/x dev-libs/missing ) ( dev-libs/y dev-libs/z ) )"),
         rec("dev-libs/x-1"), rec("dev-libs/y-1"), rec("dev-libs/z-1")],
        expect=("app-misc/a-1", "dev-libs/y-1", "dev-libs/z-1"),
    ),
    Case(
        "any-of falls back when an alternative's dependencies fail",
        ["app-misc/a"],
        [rec("app-misc/a-1", "|| ( dev-libs/x dev-libs/y )"),
         rec("dev-libs/x-1", "|| ( dev-libs/missing dev-libs/gone )"),
         rec("dev-libs/y-1", "dev-libs/w"), rec("dev-libs/w-1")],
        expect=("app-misc/a-1", "dev-libs/w-1", "dev-libs/y-1"),
    ),
    Case(
        "any-of falls back when an alternative would replace a base package",
        ["app-misc/a"],
        [rec("app-misc/a-1", "|| ( dev-libs/x dev-libs/y )"),
         rec("dev-libs/x-1", ">=sys-libs/glibc-3"), rec("sys-libs/glibc-3", slot="2.2"),
         rec("dev-libs/y-1")],
        installed=[rec("sys-libs/glibc-2", slot="2.2")],
        expect=("app-misc/a-1", "dev-libs/y-1"),
    ),
    Case(
        "any-of falls back when an alternative causes a slot conflict",
        ["app-misc/a"],
        [rec("app-misc/a-1", "=dev-libs/b-1 || ( dev-libs/x dev-libs/y )"),
         rec("dev-libs/x-1", "=dev-libs/b-2"), rec("dev-libs/y-1"),
         rec("dev-libs/b-1"), rec("dev-libs/b-2")],
        expect=("app-misc/a-1", "dev-libs/b-1", "dev-libs/y-1"),
    ),
    Case(
        "any-of whose alternatives all have failing dependencies",
        ["app-misc/a"],
        [rec("app-misc/a-1", "|| ( dev-libs/x dev-libs/y )"),
         rec("dev-libs/x-1", "dev-libs/missing"), rec("dev-libs/y-1", ">=dev-libs/w-2"),
         rec("dev-libs/w-1")],
        error=UnsatisfiableAtomError,
        message=("cannot satisfy any alternative of || ( dev-libs/x dev-libs/y ) "
                 "(RDEPEND of app-misc/a-1)",
                 "dev-libs/x: its dependencies fail: cannot satisfy dev-libs/missing "
                 "(RDEPEND of dev-libs/x-1",
                 "dev-libs/y: its dependencies fail: cannot satisfy >=dev-libs/w-2",
                 "dev-libs/w-1: version 1 does not satisfy >=dev-libs/w-2"),
    ),
    Case(
        "any-of with no alternative available",
        ["app-misc/a"],
        [rec("app-misc/a-1", "|| ( dev-libs/x >=dev-libs/y-2 )"), rec("dev-libs/y-1")],
        error=UnsatisfiableAtomError,
        message=("|| ( dev-libs/x >=dev-libs/y-2 )", "RDEPEND of app-misc/a-1",
                 "no binary package of dev-libs/x",
                 "dev-libs/y-1: version 1 does not satisfy >=dev-libs/y-2"),
    ),
    Case(
        "USE-conditional dependencies of the package follow its USE",
        ["app-misc/a", "app-misc/b"],
        [rec("app-misc/a-1", "ssl? ( dev-libs/openssl ) !ssl? ( dev-libs/nossl )",
             use="ssl", iuse="ssl"),
         rec("app-misc/b-1", "ssl? ( dev-libs/openssl2 )", iuse="ssl"),
         rec("dev-libs/openssl-3"), rec("dev-libs/nossl-1"), rec("dev-libs/openssl2-1")],
        expect=("app-misc/a-1", "app-misc/b-1", "dev-libs/openssl-3"),
    ),
    Case(
        "USE dependency satisfied",
        ["app-misc/a"],
        [rec("app-misc/a-1", "dev-libs/b[foo,-bar]"),
         rec("dev-libs/b-2", use="foo", iuse="foo bar")],
        expect=("app-misc/a-1", "dev-libs/b-2"),
    ),
    Case(
        "USE dependency picks an older build that has the flag",
        ["app-misc/a"],
        [rec("app-misc/a-1", "dev-libs/b[foo]"), rec("dev-libs/b-1", use="foo", iuse="foo"),
         rec("dev-libs/b-2", iuse="foo")],
        expect=("app-misc/a-1", "dev-libs/b-1"),
    ),
    Case(
        "USE dependency violated",
        ["app-misc/a"],
        [rec("app-misc/a-1", "dev-libs/b[foo,-bar]"),
         rec("dev-libs/b-2", use="bar", iuse="foo bar")],
        error=UnsatisfiableAtomError,
        message=("dev-libs/b[foo,-bar] (RDEPEND of app-misc/a-1)",
                 "USE dependency [foo]: built with USE=-foo",
                 "USE dependency [-bar]: built with USE=bar"),
    ),
    Case(
        "USE dependency on a flag outside IUSE, with and without a default",
        ["app-misc/a", "app-misc/c"],
        [rec("app-misc/a-1", "dev-libs/b[foo(+),-bar(-)]"), rec("app-misc/c-1", "dev-libs/b[baz]"),
         rec("dev-libs/b-1")],
        error=UnsatisfiableAtomError,
        message=("dev-libs/b[baz]", "baz is not in its IUSE"),
    ),
    Case(
        "conditional USE dependency [foo?] with the parent's flag on",
        ["app-misc/a"],
        [rec("app-misc/a-1", "dev-libs/b[foo?]", use="foo", iuse="foo"),
         rec("dev-libs/b-1", use="foo", iuse="foo"), rec("dev-libs/b-2", iuse="foo")],
        expect=("app-misc/a-1", "dev-libs/b-1"),
        # use_reduce evaluates the conditional with the parent's USE.
        why={"dev-libs/b-1": ("dev-libs/b[foo] (RDEPEND of app-misc/a-1)",)},
    ),
    Case(
        "conditional USE dependency [foo?] with the parent's flag off",
        ["app-misc/a"],
        [rec("app-misc/a-1", "dev-libs/b[foo?]", iuse="foo"),
         rec("dev-libs/b-1", use="foo", iuse="foo"), rec("dev-libs/b-2", iuse="foo")],
        expect=("app-misc/a-1", "dev-libs/b-2"),
    ),
    Case(
        "conditional USE dependency [!foo?] and [foo=]",
        ["app-misc/a"],
        [rec("app-misc/a-1", "dev-libs/b[!foo?] dev-libs/c[foo=]", iuse="foo"),
         rec("dev-libs/b-1", iuse="foo"), rec("dev-libs/b-2", use="foo", iuse="foo"),
         rec("dev-libs/c-1", iuse="foo"), rec("dev-libs/c-2", use="foo", iuse="foo")],
        expect=("app-misc/a-1", "dev-libs/b-1", "dev-libs/c-1"),
    ),
    Case(
        "conditional USE dependency violated names the evaluated atom",
        ["app-misc/a"],
        [rec("app-misc/a-1", "dev-libs/b[foo=]", use="foo", iuse="foo"),
         rec("dev-libs/b-1", iuse="foo")],
        error=UnsatisfiableAtomError,
        message=("dev-libs/b[foo=]", "with app-misc/a-1's USE: dev-libs/b[foo]",
                 "USE dependency [foo]: built with USE=-foo"),
    ),
    Case(
        "blocker against the base",
        ["app-misc/a"],
        [rec("app-misc/a-1", "!dev-libs/z")],
        installed=[rec("dev-libs/z-1")],
        error=BlockerError,
        message=("app-misc/a-1 (to be installed) has the blocker !dev-libs/z against dev-libs/z-1 "
                 "(base image)",),
    ),
    Case(
        "blocker against a stacked extension",
        ["app-misc/a"],
        [rec("app-misc/a-1", "!!dev-libs/z")],
        stacked={"zed": [rec("dev-libs/z-1")]},
        error=BlockerError,
        message=("hard blocker !!dev-libs/z against dev-libs/z-1 (stacked extension zed)",),
    ),
    Case(
        "blocker within the set",
        ["app-misc/a", "dev-libs/z"],
        [rec("app-misc/a-1", "!<dev-libs/z-2"), rec("dev-libs/z-1")],
        error=BlockerError,
        message=("!<dev-libs/z-2 against dev-libs/z-1 (to be installed)",),
    ),
    Case(
        "blocker that matches nothing, and a package does not block itself",
        ["app-misc/a", "dev-libs/z:0"],
        [rec("app-misc/a-1", "!<dev-libs/z-2 !app-misc/a"), rec("dev-libs/z-2")],
        installed=[rec("dev-libs/z-3", slot="1")],
        expect=("app-misc/a-1", "dev-libs/z-2"),
    ),
    Case(
        "blocker with a conditional USE dependency",
        ["app-misc/a"],
        # With a-1's foo off, !dev-libs/z[foo=] is !dev-libs/z[-foo]: z-1 (built with foo) is fine.
        [rec("app-misc/a-1", "!dev-libs/z[foo=]", iuse="foo")],
        installed=[rec("dev-libs/z-1", use="foo", iuse="foo")],
        expect=("app-misc/a-1",),
    ),
    Case(
        "a base package's blocker against the set",
        ["app-misc/a"],
        [rec("app-misc/a-1")],
        installed=[rec("sys-apps/old-1", "!app-misc/a")],
        error=BlockerError,
        message=("sys-apps/old-1 (base image) has the blocker !app-misc/a against app-misc/a-1 "
                 "(to be installed)",),
    ),
    Case(
        "multi-instance: the highest BUILD_ID of the best version",
        ["app-misc/a", "dev-libs/b"],
        [rec("app-misc/a-1", build_id=1), rec("app-misc/a-1", build_id=3),
         rec("app-misc/a-1", build_id=2), rec("dev-libs/b-1", build_id=9),
         rec("dev-libs/b-2", build_id=1)],
        expect=("app-misc/a-1-b3", "dev-libs/b-2-b1"),
    ),
    Case(
        "exclude drops candidates",
        ["app-misc/a"],
        [rec("app-misc/a-1", "dev-libs/b"), rec("dev-libs/b-1"), rec("dev-libs/b-2")],
        exclude=[">=dev-libs/b-2"],
        expect=("app-misc/a-1", "dev-libs/b-1"),
    ),
    Case(
        "exclude of a needed package",
        ["app-misc/a"],
        [rec("app-misc/a-1", "dev-libs/b"), rec("dev-libs/b-1"), rec("dev-libs/b-2")],
        exclude=["dev-libs/*"],
        error=UnsatisfiableAtomError,
        message=("dev-libs/b (RDEPEND of app-misc/a-1)", "dev-libs/b-2: excluded by `dev-libs/*`",
                 "dev-libs/b-1: excluded by `dev-libs/*`", "drop `dev-libs/*` from exclude"),
    ),
    Case(
        "exclude of a requested package",
        ["app-misc/a"],
        [rec("app-misc/a-1")],
        exclude=["app-misc/a"],
        error=UnsatisfiableAtomError,
        message=("cannot satisfy app-misc/a (requested)", "excluded by `app-misc/a`"),
    ),
    Case(
        "exclude does not matter for what the base has",
        ["app-misc/a"],
        [rec("app-misc/a-1", "dev-libs/b"), rec("dev-libs/b-1")],
        installed=[rec("dev-libs/b-1")],
        exclude=["dev-libs/b"],
        expect=("app-misc/a-1",),
    ),
    Case(
        "a stacked extension's package is not pulled again",
        ["app-misc/a"],
        [rec("app-misc/a-1", "dev-libs/b dev-libs/c"), rec("dev-libs/b-1", "dev-libs/d"),
         rec("dev-libs/c-1"), rec("dev-libs/d-1")],
        installed=[rec("dev-libs/c-1")],
        stacked={"zz-b": [rec("dev-libs/b-1", "dev-libs/d")], "aa-other": [rec("dev-libs/q-1")]},
        expect=("app-misc/a-1",),
        satisfied=(
            ("dev-libs/b", "dev-libs/b-1", "stacked extension zz-b", "app-misc/a-1"),
            ("dev-libs/c", "dev-libs/c-1", "base", "app-misc/a-1"),
        ),
    ),
    Case(
        "requested packages the base or a stacked extension has",
        ["app-misc/a", "dev-libs/b", "dev-libs/c"],
        [rec("app-misc/a-1"), rec("dev-libs/b-1"), rec("dev-libs/c-1")],
        installed=[rec("dev-libs/b-1")],
        stacked={"c": [rec("dev-libs/c-1")]},
        expect=("app-misc/a-1",),
        satisfied=(("dev-libs/b", "dev-libs/b-1", "base", "requested"),
                   ("dev-libs/c", "dev-libs/c-1", "stacked extension c", "requested")),
    ),
    Case(
        "a requested package also pulled in as a dependency",
        ["app-misc/a", "dev-libs/b"],
        [rec("app-misc/a-1", "dev-libs/b"), rec("dev-libs/b-1")],
        expect=("app-misc/a-1", "dev-libs/b-1"),
        why={"dev-libs/b-1": ("requested: dev-libs/b", "dev-libs/b (RDEPEND of app-misc/a-1)")},
    ),
    Case(
        "slot conflict",
        ["app-misc/a", "app-misc/c"],
        [rec("app-misc/a-1", "=dev-libs/b-1"), rec("app-misc/c-1", "=dev-libs/b-2"),
         rec("dev-libs/b-1"), rec("dev-libs/b-2")],
        error=SlotConflictError,
        message=("slot conflict in dev-libs/b:0",
                 "dev-libs/b-1, pulled in by: =dev-libs/b-1 (RDEPEND of app-misc/a-1)",
                 "dev-libs/b-2, pulled in by: =dev-libs/b-2 (RDEPEND of app-misc/c-1)"),
    ),
    Case(
        "a slot conflict one version settles",
        ["app-misc/a", "app-misc/c"],
        [rec("app-misc/a-1", "dev-libs/b"), rec("app-misc/c-1", "<dev-libs/b-3"),
         rec("dev-libs/b-1"), rec("dev-libs/b-2"), rec("dev-libs/b-3")],
        expect=("app-misc/a-1", "app-misc/c-1", "dev-libs/b-2"),
        why={"dev-libs/b-2": ("<dev-libs/b-3 (RDEPEND of app-misc/c-1)",
                              "dev-libs/b (RDEPEND of app-misc/a-1)")},
    ),
    Case(
        "an extension cannot replace a base package",
        ["app-misc/a"],
        [rec("app-misc/a-1", ">=sys-libs/glibc-2.37"), rec("sys-libs/glibc-2.37", slot="2.2")],
        installed=[rec("sys-libs/glibc-2.36-r7", slot="2.2")],
        error=SlotConflictError,
        message=(">=sys-libs/glibc-2.37 (RDEPEND of app-misc/a-1) needs sys-libs/glibc-2.37",
                 "the base image has sys-libs/glibc-2.36-r7 (SLOT 2.2)",
                 "cannot replace a package of the base image"),
    ),
    Case(
        "a base package in one slot, a new slot from the binhost",
        ["app-misc/a"],
        [rec("app-misc/a-1", "dev-lang/python:3.12"), rec("dev-lang/python-3.12.1", slot="3.12")],
        installed=[rec("dev-lang/python-3.11.7", slot="3.11")],
        expect=("app-misc/a-1", "dev-lang/python-3.12.1"),
    ),
    Case(
        "unsatisfiable: every candidate and why",
        ["app-misc/a"],
        [rec("app-misc/a-1", ">=dev-libs/b-2:1[foo]"), rec("dev-libs/b-1", slot="1", use="foo",
                                                            iuse="foo"),
         rec("dev-libs/b-2", slot="2", use="foo", iuse="foo"),
         rec("dev-libs/b-3", slot="1", iuse="foo"), rec("dev-libs/b-4", slot="1", use="foo",
                                                         iuse="foo")],
        installed=[rec("dev-libs/b-0.5", slot="0")],
        exclude=["=dev-libs/b-4"],
        error=UnsatisfiableAtomError,
        message=("cannot satisfy >=dev-libs/b-2:1[foo] (RDEPEND of app-misc/a-1)",
                 "dev-libs/b-1: version 1 does not satisfy >=dev-libs/b-2",
                 "dev-libs/b-2: SLOT 2 does not match :1",
                 "dev-libs/b-3: USE dependency [foo]: built with USE=-foo",
                 "dev-libs/b-4: excluded by `=dev-libs/b-4`",
                 "dev-libs/b-0.5 in the base image: version 0.5 does not satisfy >=dev-libs/b-2; "
                 "SLOT 0 does not match :1",
                 "drop `=dev-libs/b-4` from exclude"),
    ),
    Case(
        "a missing soname names the candidate that would provide it",
        ["app-misc/a"],
        [rec("app-misc/a-1", requires="x86_64: libz.so.1 liba.so.1 x86_32: libc.so.6",
             provides="x86_64: liba.so.1"),
         rec("sys-libs/zlib-1.3", provides="x86_64: libz.so.1 x86_32: libz.so.1")],
        installed=[rec("sys-libs/glibc-2.36", provides="x86_64: libc.so.6")],
        error=MissingSonameError,
        message=("app-misc/a-1 requires libz.so.1 (x86_64); the binhost's sys-libs/zlib-1.3 "
                 "provides it but nothing pulls it in",
                 "app-misc/a-1 requires libc.so.6 (x86_32)"),
    ),
    Case(
        "sonames from the set, the base and stacked extensions",
        ["app-misc/a"],
        [rec("app-misc/a-1", "sys-libs/zlib",
             requires="x86_64: libz.so.1 libc.so.6 libstacked.so.2"),
         rec("sys-libs/zlib-1.3", provides="x86_64: libz.so.1", requires="x86_64: libc.so.6")],
        installed=[rec("sys-libs/glibc-2.36", provides="x86_64: libc.so.6")],
        stacked={"s": [rec("dev-libs/stacked-2", provides="x86_64: libstacked.so.2")]},
        expect=("app-misc/a-1", "sys-libs/zlib-1.3"),
    ),
]


def _run(case: Case, shuffle: random.Random | None = None) -> Resolution:
    def order(items: list[Any]) -> list[Any]:
        items = list(items)
        if shuffle is not None:
            shuffle.shuffle(items)
        return items

    return resolve(
        order(case.request),
        order(case.candidates),
        installed=order(case.installed),
        stacked={k: order(v) for k, v in order(list(case.stacked.items()))},
        exclude=order(case.exclude),
    )


@pytest.mark.parametrize("case", CASES, ids=str)
def test_crafted(case: Case) -> None:
    if case.error is not None:
        with pytest.raises(case.error) as e:
            _run(case)
        for part in case.message:
            assert part in str(e.value), f"{part!r} not in:\n{e.value}"
        return
    resolution = _run(case)
    assert _cpvs(resolution) == case.expect
    whys = {p.record.cpv: p.why for p in resolution.packages}
    for cpv, why in case.why.items():
        assert whys[cpv] == why
    if case.satisfied is not None:
        assert resolution.satisfied == tuple(SatisfiedElsewhere(*s) for s in case.satisfied)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_crafted_is_deterministic_under_shuffled_inputs(case: Case) -> None:
    def outcome(shuffle: random.Random | None) -> Any:
        try:
            return _run(case, shuffle)
        except ResolveError as e:
            return type(e), str(e)

    reference = outcome(None)
    for seed in range(8):
        assert outcome(random.Random(seed)) == reference


def test_bad_requests_and_metadata() -> None:
    candidates = [rec("app-misc/jq-1.6")]
    with pytest.raises(InvalidInputError, match=r"'jq'.*CATEGORY/PN"):
        resolve(["jq"], candidates)
    with pytest.raises(InvalidInputError, match="blocker"):
        resolve(["!app-misc/jq"], candidates)
    with pytest.raises(InvalidInputError, match="conditional"):
        resolve(["app-misc/jq[foo?]"], candidates)
    with pytest.raises(InvalidInputError, match="nothing requested"):
        resolve([], candidates)
    with pytest.raises(InvalidInputError, match="exclude 'jq'"):
        resolve(["app-misc/jq"], candidates, exclude=["jq"])
    with pytest.raises(InvalidInputError, match=r"app-misc/a-1 \(binhost\): cannot parse RDEPEND"):
        resolve(["app-misc/a"], [rec("app-misc/a-1", "|| ( dev-libs/b")])
    with pytest.raises(InvalidInputError, match=r"'notacpv' \(base image\)"):
        resolve(["app-misc/jq"], candidates, installed=[rec("notacpv")])
    with pytest.raises(InvalidInputError, match="cannot parse REQUIRES"):
        resolve(["app-misc/a"], [rec("app-misc/a-1", requires="libc.so.6")])
    with pytest.raises(InvalidInputError, match="invalid SLOT"):
        resolve(["app-misc/a"], [rec("app-misc/a-1", slot="0/1/2")])


def test_requested_atoms_with_versions_and_slots() -> None:
    candidates = [rec("dev-libs/foo-1", slot="2"), rec("dev-libs/foo-2", slot="3"),
                  rec("dev-libs/foo-2.5", slot="3"), rec("app-misc/jq-1.6-r3"),
                  rec("app-misc/jq-1.7")]
    assert resolve([">=dev-libs/foo-2:3"], candidates).cpvs == ("dev-libs/foo-2.5",)
    assert resolve(["=app-misc/jq-1.6-r3"], candidates).cpvs == ("app-misc/jq-1.6-r3",)
    assert resolve("app-misc/jq", candidates).cpvs == ("app-misc/jq-1.7",)
    resolution = resolve(["dev-libs/foo:2"], candidates)
    assert resolution.packages == (
        ResolvedPackage(record=candidates[0], why=("requested: dev-libs/foo:2",)),
    )
