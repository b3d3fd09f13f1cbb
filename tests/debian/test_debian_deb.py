"""The `.deb` reader against real Debian packages (oracle: dpkg-deb) and crafted broken ones."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile

import pytest
from debian import deb822 as pydeb822

from pants_sysext.formats.compression import Compression
from pants_sysext.formats.deb import (
    MAINTAINER_SCRIPTS,
    open_deb_image,
    read_ar_members,
    read_deb_info,
)
from pants_sysext.formats.errors import BinpkgError
from pants_sysext.formats.image import DIR, FILE, HARDLINK, SYMLINK
from tests.debian.deb_builders import (
    CONTROL,
    FIXTURE_DEBS,
    Entry,
    compress,
    control_entries,
    d,
    deb_bytes,
    dpkg_fsys_entries,
    f,
    fixture_deb,
    hard,
    reader_entries,
    sample_data,
    sym,
    tar_bytes,
    write,
)

pytestmark = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb")


def dpkg_accepts(path: str) -> bool:
    """Whether dpkg-deb can read the whole package (control and data)."""
    ok = subprocess.run(["dpkg-deb", "--field", path], capture_output=True).returncode == 0
    return ok and subprocess.run(
        ["dpkg-deb", "--fsys-tarfile", path], capture_output=True
    ).returncode == 0


def read_all(path: str, **kwargs) -> list[tuple]:
    with open_deb_image(path, **kwargs) as (_, entries):
        return reader_entries(entries)


# --- real packages -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", FIXTURE_DEBS)
def test_entries_match_dpkg_fsys_tarfile(name: str) -> None:
    path = fixture_deb(name)
    ours = read_all(path)
    assert ours == dpkg_fsys_entries(path)
    assert ours[0][:2] == ("", DIR)  # "./", the image root
    for row in ours[1:]:
        parts = row[0].split("/")
        assert parts[0] and not {"", ".", ".."} & set(parts), row


@pytest.mark.parametrize("name", FIXTURE_DEBS)
def test_control_matches_dpkg_deb(name: str, tmp_path) -> None:
    path = fixture_deb(name)
    info = read_deb_info(path)
    shown = subprocess.run(
        ["dpkg-deb", "-f", path], stdout=subprocess.PIPE, check=True, text=True
    ).stdout
    oracle = pydeb822.Deb822(shown)
    assert [name for name, _ in info.control] == list(oracle.keys())
    for key, value in info.control:
        assert value == "\n".join(line.rstrip() for line in oracle[key].split("\n")), key
    assert info.field("package") == oracle["Package"] == info.package
    label = subprocess.run(
        ["dpkg-deb", "--show", "--showformat=${Package}_${Version}_${Architecture}", path],
        stdout=subprocess.PIPE,
        check=True,
        text=True,
    ).stdout
    assert info.label == label == name[: -len(".deb")]
    assert info.stanza["VERSION"] == info.version
    assert info.path == path
    assert info.data_member == "data.tar.xz" and info.compression == Compression.XZ
    assert info.control_member == "control.tar.xz"
    assert info.control_compression == Compression.XZ
    assert info.extra_members == ()

    control_dir = tmp_path / "DEBIAN"
    subprocess.run(["dpkg-deb", "-e", path, str(control_dir)], check=True)
    extracted = set(os.listdir(control_dir))
    assert set(info.maintainer_scripts) == extracted & set(MAINTAINER_SCRIPTS)
    assert list(info.maintainer_scripts) == sorted(
        info.maintainer_scripts, key=MAINTAINER_SCRIPTS.index
    )
    conffiles = control_dir / "conffiles"
    want = conffiles.read_text().split() if conffiles.exists() else []
    assert list(info.conffiles) == want


def test_known_fixture_facts() -> None:
    ppp = read_deb_info(fixture_deb("ppp_2.4.9-1+1.1+b1_amd64.deb"))
    assert ppp.maintainer_scripts == ("preinst", "postinst", "prerm", "postrm")
    assert "/etc/ppp/options" in ppp.conffiles
    with open_deb_image(ppp.path) as (_, entries):
        rows = {e.path: e for e, _ in entries}
    pppd = rows["usr/sbin/pppd"]
    assert (pppd.type, pppd.mode, pppd.gname) == (FILE, 0o4754, "dip")
    assert rows["etc/chatscripts"].mode == 0o2750
    fuse = read_deb_info(fixture_deb("fuse3_3.14.0-4_amd64.deb"))
    assert fuse.maintainer_scripts == ("postinst", "postrm", "triggers")
    assert fuse.conffiles == ("/etc/fuse.conf",)


def test_entry_streams_are_only_valid_until_the_next_entry() -> None:
    with open_deb_image(fixture_deb("jq_1.6-2.1+deb12u3_amd64.deb")) as (_, entries):
        kept = [data for _, data in entries if data is not None]
    with pytest.raises(ValueError, match="no longer valid"):
        kept[0].read(1)


# --- crafted, valid ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "control_compression, data_compression",
    [("xz", "xz"), ("gzip", "gzip"), ("none", "none"), ("zstd", "zstd"), ("gzip", "bzip2")],
)
def test_crafted_compressions(tmp_path, control_compression, data_compression) -> None:
    path = write(
        tmp_path / "hello.deb",
        deb_bytes(control_compression=control_compression, data_compression=data_compression),
    )
    assert dpkg_accepts(path)
    info = read_deb_info(path)
    assert info.compression == Compression(data_compression)
    assert info.control_compression == Compression(control_compression)
    assert info.label == "hello_1:2.0-1_amd64"
    assert info.maintainer_scripts == ("postinst", "prerm")
    assert info.conffiles == ("/etc/hello.conf",)
    assert info.field("Description").startswith("a test package\n with a long")
    assert read_all(path) == dpkg_fsys_entries(path)


def test_zstd_tool_is_taken_from_tools(tmp_path) -> None:
    path = write(tmp_path / "z.deb", deb_bytes(data_compression="zstd", control_compression="zstd"))
    assert read_all(path, tools={"zstd": "/usr/bin/zstd"}) == dpkg_fsys_entries(path)
    with pytest.raises(BinpkgError, match=r"control.tar.zst: cannot run `/nonexistent/zstd`"):
        read_deb_info(path, tools={"zstd": "/nonexistent/zstd"})


@pytest.mark.parametrize("compression", ["zstd", "gzip", "none", "xz"])
def test_packages_built_by_dpkg_deb(tmp_path, compression) -> None:
    root = tmp_path / "pkg"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(CONTROL)
    (root / "DEBIAN" / "conffiles").write_text("/etc/hello.conf\n")
    script = root / "DEBIAN" / "config"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    (root / "usr" / "bin").mkdir(parents=True)
    (root / "usr" / "bin" / "hello").write_bytes(b"\x7fELF" * 1000)
    (root / "usr" / "bin" / "hello").chmod(0o755)
    os.symlink("hello", root / "usr" / "bin" / "hi")
    os.link(root / "usr" / "bin" / "hello", root / "usr" / "bin" / "hello2")
    (root / "etc").mkdir()
    (root / "etc" / "hello.conf").write_text("x=1\n")
    path = str(tmp_path / "hello.deb")
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", f"-Z{compression}", "--build", str(root), path],
        check=True,
        capture_output=True,
    )
    info = read_deb_info(path)
    assert info.compression == Compression(compression)
    assert info.maintainer_scripts == ("config",)
    assert info.conffiles == ("/etc/hello.conf",)
    rows = read_all(path)
    assert rows == dpkg_fsys_entries(path)
    kinds = {row[0]: row[1] for row in rows}
    assert kinds["usr/bin/hi"] == SYMLINK
    assert HARDLINK in (kinds["usr/bin/hello"], kinds["usr/bin/hello2"])


def test_built_with_binutils_ar(tmp_path) -> None:
    """GNU ar ends member names with '/'; dpkg reads that, so must we."""
    work = tmp_path / "ar"
    work.mkdir()
    (work / "debian-binary").write_bytes(b"2.0\n")
    (work / "control.tar.gz").write_bytes(compress(tar_bytes(control_entries()), "gzip"))
    (work / "data.tar.xz").write_bytes(compress(tar_bytes(sample_data()), "xz"))
    subprocess.run(
        ["ar", "rc", "hello.deb", "debian-binary", "control.tar.gz", "data.tar.xz"],
        cwd=work,
        check=True,
    )
    path = str(work / "hello.deb")
    with open(path, "rb") as fh:
        assert [m.name for m in read_ar_members(fh, deb=path)] == [
            "debian-binary",
            "control.tar.gz",
            "data.tar.xz",
        ]
    assert dpkg_accepts(path)
    assert read_all(path) == dpkg_fsys_entries(path)
    # A signature appended by debsigs-style tools is skipped (by dpkg too).
    (work / "_gpgorigin").write_bytes(b"-----BEGIN PGP SIGNATURE-----\n")
    subprocess.run(["ar", "q", "hello.deb", "_gpgorigin"], cwd=work, check=True)
    assert dpkg_accepts(path)
    assert read_deb_info(path).extra_members == ("_gpgorigin",)
    assert read_all(path) == dpkg_fsys_entries(path)


def test_underscore_members_between_control_and_data(tmp_path) -> None:
    control = compress(tar_bytes(control_entries()), "xz")
    data = compress(tar_bytes(sample_data()), "xz")
    path = write(
        tmp_path / "sig.deb",
        deb_bytes(
            members=[
                ("debian-binary", b"2.0\n"),
                ("_gpgbuilder", b"sig"),
                ("control.tar.xz", control),
                ("_gpgx", b""),
                ("data.tar.xz", data),
            ]
        ),
    )
    assert dpkg_accepts(path)
    assert read_deb_info(path).extra_members == ("_gpgbuilder", "_gpgx")


def test_remove_on_upgrade_conffiles_are_left_out(tmp_path) -> None:
    path = write(
        tmp_path / "c.deb",
        deb_bytes(conffiles="/etc/hello.conf\nremove-on-upgrade /etc/old.conf\n\n"),
    )
    assert read_deb_info(path).conffiles == ("/etc/hello.conf",)


# --- crafted, broken or hostile ---------------------------------------------------------------


def check_refused(path: str, match: str, member: str | None, *, dpkg_refuses: bool = True):
    with pytest.raises(BinpkgError, match=match) as info:
        read_all(path)
    assert info.value.binpkg == path
    assert info.value.member == member
    assert str(info.value).startswith(path)
    if dpkg_refuses:
        assert not dpkg_accepts(path), "dpkg-deb reads it: the test does not show what it claims"
    return info.value


def test_bad_magic(tmp_path) -> None:
    path = write(tmp_path / "x.deb", b"PK\x03\x04" + deb_bytes()[4:])
    check_refused(path, r"no ar archive magic", None)


def test_not_a_deb(tmp_path) -> None:
    path = write(tmp_path / "x.deb", compress(tar_bytes(sample_data()), "gzip"))
    check_refused(path, r"no ar archive magic `!<arch>` \(starts with 1f 8b", None)


def test_empty_ar(tmp_path) -> None:
    check_refused(write(tmp_path / "x.deb", b"!<arch>\n"), "empty ar archive", None)


@pytest.mark.parametrize("keep", [0.0, 0.5, 0.99])
def test_truncated_data_member(tmp_path, keep: float) -> None:
    data = deb_bytes()
    start = data.index(b"data.tar.xz") + 60
    path = write(tmp_path / "x.deb", data[: start + int((len(data) - start - 1) * keep)])
    error = check_refused(path, r"truncated member: the ar header says \d+ bytes", "data.tar.xz")
    assert "remain in the file" in str(error)


def test_truncated_header(tmp_path) -> None:
    data = deb_bytes(data_compression="none")
    control_end = data.index(b"data.tar")
    path = write(tmp_path / "x.deb", data[: control_end + 30])
    check_refused(path, r"truncated archive: 30 stray bytes", "control.tar.xz")


def test_corrupt_member_size(tmp_path) -> None:
    data = bytearray(deb_bytes())
    at = data.index(b"control.tar.xz") + 48
    data[at : at + 10] = b"12ab      "
    check_refused(write(tmp_path / "x.deb", bytes(data)), r"size field is b'12ab", "control.tar.xz")


def test_wrong_member_size_is_noticed_at_the_next_header(tmp_path) -> None:
    data = bytearray(deb_bytes())
    at = data.index(b"control.tar.xz") + 48
    size = int(data[at : at + 10])
    data[at : at + 10] = str(size - 2).encode().ljust(10)
    check_refused(write(tmp_path / "x.deb", bytes(data)), r"corrupt ar member header", "control.tar.xz")


@pytest.mark.parametrize("content", [b"3.0\n", b"2.0", b"2.0\n\n", b"", b"1.0\n"])
def test_wrong_debian_binary(tmp_path, content: bytes) -> None:
    path = write(tmp_path / "x.deb", deb_bytes(debian_binary=content))
    check_refused(
        path,
        r"unsupported package format version",
        "debian-binary",
        dpkg_refuses=content not in (b"2.0\n\n",),  # dpkg reads only the first line
    )


def _members(**replace) -> list[tuple[str, bytes]]:
    members = {
        "debian-binary": b"2.0\n",
        "control.tar.xz": compress(tar_bytes(control_entries()), "xz"),
        "data.tar.xz": compress(tar_bytes(sample_data()), "xz"),
    }
    members.update(replace)
    return list(members.items())


def test_data_before_control(tmp_path) -> None:
    a, b, c = _members()
    path = write(tmp_path / "x.deb", deb_bytes(members=[a, c, b]))
    check_refused(path, r"members out of order: the data member comes before", "data.tar.xz")


def test_debian_binary_not_first(tmp_path) -> None:
    a, b, c = _members()
    path = write(tmp_path / "x.deb", deb_bytes(members=[b, a, c]))
    check_refused(path, r"the first member must be 'debian-binary'", "control.tar.xz")


def test_missing_data(tmp_path) -> None:
    a, b, _ = _members()
    check_refused(write(tmp_path / "x.deb", deb_bytes(members=[a, b])), r"no data member", None)


def test_missing_control(tmp_path) -> None:
    a, _, c = _members()
    path = write(tmp_path / "x.deb", deb_bytes(members=[a, c]))
    check_refused(path, r"the data member comes before the control member", "data.tar.xz")


def test_only_debian_binary(tmp_path) -> None:
    a, _, _ = _members()
    check_refused(write(tmp_path / "x.deb", deb_bytes(members=[a])), r"no control member", None)


def test_unknown_member(tmp_path) -> None:
    a, b, c = _members()
    path = write(tmp_path / "x.deb", deb_bytes(members=[a, b, ("evil.sh", b"rm -rf /\n"), c]))
    check_refused(path, r"unknown member", "evil.sh")


def test_second_data_member(tmp_path) -> None:
    a, b, c = _members()
    path = write(tmp_path / "x.deb", deb_bytes(members=[a, b, c, ("data.tar.gz", b"")]))
    check_refused(path, r"second data member \(the first is 'data.tar.xz'\)", "data.tar.gz",
                  dpkg_refuses=False)  # dpkg stops reading at the first data member


def test_second_control_member(tmp_path) -> None:
    a, b, c = _members()
    path = write(tmp_path / "x.deb", deb_bytes(members=[a, b, ("control.tar", b""), c]))
    check_refused(path, r"second control member", "control.tar")


def test_unsupported_compressions(tmp_path) -> None:
    path = write(tmp_path / "x.deb", deb_bytes(members=_members(**{"data.tar.xz": b""})[:2] + [
        ("data.tar.lzma", b"\x5d\x00\x00")
    ]))
    check_refused(path, r"unsupported member compression \(dpkg reads data.tar, data.tar.gz",
                  "data.tar.lzma", dpkg_refuses=False)  # dpkg still reads lzma
    a, _, c = _members()
    control = compress(tar_bytes(control_entries()), "bzip2")
    path = write(tmp_path / "y.deb", deb_bytes(members=[a, ("control.tar.bz2", control), c]))
    check_refused(path, r"unsupported member compression", "control.tar.bz2")


def test_suffix_and_magic_disagree(tmp_path) -> None:
    a, b, _ = _members()
    gz = compress(tar_bytes(sample_data()), "gzip")
    path = write(tmp_path / "x.deb", deb_bytes(members=[a, b, ("data.tar.xz", gz)]))
    check_refused(path, r"the member name says xz, but its content is gzip", "data.tar.xz")


def test_control_without_control_file(tmp_path) -> None:
    control = compress(tar_bytes([d("./"), f("./postinst", b"#!/bin/sh\n")]), "xz")
    path = write(tmp_path / "x.deb", deb_bytes(control_tar=control))
    check_refused(path, r"no `control` file in the control archive", "control.tar.xz")


@pytest.mark.parametrize(
    "control, match",
    [
        (CONTROL.replace("Version: 1:2.0-1\n", ""), r"missing or empty field 'Version'"),
        (CONTROL.replace("Package: hello", "Package: ../../hello"), r"invalid package name"),
        (CONTROL.replace("1:2.0-1", "1.0/../x"), r"invalid version"),
        (CONTROL + "\nPackage: second\n", r"expected exactly one stanza, found 2"),
        ("# comment\n" + CONTROL, r"line 1: comment lines are not allowed"),
        (CONTROL + "Package: again\n", r"line 10: duplicate field 'Package'"),
    ],
)
def test_bad_control_file(tmp_path, control: str, match: str) -> None:
    path = write(tmp_path / "x.deb", deb_bytes(control=control))
    with pytest.raises(BinpkgError, match=match) as info:
        read_deb_info(path)
    assert info.value.member == "control.tar.xz:./control"


def test_bad_conffiles(tmp_path) -> None:
    path = write(tmp_path / "x.deb", deb_bytes(conffiles="etc/relative\n"))
    with pytest.raises(BinpkgError, match="line 1: 'etc/relative' is neither") as info:
        read_deb_info(path)
    assert info.value.member == "control.tar.xz:./conffiles"


def test_huge_control_file_is_refused_without_reading_it(tmp_path, monkeypatch) -> None:
    from pants_sysext.formats import deb

    monkeypatch.setattr(deb, "MAX_CONTROL_FILE_SIZE", 100)
    path = write(tmp_path / "x.deb", deb_bytes(control=CONTROL + "X-Pad: " + "a" * 200 + "\n"))
    with pytest.raises(BinpkgError, match=r"bytes, more than 100 allowed") as info:
        read_deb_info(path)
    assert info.value.member == "control.tar.xz:./control"


def _data_deb(tmp_path, entries: list[Entry], compression: str = "xz") -> str:
    return write(tmp_path / "x.deb", deb_bytes(data_entries=entries, data_compression=compression))


@pytest.mark.parametrize(
    "entries, match, tar_name",
    [
        ([d("./"), f("/etc/passwd", b"root::0:0::/:/bin/sh\n")], r"absolute name", "/etc/passwd"),
        ([d("./"), d("./usr/"), f("./usr/../../etc/shadow")], r"has a '..' component",
         "./usr/../../etc/shadow"),
        ([d("./"), f("../escape")], r"has a '..' component", "../escape"),
        ([d("./"), sym("./usr", "/etc"), f("./usr/passwd")], r"path goes through the symlink 'usr'",
         "./usr/passwd"),
        ([d("./"), hard("./usr-link", "/etc/shadow")], r"absolute hard link target",
         "./usr-link"),
        ([d("./"), hard("./x", "./not-seen")], r"hard link to './not-seen', which is not an earlier",
         "./x"),
        ([d("./"), Entry("./dev-sda", tarfile.BLKTYPE)], r"block device entries are not allowed",
         "./dev-sda"),
        ([d("./"), Entry("./fifo", tarfile.FIFOTYPE)], r"FIFO entries are not allowed", "./fifo"),
        ([d("./"), f("./a"), f("./a")], r"duplicate path 'a'", "./a"),
    ],
)
def test_hostile_data_entries(tmp_path, entries, match, tar_name) -> None:
    path = _data_deb(tmp_path, entries)
    with pytest.raises(BinpkgError, match=match) as info:
        read_all(path)
    assert info.value.binpkg == path
    assert info.value.member == f"data.tar.xz:{tar_name}"


@pytest.mark.parametrize("compression", ["none", "xz", "zstd", "gzip", "bzip2"])
def test_truncated_data_tar_inside_a_consistent_ar(tmp_path, compression: str) -> None:
    """The ar member is whole, but the tar (or its compressed stream) in it is cut short."""
    entries = [d("./"), d("./usr/"), f("./usr/big", os.urandom(200_000)), f("./usr/after")]
    tar = tar_bytes(entries)
    data = compress(tar, compression)
    cut = data[: len(data) * 2 // 3]
    path = write(tmp_path / "x.deb", deb_bytes(data_tar=cut, data_compression=compression))
    member = "data.tar" + {"none": "", "xz": ".xz", "zstd": ".zst", "gzip": ".gz", "bzip2": ".bz2"}[
        compression
    ]
    with pytest.raises(BinpkgError, match=r"truncated|corrupt") as info:
        read_all(path)
    assert info.value.binpkg == path
    assert info.value.member is not None and info.value.member.startswith(member)
    if compression != "none":  # dpkg-deb passes an uncompressed tar through unchecked
        assert not dpkg_accepts(path)


def test_missing_end_of_archive_marker(tmp_path) -> None:
    tar = tar_bytes([d("./"), f("./usr")])
    path = write(
        tmp_path / "x.deb", deb_bytes(data_tar=compress(tar[: 3 * 512], "xz"))
    )
    with pytest.raises(BinpkgError, match=r"no end-of-archive marker") as info:
        read_all(path)
    assert info.value.member == "data.tar.xz:./usr"


def test_read_deb_info_does_not_read_the_data_tar(tmp_path) -> None:
    """Info needs the ar layout and control.tar only; a damaged data tar shows when streamed."""
    data = compress(tar_bytes(sample_data()), "xz")
    damaged = data[:100] + bytes(len(data) - 100)
    path = write(tmp_path / "x.deb", deb_bytes(data_tar=damaged))
    assert read_deb_info(path).package == "hello"
    with pytest.raises(BinpkgError, match="corrupt xz stream") as info:
        read_all(path)
    assert info.value.member == "data.tar.xz"


def test_odd_member_padding(tmp_path) -> None:
    members = _members(**{"debian-binary": b"2.0\n"})
    data = bytearray(deb_bytes(members=[members[0], ("_odd", b"abc"), *members[1:]]))
    at = data.index(b"_odd") + 60 + 3
    assert data[at : at + 1] == b"\n"
    assert read_deb_info(write(tmp_path / "ok.deb", bytes(data))).extra_members == ("_odd",)
    data[at : at + 1] = b"X"
    check_refused(write(tmp_path / "x.deb", bytes(data)), r"padding byte", "_odd",
                  dpkg_refuses=False)


@pytest.mark.parametrize(
    "entries, match, tar_name",
    [
        ([d("./"), f("./control", CONTROL.encode()), f("/etc/cron.d/x")], r"absolute name",
         "/etc/cron.d/x"),
        ([d("./"), f("./control", CONTROL.encode()), f("./../postinst")], r"'..' component",
         "./../postinst"),
        ([d("./"), sym("./control", "/etc/passwd")], r"no `control` file", None),
    ],
)
def test_hostile_control_entries(tmp_path, entries, match, tar_name) -> None:
    path = write(tmp_path / "x.deb", deb_bytes(control_tar=compress(tar_bytes(entries), "xz")))
    with pytest.raises(BinpkgError, match=match) as info:
        read_deb_info(path)
    assert info.value.member == "control.tar.xz" + (f":{tar_name}" if tar_name else "")
