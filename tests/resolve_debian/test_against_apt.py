"""The resolver against real apt: `apt-get --simulate install` on the same graphs.

Each scenario of scenarios.py with an `apt` key is written as a flat apt repository (a Packages
file of its stanzas, placeholder Filename/Size/SHA256) plus a dpkg status file of its base (and
stacked extensions), and apt-get resolves it with every apt directory in a temporary directory
(apt_oracle.py). Where `apt` is "same", apt must newly install exactly what the resolver picks
and remove nothing; where it is a dict, apt's own different answer is pinned (the resolver
differs on purpose: see the docstring of pants_sysext.resolve.debian_resolver).

Then the real thing: the machine's dpkg status as the base and the jq, libjq1 and libonig5
stanzas apt-cache shows on this machine as the archive.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, Dict, List

import pytest
from debian.deb822 import Deb822, PkgRelation

from pants_sysext.resolve.debian_resolver import (
    ConflictError,
    DebRecord,
    ReplacesInstalledError,
    parse_dpkg_status,
    parse_packages_file,
    resolve,
)

from .apt_oracle import apt_available, apt_install, render_stanzas
from .scenarios import SCENARIOS, S

pytestmark = pytest.mark.skipif(not apt_available(), reason="apt-get is not installed")

APT_SCENARIOS = sorted(name for name, s in SCENARIOS.items() if "apt" in s)


def _records(stanzas: List[Dict[str, str]]) -> List[DebRecord]:
    return [DebRecord.from_mapping(s) for s in stanzas]


def _ours(scenario: Dict[str, Any]) -> Any:
    stacked = {n: _records(s) for n, s in scenario.get("stacked", {}).items()}
    try:
        resolution = resolve(scenario["requested"], _records(scenario["candidates"]),
                             installed=_records(scenario.get("installed", [])),
                             stacked=stacked, exclude=scenario.get("exclude", []))
    except Exception as e:  # noqa: BLE001 - compared below
        return e
    return {p.record.package: p.record.version for p in resolution.packages}


def _apt(tmp_path: Path, scenario: Dict[str, Any]):
    status = list(scenario.get("installed", []))
    for name in sorted(scenario.get("stacked", {})):
        status.extend(scenario["stacked"][name])
    return apt_install(tmp_path, scenario["candidates"], status,
                       sorted(scenario["requested"]),
                       architectures=scenario.get("architectures", ("amd64",)))


def test_there_are_enough_apt_scenarios() -> None:
    assert len([n for n in APT_SCENARIOS if SCENARIOS[n]["apt"] == "same"]) >= 20
    assert len([n for n in APT_SCENARIOS if SCENARIOS[n]["apt"] != "same"]) >= 5


@pytest.mark.parametrize("name", APT_SCENARIOS)
def test_against_apt(tmp_path: Path, name: str) -> None:
    scenario = SCENARIOS[name]
    assert not scenario.get("exclude"), "apt has no notion of exclude"
    ours = _ours(scenario)
    apt = _apt(tmp_path, scenario)
    expected_apt = scenario["apt"]

    if "error" in scenario:
        assert isinstance(ours, scenario["error"][0]), ours
    else:
        assert ours == scenario["expect"]

    if expected_apt == "same":
        if "error" in scenario:
            assert apt.returncode != 0 and not apt.installs, apt.output
        else:
            assert apt.returncode == 0, apt.output
            assert apt.new == ours, apt.output
            assert apt.upgrades == {} and apt.removes == (), apt.output
        return

    # apt differs, on purpose: pin what apt does.
    if expected_apt.get("fails"):
        assert apt.returncode != 0 and not apt.installs, apt.output
        return
    assert apt.returncode == 0, apt.output
    assert dict(apt.installs) == expected_apt.get("installs", {}), apt.output
    assert list(apt.removes) == expected_apt.get("removes", []), apt.output


# -- The machine's own dpkg status and Debian's jq --------------------------------------------

JQ_PACKAGES = ("jq", "libjq1", "libonig5")


@pytest.fixture(scope="module")
def debian_jq_stanzas() -> str:
    """The archive stanzas (not the installed ones) apt-cache shows for jq and its libraries."""
    if shutil.which("apt-cache") is None:
        pytest.skip("apt-cache is not installed")
    run = subprocess.run(["apt-cache", "show", *JQ_PACKAGES], capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"})
    stanzas = [s for s in run.stdout.split("\n\n") if s.strip()]
    archive = [s for s in stanzas if "\nFilename: " in s and "\nStatus: " not in s]
    names = {r.package for r in parse_packages_file("\n\n".join(archive))}
    if run.returncode != 0 or names != set(JQ_PACKAGES):
        pytest.skip(
            f"apt-cache show {' '.join(JQ_PACKAGES)} has no archive stanzas for all three "
            f"(found: {', '.join(sorted(names)) or 'none'}); run `apt-get update` to fetch the "
            f"Debian package lists"
        )
    return "\n\n".join(s.strip("\n") for s in archive) + "\n"


@pytest.fixture(scope="module")
def machine_status(tmp_path_factory: pytest.TempPathFactory) -> str:
    status = Path("/var/lib/dpkg/status")
    if not status.is_file():
        pytest.skip("this machine has no dpkg status (/var/lib/dpkg/status)")
    copy = tmp_path_factory.mktemp("dpkg") / "status"
    shutil.copyfile(status, copy)
    return copy.read_text(encoding="utf-8")


def _without(status: str, names: tuple[str, ...]) -> tuple[str, set[str]]:
    """The status without `names` and every installed package that depends on them."""
    paragraphs = [p for p in Deb822.iter_paragraphs(status.splitlines(keepends=True)) if p]
    removed = set(names)
    while True:
        more = {
            p["Package"] for p in paragraphs if p["Package"] not in removed and any(
                rel["name"] in removed
                for field in ("Depends", "Pre-Depends") if (p.get(field) or "").strip()
                for group in PkgRelation.parse_relations(p[field])
                for rel in group
            )
        }
        if not more:
            break
        removed |= more
    kept = [p.dump() for p in paragraphs if p["Package"] not in removed]
    return "\n".join(kept), removed


def test_debian_jq_on_this_machine_without_jq(tmp_path: Path, debian_jq_stanzas: str,
                                              machine_status: str) -> None:
    """The machine's base minus jq, its libraries and what depends on them: jq resolves to all
    three, and apt agrees."""
    status, removed = _without(machine_status, JQ_PACKAGES)
    assert removed >= set(JQ_PACKAGES)
    base = parse_dpkg_status(status)
    archive = parse_packages_file(debian_jq_stanzas)
    resolution = resolve(["jq"], archive, installed=base)
    assert set(resolution.names) == set(JQ_PACKAGES)
    best = {}
    for record in archive:
        if record.package not in best or _newer(record.version, best[record.package]):
            best[record.package] = record.version
    assert {p.record.package: p.record.version for p in resolution.packages} == best
    assert {s.relation.split()[0] for s in resolution.satisfied} == {"libc6"}
    assert all(p.record.get("SHA256") for p in resolution.packages)

    apt = apt_install(tmp_path, debian_jq_stanzas, status, ["jq"])
    assert apt.returncode == 0, apt.output
    assert apt.new == best, apt.output
    assert apt.upgrades == {} and apt.removes == (), apt.output


def test_debian_jq_on_this_machine(tmp_path: Path, debian_jq_stanzas: str,
                                   machine_status: str) -> None:
    """The machine's own base: jq, libjq1 and libonig5 minus what it has installed."""
    base = parse_dpkg_status(machine_status)
    installed = {r.package: r.version for r in base}
    archive = parse_packages_file(debian_jq_stanzas)
    try:
        resolution = resolve(["jq"], archive, installed=base)
    except ReplacesInstalledError as e:
        # jq is not installed but an older libjq1/libonig5 is, which the archive's jq cannot
        # use: an extension may not replace it (apt would upgrade it).
        assert "jq" not in installed, e
        assert e.relation.split()[0] in JQ_PACKAGES[1:]
        return
    if "jq" in installed:
        expected: set[str] = set()
        assert [(s.relation, s.by, s.source) for s in resolution.satisfied] == [
            ("jq", f"jq {installed['jq']}", "base"),
        ]
    else:
        expected = {n for n in JQ_PACKAGES if n not in installed}
    assert set(resolution.names) == expected

    # apt agrees on what is new; it would also upgrade what the base has at an older version,
    # which an extension does not do.
    apt = apt_install(tmp_path, debian_jq_stanzas, machine_status, ["jq"])
    assert apt.returncode == 0, apt.output
    assert set(apt.new) == expected, apt.output
    assert set(apt.upgrades) <= set(JQ_PACKAGES) and apt.removes == (), apt.output


def _newer(a: str, b: str) -> bool:
    from debian.debian_support import version_compare

    return version_compare(a, b) > 0


def test_render_stanzas_round_trip() -> None:
    stanzas = [S("a", "1", Depends="b", Description="one\n two")]
    text = render_stanzas(stanzas, placeholders=True)
    (record,) = parse_packages_file(text)
    assert record.depends == "b"
    assert record.get("SHA256") == "0" * 64
    assert record.get("Description") == "one\n two"


# -- The whole Debian archive this machine knows ----------------------------------------------

BIG_REQUEST = ("gnome-core", "libreoffice-writer")


@pytest.fixture(scope="module")
def debian_archive() -> str:
    """Every package apt knows on this machine (`apt-cache dumpavail`: one stanza per package)."""
    if shutil.which("apt-cache") is None:
        pytest.skip("apt-cache is not installed")
    run = subprocess.run(["apt-cache", "dumpavail"], capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"})
    names = set(re.findall(r"^Package: (\S+)$", run.stdout, re.MULTILINE))
    if run.returncode != 0 or not names.issuperset(BIG_REQUEST):
        pytest.skip(f"apt-cache dumpavail does not list {' and '.join(BIG_REQUEST)}; run "
                    f"`apt-get update` to fetch the Debian package lists")
    return run.stdout


def test_big_request_on_the_whole_archive(tmp_path: Path, debian_archive: str,
                                          machine_status: str) -> None:
    """Hundreds of packages, every rule at once: the same new packages as apt."""
    archive = parse_packages_file(debian_archive)
    base = parse_dpkg_status(machine_status)
    apt = apt_install(tmp_path, debian_archive, machine_status, list(BIG_REQUEST))
    try:
        resolution = resolve(list(BIG_REQUEST), archive, installed=base)
    except (ReplacesInstalledError, ConflictError) as e:
        # Only where apt upgrades or removes a package of the base.
        assert apt.upgrades or apt.removes, f"{e}\n\n{apt.output}"
        return
    assert apt.returncode == 0, apt.output
    ours = {p.record.package: p.record.version for p in resolution.packages}
    assert ours == apt.new
    assert len(ours) > 100 or not set(BIG_REQUEST) - {r.package for r in base}
    # What apt would upgrade on top is the base's business, not the extension's.
    assert not set(apt.upgrades) & set(ours)
