"""Portage's installed-package database: the fixture Portage wrote, crafted cases, and Portage."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pants_sysext.formats.vdb import (
    InstalledPackage,
    VdbError,
    read_vdb,
    vdb_directory,
    vdb_from_json,
    vdb_to_json,
)

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "portage" / "vdb"
FIXTURE_DB = FIXTURE / "var" / "db" / "pkg"

FIXTURE_CPVS = (
    "app-misc/jq-1.6-r3",
    "dev-libs/oniguruma-6.9.8",
    "net-dialup/ppp-2.4.9-r1",
    "sys-fs/fuse-3.14.0",
    "sys-libs/glibc-2.36-r7",
    "virtual/libc-1-r1",
)


@pytest.fixture
def vdb_copy(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    shutil.copytree(FIXTURE, root)
    return root


def _by_cpv(packages) -> dict[str, InstalledPackage]:
    return {p.cpv: p for p in packages}


def test_reads_the_fixture() -> None:
    packages = read_vdb(str(FIXTURE))
    assert tuple(p.cpv for p in packages) == FIXTURE_CPVS
    pkgs = _by_cpv(packages)

    jq = pkgs["app-misc/jq-1.6-r3"]
    assert jq.slot == "0"
    assert jq.use == {"amd64", "elibc_glibc", "kernel_linux", "oniguruma"}
    assert jq.get("RDEPEND") == "dev-libs/oniguruma:0/5= >=sys-libs/glibc-2.36-r7"
    assert jq.provides == "x86_64: libjq.so.1"
    assert jq.requires == "x86_64: ld-linux-x86-64.so.2 libc.so.6 libm.so.6 libonig.so.5"
    assert jq.get("CATEGORY") == "app-misc"
    assert jq.get("PF") == "jq-1.6-r3"
    assert jq.get("repository") == "portage-stable"
    assert (jq.get("COUNTER") or "").isdigit()
    # A multi-line key keeps its lines; only the one trailing newline goes.
    needed = jq.get("NEEDED.ELF.2")
    assert needed is not None and needed.count("\n") == 1 and not needed.endswith("\n")
    assert needed.splitlines()[1] == "X86_64;/usr/bin/jq;;;libjq.so.1,libc.so.6;x86_64"
    # Not metadata keys: the environment, the ebuild copy, the consolidated metadata file and
    # CONTENTS (which is `contents`).
    keys = {k for k, _ in jq.values}
    assert not keys & {"environment.bz2", "jq-1.6-r3.ebuild", "metadata", "CONTENTS"}
    assert jq.contents[:3] == ("dir /usr", "dir /usr/bin",
                               "obj /usr/bin/jq 1cb62d37097fe0972ecfecc6bb488a45 1795979242")
    assert jq.contents[-1] == "sym /usr/lib64/libjq.so.1 -> libjq.so.1.0.4 1795979242"

    onig = pkgs["dev-libs/oniguruma-6.9.8"]
    assert onig.slot == "0/5"
    assert onig.provides == "x86_64: libonig.so.5"

    glibc = pkgs["sys-libs/glibc-2.36-r7"]
    assert glibc.slot == "2.2"
    assert glibc.provides == "" and glibc.requires == ""
    assert glibc.get("PROVIDES") is None

    libc = pkgs["virtual/libc-1-r1"]
    assert libc.get("RDEPEND") == "sys-libs/glibc:2.2"
    assert libc.contents == ()  # an empty CONTENTS file
    assert libc.get("IUSE") == ""  # an empty value is still a value

    ppp = pkgs["net-dialup/ppp-2.4.9-r1"]
    assert ppp.slot == "0/2.4.9"
    assert "obj /etc/ppp/options 8bf2e0b8499592fa1c119818fe5a326f 1795979254" in ppp.contents


def test_values_are_sorted_and_the_result_is_hashable() -> None:
    packages = read_vdb(str(FIXTURE))
    for pkg in packages:
        assert [k for k, _ in pkg.values] == sorted(k for k, _ in pkg.values)
    assert len(set(packages)) == len(FIXTURE_CPVS)


def test_accepts_the_root_or_the_database_directory() -> None:
    assert read_vdb(str(FIXTURE_DB)) == read_vdb(str(FIXTURE))
    assert read_vdb(str(FIXTURE_DB) + "/") == read_vdb(str(FIXTURE))
    assert vdb_directory(str(FIXTURE)) == os.path.join(str(FIXTURE), "var", "db", "pkg")


def test_missing_or_empty_database(tmp_path: Path) -> None:
    with pytest.raises(VdbError) as e:
        read_vdb(str(tmp_path))
    assert str(tmp_path) in str(e.value) and "var/db/pkg" in str(e.value)

    (tmp_path / "var" / "db" / "pkg" / "app-misc").mkdir(parents=True)
    with pytest.raises(VdbError) as e:
        read_vdb(str(tmp_path))
    assert str(tmp_path / "var" / "db" / "pkg") in str(e.value)
    assert "no packages" in str(e.value)


def test_ignores_interrupted_merges_lock_files_and_strays(vdb_copy: Path) -> None:
    db = vdb_copy / "var" / "db" / "pkg"
    merging = db / "app-misc" / "-MERGING-jq-1.7"
    merging.mkdir()
    (merging / "SLOT").write_text("0\n")
    (db / "app-misc" / ".jq-1.6-r3.portage_lockfile").write_text("")
    (db / ".portage_lockfile").write_text("")
    (db / "lost+found").mkdir()
    (db / "app-misc" / "stray-file").write_text("not a package\n")
    (db / "app-misc" / "jq-1.6-r3" / ".hidden").write_text("x\n")
    packages = read_vdb(str(vdb_copy))
    assert tuple(p.cpv for p in packages) == FIXTURE_CPVS
    assert _by_cpv(packages)["app-misc/jq-1.6-r3"].get(".hidden") is None


def test_skips_binary_and_oversized_files(vdb_copy: Path) -> None:
    pkgdir = vdb_copy / "var" / "db" / "pkg" / "dev-libs" / "oniguruma-6.9.8"
    (pkgdir / "BINARY_THING").write_bytes(b"\x7fELF\x00\x01")
    (pkgdir / "HUGE").write_text("x" * ((1 << 20) + 1))
    (pkgdir / "JUST_FITS").write_text("y" * (1 << 20))
    (pkgdir / "LATIN1").write_bytes(b"caf\xe9\n")
    onig = _by_cpv(read_vdb(str(vdb_copy)))["dev-libs/oniguruma-6.9.8"]
    assert onig.get("BINARY_THING") is None
    assert onig.get("HUGE") is None
    assert onig.get("JUST_FITS") == "y" * (1 << 20)
    assert onig.get("LATIN1") == "caf\ufffd"


def test_large_contents_are_read_in_full(vdb_copy: Path) -> None:
    pkgdir = vdb_copy / "var" / "db" / "pkg" / "sys-fs" / "fuse-3.14.0"
    lines = [f"obj /usr/share/fuse/file{i:06d} d41d8cd98f00b204e9800998ecf8427e 1"
             for i in range(30000)]
    (pkgdir / "CONTENTS").write_text("\n".join(lines) + "\n")
    assert (pkgdir / "CONTENTS").stat().st_size > (1 << 20)
    fuse = _by_cpv(read_vdb(str(vdb_copy)))["sys-fs/fuse-3.14.0"]
    assert fuse.contents == tuple(lines)


def test_category_or_pf_mismatch_names_the_directory(vdb_copy: Path) -> None:
    pkgdir = vdb_copy / "var" / "db" / "pkg" / "app-misc" / "jq-1.6-r3"
    (pkgdir / "PF").write_text("jq-1.7\n")
    with pytest.raises(VdbError) as e:
        read_vdb(str(vdb_copy))
    assert str(pkgdir) in str(e.value)
    assert "'jq-1.7'" in str(e.value) and "app-misc/jq-1.6-r3" in str(e.value)

    (pkgdir / "PF").write_text("jq-1.6-r3\n")
    (pkgdir / "CATEGORY").write_text("dev-util\n")
    with pytest.raises(VdbError, match="CATEGORY file says 'dev-util'"):
        read_vdb(str(vdb_copy))


def test_a_directory_that_is_not_a_package_is_an_error(vdb_copy: Path) -> None:
    bogus = vdb_copy / "var" / "db" / "pkg" / "app-misc" / "not_a_version"
    bogus.mkdir()
    with pytest.raises(VdbError) as e:
        read_vdb(str(vdb_copy))
    assert str(bogus) in str(e.value)


def test_keys_only_in_the_consolidated_metadata_file(vdb_copy: Path) -> None:
    # `emaint vdb --delete-individual-files` leaves the keys only in `metadata`.
    pkgdir = vdb_copy / "var" / "db" / "pkg" / "virtual" / "libc-1-r1"
    for key in ("RDEPEND", "SLOT", "USE"):
        (pkgdir / key).unlink()
    libc = _by_cpv(read_vdb(str(vdb_copy)))["virtual/libc-1-r1"]
    assert libc.get("RDEPEND") == "sys-libs/glibc:2.2"
    assert libc.slot == "0"
    assert libc.use == {"amd64", "elibc_glibc", "kernel_linux"}
    # An individual file wins over the metadata file.
    (pkgdir / "SLOT").write_text("1\n")
    assert _by_cpv(read_vdb(str(vdb_copy)))["virtual/libc-1-r1"].slot == "1"
    # A metadata file of an unknown format is ignored.
    (pkgdir / "metadata").write_text("#format=99\nRDEPEND=x/y\n")
    assert _by_cpv(read_vdb(str(vdb_copy)))["virtual/libc-1-r1"].get("RDEPEND") is None


def test_json_round_trip_is_exact_and_deterministic() -> None:
    packages = read_vdb(str(FIXTURE))
    text = vdb_to_json(packages)
    assert vdb_from_json(text) == packages
    shuffled = list(packages)
    random.Random(7).shuffle(shuffled)
    assert vdb_to_json(shuffled) == text
    doc = json.loads(text)
    assert json.dumps(doc, sort_keys=True, separators=(",", ":")) == text
    assert [p["cpv"] for p in doc["packages"]] == list(FIXTURE_CPVS)

    without = vdb_from_json(vdb_to_json(packages, include_contents=False))
    assert [p.values for p in without] == [p.values for p in packages]
    assert all(p.contents == () for p in without)


def test_json_keeps_non_utf8_paths(vdb_copy: Path) -> None:
    pkgdir = vdb_copy / "var" / "db" / "pkg" / "sys-fs" / "fuse-3.14.0"
    with open(pkgdir / "CONTENTS", "ab") as f:
        f.write(b"obj /usr/share/caf\xe9 d41d8cd98f00b204e9800998ecf8427e 1\n")
    packages = read_vdb(str(vdb_copy))
    fuse = _by_cpv(packages)["sys-fs/fuse-3.14.0"]
    assert os.fsencode(fuse.contents[-1].split()[1]) == b"/usr/share/caf\xe9"
    assert vdb_from_json(vdb_to_json(packages)) == packages


@pytest.mark.parametrize(
    "text, message",
    [
        ("{", "not JSON"),
        ("[]", "format"),
        ('{"format": "other"}', "format"),
        ('{"format": "pants-sysext-vdb/1", "packages": [{"values": {}}]}', "packages[0]"),
        ('{"format": "pants-sysext-vdb/1", "packages": [{"cpv": "a/b-1", "values": {"X": 1}}]}',
         "a/b-1"),
        ('{"format": "pants-sysext-vdb/1", "packages": [{"cpv": "a/b-1", "contents": "x"}]}',
         "contents"),
    ],
)
def test_bad_json(text: str, message: str) -> None:
    with pytest.raises(VdbError, match=message.replace("[", r"\[").replace("]", r"\]")):
        vdb_from_json(text)


def test_runs_without_portage_on_the_standard_library(tmp_path: Path) -> None:
    # The sandboxed steps run it with a plain python3: no site-packages, no Portage.
    script = (
        "import sys\n"
        f"sys.path.insert(0, {str(ROOT / 'src' / 'python')!r})\n"
        "from pants_sysext.formats.vdb import read_vdb, vdb_to_json\n"
        f"text = vdb_to_json(read_vdb({str(FIXTURE)!r}))\n"
        "assert 'portage' not in sys.modules, sorted(sys.modules)\n"
        "print(len(text))\n"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", script], capture_output=True, text=True, check=True
    )
    assert int(out.stdout) == len(vdb_to_json(read_vdb(str(FIXTURE))))


def test_agrees_with_portage_vardbapi(vdb_copy: Path, tmp_path: Path) -> None:
    """Portage's own reader (vartree.dbapi) on the same database reports the same packages."""
    portage = pytest.importorskip("portage")
    from portage.dbapi.vartree import vartree

    config_root = tmp_path / "config"
    config_root.mkdir()
    noise = portage.util.noiselimit
    portage.util.noiselimit = -2  # no repository configured: Portage warns about it
    try:
        settings = portage.config(
            config_root=str(config_root), target_root=str(vdb_copy), eprefix="",
            env={"PATH": os.environ.get("PATH", "")},
        )
        dbapi = vartree(settings=settings).dbapi
        theirs = sorted(dbapi.cpv_all())
        ours = _by_cpv(read_vdb(str(vdb_copy)))
        assert theirs == sorted(ours)
        keys = ("SLOT", "USE", "IUSE", "RDEPEND", "PROVIDES", "REQUIRES", "repository",
                "CHOST", "EAPI", "BUILD_TIME", "COUNTER", "DEFINED_PHASES", "NEEDED.ELF.2",
                "CONTENTS")
        for cpv in theirs:
            values = dict(zip(keys, dbapi.aux_get(cpv, list(keys))))
            mine = ours[cpv]
            for key in keys:
                if key == "CONTENTS":
                    expected = values[key]
                    got = "".join(line + "\n" for line in mine.contents)
                    assert got == expected, cpv
                else:
                    # aux_get normalizes the whitespace of single-line keys.
                    assert " ".join((mine.get(key) or "").split()) == " ".join(
                        values[key].split()
                    ), (cpv, key)
            assert mine.slot == (values["SLOT"] or "0")
            assert mine.use == frozenset(values["USE"].split())
    finally:
        portage.util.noiselimit = noise
