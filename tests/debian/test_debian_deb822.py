"""deb822 stanzas and package relationships, checked against python-debian on real data."""

from __future__ import annotations

import io
import os
import pickle
import shutil
import subprocess

import pytest
from debian import deb822 as pydeb822

from pants_sysext.formats.deb822 import (
    Deb822Error,
    Relation,
    Stanza,
    check_package_fields,
    field_lines,
    iter_stanzas,
    parse_relation_list,
    parse_relations,
    parse_single_stanza,
    parse_source_field,
    parse_stanzas,
)
from tests.debian.deb_builders import FIXTURE_DEBS, fixture_deb

STATUS = "/var/lib/dpkg/status"

SAMPLE = """\
Package: jq
Version: 1.6-2.1+deb12u3
Depends: libjq1 (= 1.6-2.1+deb12u3),
 libc6 (>= 2.34)
Description: lightweight and flexible command-line JSON processor
 jq is like sed for JSON data.
 .
   an indented line stays indented
MD5sum: 0123

package: libjq1
Multi-Arch: same
"""


def test_fields_continuations_and_case() -> None:
    first, second = parse_stanzas(SAMPLE)
    assert list(first) == ["Package", "Version", "Depends", "Description", "MD5sum"]
    assert first["package"] == first["PACKAGE"] == "jq"
    assert first.spelling("md5SUM") == "MD5sum"
    assert first["Depends"] == "libjq1 (= 1.6-2.1+deb12u3),\n libc6 (>= 2.34)"
    assert first["Description"] == (
        "lightweight and flexible command-line JSON processor\n"
        " jq is like sed for JSON data.\n"
        " .\n"
        "   an indented line stays indented"
    )
    assert first.lines("Depends") == ("libjq1 (= 1.6-2.1+deb12u3),", "libc6 (>= 2.34)")
    assert "md5sum" in first and "Nope" not in first and 3 not in first
    assert first.lineno == 1 and second.lineno == 11
    assert list(second.items()) == [("package", "libjq1"), ("Multi-Arch", "same")]
    assert second["Package"] == "libjq1"
    assert second.get("Version") is None


def test_release_sha256_list() -> None:
    text = (
        "Suite: bookworm\n"
        "SHA256:\n"
        " " + "a" * 64 + "   1234 main/binary-amd64/Packages\n"
        " " + "b" * 64 + "    567 main/binary-amd64/Packages.xz\n"
    )
    stanza = parse_single_stanza(text)
    assert stanza["SHA256"].startswith("\n ")
    assert [line.split() for line in stanza.lines("sha256")] == [
        ["a" * 64, "1234", "main/binary-amd64/Packages"],
        ["b" * 64, "567", "main/binary-amd64/Packages.xz"],
    ]


def test_comments_blank_lines_crlf_and_streams() -> None:
    text = (
        "\n\n# leading comment\n"
        "Types: deb\r\n"
        "# a comment between fields\r\n"
        "URIs: http://example.org/debian\r\n"
        " \t \r\n"  # white space only: a separator
        "Types: deb-src\n"
        "Suites: bookworm\n\n\n\n"
        "# trailing comment\n"
    )
    want = [
        [("Types", "deb"), ("URIs", "http://example.org/debian")],
        [("Types", "deb-src"), ("Suites", "bookworm")],
    ]
    assert [list(s.fields) for s in iter_stanzas(text)] == want
    assert [list(s.fields) for s in iter_stanzas(text.encode())] == want
    assert [list(s.fields) for s in iter_stanzas(io.BytesIO(text.encode()))] == want
    assert [list(s.fields) for s in iter_stanzas(io.StringIO(text, newline=""))] == want
    assert [list(s.fields) for s in iter_stanzas(text.splitlines(keepends=True))] == want
    with pytest.raises(Deb822Error, match=r"<x>:3: comment lines are not allowed"):
        parse_stanzas(text, source="<x>", comments=False)


def test_binary_stream_is_left_open() -> None:
    stream = io.BytesIO(b"A: 1\n")
    assert parse_stanzas(stream)[0]["a"] == "1"
    assert not stream.closed


def test_only_line_feeds_split_lines() -> None:
    # str.splitlines() would split on these; dpkg and apt do not.
    stanza = parse_single_stanza("Description: a\x0cb\u2028c\x1cd\n")
    assert stanza["Description"] == "a\x0cb\u2028c\x1cd"


@pytest.mark.parametrize(
    "text, message",
    [
        (" continuation first\n", r":1: continuation line outside a field"),
        ("A: 1\nno colon here\n", r":2: expected `Field: value`"),
        ("A: 1\na: 2\n", r":2: duplicate field 'a' in one stanza \(also 'A'\)"),
        ("-A: 1\n", r":1: invalid field name '-A'"),
        ("Ä: 1\n", r":1: invalid field name"),
        (b"A: \xff\n", r"not UTF-8"),
    ],
)
def test_syntax_errors(text, message) -> None:
    with pytest.raises(Deb822Error, match=message) as info:
        parse_stanzas(text, source="ctl")
    assert str(info.value).startswith("ctl")


def test_non_utf8_stream_names_the_line() -> None:
    with pytest.raises(Deb822Error, match=r"ctl:10001: not UTF-8"):
        parse_stanzas(io.BytesIO(b"A: 1\n\n" * 5000 + b"B: \xff\n"), source="ctl")


def test_single_stanza_counts() -> None:
    with pytest.raises(Deb822Error, match="exactly one stanza, found 2"):
        parse_single_stanza("A: 1\n\nB: 2\n")
    with pytest.raises(Deb822Error, match="found 0"):
        parse_single_stanza("\n# nothing\n")


def test_stanza_is_read_only_hashable_and_picklable() -> None:
    stanza = Stanza([("Package", "jq"), ("Version", "1")], lineno=7)
    with pytest.raises(AttributeError):
        stanza.lineno = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        stanza["Package"] = "x"  # type: ignore[index]
    assert not hasattr(stanza, "__setitem__")
    assert stanza == Stanza([("Package", "jq"), ("Version", "1")])
    assert stanza != Stanza([("package", "jq"), ("Version", "1")])
    assert len({stanza, Stanza(stanza.fields)}) == 1
    copy = pickle.loads(pickle.dumps(stanza))
    assert copy == stanza and copy.lineno == 7
    with pytest.raises(ValueError, match="duplicate field"):
        Stanza([("A", "1"), ("a", "2")])
    assert pickle.loads(pickle.dumps(Deb822Error("s", "m", lineno=3))).lineno == 3


def test_dump_round_trips() -> None:
    for stanza in parse_stanzas(SAMPLE):
        assert parse_single_stanza(stanza.dump()) == stanza


def _normalize_pydeb(value: str) -> str:
    # python-debian keeps trailing white space of continuation lines; we strip it.
    return "\n".join(line.rstrip() for line in value.split("\n"))


def _compare_with_python_debian(text: str) -> int:
    ours = parse_stanzas(text, comments=False)
    theirs = list(pydeb822.Deb822.iter_paragraphs(text.splitlines(keepends=True)))
    assert len(ours) == len(theirs)
    for mine, other in zip(ours, theirs):
        assert list(mine) == list(other.keys())
        for name in mine:
            assert mine[name] == _normalize_pydeb(other[name]), name
    return len(ours)


@pytest.mark.skipif(not os.path.exists(STATUS), reason="no dpkg status database")
def test_real_dpkg_status_matches_python_debian(tmp_path) -> None:
    copy = tmp_path / "status"
    shutil.copyfile(STATUS, copy)
    assert _compare_with_python_debian(copy.read_text(encoding="utf-8")) > 50


@pytest.mark.parametrize("deb", FIXTURE_DEBS)
def test_control_files_match_python_debian(deb: str) -> None:
    text = subprocess.run(
        ["dpkg-deb", "-f", fixture_deb(deb)], stdout=subprocess.PIPE, check=True, text=True
    ).stdout
    assert _compare_with_python_debian(text) == 1


def test_field_lines() -> None:
    assert field_lines("\n a \n\n  b") == ("a", "b")


# --- relations -------------------------------------------------------------------------------


def test_parse_relations() -> None:
    value = "libc6 (>= 2.34), python3:any, libfoo1 (<< 2:1.0~rc1) | libbar1, x (< 1), y (>2)"
    assert parse_relations(value) == (
        (Relation("libc6", None, ">=", "2.34"),),
        (Relation("python3", "any"),),
        (Relation("libfoo1", None, "<<", "2:1.0~rc1"), Relation("libbar1")),
        (Relation("x", None, "<=", "1"),),
        (Relation("y", None, ">=", "2"),),
    )
    assert str(parse_relations("a:amd64(>=1)")[0][0]) == "a:amd64 (>= 1)"
    assert parse_relations(None) == parse_relations("  ") == ()
    assert parse_relation_list("awk, c-compiler (= 1)") == (
        Relation("awk"),
        Relation("c-compiler", None, "=", "1"),
    )


@pytest.mark.parametrize(
    "value, message",
    [
        ("a,, b", "empty entry"),
        ("a [amd64]", "architecture restrictions"),
        ("a <!nocheck>", "build profiles"),
        ("a (>= )", "cannot parse"),
        ("a (=> 1)", "cannot parse"),
        ("A-Upper", "invalid package name"),
        ("a (>= 1 2)", "cannot parse"),
        ("a (>= 1/2)", "invalid version"),
    ],
)
def test_bad_relations(value: str, message: str) -> None:
    with pytest.raises(Deb822Error, match=message):
        parse_relations(value, field="Depends", source="ctl")


def test_alternatives_are_refused_where_dpkg_refuses_them() -> None:
    with pytest.raises(Deb822Error, match=r"Conflicts: alternatives"):
        parse_relation_list("a | b", field="Conflicts")


def _pydeb_relations(value: str) -> list:
    return [
        [
            (
                rel["name"],
                rel.get("archqual"),
                rel["version"][0] if rel.get("version") else None,
                rel["version"][1] if rel.get("version") else None,
            )
            for rel in group
        ]
        for group in pydeb822.PkgRelation.parse_relations(value)
    ]


@pytest.mark.skipif(not os.path.exists(STATUS), reason="no dpkg status database")
def test_relations_of_every_installed_package_match_python_debian(tmp_path) -> None:
    copy = tmp_path / "status"
    shutil.copyfile(STATUS, copy)
    checked = 0
    for stanza in parse_stanzas(copy.read_text(encoding="utf-8"), comments=False):
        for name in ("Depends", "Pre-Depends", "Provides", "Conflicts", "Breaks", "Replaces"):
            value = stanza.get(name)
            if value is None:
                continue
            ours = [
                [(r.name, r.arch, r.op, r.version) for r in group]
                for group in parse_relations(value, field=name)
            ]
            assert ours == _pydeb_relations(value), (stanza["Package"], name)
            checked += 1
    assert checked > 100


def test_source_field() -> None:
    assert parse_source_field(None, package="libjq1", version="1.6") == ("libjq1", "1.6")
    assert parse_source_field("jq", package="libjq1", version="1.6") == ("jq", "1.6")
    assert parse_source_field("ppp (2.4.9-1+1.1)", package="ppp", version="2.4.9-1+1.1+b1") == (
        "ppp",
        "2.4.9-1+1.1",
    )
    with pytest.raises(Deb822Error):
        parse_source_field("a (1) b", package="x", version="1")


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"Version": "1", "Architecture": "all"}, "missing or empty field 'Package'"),
        ({"Package": "a", "Version": " ", "Architecture": "all"}, "'Version'"),
        ({"Package": "../a", "Version": "1", "Architecture": "all"}, "invalid package name"),
        ({"Package": "a", "Version": "1/../2", "Architecture": "all"}, "invalid version"),
        ({"Package": "a", "Version": "1 2", "Architecture": "all"}, "invalid version"),
        ({"Package": "a", "Version": "1", "Architecture": "x/y"}, "invalid architecture"),
    ],
)
def test_check_package_fields(fields, message) -> None:
    with pytest.raises(Deb822Error, match=message):
        check_package_fields(Stanza(fields.items()), source="ctl")
