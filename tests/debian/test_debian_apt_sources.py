"""apt source lists: one-line and deb822 formats (oracle: `apt-get indextargets`), mirrors."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from pants_sysext.formats.apt_archive import (
    AptArchiveError,
    AptSource,
    discover_mirror,
    parse_sources_deb822,
    parse_sources_list,
    read_apt_sources,
)

ONE_LINE = """\
# a comment line
deb [arch=amd64 signed-by=/usr/share/keyrings/test.gpg] http://example.org/debian bookworm main contrib # trailing
deb-src [signed-by=/usr/share/keyrings/test.gpg] http://example.org/debian bookworm main
  deb\thttp://127.0.0.1:8080/flat/ ./
deb [ arch=amd64,arm64 trusted=yes ] http://example.org/two bookworm-updates main#inline
"""

DEB822 = """\
# leading comment
Types: deb deb-src
URIs: http://example.org/a http://example.org/b/
# comment between fields
Suites: bookworm bookworm-updates
Components: main non-free-firmware
Architectures: amd64 arm64
Signed-By: /usr/share/keyrings/test.gpg

Types: deb
URIs: http://example.org/disabled
Suites: bookworm
Components: main
Enabled: no

Types: deb
URIs: http://example.org/embedded
Suites: bookworm-security
Components: main
Signed-By:
 -----BEGIN PGP PUBLIC KEY BLOCK-----
 .
 mDMEZQAAABYJKwYBBAHaRw8BAQdA
 -----END PGP PUBLIC KEY BLOCK-----
"""


def test_parse_sources_list() -> None:
    entries = parse_sources_list(ONE_LINE, source="s.list")
    assert entries[0] == AptSource(
        types=("deb",),
        uris=("http://example.org/debian",),
        suites=("bookworm",),
        components=("main", "contrib"),
        architectures=("amd64",),
        signed_by=("/usr/share/keyrings/test.gpg",),
        enabled=True,
        options=(("arch", "amd64"), ("signed-by", "/usr/share/keyrings/test.gpg")),
        origin="s.list:2",
    )
    assert entries[1].types == ("deb-src",)
    assert (entries[2].uris, entries[2].suites, entries[2].components) == (
        ("http://127.0.0.1:8080/flat/",),
        ("./",),
        (),
    )
    assert entries[3].architectures == ("amd64", "arm64")
    assert entries[3].option("trusted") == "yes"
    assert entries[3].components == ("main",)
    assert [e.origin for e in entries] == ["s.list:2", "s.list:3", "s.list:4", "s.list:5"]


def test_parse_sources_deb822() -> None:
    first, disabled, embedded = parse_sources_deb822(DEB822, source="x.sources")
    assert first.types == ("deb", "deb-src")
    assert first.uris == ("http://example.org/a", "http://example.org/b/")
    assert first.suites == ("bookworm", "bookworm-updates")
    assert first.components == ("main", "non-free-firmware")
    assert first.architectures == ("amd64", "arm64")
    assert first.signed_by == ("/usr/share/keyrings/test.gpg",)
    assert first.enabled and first.origin == "x.sources:2"
    assert ("signed-by", "/usr/share/keyrings/test.gpg") in first.options
    assert not disabled.enabled
    assert embedded.signed_by == (
        "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmDMEZQAAABYJKwYBBAHaRw8BAQdA\n"
        "-----END PGP PUBLIC KEY BLOCK-----",
    )


@pytest.mark.parametrize(
    "text, match",
    [
        ("rpm http://example.org/x bookworm main\n", r"s:1: unknown source type 'rpm'"),
        ("deb http://example.org/x\n", r"s:1: want `deb \[options\] URI suite"),
        ("deb http://example.org/x bookworm\n", r"s:1: no components given"),
        ("deb http://example.org/x ./ main\n", r"s:1: suite './' is an exact path"),
        ("deb [arch=amd64 http://example.org/x bookworm main\n", r"unterminated option list"),
        ("deb [arch] http://example.org/x bookworm main\n", r"malformed option 'arch'"),
    ],
)
def test_sources_list_errors(text: str, match: str) -> None:
    with pytest.raises(AptArchiveError, match=match):
        parse_sources_list(text, source="s")


@pytest.mark.parametrize(
    "text, match",
    [
        ("Types: deb\nURIs: http://example.org/x\nComponents: main\n", r"s:1: missing .*'Suites'"),
        ("Types: deb rpm\nURIs: u\nSuites: a\nComponents: main\n", r"unknown source type 'rpm'"),
        ("Types: deb\nURIs: u\nSuites: a\n", r"no components given"),
        ("Types: deb\nURIs: u\nSuites: a\nComponents: c\nEnabled: perhaps\n", r"Enabled: expected"),
        ("Types: deb\n URIs: u\n\nbroken line\n", r"s:4: expected `Field: value`"),
    ],
)
def test_sources_deb822_errors(text: str, match: str) -> None:
    with pytest.raises(AptArchiveError, match=match):
        parse_sources_deb822(text, source="s")


# --- apt itself as the oracle ----------------------------------------------------------------


def _expand(entries: list[AptSource]) -> set[tuple[str, str, str, str]]:
    targets = set()
    for entry in entries:
        if not entry.enabled:
            continue
        for kind in entry.types:
            for uri in entry.uris:
                for suite in entry.suites:
                    for component in entry.components or ("",):
                        targets.add((kind, uri.rstrip("/") + "/", suite, component))
    return targets


def _apt_targets(etc: Path, tmp_path: Path) -> tuple[set, dict]:
    empty = tmp_path / "empty"
    empty.mkdir()
    conf = tmp_path / "apt.conf"
    conf.write_text(
        f'Dir::Etc::parts "{empty}";\n'
        'Dir::Etc::main "/dev/null";\n'
        f'Dir::Etc::sourcelist "{etc / "sources.list"}";\n'
        f'Dir::Etc::sourceparts "{etc / "sources.list.d"}";\n'
        f'Dir::State "{tmp_path / "state"}";\n'
        f'Dir::Cache "{tmp_path / "cache"}";\n'
        'APT::Architecture "amd64";\n'
        'APT::Architectures { "amd64"; "arm64"; };\n'
    )
    out = subprocess.run(
        [
            "apt-get",
            "indextargets",
            "--no-release-info",
            "--format",
            "$(TARGET_OF)\t$(REPO_URI)\t$(RELEASE)\t$(COMPONENT)\t$(ARCHITECTURE)\t$(IDENTIFIER)",
        ],
        env={**os.environ, "APT_CONFIG": str(conf), "LC_ALL": "C"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        check=True,
    )
    assert "E:" not in out.stderr, out.stderr
    targets = set()
    arches: dict = {}
    for line in out.stdout.splitlines():
        kind, uri, suite, component, arch, identifier = line.split("\t")
        if identifier not in ("Packages", "Sources"):
            continue
        component = "" if component == "$(COMPONENT)" else component
        targets.add((kind, uri, suite, component))
        if identifier == "Packages" and arch != "all":
            arches.setdefault((uri, suite), set()).add(arch)
    return targets, arches


def _write_etc(etc: Path, files: dict[str, str]) -> Path:
    (etc / "sources.list.d").mkdir(parents=True)
    for name, text in files.items():
        (etc / name).write_text(text)
    return etc


@pytest.mark.skipif(shutil.which("apt-get") is None, reason="needs apt-get")
def test_sources_agree_with_apt(tmp_path) -> None:
    embedded_key_free = DEB822.split("\nTypes: deb\nURIs: http://example.org/embedded")[0]
    etc = _write_etc(
        tmp_path / "etc",
        {
            "sources.list": ONE_LINE,
            "sources.list.d/a.sources": embedded_key_free,
            "sources.list.d/b.list": "deb http://example.org/c sid main\n",
            "sources.list.d/c.list.disabled": "deb http://example.org/never sid main\n",
            "sources.list.d/d.sources.save": "Types: deb\nURIs: http://example.org/never\n",
        },
    )
    entries = list(read_apt_sources(str(etc)))
    assert [e.origin.rsplit("/", 1)[-1] for e in entries] == [
        "sources.list:2",
        "sources.list:3",
        "sources.list:4",
        "sources.list:5",
        "a.sources:2",
        "a.sources:10",
        "b.list:1",
    ]
    targets, arches = _apt_targets(etc, tmp_path)
    assert _expand(entries) == targets
    for entry in entries:
        if entry.enabled and entry.architectures and "deb" in entry.types:
            for uri in entry.uris:
                for suite in entry.suites:
                    assert arches[(uri.rstrip("/") + "/", suite)] == set(entry.architectures)


# --- discover_mirror -------------------------------------------------------------------------


def test_discover_mirror_order_and_filters(tmp_path) -> None:
    etc = _write_etc(
        tmp_path / "etc",
        {
            "sources.list": "# deb http://example.org/commented bookworm main\n"
            "deb-src http://example.org/src-only bookworm main\n"
            "deb http://example.org/other-suite trixie main\n",
            "sources.list.d/00-disabled.sources": "Types: deb\nURIs: http://example.org/off\n"
            "Suites: bookworm\nComponents: main\nEnabled: no\n",
            "sources.list.d/01-x.list.disabled-by-admin": "deb http://example.org/x bookworm main\n",
            "sources.list.d/02 bad name.list": "deb http://example.org/bad bookworm main\n",
            "sources.list.d/03-x.list~": "deb http://example.org/backup bookworm main\n",
            "sources.list.d/50-good.sources": "Types: deb-src deb\n"
            "URIs: http://127.0.0.1:9/debian/ http://example.org/second\n"
            "Suites: bookworm-updates bookworm\nComponents: main\n",
            "sources.list.d/60-later.list": "deb http://example.org/later bookworm main\n",
        },
    )
    assert discover_mirror(str(etc)) == "http://127.0.0.1:9/debian"
    assert discover_mirror(str(etc), suite="trixie") == "http://example.org/other-suite"
    assert discover_mirror(str(etc), suite="bookworm-updates") == "http://127.0.0.1:9/debian"
    with pytest.raises(AptArchiveError, match=r"no enabled `deb` source for suite 'sid'.*"
                       r"suites found: bookworm, bookworm-updates, trixie"):
        discover_mirror(str(etc), suite="sid")


def test_discover_mirror_without_sources(tmp_path) -> None:
    with pytest.raises(AptArchiveError, match="suites found: none"):
        discover_mirror(str(tmp_path))


def test_discover_mirror_reports_broken_files(tmp_path) -> None:
    etc = _write_etc(tmp_path / "etc", {"sources.list.d/x.list": "deb http://example.org/x\n"})
    with pytest.raises(AptArchiveError, match=r"x\.list:1: want"):
        discover_mirror(str(etc))


@pytest.mark.skipif(
    shutil.which("apt-get") is None or not os.path.isdir("/etc/apt"), reason="needs apt"
)
def test_discover_mirror_on_this_machine_agrees_with_apt() -> None:
    """On this machine's own configuration: the mirror found is one apt uses for that suite."""
    out = subprocess.run(
        [
            "apt-get",
            "indextargets",
            "--no-release-info",
            "--format",
            "$(TARGET_OF)\t$(REPO_URI)\t$(RELEASE)",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "LC_ALL": "C"},
    ).stdout
    suites: dict[str, set[str]] = {}
    for line in out.splitlines():
        kind, uri, suite = line.split("\t")
        if kind == "deb":
            suites.setdefault(suite, set()).add(uri)
    if not suites:
        pytest.skip("this machine has no apt sources")
    for suite, uris in sorted(suites.items()):
        assert discover_mirror("/etc/apt", suite=suite) + "/" in uris
