"""The image tar reader on crafted, hostile and broken archives."""

from __future__ import annotations

import io
import tarfile

import pytest
from binpkg_builders import Entry, d, f, hard, sym, tar_bytes

from pants_sysext.formats.errors import BinpkgError
from pants_sysext.formats.image import ImageEntry, iter_image_entries

BINPKG = "app-misc/foo-1.0.tbz2"
MEMBER = "image.tar"


def read_all(data: bytes, *, root_prefix: str = "") -> list:
    out = []
    for entry, fileobj in iter_image_entries(
        io.BytesIO(data), root_prefix=root_prefix, binpkg=BINPKG, member=MEMBER
    ):
        out.append((entry, fileobj.read() if fileobj is not None else None))
    return out


def refused(entries: list, *, root_prefix: str = "") -> BinpkgError:
    with pytest.raises(BinpkgError) as exc:
        read_all(tar_bytes(entries), root_prefix=root_prefix)
    return exc.value


def test_xpak_style_names() -> None:
    data = tar_bytes(
        [
            d("."),
            d("./usr"),
            d("usr/bin"),  # Without "./": the same tree.
            f("./usr/bin/foo", b"foo\n", mode=0o4755, uid=0, gid=30, gname="dip"),
            sym("./usr/bin/bar", "foo"),
            hard("./usr/bin/baz", "./usr/bin/foo"),
            d("./usr/bin"),  # A directory may be repeated.
        ]
    )
    got = read_all(data)
    assert [(e.path, e.type, e.linkname, content) for e, content in got] == [
        ("", "dir", "", None),
        ("usr", "dir", "", None),
        ("usr/bin", "dir", "", None),
        ("usr/bin/foo", "file", "", b"foo\n"),
        ("usr/bin/bar", "symlink", "foo", None),
        ("usr/bin/baz", "hardlink", "usr/bin/foo", None),
        ("usr/bin", "dir", "", None),
    ]
    foo = got[3][0]
    assert foo == ImageEntry(
        path="usr/bin/foo",
        tar_name="./usr/bin/foo",
        type="file",
        mode=0o4755,
        uid=0,
        gid=30,
        uname="root",
        gname="dip",
        mtime=1700000000,
        size=4,
        linkname="",
        xattrs=(),
    )


def test_gpkg_style_names() -> None:
    data = tar_bytes(
        [d("image"), d("image/etc"), f("image/etc/a"), hard("image/etc/b", "image/etc/a")]
    )
    got = read_all(data, root_prefix="image/")
    assert [(e.path, e.linkname) for e, _ in got] == [
        ("", ""),
        ("etc", ""),
        ("etc/a", ""),
        ("etc/b", "etc/a"),
    ]


def test_xattrs_from_pax_headers() -> None:
    data = tar_bytes(
        [
            f(
                "./usr/bin/foo",
                pax_headers={
                    "SCHILY.xattr.user.pax.flags": "em",
                    "SCHILY.xattr.security.capability": b"\x01\x00\x00\x02\xff".decode(
                        "utf-8", "surrogateescape"
                    ),
                    # libarchive: URL-encoded name, base64 value without padding.
                    "LIBARCHIVE.xattr.user.a%3Db": "aGk",
                    "LIBARCHIVE.xattr.user.pax.flags": "b3RoZXI",  # SCHILY wins.
                    "comment": "not an xattr",
                },
            )
        ],
        format=tarfile.PAX_FORMAT,
    )
    ((entry, _),) = read_all(data)
    assert entry.xattrs == (
        ("security.capability", b"\x01\x00\x00\x02\xff"),
        ("user.a=b", b"hi"),
        ("user.pax.flags", b"em"),
    )


def test_file_stream_is_only_valid_until_the_next_entry() -> None:
    data = tar_bytes([f("./a", b"A" * 10000), f("./b", b"B")])
    entries = iter_image_entries(io.BytesIO(data), root_prefix="", binpkg=BINPKG, member=MEMBER)
    _, first = next(entries)
    assert first.read(3) == b"AAA"
    _, second = next(entries)
    with pytest.raises(ValueError):
        first.read(1)
    assert second.read() == b"B"
    assert list(entries) == []


def test_unread_data_is_skipped() -> None:
    data = tar_bytes([f("./a", b"A" * 100000), f("./b", b"B")])
    entries = iter_image_entries(io.BytesIO(data), root_prefix="", binpkg=BINPKG, member=MEMBER)
    names = [e.path for e, _ in entries]
    assert names == ["a", "b"]


@pytest.mark.parametrize(
    "entries, member, message",
    [
        (
            [d("."), f("/etc/passwd")],
            "image.tar:/etc/passwd",
            "absolute name '/etc/passwd'",
        ),
        (
            [d("."), f("./usr/../../etc/shadow")],
            "image.tar:./usr/../../etc/shadow",
            "name './usr/../../etc/shadow' has a '..' component",
        ),
        (
            [d("."), d("./usr"), sym("./usr/lib", "lib64"), f("./usr/lib/libx.so")],
            "image.tar:./usr/lib/libx.so",
            "path goes through the symlink 'usr/lib'",
        ),
        (
            [d("."), sym("./etc", "/etc"), d("./etc/cron.d")],
            "image.tar:./etc/cron.d",
            "path goes through the symlink 'etc'",
        ),
        (
            [d("."), Entry("./dev/null", tarfile.CHRTYPE)],
            "image.tar:./dev/null",
            "character device entries are not allowed",
        ),
        (
            [d("."), Entry("./dev/sda", tarfile.BLKTYPE)],
            "image.tar:./dev/sda",
            "block device entries are not allowed",
        ),
        (
            [d("."), Entry("./run/fifo", tarfile.FIFOTYPE)],
            "image.tar:./run/fifo",
            "FIFO entries are not allowed",
        ),
        (
            [d("."), Entry("./odd", b"V")],
            "image.tar:./odd",
            "unsupported tar entry type b'V'",
        ),
        (
            [d("."), hard("./usr/bin/a", "./usr/bin/b")],
            "image.tar:./usr/bin/a",
            "hard link to './usr/bin/b', which is not an earlier regular file of the archive",
        ),
        (
            [d("."), hard("./usr/bin/a", "./usr/bin/b"), f("./usr/bin/b")],
            "image.tar:./usr/bin/a",
            "hard link to './usr/bin/b', which is not an earlier regular file of the archive",
        ),
        (
            [d("."), d("./usr"), hard("./usr/x", "./usr")],
            "image.tar:./usr/x",
            "hard link to './usr', which is not an earlier regular file of the archive",
        ),
        (
            [d("."), hard("./x", "../etc/shadow")],
            "image.tar:./x",
            "hard link target '../etc/shadow' has a '..' component",
        ),
        (
            [d("."), hard("./x", "/etc/shadow")],
            "image.tar:./x",
            "absolute hard link target '/etc/shadow'",
        ),
        (
            [d("."), f("./a"), f("./a")],
            "image.tar:./a",
            "duplicate path 'a' (already seen as a file)",
        ),
        (
            [d("."), f("./a"), d("./a")],
            "image.tar:./a",
            "duplicate path 'a' (already seen as a file)",
        ),
        (
            [d("."), d("./a"), sym("./a", "b")],
            "image.tar:./a",
            "duplicate path 'a' (already seen as a dir)",
        ),
        (
            [d("."), f("./usr/bin/a"), f("./usr/bin/a/b")],
            "image.tar:./usr/bin/a/b",
            "parent 'usr/bin/a' is not a directory (it is a file)",
        ),
        (
            [f("."), f("./a")],
            "image.tar:.",
            "the image root is not a directory",
        ),
        (
            [d("."), sym("./a", "")],
            "image.tar:./a",
            "symlink with an empty target",
        ),
        (
            [d("."), f("./bad-\udcffname")],
            "image.tar:./bad-\udcffname",
            "name is not valid UTF-8: './bad-\\udcffname'",
        ),
    ],
)
def test_refused_xpak_entries(entries: list, member: str, message: str) -> None:
    error = refused(entries)
    assert (error.binpkg, error.member, error.message) == (BINPKG, member, message)
    assert str(error) == f"{BINPKG}: {member}: {message}"


@pytest.mark.parametrize(
    "entries, member, message",
    [
        (
            [d("image"), f("usr/bin/x")],
            "image.tar:usr/bin/x",
            "name 'usr/bin/x' is outside the image root 'image/'",
        ),
        (
            [d("image"), f("imagex/x")],
            "image.tar:imagex/x",
            "name 'imagex/x' is outside the image root 'image/'",
        ),
        (
            [d("image"), f("image/etc/x"), hard("image/etc/y", "etc/x")],
            "image.tar:image/etc/y",
            "hard link target 'etc/x' is outside the image root 'image/'",
        ),
        (
            [d("image"), f("image/../x")],
            "image.tar:image/../x",
            "name 'image/../x' has a '..' component",
        ),
        (
            [d("image"), f("/image/x")],
            "image.tar:/image/x",
            "absolute name '/image/x'",
        ),
    ],
)
def test_refused_gpkg_entries(entries: list, member: str, message: str) -> None:
    error = refused(entries, root_prefix="image/")
    assert str(error) == f"{BINPKG}: {member}: {message}"


ENTRIES = [d("."), d("./usr"), f("./usr/a", b"A" * 3000), f("./usr/b", b"B" * 10)]


def test_truncated_in_file_data_while_reading() -> None:
    data = tar_bytes(ENTRIES)
    with pytest.raises(BinpkgError) as exc:
        read_all(data[: 3 * 512 + 1000])
    assert str(exc.value) == (
        f"{BINPKG}: image.tar:./usr/a: truncated archive: file data ends early "
        "(unexpected end of data)"
    )


def test_truncated_in_file_data_when_skipping() -> None:
    data = tar_bytes(ENTRIES)
    with pytest.raises(BinpkgError) as exc:
        for _ in iter_image_entries(
            io.BytesIO(data[: 3 * 512 + 1000]), root_prefix="", binpkg=BINPKG, member=MEMBER
        ):
            pass
    assert str(exc.value) == (
        f"{BINPKG}: image.tar:./usr/a: truncated or corrupt archive (after this entry): "
        "unexpected end of data"
    )


# Headers at 0, 512, 1024 (data 1536-4608), 4608 (data 5120-5632), end marker at 5632.
@pytest.mark.parametrize("cut", [4608, 4608 + 100, 5632, 5632 + 511])
def test_truncated_between_headers(cut: int) -> None:
    """tarfile stops silently at a missing or short header; the reader does not."""
    data = tar_bytes(ENTRIES)
    with pytest.raises(BinpkgError) as exc:
        read_all(data[:cut])
    assert exc.value.member in ("image.tar:./usr/a", "image.tar:./usr/b")
    assert exc.value.message.startswith("truncated archive (after this entry): no end-of-archive")
    assert str(exc.value).startswith(f"{BINPKG}: image.tar:./usr/")


def test_garbage_header_mid_archive() -> None:
    data = tar_bytes(ENTRIES)
    end = 5632  # After the last member's data.
    data = data[:end] + b"\x01" * 512 + data[end + 512 :]
    with pytest.raises(BinpkgError) as exc:
        read_all(data)
    assert str(exc.value) == (
        f"{BINPKG}: image.tar:./usr/b: corrupt archive (after this entry): invalid tar header "
        f"at offset {end}"
    )


@pytest.mark.parametrize("data", [b"", b"\x01" * 700])
def test_not_a_tar(data: bytes) -> None:
    with pytest.raises(BinpkgError) as exc:
        read_all(data)
    assert str(exc.value).startswith(f"{BINPKG}: image.tar: not a tar archive, or truncated: ")


def test_stopping_early_is_fine() -> None:
    data = tar_bytes(ENTRIES)[:2000]  # Broken further on, but never read that far.
    entries = iter_image_entries(io.BytesIO(data), root_prefix="", binpkg=BINPKG, member=MEMBER)
    entry, _ = next(entries)
    assert entry.path == ""
    entries.close()
