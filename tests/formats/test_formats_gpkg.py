"""GPKG binpkgs: container checks, Manifest verification, every compression, truncation."""

from __future__ import annotations

import hashlib
import io
import tarfile

import pytest
from binpkg_builders import (
    DEFAULT_METADATA,
    SUFFIXES,
    compress,
    d,
    f,
    fixture_path,
    gpkg_bytes,
    manifest_line,
    sample_image,
    sym,
    tar_bytes,
    write,
)

from pants_sysext.formats.binpkg import detect_format, open_binpkg_image, read_binpkg_info
from pants_sysext.formats.compression import Compression
from pants_sysext.formats.errors import BinpkgError
from pants_sysext.formats.gpkg import read_gpkg_layout, read_gpkg_metadata

COMPRESSIONS = ["none", "gzip", "bzip2", "xz", "zstd", "lz4"]


def image_summary(path: str) -> list:
    with open_binpkg_image(path) as (info, entries):
        return [
            (e.path, e.type, e.linkname, data.read() if data is not None else None)
            for e, data in entries
        ]


def info_error(path: str) -> BinpkgError:
    with pytest.raises(BinpkgError) as exc:
        read_binpkg_info(path)
    return exc.value


def layout_error(path: str) -> BinpkgError:
    with open(path, "rb") as fh, pytest.raises(BinpkgError) as exc:
        read_gpkg_layout(fh, binpkg=path)
    return exc.value


SAMPLE_SUMMARY = [
    ("", "dir", "", None),
    ("usr", "dir", "", None),
    ("usr/bin", "dir", "", None),
    ("usr/bin/foo", "file", "", b"\x7fELF fake binary\n" * 100),
    ("usr/bin/foo-link", "symlink", "foo", None),
    ("usr/bin/foo-hard", "hardlink", "usr/bin/foo", None),
    ("usr/bin/empty", "file", "", b""),
]


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_every_compression_by_suffix(tmp_path, compression: str) -> None:
    path = write(tmp_path / "foo-1.0.gpkg.tar", gpkg_bytes(compression=compression))
    assert detect_format(path) == "gpkg"
    info = read_binpkg_info(path)
    assert info.compression == Compression(compression)
    assert info.image_member == f"foo-1.0/image.tar{SUFFIXES[compression]}"
    assert info.container_dir == "foo-1.0"
    assert info.metadata == DEFAULT_METADATA
    assert info.cpv == "app-misc/foo-1.0"
    assert image_summary(path) == SAMPLE_SUMMARY


def test_metadata_and_image_compressed_differently(tmp_path) -> None:
    path = write(
        tmp_path / "foo-1.0.gpkg.tar",
        gpkg_bytes(compression="zstd", metadata_compression="gzip"),
    )
    with open(path, "rb") as fh:
        layout = read_gpkg_layout(fh, binpkg=path)
        assert layout.compression == Compression.ZSTD
        assert layout.metadata_compression == Compression.GZIP
        assert read_gpkg_metadata(fh, layout, binpkg=path) == DEFAULT_METADATA


def test_layout_of_crafted_gpkg(tmp_path) -> None:
    data = gpkg_bytes(compression="xz")
    path = write(tmp_path / "foo-1.0.gpkg.tar", data)
    with open(path, "rb") as fh:
        layout = read_gpkg_layout(fh, binpkg=path)
    assert [m.name for m in layout.members] == [
        "foo-1.0/gpkg-1",
        "foo-1.0/metadata.tar.xz",
        "foo-1.0/image.tar.xz",
        "foo-1.0/Manifest",
    ]
    with tarfile.open(path) as tar:
        for member in layout.members:
            tarinfo = tar.getmember(member.name)
            assert (member.size, member.offset_data, member.mode, member.mtime) == (
                tarinfo.size,
                tarinfo.offset_data,
                0o644,
                1700000000,
            )
    assert layout.manifest_text.startswith("DATA gpkg-1 0 BLAKE2B ")
    assert layout.signatures == ()


def test_multi_instance_directory(tmp_path) -> None:
    path = write(tmp_path / "foo-1.0-3.gpkg.tar", gpkg_bytes(container_dir="foo-1.0-3"))
    info = read_binpkg_info(path)
    assert info.container_dir == "foo-1.0-3"
    assert info.image_member == "foo-1.0-3/image.tar"
    assert info.cpv == "app-misc/foo-1.0"
    assert image_summary(path) == SAMPLE_SUMMARY


@pytest.mark.parametrize("directory", ["bar-1.0", "foo-1.0-x", "foo-1.0-"])
def test_directory_not_matching_pf(tmp_path, directory: str) -> None:
    path = write(tmp_path / "foo.gpkg.tar", gpkg_bytes(container_dir=directory))
    assert str(info_error(path)) == (
        f"{path}: {directory}: container directory {directory!r} does not match PF 'foo-1.0' "
        "(want <PF> or <PF>-<BUILD_ID>)"
    )


def test_signatures_are_tolerated_and_listed(tmp_path) -> None:
    signature = b"-----BEGIN PGP SIGNATURE-----\n\nabc\n-----END PGP SIGNATURE-----\n"
    path = write(
        tmp_path / "foo-1.0.gpkg.tar",
        gpkg_bytes(
            compression="bzip2",
            extra_members=[("metadata.tar.bz2.sig", signature), ("image.tar.bz2.sig", signature)],
        ),
    )
    with open(path, "rb") as fh:
        layout = read_gpkg_layout(fh, binpkg=path)
    assert layout.signatures == ("foo-1.0/metadata.tar.bz2.sig", "foo-1.0/image.tar.bz2.sig")
    assert image_summary(path) == SAMPLE_SUMMARY


def test_signature_of_nothing(tmp_path) -> None:
    path = write(tmp_path / "foo.gpkg.tar", gpkg_bytes(extra_members=[("gpkg-1.sig", b"x")]))
    assert str(layout_error(path)) == (
        f"{path}: foo-1.0/gpkg-1.sig: unexpected member: a signature of no metadata or image"
    )


def test_clear_signed_manifest(tmp_path) -> None:
    def sign(manifest: str) -> str:
        return (
            "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\n"
            + manifest
            + "-----BEGIN PGP SIGNATURE-----\n\nabc\n-----END PGP SIGNATURE-----\n"
        )

    path = write(tmp_path / "foo-1.0.gpkg.tar", gpkg_bytes(edit_manifest=sign))
    with open(path, "rb") as fh:
        layout = read_gpkg_layout(fh, binpkg=path)
    assert layout.manifest_text.startswith("-----BEGIN PGP SIGNED MESSAGE-----")


def _image_line(manifest: str) -> str:
    return next(line for line in manifest.splitlines() if line.startswith("DATA image.tar "))


def test_manifest_size_mismatch(tmp_path) -> None:
    def edit(manifest: str) -> str:
        line = _image_line(manifest)
        fields = line.split()
        fields[2] = str(int(fields[2]) + 1)
        return manifest.replace(line, " ".join(fields))

    path = write(tmp_path / "foo-1.0.gpkg.tar", gpkg_bytes(edit_manifest=edit))
    size = len(tar_bytes(sample_image("image")))
    assert str(info_error(path)) == (
        f"{path}: foo-1.0/image.tar: size mismatch: the Manifest says {size + 1} bytes, the "
        f"container has {size}"
    )


@pytest.mark.parametrize("algorithm", ["BLAKE2B", "SHA512"])
def test_manifest_hash_mismatch(tmp_path, algorithm: str) -> None:
    def edit(manifest: str) -> str:
        line = _image_line(manifest)
        fields = line.split()
        i = fields.index(algorithm) + 1
        fields[i] = "0" * len(fields[i])
        return manifest.replace(line, " ".join(fields))

    path = write(tmp_path / "foo-1.0.gpkg.tar", gpkg_bytes(edit_manifest=edit))
    image = tar_bytes(sample_image("image"))
    actual = hashlib.new(algorithm.lower(), image).hexdigest()
    assert str(info_error(path)) == (
        f"{path}: foo-1.0/image.tar: {algorithm} mismatch: the Manifest says "
        f"{'0' * len(actual)}, the member hashes to {actual}"
    )


def test_manifest_hash_mismatch_of_gpkg_1(tmp_path) -> None:
    empty = hashlib.blake2b(b"").hexdigest()
    other = hashlib.blake2b(b"x").hexdigest()
    path = write(
        tmp_path / "foo-1.0.gpkg.tar",
        gpkg_bytes(edit_manifest=lambda m: m.replace(empty, other, 1)),
    )
    assert str(info_error(path)) == (
        f"{path}: foo-1.0/gpkg-1: BLAKE2B mismatch: the Manifest says {other}, the member "
        f"hashes to {empty}"
    )


def test_member_missing_from_manifest(tmp_path) -> None:
    def edit(manifest: str) -> str:
        return "".join(
            line + "\n" for line in manifest.splitlines() if not line.startswith("DATA metadata")
        )

    path = write(tmp_path / "foo-1.0.gpkg.tar", gpkg_bytes(edit_manifest=edit))
    assert str(info_error(path)) == f"{path}: foo-1.0/metadata.tar: missing from the Manifest"


def test_signature_missing_from_manifest(tmp_path) -> None:
    def edit(manifest: str) -> str:
        return "".join(line + "\n" for line in manifest.splitlines() if ".sig " not in line)

    path = write(
        tmp_path / "foo-1.0.gpkg.tar",
        gpkg_bytes(extra_members=[("image.tar.sig", b"sig")], edit_manifest=edit),
    )
    assert str(info_error(path)) == f"{path}: foo-1.0/image.tar.sig: missing from the Manifest"


def test_member_listed_but_absent(tmp_path) -> None:
    path = write(
        tmp_path / "foo-1.0.gpkg.tar",
        gpkg_bytes(edit_manifest=lambda m: m + manifest_line("image.tar.sig", b"sig")),
    )
    assert str(info_error(path)) == (
        f"{path}: foo-1.0/image.tar.sig: listed in the Manifest but absent from the container"
    )


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda m: m + "DIST foo 1 SHA512 00\n",
            "malformed Manifest line 4: 'DIST foo 1 SHA512 00'",
        ),
        (lambda m: m + "DATA foo x SHA512 00\n", "malformed Manifest line 4: bad size 'x'"),
        (lambda m: m + "DATA foo 1 SHA512\n", "malformed Manifest line 4: 'DATA foo 1 SHA512'"),
        (lambda m: m + "DATA foo 1\n", "Manifest lists no hash for 'foo'"),
        (lambda m: m + m.splitlines(True)[0], "Manifest lists 'gpkg-1' more than once"),
    ],
)
def test_malformed_manifest(tmp_path, edit, message: str) -> None:
    path = write(tmp_path / "foo-1.0.gpkg.tar", gpkg_bytes(edit_manifest=edit))
    assert str(info_error(path)) == f"{path}: foo-1.0/Manifest: {message}"


def test_unsupported_manifest_hash(tmp_path) -> None:
    def edit(manifest: str) -> str:
        line = _image_line(manifest)
        return manifest.replace(line, line + " STREEBOG512 00")

    path = write(tmp_path / "foo-1.0.gpkg.tar", gpkg_bytes(edit_manifest=edit))
    assert str(info_error(path)) == (
        f"{path}: foo-1.0/image.tar: cannot verify the Manifest's STREEBOG512 hash: "
        "unsupported algorithm"
    )


def test_verify_manifest_false_skips_checks(tmp_path) -> None:
    path = write(tmp_path / "foo-1.0.gpkg.tar", gpkg_bytes(edit_manifest=lambda m: "garbage\n"))
    with open(path, "rb") as fh:
        layout = read_gpkg_layout(fh, binpkg=path, verify_manifest=False)
    assert layout.manifest_text == "garbage\n"


def test_unexpected_member(tmp_path) -> None:
    path = write(tmp_path / "foo.gpkg.tar", gpkg_bytes(extra_members=[("evil.sh", b"#!/bin/sh\n")]))
    assert str(info_error(path)) == f"{path}: foo-1.0/evil.sh: unexpected member"


def _outer_tar(members) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data, kind in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.size = len(data) if kind == tarfile.REGTYPE else 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_more_than_one_top_directory(tmp_path) -> None:
    path = write(
        tmp_path / "foo.gpkg.tar",
        _outer_tar(
            [
                ("foo-1.0/gpkg-1", b"", tarfile.REGTYPE),
                ("bar-1.0/image.tar", b"", tarfile.REGTYPE),
            ]
        ),
    )
    assert str(layout_error(path)) == (
        f"{path}: bar-1.0/image.tar: unexpected member: more than one top directory "
        "('foo-1.0' and 'bar-1.0')"
    )


NOT_FLAT = "unexpected member: GPKG members must be <dir>/<file> in a single directory"


@pytest.mark.parametrize(
    "name, kind, message",
    [
        ("foo-1.0/sub/image.tar", tarfile.REGTYPE, NOT_FLAT),
        ("/foo-1.0/image.tar", tarfile.REGTYPE, NOT_FLAT),
        ("../image.tar", tarfile.REGTYPE, NOT_FLAT),
        ("foo-1.0/image.tar", tarfile.SYMTYPE, "unexpected member: not a regular file"),
    ],
)
def test_bad_container_member(tmp_path, name: str, kind: bytes, message: str) -> None:
    path = write(
        tmp_path / "foo.gpkg.tar",
        _outer_tar([("foo-1.0/gpkg-1", b"", tarfile.REGTYPE), (name, b"", kind)]),
    )
    assert str(layout_error(path)) == f"{path}: {name}: {message}"


def test_directory_entry_in_container(tmp_path) -> None:
    path = write(
        tmp_path / "foo.gpkg.tar",
        _outer_tar([("foo-1.0", b"", tarfile.DIRTYPE), ("foo-1.0/gpkg-1", b"", tarfile.REGTYPE)]),
    )
    assert str(layout_error(path)) == (
        f"{path}: foo-1.0: unexpected member: GPKG members must be <dir>/<file> in a single "
        "directory"
    )


@pytest.mark.parametrize(
    "omit, missing",
    [
        ("gpkg-1", "foo-1.0/gpkg-1"),
        ("metadata.tar", "foo-1.0/metadata.tar[.<compression>]"),
        ("image.tar", "foo-1.0/image.tar[.<compression>]"),
        ("Manifest", "foo-1.0/Manifest"),
    ],
)
def test_missing_member(tmp_path, omit: str, missing: str) -> None:
    path = write(tmp_path / "foo.gpkg.tar", gpkg_bytes(omit=[omit]))
    assert str(layout_error(path)) == f"{path}: {missing}: missing from the GPKG container"


def test_compression_mismatch(tmp_path) -> None:
    image = compress(tar_bytes(sample_image("image")), "xz")
    path = write(tmp_path / "foo.gpkg.tar", gpkg_bytes(image_suffix=".zst", image_data=image))
    assert str(info_error(path)) == (
        f"{path}: foo-1.0/image.tar.zst: compression mismatch: the name says zstd, the content "
        "is xz"
    )


def test_unknown_compression_magic(tmp_path) -> None:
    path = write(
        tmp_path / "foo.gpkg.tar",
        gpkg_bytes(image_suffix=".zst", image_data=b"\x89PNG\r\n\x1a\n" + b"\x00" * 100),
    )
    assert str(info_error(path)) == (
        f"{path}: foo-1.0/image.tar.zst: compression mismatch: the name says zstd, the content "
        "is unknown magic 89 50 4e 47 0d 0a 1a 0a"
    )


def test_unknown_compression_suffix(tmp_path) -> None:
    path = write(
        tmp_path / "foo.gpkg.tar",
        gpkg_bytes(image_suffix=".lz", image_data=b"LZIP\x01" + b"\x00" * 100),
    )
    assert str(info_error(path)) == (
        f"{path}: foo-1.0/image.tar.lz: unsupported compression (unknown file name suffix)"
    )


CUT_DATA = "truncated or corrupt GPKG container (after this member): unexpected end of data"
CUT_MARKER = "truncated GPKG container (after this member): no end-of-archive marker"


@pytest.mark.parametrize(
    "cut, member, message",
    [
        # In the image data, in the Manifest data, at and after the end-of-archive marker.
        (100000, "jq-1.6-r3/image.tar.zst", CUT_DATA),
        (190464 + 100, "jq-1.6-r3/Manifest", CUT_DATA),
        (191488, "jq-1.6-r3/Manifest", CUT_MARKER),
        (191488 + 200, "jq-1.6-r3/Manifest", CUT_MARKER),
    ],
)
def test_truncated_gpkg(tmp_path, cut: int, member: str, message: str) -> None:
    with open(fixture_path("app-misc/jq-1.6-r3.gpkg.tar"), "rb") as fh:
        data = fh.read()[:cut]
    path = write(tmp_path / "jq-1.6-r3.gpkg.tar", data)
    assert str(info_error(path)) == f"{path}: {member}: {message}"


def test_truncated_image_with_consistent_manifest(tmp_path) -> None:
    """A cut image tar with a Manifest that matches the cut: the image reader catches it."""
    full = compress(tar_bytes([d("image"), f("image/big", bytes(range(256)) * 4000)]), "gzip")
    path = write(tmp_path / "foo.gpkg.tar", gpkg_bytes(compression="gzip", image_data=full[:-100]))
    read_binpkg_info(path)
    with pytest.raises(BinpkgError) as exc:
        image_summary(path)
    assert str(exc.value).startswith(f"{path}: foo-1.0/image.tar.gz: truncated gzip stream: ")


def test_hostile_entry_names_the_binpkg_and_member(tmp_path) -> None:
    entries = [d("image"), d("image/usr"), sym("image/usr/lib", "/lib"), f("image/usr/lib/x")]
    path = write(tmp_path / "foo.gpkg.tar", gpkg_bytes(entries, compression="zstd"))
    with pytest.raises(BinpkgError) as exc:
        image_summary(path)
    assert str(exc.value) == (
        f"{path}: foo-1.0/image.tar.zst:image/usr/lib/x: path goes through the symlink 'usr/lib'"
    )


NOT_METADATA = "unexpected metadata entry (want metadata/<KEY>)"


@pytest.mark.parametrize(
    "entries, member, message",
    [
        ([d("metadata"), f("metadata/PF")], "metadata", "metadata entries must be regular files"),
        ([f("PF")], "PF", NOT_METADATA),
        ([f("metadata/sub/PF")], "metadata/sub/PF", NOT_METADATA),
        ([f("metadata/PF"), f("metadata/PF")], "metadata/PF", "duplicate metadata entry"),
    ],
)
def test_bad_metadata_tar(tmp_path, entries, member: str, message: str) -> None:
    # A crafted metadata tar, with a matching Manifest.
    metadata_tar = tar_bytes(entries, format=tarfile.USTAR_FORMAT)
    members = [
        ("gpkg-1", b""),
        ("metadata.tar", metadata_tar),
        ("image.tar", tar_bytes(sample_image("image"))),
    ]
    manifest = "".join(manifest_line(name, data) for name, data in members).encode()
    path = write(
        tmp_path / "foo.gpkg.tar",
        _outer_tar(
            [(f"foo-1.0/{name}", data, tarfile.REGTYPE) for name, data in members]
            + [("foo-1.0/Manifest", manifest, tarfile.REGTYPE)]
        ),
    )
    assert str(info_error(path)) == f"{path}: foo-1.0/metadata.tar:{member}: {message}"


def test_gpkg_1_not_first(tmp_path) -> None:
    members = [
        ("metadata.tar", tar_bytes([f(f"metadata/{k}", v) for k, v in DEFAULT_METADATA.items()])),
        ("gpkg-1", b""),
        ("image.tar", tar_bytes(sample_image("image"))),
    ]
    manifest = "".join(manifest_line(name, data) for name, data in members).encode()
    path = write(
        tmp_path / "foo.tbz2",  # A misleading name.
        _outer_tar(
            [(f"foo-1.0/{name}", data, tarfile.REGTYPE) for name, data in members]
            + [("foo-1.0/Manifest", manifest, tarfile.REGTYPE)]
        ),
    )
    assert detect_format(path) == "gpkg"
    assert image_summary(path) == SAMPLE_SUMMARY
