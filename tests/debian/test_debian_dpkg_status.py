"""dpkg's status database: the machine's real one (oracle: dpkg-query) and crafted ones."""

from __future__ import annotations

import io
import os
import shutil
import subprocess

import pytest

from pants_sysext.formats.deb822 import Relation
from pants_sysext.formats.dpkg_status import (
    DpkgStatusError,
    InstalledDeb,
    parse_dpkg_status,
    read_dpkg_status,
)

STATUS = "/var/lib/dpkg/status"
needs_dpkg = pytest.mark.skipif(
    not os.path.exists(STATUS) or shutil.which("dpkg-query") is None,
    reason="needs a Debian machine (dpkg-query, /var/lib/dpkg/status)",
)


@pytest.fixture
def admindir(tmp_path):
    """A copy of the machine's dpkg database (its status file), read by us and by dpkg-query."""
    admin = tmp_path / "dpkg"
    admin.mkdir()
    shutil.copyfile(STATUS, admin / "status")
    (admin / "updates").mkdir()
    (admin / "info").mkdir()
    return admin


def dpkg_query(admindir, fmt: str, *packages: str) -> str:
    return subprocess.run(
        ["dpkg-query", f"--admindir={admindir}", "-W", f"-f={fmt}", *packages],
        stdout=subprocess.PIPE,
        check=True,
        text=True,
    ).stdout


@needs_dpkg
def test_real_status_matches_dpkg_query(admindir) -> None:
    installed = read_dpkg_status(str(admindir / "status"))
    ours = {(p.package, p.architecture): p for p in installed}
    assert len(ours) == len(installed)

    oracle = {}
    rows = dpkg_query(
        admindir,
        "${Package}\\t${Architecture}\\t${Version}\\t${db:Status-Want} ${db:Status-Eflag} "
        "${db:Status-Status}\\t${Essential}\\t${Multi-Arch}\\t${source:Package}\\t"
        "${source:Version}\\n",
    )
    for line in rows.splitlines():
        package, arch, version, status, essential, multi_arch, source, source_version = line.split(
            "\t"
        )
        if status.split()[1:] == ["ok", "installed"]:
            oracle[(package, arch)] = (version, status, essential == "yes", multi_arch or "no",
                                       source, source_version)
    assert set(ours) == set(oracle)
    for key, deb in ours.items():
        assert (deb.version, deb.status, deb.essential, deb.multi_arch, deb.source,
                deb.source_version) == oracle[key], key

    for name in ("dpkg", "libc6"):
        [deb] = [p for p in installed if p.package == name]
        assert deb.version == dpkg_query(admindir, "${Version}", name)
        assert deb.status.endswith("ok installed")
    dpkg = next(p for p in installed if p.package == "dpkg")
    assert dpkg.essential and dpkg.pre_depends  # dpkg pre-depends on libc6 and others
    assert any(r.name == "libc6" for group in dpkg.pre_depends for r in group)


@needs_dpkg
def test_relations_match_dpkg_query(admindir) -> None:
    """Relations rendered back in dpkg's canonical form equal dpkg-query's rendering."""
    installed = {(p.package, p.architecture): p for p in read_dpkg_status(str(admindir / "status"))}
    rows = dpkg_query(
        admindir,
        "${Package}\\t${Architecture}\\t${db:Status-Status}\\t${Depends}\\t${Pre-Depends}\\t"
        "${Provides}\\t${Conflicts}\\t${Breaks}\\n",
    )

    def render_groups(groups):
        return ", ".join(" | ".join(str(r) for r in group) for group in groups)

    def render_list(relations):
        return ", ".join(str(r) for r in relations)

    checked = 0
    for line in rows.splitlines():
        package, arch, state, depends, pre_depends, provides, conflicts, breaks = line.split("\t")
        if state != "installed" or (package, arch) not in installed:
            continue
        deb = installed[(package, arch)]
        assert render_groups(deb.depends) == depends, package
        assert render_groups(deb.pre_depends) == pre_depends, package
        assert render_list(deb.provides) == provides, package
        assert render_list(deb.conflicts) == conflicts, package
        assert render_list(deb.breaks) == breaks, package
        checked += 1
    assert checked == len(installed)


STATUS_TEXT = """\
Package: held
Status: hold ok installed
Priority: optional
Architecture: amd64
Version: 1.0-1
Depends: libc6 (>= 2.34), libfoo1 | libbar1
Provides: held-virtual (= 1.0)
Description: held package
 still installed

Package: removed-config
Status: deinstall ok config-files
Architecture: amd64
Version: 2.0
Conffiles:
 /etc/removed.conf 0123456789abcdef0123456789abcdef

Package: half
Status: install ok half-configured
Architecture: amd64
Version: 1

Package: unpacked
Status: install ok unpacked
Architecture: amd64
Version: 1

Package: pending
Status: install ok triggers-pending
Architecture: all
Version: 1
Triggers-Pending: ldconfig

Package: broken
Status: install reinstreq installed
Architecture: amd64
Version: 1

Package: never
Status: purge ok not-installed

Package: going
Status: deinstall ok installed
Architecture: all
Version: 3
Essential: yes
Breaks: old (<< 2)
Conflicts: other

Package: libx1
Status: install ok installed
Architecture: amd64
Multi-Arch: same
Version: 2:1.2-3
Source: libx (1.2-3)
Pre-Depends: libc6

Package: libx1
Status: install ok installed
Architecture: i386
Multi-Arch: same
Version: 2:1.2-3
Source: libx (1.2-3)
"""


def test_only_fully_installed_packages_are_kept() -> None:
    installed = parse_dpkg_status(STATUS_TEXT)
    assert [p.label for p in installed] == [
        "held_1.0-1_amd64",
        "going_3_all",
        "libx1_2:1.2-3_amd64",
        "libx1_2:1.2-3_i386",
    ]
    held, going, libx, _ = installed
    assert held == InstalledDeb(
        package="held",
        version="1.0-1",
        architecture="amd64",
        status="hold ok installed",
        provides=(Relation("held-virtual", None, "=", "1.0"),),
        depends=((Relation("libc6", None, ">=", "2.34"),), (Relation("libfoo1"), Relation("libbar1"))),
        pre_depends=(),
        conflicts=(),
        breaks=(),
        essential=False,
        multi_arch="no",
        source="held",
        source_version="1.0-1",
    )
    assert held.want == "hold"
    assert going.want == "deinstall" and going.essential
    assert going.breaks == (Relation("old", None, "<<", "2"),)
    assert going.conflicts == (Relation("other"),)
    assert (libx.source, libx.source_version, libx.multi_arch) == ("libx", "1.2-3", "same")
    assert libx.pre_depends == ((Relation("libc6"),),)


def test_streams_and_bytes() -> None:
    want = parse_dpkg_status(STATUS_TEXT)
    assert parse_dpkg_status(STATUS_TEXT.encode()) == want
    assert parse_dpkg_status(io.BytesIO(STATUS_TEXT.encode())) == want


@pytest.mark.parametrize(
    "text, match",
    [
        ("Status: install ok installed\nVersion: 1\n", r"st:1: stanza without a Package field"),
        ("Package: a\nStatus: install ok\n", r"st:1: package 'a': invalid Status"),
        ("Package: a\nStatus: install fine installed\n", r"invalid Status"),
        ("Package: a\nStatus: install ok installed\nVersion: 1\n",
         r"st:1: package 'a': .*missing or empty field 'Architecture'"),
        ("Package: a\nStatus: install ok installed\nVersion: 1\nArchitecture: all\n"
         "Depends: b [amd64]\n", r"st:1: package 'a': Depends: cannot parse"),
        ("Package: a\nStatus: install ok installed\nVersion: 1\nArchitecture: all\n"
         "Essential: maybe\n", r"Essential: expected `yes` or `no`"),
        ("Package: a\nStatus: install ok installed\nVersion: 1\nArchitecture: all\n"
         "Multi-Arch: sometimes\n", r"invalid Multi-Arch"),
        ("Package: a\nStatus: install ok installed\nVersion: 1\nArchitecture: all\n\n"
         "Package: a\nStatus: install ok installed\nVersion: 2\nArchitecture: all\n",
         r"st:6: package a:all is listed twice \(also at line 1\)"),
        ("Package: a\n# comment\n", r"st:2: comment lines are not allowed"),
    ],
)
def test_errors(text: str, match: str) -> None:
    with pytest.raises(DpkgStatusError, match=match):
        parse_dpkg_status(text, source="st")


def test_broken_fields_of_removed_packages_are_not_checked() -> None:
    text = "Package: gone\nStatus: deinstall ok config-files\nDepends: [[[\nVersion: ???\n"
    assert parse_dpkg_status(text) == ()
