"""Portage's binhost index (`Packages`): the real fixture, crafted cases, and Portage itself."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import pytest

from pants_sysext.formats.packages_index import (
    PackagesIndex,
    PackagesIndexError,
    parse_packages_index,
    render_packages_index,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "portage"
BINHOST = FIXTURES / "binhost"
EXPECTED = FIXTURES / "expected"

# What portage.dbapi.bintree.binarytree hands to PackageIndex (Portage 3.0.x).
_BINTREE_DEFAULT_PKG_DATA = {
    "BDEPEND": "",
    "BUILD_ID": "",
    "BUILD_TIME": "",
    "DEFINED_PHASES": "",
    "DEPEND": "",
    "EAPI": "0",
    "IDEPEND": "",
    "IUSE": "",
    "KEYWORDS": "",
    "LICENSE": "",
    "PATH": "",
    "PDEPEND": "",
    "PROPERTIES": "",
    "PROVIDES": "",
    "RDEPEND": "",
    "REQUIRES": "",
    "RESTRICT": "",
    "SLOT": "0",
    "USE": "",
}
_BINTREE_TRANSLATED_KEYS = (
    ("DESCRIPTION", "DESC"),
    ("_mtime_", "MTIME"),
    ("repository", "REPO"),
)
_BINTREE_INHERITED_KEYS = ["CHOST", "repository"]


def _fixture_index() -> PackagesIndex:
    return parse_packages_index((BINHOST / "Packages").read_bytes(), source="Packages")


def _expected(cpv: str) -> dict:
    category, pf = cpv.split("/")
    [path] = EXPECTED.glob(f"{category}__{pf}.*.json")
    return json.loads(path.read_text())


# -- the real fixture ---------------------------------------------------------------------------


def test_packages_and_packages_gz_parse_equal() -> None:
    plain = _fixture_index()
    compressed_data = (BINHOST / "Packages.gz").read_bytes()
    assert compressed_data[:2] == b"\x1f\x8b"
    compressed = parse_packages_index(compressed_data, source="Packages.gz")
    assert compressed == plain
    assert [p.cpv for p in plain.packages] == [
        "app-misc/jq-1.6-r3",
        "dev-libs/oniguruma-6.9.8",
        "net-dialup/ppp-2.4.9-r1",
        "sys-fs/fuse-3.14.0",
    ]
    assert plain.header_value("PACKAGES") == "4"
    assert plain.header_value("CHOST") == "x86_64-pc-linux-gnu"


def test_jq_matches_the_expected_file_record() -> None:
    [jq] = _fixture_index().find("app-misc/jq-1.6-r3")
    expected = _expected("app-misc/jq-1.6-r3")
    assert jq.path == jq.get("PATH") == expected["file"] == "app-misc/jq-1.6-r3.gpkg.tar"
    assert jq.size == int(jq.get("SIZE")) == expected["size"]
    assert jq.get("MD5") == expected["md5"]
    assert jq.get("SHA1") == expected["sha1"]


@pytest.mark.parametrize(
    "cpv", ["app-misc/jq-1.6-r3", "dev-libs/oniguruma-6.9.8", "net-dialup/ppp-2.4.9-r1",
            "sys-fs/fuse-3.14.0"],
)
def test_every_package_matches_its_file(cpv: str) -> None:
    [pkg] = _fixture_index().find(cpv)
    expected = _expected(cpv)
    assert pkg.path == expected["file"]
    binpkg = BINHOST / pkg.path
    assert binpkg.is_file()
    assert binpkg.stat().st_size == pkg.size == expected["size"]
    assert (pkg.get("MD5"), pkg.get("SHA1")) == (expected["md5"], expected["sha1"])


def test_defaults_and_inherited_keys() -> None:
    index = _fixture_index()
    by_cpv = {p.cpv: p for p in index.packages}
    jq = by_cpv["app-misc/jq-1.6-r3"]
    # jq's block has no SLOT line: Portage's default applies.
    jq_block = next(
        b for b in (BINHOST / "Packages").read_text().split("\n\n")
        if "CPV: app-misc/jq-1.6-r3\n" in b
    )
    assert "\nSLOT:" not in jq_block
    assert jq.slot == jq.get("SLOT") == "0"
    assert by_cpv["dev-libs/oniguruma-6.9.8"].slot == "0/5"
    assert by_cpv["net-dialup/ppp-2.4.9-r1"].slot == "0/2.4.9"
    assert by_cpv["sys-fs/fuse-3.14.0"].slot == "3/3.14.0"
    for pkg in index.packages:
        # No block has CHOST: it comes from the header.
        assert pkg.get("CHOST") == "x86_64-pc-linux-gnu"
        assert pkg.get("REPO") == "portage-stable"
        assert pkg.build_id is None
        assert pkg.get("EAPI") == "8"


# -- crafted indexes ----------------------------------------------------------------------------

_HEADER = {"CHOST": "aarch64-unknown-linux-gnu", "REPO": "gentoo", "VERSION": "0"}


def test_missing_path_is_the_legacy_tbz2_layout() -> None:
    text = render_packages_index(
        {**_HEADER, "PACKAGES": "1"},
        [{"CPV": "app-misc/hello-2.12-r1", "SIZE": "1234", "MD5": "0" * 32}],
    )
    index = parse_packages_index(text.encode())
    [pkg] = index.packages
    assert pkg.get("PATH") is None
    assert pkg.path == "app-misc/hello-2.12-r1.tbz2"
    assert pkg.slot == "0"
    assert pkg.get("CHOST") == "aarch64-unknown-linux-gnu"
    assert pkg.get("REPO") == "gentoo"
    assert pkg.size == 1234


def test_multi_instance_highest_build_id_first() -> None:
    text = render_packages_index(
        {**_HEADER, "PACKAGES": "3"},
        [
            {"CPV": "cat/pkg-1", "BUILD_ID": "1", "PATH": "cat/pkg/pkg-1-1.xpak", "SIZE": "10"},
            {"CPV": "cat/other-1", "BUILD_ID": "7", "PATH": "cat/other/other-1-7.xpak"},
            {"CPV": "cat/pkg-1", "BUILD_ID": "2", "PATH": "cat/pkg/pkg-1-2.xpak", "SIZE": "20"},
        ],
    )
    index = parse_packages_index(text.encode())
    found = index.find("cat/pkg-1")
    assert [(p.build_id, p.path, p.size) for p in found] == [
        (2, "cat/pkg/pkg-1-2.xpak", 20),
        (1, "cat/pkg/pkg-1-1.xpak", 10),
    ]
    assert index.find("cat/missing-1") == ()


def test_malformed_line_names_its_line_number() -> None:
    text = (
        "CHOST: x86_64-pc-linux-gnu\n"  # 1
        "PACKAGES: 1\n"  # 2
        "\n"  # 3
        "CPV: app-misc/jq-1.6-r3\n"  # 4
        "this line has no colon\n"  # 5
        "SLOT: 0\n"  # 6
    )
    with pytest.raises(PackagesIndexError) as e:
        parse_packages_index(text.encode(), source="binhost/Packages")
    assert "binhost/Packages:5:" in str(e.value)
    assert "this line has no colon" in str(e.value)

    with pytest.raises(PackagesIndexError, match=r"^Packages:2: "):
        parse_packages_index(b"CHOST: x\n SLOT: 0\n")


def test_block_without_cpv_names_its_first_line() -> None:
    text = "CHOST: x\n\nSLOT: 0\nSIZE: 1\n"
    with pytest.raises(PackagesIndexError, match=r"Packages:3: package block without a valid CPV"):
        parse_packages_index(text.encode())


def test_packages_count_mismatch() -> None:
    text = render_packages_index(
        {**_HEADER, "PACKAGES": "3"},
        [{"CPV": "cat/a-1"}, {"CPV": "cat/b-1"}],
    )
    with pytest.raises(PackagesIndexError) as e:
        parse_packages_index(text.encode(), source="Packages")
    assert "PACKAGES: 3" in str(e.value)
    assert "2 are listed" in str(e.value)


def test_other_unreadable_indexes() -> None:
    with pytest.raises(PackagesIndexError, match="empty index"):
        parse_packages_index(b"\n\n")
    with pytest.raises(PackagesIndexError, match="first block must be the header"):
        parse_packages_index(b"CPV: cat/a-1\n")
    with pytest.raises(PackagesIndexError, match="corrupt gzip"):
        parse_packages_index(gzip.compress(b"CHOST: x\n")[:-6])
    with pytest.raises(PackagesIndexError, match="not UTF-8"):
        parse_packages_index(b"CHOST: \xff\n")


def test_render_round_trips() -> None:
    header = {**_HEADER, "PACKAGES": "2", "TIMESTAMP": "1700000000"}
    packages = [
        {"CPV": "cat/b-2", "SLOT": "2/2.1", "PATH": "cat/b/b-2-3.xpak", "BUILD_ID": "3",
         "USE": "amd64 ssl", "PROVIDES": "x86_64: libb.so.2"},
        {"CPV": "cat/a-1", "EAPI": "8", "CHOST": "x86_64-pc-linux-gnu"},
    ]
    text = render_packages_index(header, packages)
    index = parse_packages_index(text.encode())
    assert dict(index.header) == header
    assert [p.cpv for p in index.packages] == ["cat/b-2", "cat/a-1"]
    for parsed, original in zip(index.packages, packages):
        values = parsed.as_dict()
        assert {k: values[k] for k in original} == original
    # A package's own CHOST wins over the header's.
    assert index.packages[1].get("CHOST") == "x86_64-pc-linux-gnu"
    assert index.packages[0].get("CHOST") == "aarch64-unknown-linux-gnu"

    # Rendering a parsed index (defaults and inherited keys written out) gives the same index.
    again = parse_packages_index(
        render_packages_index(dict(index.header), [p.as_dict() for p in index.packages]).encode()
    )
    assert again == index

    fixture = _fixture_index()
    assert parse_packages_index(
        render_packages_index(dict(fixture.header), [p.as_dict() for p in fixture.packages])
        .encode()
    ) == fixture


# -- Portage itself -----------------------------------------------------------------------------


def _portage_index(text: str):
    getbinpkg = pytest.importorskip("portage.getbinpkg")
    index = getbinpkg.PackageIndex(
        default_header_data={"CHOST": "", "repository": ""},
        default_pkg_data=_BINTREE_DEFAULT_PKG_DATA,
        inherited_keys=_BINTREE_INHERITED_KEYS,
        translated_keys=_BINTREE_TRANSLATED_KEYS,
    )
    index.read(io.StringIO(text))
    return index


def _assert_agrees_with_portage(text: str) -> None:
    ours = parse_packages_index(text.encode())
    theirs = _portage_index(text)
    to_file_key = dict(_BINTREE_TRANSLATED_KEYS)

    assert [p["CPV"] for p in theirs.packages] == [p.cpv for p in ours.packages]
    assert {to_file_key.get(k, k): v for k, v in theirs.header.items() if v} == {
        k: v for k, v in ours.header if v
    }
    for mine, portage_pkg in zip(ours.packages, theirs.packages):
        # bintree's own fallback for an empty PATH is the legacy `CATEGORY/PF.tbz2` layout.
        portage_path = portage_pkg["PATH"] or f"{portage_pkg['CPV']}.tbz2"
        assert mine.path == portage_path
        assert mine.slot == portage_pkg["SLOT"]
        assert mine.get("CHOST") == portage_pkg["CHOST"]
        assert mine.get("REPO") == portage_pkg.get("repository")
        assert mine.build_id == (int(portage_pkg["BUILD_ID"]) if portage_pkg["BUILD_ID"] else None)
        # Every value Portage sees, we see (under the key the file uses), and vice versa.
        theirs_values = {to_file_key.get(k, k): v for k, v in portage_pkg.items() if v}
        assert {k: v for k, v in mine.values if v} == theirs_values


def test_fixture_agrees_with_portage() -> None:
    text = (BINHOST / "Packages").read_text()
    _assert_agrees_with_portage(text)
    theirs = _portage_index(text)
    assert [(p["CPV"], p["PATH"], p["SLOT"]) for p in theirs.packages] == [
        ("app-misc/jq-1.6-r3", "app-misc/jq-1.6-r3.gpkg.tar", "0"),
        ("dev-libs/oniguruma-6.9.8", "dev-libs/oniguruma-6.9.8.gpkg.tar", "0/5"),
        ("net-dialup/ppp-2.4.9-r1", "net-dialup/ppp-2.4.9-r1.tbz2", "0/2.4.9"),
        ("sys-fs/fuse-3.14.0", "sys-fs/fuse-3.14.0.gpkg.tar", "3/3.14.0"),
    ]
    with gzip.open(BINHOST / "Packages.gz", "rt", encoding="utf-8") as f:
        _assert_agrees_with_portage(f.read())


def test_crafted_index_agrees_with_portage() -> None:
    text = render_packages_index(
        {**_HEADER, "PACKAGES": "4"},
        [
            {"CPV": "cat/pkg-1", "BUILD_ID": "1", "PATH": "cat/pkg/pkg-1-1.xpak"},
            {"CPV": "cat/pkg-1", "BUILD_ID": "2", "PATH": "cat/pkg/pkg-1-2.xpak", "SLOT": "1"},
            {"CPV": "app-misc/hello-2.12-r1", "REPO": "local", "CHOST": "x86_64-pc-linux-gnu"},
            {"CPV": "dev-libs/foo-3", "DESC": "A library: with colons", "MTIME": "17"},
        ],
    )
    _assert_agrees_with_portage(text)
