"""The resolver against Portage's own: emerge --pretend --usepkgonly in a ResolverPlayground.

Each scenario is a graph of binary packages (and installed ones) that Portage's test playground
writes as a real PKGDIR (xpak or gpkg binpkgs plus the `Packages` index that bintree generates)
and a real var/db/pkg, then resolves with emerge's depgraph. The resolver must pick the same
binary packages, twice: from the files Portage wrote (read with parse_packages_index and
read_vdb) and from the same graph given directly as PackageRecords.

The playground runs in a child process (playground_runner.py): it rewires Portage's global state
(EPREFIX, legacy globals) the way Portage's own conftest does.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pants_sysext.formats.packages_index import parse_packages_index
from pants_sysext.formats.vdb import vdb_from_json
from pants_sysext.resolve.portage_resolver import (
    BlockerError,
    PackageRecord,
    ResolveError,
    SatisfiedElsewhere,
    SlotConflictError,
    resolve,
)

HERE = Path(__file__).resolve().parent
SRC = HERE.parents[1] / "src" / "python"

# name -> scenario. "stacked" lists installed CPVs that the resolver gets as a stacked extension
# instead of as the base (Portage only knows "installed").
SCENARIOS: dict[str, dict[str, Any]] = {
    "chain": {
        "binpkgs": [
            ["app-misc/A-1", {"EAPI": "8", "RDEPEND": "dev-libs/B >=sys-libs/D-1"}],
            ["dev-libs/B-1", {"EAPI": "8"}],
            ["dev-libs/B-2", {"EAPI": "8", "RDEPEND": "sys-libs/C"}],
            ["sys-libs/C-1",
             {"EAPI": "8", "RDEPEND": "|| ( sys-libs/E ( sys-libs/F sys-libs/G ) )"}],
            ["sys-libs/D-2", {"EAPI": "8"}],
            ["sys-libs/F-1", {"EAPI": "8"}],
            ["sys-libs/G-1", {"EAPI": "8"}],
        ],
        "installed": {"sys-libs/D-1": {"EAPI": "8"}},
        "atoms": ["app-misc/A"],
        "expect": {"app-misc/A-1", "dev-libs/B-2", "sys-libs/C-1", "sys-libs/F-1", "sys-libs/G-1"},
    },
    "any-of, installed alternative": {
        "binpkgs": [
            ["app-misc/A-1", {"EAPI": "8", "RDEPEND": "|| ( dev-libs/X dev-libs/Y )"}],
            ["dev-libs/X-1", {"EAPI": "8"}],
            ["dev-libs/Y-1", {"EAPI": "8"}],
        ],
        "installed": {"dev-libs/Y-1": {"EAPI": "8"}},
        "atoms": ["app-misc/A"],
        "expect": {"app-misc/A-1"},
    },
    "any-of, nothing installed": {
        "binpkgs": [
            ["app-misc/A-1", {"EAPI": "8", "RDEPEND": "|| ( dev-libs/X dev-libs/Y )"}],
            ["dev-libs/X-1", {"EAPI": "8"}],
            ["dev-libs/Y-1", {"EAPI": "8"}],
        ],
        "atoms": ["app-misc/A"],
        "expect": {"app-misc/A-1", "dev-libs/X-1"},
    },
    "any-of, alternative pulled in by the package itself": {
        "binpkgs": [
            ["app-misc/A-1", {"EAPI": "8", "RDEPEND": "|| ( dev-libs/X dev-libs/Y ) dev-libs/Y"}],
            ["dev-libs/X-1", {"EAPI": "8"}],
            ["dev-libs/Y-1", {"EAPI": "8"}],
        ],
        "atoms": ["app-misc/A"],
        "expect": {"app-misc/A-1", "dev-libs/Y-1"},
    },
    "any-of, alternative pulled in by another package": {
        "binpkgs": [
            ["app-misc/A-1", {"EAPI": "8", "RDEPEND": "|| ( dev-libs/X dev-libs/Y )"}],
            ["app-misc/B-1", {"EAPI": "8", "RDEPEND": "dev-libs/Y"}],
            ["dev-libs/X-1", {"EAPI": "8"}],
            ["dev-libs/Y-1", {"EAPI": "8"}],
        ],
        "atoms": ["app-misc/A", "app-misc/B"],
        "expect": {"app-misc/A-1", "app-misc/B-1", "dev-libs/Y-1"},
    },
    "any-of, first alternative's dependencies unavailable": {
        "binpkgs": [
            ["app-misc/A-1", {"EAPI": "8", "RDEPEND": "|| ( dev-libs/X dev-libs/Y )"}],
            ["dev-libs/X-1", {"EAPI": "8", "RDEPEND": "dev-libs/missing"}],
            ["dev-libs/Y-1", {"EAPI": "8"}],
        ],
        "atoms": ["app-misc/A"],
        "expect": {"app-misc/A-1", "dev-libs/Y-1"},
    },
    "any-of, USE dependency": {
        "binpkgs": [
            ["app-misc/A-1", {"EAPI": "8", "RDEPEND": "|| ( dev-libs/X[foo] dev-libs/Y )"}],
            ["dev-libs/X-1", {"EAPI": "8", "IUSE": "foo"}],
            ["dev-libs/Y-1", {"EAPI": "8"}],
        ],
        "atoms": ["app-misc/A"],
        "expect": {"app-misc/A-1", "dev-libs/Y-1"},
    },
    "a dependency through a virtual, satisfied by the base": {
        "binpkgs": [
            ["app-misc/A-1", {"EAPI": "8", "RDEPEND": "virtual/libc"}],
            ["virtual/libc-1", {"EAPI": "8", "RDEPEND": "sys-libs/glibc"}],
            ["sys-libs/glibc-2", {"EAPI": "8"}],
        ],
        "installed": {"sys-libs/glibc-1": {"EAPI": "8"}},
        "atoms": ["app-misc/A"],
        "expect": {"app-misc/A-1", "virtual/libc-1"},
    },
    "a slot, then the same package without one": {
        "binpkgs": [
            ["app-misc/A-1", {"EAPI": "8", "RDEPEND": "dev-libs/B:1 dev-libs/B"}],
            ["dev-libs/B-1", {"EAPI": "8", "SLOT": "1"}],
            ["dev-libs/B-2", {"EAPI": "8", "SLOT": "2"}],
        ],
        "atoms": ["app-misc/A"],
        "expect": {"app-misc/A-1", "dev-libs/B-1"},
    },
    "installed in another slot satisfies an unslotted atom": {
        "binpkgs": [
            ["app-misc/A-1", {"EAPI": "8", "RDEPEND": "dev-libs/B"}],
            ["dev-libs/B-2", {"EAPI": "8", "SLOT": "2"}],
        ],
        "installed": {"dev-libs/B-1": {"EAPI": "8", "SLOT": "1"}},
        "atoms": ["app-misc/A"],
        "expect": {"app-misc/A-1"},
    },
    "requested package with several slots": {
        "binpkgs": [
            ["dev-libs/B-1", {"EAPI": "8", "SLOT": "1"}],
            ["dev-libs/B-2", {"EAPI": "8", "SLOT": "2"}],
        ],
        "atoms": ["dev-libs/B"],
        "expect": {"dev-libs/B-2"},
    },
    "slot": {
        "binpkgs": [
            ["app-misc/A-1", {"EAPI": "8", "RDEPEND": "dev-libs/B:1"}],
            ["dev-libs/B-1.0", {"EAPI": "8", "SLOT": "1"}],
            ["dev-libs/B-1.5", {"EAPI": "8", "SLOT": "1"}],
            ["dev-libs/B-2", {"EAPI": "8", "SLOT": "2"}],
        ],
        "atoms": ["app-misc/A"],
        "expect": {"app-misc/A-1", "dev-libs/B-1.5"},
    },
    "sub-slot of a built slot-operator dependency": {
        "binpkgs": [
            ["app-misc/A-1", {"EAPI": "8", "RDEPEND": "dev-libs/B:1/1.0="}],
            ["dev-libs/B-1.0", {"EAPI": "8", "SLOT": "1/1.0"}],
            ["dev-libs/B-1.5", {"EAPI": "8", "SLOT": "1/1.5"}],
        ],
        "atoms": ["app-misc/A"],
        "expect": {"app-misc/A-1", "dev-libs/B-1.0"},
    },
    "USE dependency": {
        "binpkgs": [
            ["app-misc/A-1", {"EAPI": "8", "RDEPEND": "dev-libs/B[foo]"}],
            ["dev-libs/B-1", {"EAPI": "8", "IUSE": "foo", "USE": "foo"}],
            ["dev-libs/B-2", {"EAPI": "8", "IUSE": "foo", "USE": ""}],
        ],
        "atoms": ["app-misc/A"],
        "expect": {"app-misc/A-1", "dev-libs/B-1"},
    },
    "conditional USE dependency": {
        "binpkgs": [
            ["app-misc/A-1", {"EAPI": "8", "IUSE": "foo", "USE": "foo",
                              "RDEPEND": "dev-libs/B[foo?] dev-libs/C[!foo?]"}],
            ["dev-libs/B-1", {"EAPI": "8", "IUSE": "foo", "USE": "foo"}],
            ["dev-libs/B-2", {"EAPI": "8", "IUSE": "foo", "USE": ""}],
            ["dev-libs/C-1", {"EAPI": "8", "IUSE": "foo", "USE": "foo"}],
            ["dev-libs/C-2", {"EAPI": "8", "IUSE": "foo", "USE": ""}],
        ],
        "atoms": ["app-misc/A"],
        "expect": {"app-misc/A-1", "dev-libs/B-1", "dev-libs/C-2"},
    },
    "a slot conflict one version settles": {
        "binpkgs": [
            ["app-misc/A-1", {"EAPI": "8", "RDEPEND": "dev-libs/B"}],
            ["app-misc/C-1", {"EAPI": "8", "RDEPEND": "<dev-libs/B-3"}],
            ["dev-libs/B-1", {"EAPI": "8"}],
            ["dev-libs/B-2", {"EAPI": "8"}],
            ["dev-libs/B-3", {"EAPI": "8"}],
        ],
        "atoms": ["app-misc/A", "app-misc/C"],
        "expect": {"app-misc/A-1", "app-misc/C-1", "dev-libs/B-2"},
    },
    "stacked extension": {
        "binpkgs": [
            ["app-misc/A-1", {"EAPI": "8", "RDEPEND": "dev-libs/B dev-libs/C"}],
            ["dev-libs/B-1", {"EAPI": "8"}],
            ["dev-libs/B-2", {"EAPI": "8"}],
            ["dev-libs/C-1", {"EAPI": "8"}],
        ],
        "installed": {"dev-libs/B-1": {"EAPI": "8"}, "sys-libs/base-1": {"EAPI": "8"}},
        "stacked": ["dev-libs/B-1"],
        "atoms": ["app-misc/A"],
        "expect": {"app-misc/A-1", "dev-libs/C-1"},
        "satisfied": [("dev-libs/B", "dev-libs/B-1", "stacked extension below",
                       "app-misc/A-1")],
    },
    "already installed, --noreplace": {
        "binpkgs": [["app-misc/A-1", {"EAPI": "8"}], ["app-misc/A-2", {"EAPI": "8"}]],
        "installed": {"app-misc/A-1": {"EAPI": "8"}},
        "atoms": ["app-misc/A"],
        "options": {"--noreplace": True},
        "expect": set(),
        "satisfied": [("app-misc/A", "app-misc/A-1", "base", "requested")],
    },
    "hard blocker against an installed package": {
        "binpkgs": [["app-misc/A-1", {"EAPI": "8", "RDEPEND": "!!dev-libs/Z"}]],
        "installed": {"dev-libs/Z-1": {"EAPI": "8"}},
        "atoms": ["app-misc/A"],
        "error": BlockerError,
    },
    "unsatisfiable": {
        "binpkgs": [["app-misc/A-1", {"EAPI": "8", "RDEPEND": ">=dev-libs/B-2"}],
                    ["dev-libs/B-1", {"EAPI": "8"}]],
        "atoms": ["app-misc/A"],
        "error": ResolveError,
    },
}

# Where the resolver decides differently from emerge on purpose: emerge may uninstall or upgrade a
# package of the root, but an extension cannot change its base image.
BY_DESIGN: dict[str, dict[str, Any]] = {
    "soft blocker against an installed package": {
        "binpkgs": [["app-misc/A-1", {"EAPI": "8", "RDEPEND": "!dev-libs/Z"}]],
        "installed": {"dev-libs/Z-1": {"EAPI": "8"}},
        "atoms": ["app-misc/A"],
        "emerge": ["[binary]app-misc/A-1", "[uninstall]dev-libs/Z-1", "!dev-libs/Z"],
        "error": BlockerError,
    },
    "dependency on a newer version than the base has": {
        "binpkgs": [["app-misc/A-1", {"EAPI": "8", "RDEPEND": ">=dev-libs/B-2"}],
                    ["dev-libs/B-2", {"EAPI": "8"}]],
        "installed": {"dev-libs/B-1": {"EAPI": "8"}},
        "atoms": ["app-misc/A"],
        "emerge": ["[binary]dev-libs/B-2", "[binary]app-misc/A-1"],
        "error": SlotConflictError,
    },
    "any-of: upgrading the base's package versus another alternative": {
        "binpkgs": [["app-misc/A-1", {"EAPI": "8", "RDEPEND": "|| ( >=dev-libs/X-2 dev-libs/Y )"}],
                    ["dev-libs/X-2", {"EAPI": "8"}], ["dev-libs/Y-1", {"EAPI": "8"}]],
        "installed": {"dev-libs/X-1": {"EAPI": "8"}},
        "atoms": ["app-misc/A"],
        "emerge": ["[binary]dev-libs/X-2", "[binary]app-misc/A-1"],
        "expect": {"app-misc/A-1", "dev-libs/Y-1"},
    },
    "any-of: rebuilding the base's package with a USE flag versus another alternative": {
        "binpkgs": [["app-misc/A-1", {"EAPI": "8", "RDEPEND": "|| ( dev-libs/X[foo] dev-libs/Y )"}],
                    ["dev-libs/X-1", {"EAPI": "8", "IUSE": "foo", "USE": "foo"}],
                    ["dev-libs/Y-1", {"EAPI": "8"}]],
        "installed": {"dev-libs/X-0.9": {"EAPI": "8", "IUSE": "foo", "USE": ""}},
        "atoms": ["app-misc/A"],
        "emerge": ["[binary]dev-libs/X-1", "[binary]app-misc/A-1"],
        "expect": {"app-misc/A-1", "dev-libs/Y-1"},
    },
}

MULTI_INSTANCE_BINPKGS = [
    ["app-misc/A-1", {"EAPI": "8", "BUILD_ID": "1", "BUILD_TIME": "1", "RDEPEND": "dev-libs/B"}],
    ["app-misc/A-1", {"EAPI": "8", "BUILD_ID": "3", "BUILD_TIME": "3", "RDEPEND": "dev-libs/B"}],
    ["app-misc/A-1", {"EAPI": "8", "BUILD_ID": "2", "BUILD_TIME": "2", "RDEPEND": "dev-libs/B"}],
    ["dev-libs/B-1", {"EAPI": "8", "BUILD_ID": "9", "BUILD_TIME": "9"}],
    ["dev-libs/B-2", {"EAPI": "8", "BUILD_ID": "1", "BUILD_TIME": "1"}],
]
for _format in ("xpak", "gpkg"):
    SCENARIOS[f"multi-instance {_format}"] = {
        "binpkgs": MULTI_INSTANCE_BINPKGS,
        "binpkg_format": _format,
        "multi_instance": True,
        "atoms": ["app-misc/A"],
        "expect": {"app-misc/A-1-b3", "dev-libs/B-2-b1"},
    }
# A plain (not multi-instance) gpkg binhost too.
SCENARIOS["chain gpkg"] = {**SCENARIOS["chain"], "binpkg_format": "gpkg"}


@pytest.fixture(scope="module")
def portage_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    work = tmp_path_factory.mktemp("playground")
    scenarios = [
        {
            "name": name,
            "binpkgs": s["binpkgs"],
            "installed": s.get("installed", {}),
            "binpkg_format": s.get("binpkg_format", "xpak"),
            "multi_instance": s.get("multi_instance", False),
            "atoms": s["atoms"],
            "options": {"--usepkgonly": True, **s.get("options", {})},
        }
        for name, s in {**SCENARIOS, **BY_DESIGN}.items()
    ]
    (work / "in.json").write_text(json.dumps(scenarios))
    proc = subprocess.run(
        [sys.executable, str(HERE / "playground_runner.py"), str(work / "in.json"),
         str(work / "out.json")],
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", "PYTHONPATH": str(SRC),
             "HOME": str(work), "LC_ALL": "C.UTF-8"},
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, f"the Portage playground failed:\n{proc.stderr[-6000:]}"
    return {r["name"]: r for r in json.loads((work / "out.json").read_text())}


def _key(cpv: str, build_id: int | None) -> str:
    return cpv + (f"-b{build_id}" if build_id is not None else "")


def _portage_picks(result: dict) -> set[str]:
    picks = set()
    for task in result["merge"]:
        assert (task["type"], task["operation"]) == ("binary", "merge"), task
        picks.add(_key(task["cpv"], task["build_id"]))
    return picks


def _records_from_portage_files(result: dict, scenario: dict):
    index = parse_packages_index(result["packages_index"].encode(), source="playground Packages")
    candidates = [PackageRecord.from_mapping(e.as_dict()) for e in index.packages]
    installed_all = ()
    if result["vdb_json"] is not None:
        installed_all = tuple(
            PackageRecord.from_mapping(p.as_dict(), cpv=p.cpv)
            for p in vdb_from_json(result["vdb_json"])
        )
    return candidates, installed_all


def _records_from_scenario(scenario: dict):
    def record(cpv: str, md: dict) -> PackageRecord:
        return PackageRecord.from_mapping({**md, "CPV": cpv})

    candidates = [record(cpv, md) for cpv, md in scenario["binpkgs"]]
    installed_all = tuple(record(cpv, md) for cpv, md in scenario.get("installed", {}).items())
    return candidates, installed_all


def _resolve(scenario: dict, candidates, installed_all):
    below = set(scenario.get("stacked", ()))
    installed = [r for r in installed_all if r.cpv not in below]
    stacked = {"below": [r for r in installed_all if r.cpv in below]} if below else {}
    return resolve(scenario["atoms"], candidates, installed=installed, stacked=stacked)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
@pytest.mark.parametrize("inputs", ["portage-files", "records"])
def test_same_choice_as_emerge(portage_results: dict, name: str, inputs: str) -> None:
    scenario = SCENARIOS[name]
    result = portage_results[name]
    if inputs == "portage-files":
        candidates, installed_all = _records_from_portage_files(result, scenario)
        assert sorted(_key(r.cpv, r.build_id) for r in candidates) == sorted(
            _key(cpv, int(md["BUILD_ID"]) if "BUILD_ID" in md else None)
            for cpv, md in scenario["binpkgs"]
        )
    else:
        candidates, installed_all = _records_from_scenario(scenario)

    if "error" in scenario:
        assert not result["success"], f"emerge resolved it: {result['mergelist']}"
        with pytest.raises(scenario["error"]):
            _resolve(scenario, candidates, installed_all)
        return

    assert result["success"], f"emerge failed on {name}"
    expected = scenario["expect"]
    assert _portage_picks(result) == expected, "the scenario's expectation is not emerge's"
    resolution = _resolve(scenario, candidates, installed_all)
    assert {_key(p.record.cpv, p.record.build_id) for p in resolution.packages} == expected
    for satisfied in scenario.get("satisfied", ()):
        assert SatisfiedElsewhere(*satisfied) in resolution.satisfied


def test_playground_binhost_records(portage_results: dict) -> None:
    """What bintree writes for multi-instance gpkg binpkgs reaches the records intact."""
    result = portage_results["multi-instance gpkg"]
    index = parse_packages_index(result["packages_index"].encode())
    by_key = {(e.cpv, e.build_id): e for e in index.packages}
    a3 = PackageRecord.from_mapping(by_key[("app-misc/A-1", 3)].as_dict())
    assert a3.build_id == 3
    assert a3.rdepend == "dev-libs/B"
    assert a3.get("PATH") == "app-misc/A/A-1-3.gpkg.tar"
    assert a3.repo == "test_repo"
    assert int(a3.get("SIZE") or 0) > 0
    assert [e.build_id for e in index.find("app-misc/A-1")] == [3, 2, 1]

    use_result = portage_results["USE dependency"]
    index = parse_packages_index(use_result["packages_index"].encode())
    records = {e.cpv: PackageRecord.from_mapping(e.as_dict()) for e in index.packages}
    assert records["dev-libs/B-1"].use == {"foo"}
    assert records["dev-libs/B-2"].use == frozenset()
    assert records["dev-libs/B-1"].iuse == ("foo",)


@pytest.mark.parametrize("name", sorted(BY_DESIGN))
def test_differs_from_emerge_by_design(portage_results: dict, name: str) -> None:
    scenario = BY_DESIGN[name]
    result = portage_results[name]
    assert result["success"]
    assert result["mergelist"] == scenario["emerge"]
    candidates, installed_all = _records_from_portage_files(result, scenario)
    if "error" in scenario:
        with pytest.raises(scenario["error"]):
            _resolve(scenario, candidates, installed_all)
    else:
        resolution = _resolve(scenario, candidates, installed_all)
        assert {p.record.cpv for p in resolution.packages} == scenario["expect"]
