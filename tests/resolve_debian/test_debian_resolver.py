"""The Debian resolver on crafted package graphs: one scenario per rule, then the API's edges."""

from __future__ import annotations

import random
from typing import Any, Dict, List

import pytest

from pants_sysext.resolve.debian_resolver import (
    ConflictError,
    DebRecord,
    DebResolution,
    DebResolveError,
    InvalidInputError,
    ResolvedDeb,
    SatisfiedElsewhere,
    UnsatisfiableRelationError,
    parse_dpkg_status,
    parse_packages_file,
    resolve,
)

from .scenarios import SCENARIOS, S


def _records(stanzas: List[Dict[str, str]]) -> List[DebRecord]:
    return [DebRecord.from_mapping(s) for s in stanzas]


def _run(scenario: Dict[str, Any], rng: random.Random | None = None) -> DebResolution:
    candidates = _records(scenario["candidates"])
    installed = _records(scenario.get("installed", []))
    stacked = {name: _records(stanzas) for name, stanzas in scenario.get("stacked", {}).items()}
    requested = list(scenario["requested"])
    exclude = list(scenario.get("exclude", []))
    if rng is not None:
        for items in (candidates, installed, requested, exclude, *stacked.values()):
            rng.shuffle(items)
        names = list(stacked)
        rng.shuffle(names)
        stacked = {name: stacked[name] for name in names}
    return resolve(requested, candidates, installed=installed, stacked=stacked,
                   exclude=exclude)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenario(name: str) -> None:
    scenario = SCENARIOS[name]
    if "error" in scenario:
        error_class, fragments = scenario["error"]
        with pytest.raises(error_class) as e:
            _run(scenario)
        for fragment in fragments:
            assert fragment in str(e.value), f"{fragment!r} not in:\n{e.value}"
        return
    resolution = _run(scenario)
    assert {p.record.package: p.record.version for p in resolution.packages} \
        == scenario["expect"]
    assert list(resolution.names) == sorted(scenario["expect"])
    if "satisfied" in scenario:
        assert [(s.relation, s.by, s.source, s.needed_by) for s in resolution.satisfied] \
            == scenario["satisfied"]


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenario_is_deterministic_under_shuffling(name: str) -> None:
    scenario = SCENARIOS[name]

    def outcome(rng: random.Random | None) -> Any:
        try:
            return _run(scenario, rng)
        except DebResolveError as e:
            return type(e), str(e)

    expected = outcome(None)
    for seed in range(8):
        assert outcome(random.Random(seed)) == expected, f"seed {seed}"


# -- A jq-like graph in detail ----------------------------------------------------------------

JQ_ARCHIVE = [
    S("jq", "1.6-2.1+deb12u2", Depends="libjq1 (= 1.6-2.1+deb12u2), libc6 (>= 2.34)",
      Multi_Arch="foreign", Filename="pool/main/j/jq/jq_1.6-2.1+deb12u2_amd64.deb",
      Size="63984", SHA256="f2" * 32),
    S("jq", "1.6-2.1+deb12u3", Depends="libjq1 (= 1.6-2.1+deb12u3), libc6 (>= 2.34)",
      Multi_Arch="foreign", Filename="pool/updates/main/j/jq/jq_1.6-2.1+deb12u3_amd64.deb",
      Size="64432", SHA256="c2" * 32),
    S("libjq1", "1.6-2.1+deb12u2", Depends="libc6 (>= 2.36), libonig5 (>= 6.8.1)",
      Multi_Arch="same"),
    S("libjq1", "1.6-2.1+deb12u3", Depends="libc6 (>= 2.36), libonig5 (>= 6.8.1)",
      Multi_Arch="same"),
    S("libonig5", "6.9.8-1", Depends="libc6 (>= 2.14)", Multi_Arch="same"),
    S("libc6", "2.36-9+deb12u14", Multi_Arch="same"),
]
JQ_BASE = [S("libc6", "2.36-9+deb12u4", Multi_Arch="same", Essential="no"),
           S("libgcc-s1", "12.2.0-14", Provides="libgcc1 (= 1:12.2.0-14)")]


def test_jq_on_a_base_with_libc6() -> None:
    resolution = resolve(["jq"], _records(JQ_ARCHIVE), installed=_records(JQ_BASE))
    assert [(p.record.package, p.record.version) for p in resolution.packages] == [
        ("jq", "1.6-2.1+deb12u3"), ("libjq1", "1.6-2.1+deb12u3"), ("libonig5", "6.9.8-1"),
    ]
    jq, libjq1, libonig5 = resolution.packages
    assert jq.why == ("requested: jq",)
    assert libjq1.why == ("libjq1 (= 1.6-2.1+deb12u3) (Depends of jq 1.6-2.1+deb12u3)",)
    assert libonig5.why == ("libonig5 (>= 6.8.1) (Depends of libjq1 1.6-2.1+deb12u3)",)
    assert resolution.satisfied == (
        SatisfiedElsewhere("libc6 (>= 2.34)", "libc6 2.36-9+deb12u4", "base",
                           "jq 1.6-2.1+deb12u3"),
        SatisfiedElsewhere("libc6 (>= 2.36)", "libc6 2.36-9+deb12u4", "base",
                           "libjq1 1.6-2.1+deb12u3"),
        SatisfiedElsewhere("libc6 (>= 2.14)", "libc6 2.36-9+deb12u4", "base",
                           "libonig5 6.9.8-1"),
    )
    # The archive's own fields travel with the records.
    assert jq.record.get("Filename") == "pool/updates/main/j/jq/jq_1.6-2.1+deb12u3_amd64.deb"
    assert jq.record.get("sha256") == "c2" * 32
    assert jq.record.get("Size") == "64432"
    assert jq.record.multi_arch == "foreign"
    assert libjq1.record.multi_arch == "same"


def test_jq_pinned_to_the_older_build() -> None:
    resolution = resolve(["jq=1.6-2.1+deb12u2"], _records(JQ_ARCHIVE),
                         installed=_records(JQ_BASE))
    assert [(p.record.package, p.record.version) for p in resolution.packages] == [
        ("jq", "1.6-2.1+deb12u2"), ("libjq1", "1.6-2.1+deb12u2"), ("libonig5", "6.9.8-1"),
    ]
    assert resolution.packages[0].why == ("requested: jq=1.6-2.1+deb12u2",)


def test_jq_without_a_base_needs_libc6_from_the_archive() -> None:
    resolution = resolve("jq", _records(JQ_ARCHIVE))
    assert resolution.names == ("jq", "libc6", "libjq1", "libonig5")
    assert resolution.satisfied == ()
    libc6 = resolution.packages[1]
    assert libc6.why == (
        "libc6 (>= 2.14) (Depends of libonig5 6.9.8-1)",
        "libc6 (>= 2.34) (Depends of jq 1.6-2.1+deb12u3)",
        "libc6 (>= 2.36) (Depends of libjq1 1.6-2.1+deb12u3)",
    )


def test_jq_with_libonig5_excluded() -> None:
    with pytest.raises(UnsatisfiableRelationError) as e:
        resolve(["jq"], _records(JQ_ARCHIVE), installed=_records(JQ_BASE),
                exclude=["libonig*"])
    assert e.value.relation == "libonig5 (>= 6.8.1)"
    assert e.value.needed_by == "libjq1 1.6-2.1+deb12u3"
    assert "libonig5 6.9.8-1 (amd64): excluded by `libonig*`" in str(e.value)


def test_jq_on_another_architecture() -> None:
    archive = [dict(s, Architecture="arm64") for s in JQ_ARCHIVE]
    base = [dict(s, Architecture="arm64") for s in JQ_BASE]
    resolution = resolve(["jq"], _records(archive), installed=_records(base),
                         architecture="arm64")
    assert resolution.names == ("jq", "libjq1", "libonig5")
    with pytest.raises(UnsatisfiableRelationError, match="architecture arm64 is neither "
                                                         "amd64 nor all"):
        resolve(["jq"], _records(archive), installed=_records(base))


def test_a_deep_dependency_chain() -> None:
    depth = 3000  # deeper than Python's recursion limit
    archive = [DebRecord(f"p{i}", "1", "amd64", depends=f"p{i + 1}" if i < depth else "")
               for i in range(depth + 1)]
    resolution = resolve(["p0"], archive)
    assert len(resolution.packages) == depth + 1


# -- Errors -----------------------------------------------------------------------------------


def test_conflict_error_lists_every_conflict() -> None:
    archive = _records([S("app", "1", Depends="a, b"), S("a", "1", Conflicts="old"),
                        S("b", "1", Breaks="old (<< 2)")])
    with pytest.raises(ConflictError) as e:
        resolve(["app"], archive, installed=_records([S("old", "1")]))
    assert e.value.conflicts == (
        ("a 1", "Conflicts", "old", "old 1"),
        ("b 1", "Breaks", "old (<< 2)", "old 1"),
    )
    assert "An extension cannot remove or replace a package of the base" in str(e.value)


def test_unsatisfiable_request() -> None:
    with pytest.raises(UnsatisfiableRelationError) as e:
        resolve(["nosuch"], _records([S("a", "1")]))
    assert e.value.relation == "nosuch"
    assert e.value.needed_by == "requested"
    assert "the archive has no package nosuch and none provides it (1 candidates in all)" \
        in str(e.value)


@pytest.mark.parametrize("requested, fragment", [
    ([], "nothing requested"),
    (["a | b"], "give one package"),
    (["a, b"], "give one package"),
    (["a (>= "], "cannot parse"),
    (["a (=> 1)"], "invalid version relation '=>'"),
    (["a (>= 1 2)"], "cannot parse"),
    (["a=not valid"], "cannot parse"),
    (["a (>= x:1)"], "is not a valid Debian version"),
    (["Foo"], "cannot parse"),
    (["a [amd64]"], "architecture restrictions"),
])
def test_invalid_requests(requested: List[str], fragment: str) -> None:
    with pytest.raises(InvalidInputError, match=None) as e:
        resolve(requested, _records([S("a", "1")]))
    assert fragment in str(e.value)


@pytest.mark.parametrize("fields, fragment", [
    ({"Version": "1", "Architecture": "amd64"}, "without a Package field"),
    ({"Package": "a", "Architecture": "amd64"}, "has no Version"),
    ({"Package": "a", "Version": "1"}, "has no Architecture"),
    ({"Package": "A", "Version": "1", "Architecture": "amd64"}, "not a valid package name"),
    ({"Package": "a", "Version": "1 2", "Architecture": "amd64"}, "not a valid Debian version"),
    ({"Package": "a", "Version": "1", "Architecture": "amd64", "Multi-Arch": "sometimes"},
     "Multi-Arch must be"),
    ({"Package": "a", "Version": "1", "Architecture": "amd64", "Essential": "maybe"},
     "Essential must be yes or no"),
    ({"Package": "a", "Version": "1", "Architecture": "amd64", "package": "b"}, "twice"),
])
def test_invalid_records(fields: Dict[str, str], fragment: str) -> None:
    with pytest.raises(InvalidInputError) as e:
        DebRecord.from_mapping(fields)
    assert fragment in str(e.value)


@pytest.mark.parametrize("fields, fragment", [
    ({"Depends": "b (>= 1"}, "cannot parse"),
    ({"Depends": "b (>= 1) [amd64]"}, "architecture restrictions"),
    ({"Conflicts": "b | c"}, "alternatives (|) are not allowed there"),
    ({"Provides": "b (>= 1)"}, "each entry must be a plain name or `name (= version)`"),
    ({"Provides": "b:any"}, "each entry must be a plain name"),
    ({"Breaks": "b (<< !)"}, "cannot parse"),
])
def test_invalid_relations(fields: Dict[str, str], fragment: str) -> None:
    record = DebRecord.from_mapping(S("a", "1", **{k.replace("-", "_"): v
                                                    for k, v in fields.items()}))
    with pytest.raises(InvalidInputError) as e:
        resolve(["a"], [record])
    assert fragment in str(e.value)
    assert "a 1 (archive)" in str(e.value)


@pytest.mark.parametrize("exclude", ["foo bar", "foo (=> 1)", "foo=", "Foo", "foo (>= a b)"])
def test_invalid_exclude(exclude: str) -> None:
    with pytest.raises(InvalidInputError, match="exclude"):
        resolve(["a"], _records([S("a", "1")]), exclude=[exclude])


def test_invalid_architecture() -> None:
    with pytest.raises(InvalidInputError, match="not a Debian architecture"):
        resolve(["a"], _records([S("a", "1")]), architecture="all")


def test_errors_are_resolve_errors() -> None:
    assert issubclass(InvalidInputError, ValueError)
    for cls in (InvalidInputError, UnsatisfiableRelationError, ConflictError):
        assert issubclass(cls, DebResolveError)


# -- Records ----------------------------------------------------------------------------------


def test_from_mapping() -> None:
    record = DebRecord.from_mapping({
        "package": "foo", "VERSION": "1:2.0-1", "Architecture": "all",
        "Depends": "bar,\n baz (>= 1)", "Pre-Depends": "dpkg (>= 1.15)",
        "Provides": "virt (= 1)", "Conflicts": "old", "Breaks": "older (<< 1)",
        "Multi-Arch": "Foreign", "Essential": "yes", "Replaces": "old",
        "Filename": "pool/f/foo.deb", "Size": "42",
    })
    assert record == DebRecord(
        package="foo", version="1:2.0-1", architecture="all", depends="bar, baz (>= 1)",
        pre_depends="dpkg (>= 1.15)", provides="virt (= 1)", conflicts="old",
        breaks="older (<< 1)", multi_arch="foreign", essential=True,
        extra=(("Filename", "pool/f/foo.deb"), ("Replaces", "old"), ("Size", "42")),
    )
    assert record.get("filename") == "pool/f/foo.deb"
    assert record.get("MD5sum") is None
    assert DebRecord.from_mapping(S("a", "1", Multi_Arch="no")).multi_arch == ""


PACKAGES_TEXT = """\
Package: jq
Version: 1.6-2.1+deb12u3
Architecture: amd64
Depends: libjq1 (= 1.6-2.1+deb12u3), libc6 (>= 2.34)
Description: lightweight and flexible command-line JSON processor
 jq is like sed for JSON data.
Multi-Arch: foreign
Filename: pool/updates/main/j/jq/jq_1.6-2.1+deb12u3_amd64.deb
Size: 64432

Package: libjq1
Version: 1.6-2.1+deb12u3
Architecture: amd64
Multi-Arch: same
"""

STATUS_TEXT = """\
Package: libc6
Status: install ok installed
Architecture: amd64
Multi-Arch: same
Version: 2.36-9

Package: removed-tool
Status: deinstall ok config-files
Architecture: amd64
Version: 1

Package: held
Status: hold ok installed
Architecture: all
Version: 3

Package: half
Status: install reinstreq half-installed
Architecture: amd64
Version: 1
"""


def test_parse_packages_file_and_dpkg_status() -> None:
    archive = parse_packages_file(PACKAGES_TEXT.encode())
    assert [(r.package, r.version) for r in archive] == [
        ("jq", "1.6-2.1+deb12u3"), ("libjq1", "1.6-2.1+deb12u3"),
    ]
    assert archive[0].get("Description") == (
        "lightweight and flexible command-line JSON processor\n jq is like sed for JSON data."
    )
    base = parse_dpkg_status(STATUS_TEXT)
    assert [(r.package, r.version) for r in base] == [("libc6", "2.36-9"), ("held", "3")]
    assert base[0].get("Status") == "install ok installed"
    resolution = resolve(["jq"], archive, installed=base)
    assert resolution.names == ("jq", "libjq1")
    assert resolution.satisfied == (
        SatisfiedElsewhere("libc6 (>= 2.34)", "libc6 2.36-9", "base", "jq 1.6-2.1+deb12u3"),
    )


def test_result_types() -> None:
    resolution = resolve(["a"], _records([S("a", "1")]))
    assert resolution == DebResolution(
        packages=(ResolvedDeb(DebRecord("a", "1", "amd64"), ("requested: a",)),),
        satisfied=(),
    )
