"""Reader for the GPKG binpkg format (`.gpkg.tar`).

A GPKG is an uncompressed outer tar holding, in one directory `<PF>/` (or `<PF>-<BUILD_ID>/` with
binpkg-multi-instance)::

    gpkg-1                  format marker, empty
    metadata.tar[.<c>]      metadata/<KEY> files
    image.tar[.<c>]         image/<files the package installs>
    Manifest                "DATA <name> <size> <HASH> <hex> ..." for every other member
    *.sig                   optional detached signatures of metadata and image (in the Manifest)

The member compression is given by the file name suffix and must agree with the magic bytes.
"""

from __future__ import annotations

import hashlib
import tarfile
from dataclasses import dataclass
from typing import BinaryIO, Mapping

from pants_sysext.formats.compression import (
    DETECT_HEAD_SIZE,
    Compression,
    SegmentReader,
    compression_from_suffix,
    decompressed,
    describe_head,
    detect_compression,
)
from pants_sysext.formats.errors import BinpkgError
from pants_sysext.formats.image import iter_tar_members, read_member_data

GPKG_VERSION_FILE = "gpkg-1"
MANIFEST_FILE = "Manifest"
SIGNATURE_SUFFIX = ".sig"

# gpkg-1, metadata, image, Manifest and two signatures; anything beyond is refused anyway.
MAX_MEMBERS = 16
MAX_MANIFEST_SIZE = 1024 * 1024
MAX_SIGNATURE_SIZE = 1024 * 1024
MAX_METADATA_VALUE_SIZE = 16 * 1024 * 1024
MAX_METADATA_TOTAL_SIZE = 64 * 1024 * 1024

_CHUNK_SIZE = 64 * 1024
_PGP_SIGNED_MESSAGE = "-----BEGIN PGP SIGNED MESSAGE-----"
_PGP_SIGNATURE = "-----BEGIN PGP SIGNATURE-----"

# Manifest hash names (Portage's) -> hashlib names.
_HASHLIB_NAMES = {
    "BLAKE2B": "blake2b",
    "BLAKE2S": "blake2s",
    "MD5": "md5",
    "SHA1": "sha1",
    "SHA256": "sha256",
    "SHA512": "sha512",
    "SHA3_256": "sha3_256",
    "SHA3_512": "sha3_512",
    "RMD160": "ripemd160",
    "WHIRLPOOL": "whirlpool",
}


@dataclass(frozen=True)
class GpkgMember:
    """One member of the outer GPKG tar; `name` is the full name, e.g. `jq-1.6-r3/gpkg-1`."""

    name: str
    size: int
    offset_data: int
    mode: int
    uid: int
    gid: int
    uname: str
    gname: str
    mtime: int

    @property
    def basename(self) -> str:
        return self.name.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class ManifestRecord:
    """A `DATA <name> <size> <HASH> <hex>...` line of a GPKG Manifest."""

    name: str
    size: int
    hashes: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class GpkgLayout:
    """The members of a GPKG container, with the Manifest text and the image compression."""

    container_dir: str
    members: tuple[GpkgMember, ...]
    manifest_text: str
    compression: Compression
    metadata_member: GpkgMember
    image_member: GpkgMember
    signatures: tuple[str, ...]

    @property
    def metadata_compression(self) -> Compression:
        compression = compression_from_suffix(self.metadata_member.basename)
        assert compression is not None
        return compression


def _member(tarinfo: tarfile.TarInfo) -> GpkgMember:
    return GpkgMember(
        name=tarinfo.name,
        size=tarinfo.size,
        offset_data=tarinfo.offset_data,
        mode=tarinfo.mode & 0o7777,
        uid=tarinfo.uid,
        gid=tarinfo.gid,
        uname=tarinfo.uname,
        gname=tarinfo.gname,
        mtime=int(tarinfo.mtime),
    )


def _read_outer_tar(f: BinaryIO, *, binpkg: str) -> list[tarfile.TarInfo]:
    """All headers of the outer tar, which must end with an end-of-archive marker."""
    f.seek(0)
    infos: list[tarfile.TarInfo] = []
    try:
        tar = tarfile.open(fileobj=f, mode="r:", encoding="utf-8", errors="surrogateescape")
    except (tarfile.TarError, EOFError) as e:
        raise BinpkgError(binpkg, f"not a GPKG container tar, or truncated: {e}") from e
    try:
        while True:
            try:
                tarinfo = tar.next()
            except (tarfile.TarError, EOFError) as e:
                raise BinpkgError(
                    binpkg,
                    f"truncated or corrupt GPKG container (after this member): {e}",
                    member=infos[-1].name if infos else None,
                ) from e
            if tarinfo is None:
                break
            infos.append(tarinfo)
            if len(infos) > MAX_MEMBERS:
                raise BinpkgError(
                    binpkg,
                    f"unexpected member: more than {MAX_MEMBERS} members",
                    member=tarinfo.name,
                )
        end_offset = tar.offset
    finally:
        tar.close()
    f.seek(end_offset)
    block = f.read(tarfile.BLOCKSIZE)
    last = infos[-1].name if infos else None
    if len(block) < tarfile.BLOCKSIZE:
        raise BinpkgError(
            binpkg,
            "truncated GPKG container (after this member): no end-of-archive marker",
            member=last,
        )
    if block.count(0) != tarfile.BLOCKSIZE:
        raise BinpkgError(
            binpkg,
            f"corrupt GPKG container (after this member): invalid tar header at offset "
            f"{end_offset}",
            member=last,
        )
    return infos


def _check_name(tarinfo: tarfile.TarInfo, *, binpkg: str) -> tuple[str, str]:
    name = tarinfo.name
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise BinpkgError(binpkg, "member name is not valid UTF-8", member=repr(name)) from None
    parts = name.split("/")
    if (
        name.startswith("/")
        or len(parts) != 2
        or any(part in ("", ".", "..") for part in parts)
    ):
        raise BinpkgError(
            binpkg,
            "unexpected member: GPKG members must be <dir>/<file> in a single directory",
            member=name,
        )
    if tarinfo.type not in (tarfile.REGTYPE, tarfile.AREGTYPE):
        raise BinpkgError(binpkg, "unexpected member: not a regular file", member=name)
    return parts[0], parts[1]


def _manifest_body(text: str) -> str:
    """The signed content of a clear-signed Manifest (the signature is not checked here)."""
    if not text.lstrip().startswith(_PGP_SIGNED_MESSAGE):
        return text
    lines = text.lstrip().splitlines()
    # Armor headers ("Hash: ...") end at the first empty line.
    try:
        start = lines.index("", 1) + 1
    except ValueError:
        return ""
    body = []
    for line in lines[start:]:
        if line == _PGP_SIGNATURE:
            break
        body.append(line[2:] if line.startswith("- ") else line)
    return "\n".join(body) + "\n"


def parse_manifest(text: str, *, binpkg: str, member: str) -> dict[str, ManifestRecord]:
    """The `DATA` records of a GPKG Manifest, by member base name."""
    records: dict[str, ManifestRecord] = {}
    for lineno, line in enumerate(_manifest_body(text).splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if fields[0] != "DATA" or len(fields) < 3 or (len(fields) - 3) % 2:
            raise BinpkgError(binpkg, f"malformed Manifest line {lineno}: {line!r}", member=member)
        name, size_text = fields[1], fields[2]
        if not size_text.isdigit():
            raise BinpkgError(
                binpkg, f"malformed Manifest line {lineno}: bad size {size_text!r}", member=member
            )
        if name in records:
            raise BinpkgError(
                binpkg, f"Manifest lists {name!r} more than once", member=member
            )
        hashes = tuple(zip(fields[3::2], (h.lower() for h in fields[4::2])))
        if not hashes:
            raise BinpkgError(binpkg, f"Manifest lists no hash for {name!r}", member=member)
        records[name] = ManifestRecord(name, int(size_text), hashes)
    return records


def _verify_member(
    f: BinaryIO, member: GpkgMember, record: ManifestRecord, *, binpkg: str
) -> None:
    if record.size != member.size:
        raise BinpkgError(
            binpkg,
            f"size mismatch: the Manifest says {record.size} bytes, the container has "
            f"{member.size}",
            member=member.name,
        )
    hashers = []
    for algorithm, expected in record.hashes:
        hashlib_name = _HASHLIB_NAMES.get(algorithm)
        try:
            if hashlib_name is None:
                raise ValueError(algorithm)
            hasher = hashlib.new(hashlib_name)
        except ValueError:
            raise BinpkgError(
                binpkg,
                f"cannot verify the Manifest's {algorithm} hash: unsupported algorithm",
                member=member.name,
            ) from None
        hashers.append((algorithm, expected, hasher))
    reader = SegmentReader(f, member.offset_data, member.size)
    seen = 0
    while True:
        chunk = reader.read(_CHUNK_SIZE)
        if not chunk:
            break
        seen += len(chunk)
        for _, _, hasher in hashers:
            hasher.update(chunk)
    if seen != member.size:
        raise BinpkgError(
            binpkg, f"truncated: {seen} of {member.size} bytes present", member=member.name
        )
    for algorithm, expected, hasher in hashers:
        actual = hasher.hexdigest()
        if actual != expected:
            raise BinpkgError(
                binpkg,
                f"{algorithm} mismatch: the Manifest says {expected}, the member hashes to "
                f"{actual}",
                member=member.name,
            )


def _check_compression(f: BinaryIO, member: GpkgMember, *, binpkg: str) -> Compression:
    by_suffix = compression_from_suffix(member.basename)
    if by_suffix is None:
        raise BinpkgError(
            binpkg, "unsupported compression (unknown file name suffix)", member=member.name
        )
    head = SegmentReader(f, member.offset_data, member.size).read(DETECT_HEAD_SIZE) or b""
    by_magic = detect_compression(head)
    if by_magic != by_suffix:
        found = by_magic.value if by_magic is not None else f"unknown magic {describe_head(head)}"
        raise BinpkgError(
            binpkg,
            f"compression mismatch: the name says {by_suffix.value}, the content is {found}",
            member=member.name,
        )
    return by_suffix


def read_gpkg_layout(
    f: BinaryIO, *, binpkg: str, verify_manifest: bool = True
) -> GpkgLayout:
    """Read and check the outer tar of a GPKG binpkg.

    Refuses unexpected members, more than one top directory, and a container without gpkg-1,
    metadata, image or Manifest. With `verify_manifest`, every member's size and every hash the
    Manifest lists are checked (streaming), and the Manifest must list exactly the members. A
    clear-signed Manifest is accepted, but its signature is not checked here.
    """
    infos = _read_outer_tar(f, binpkg=binpkg)
    container_dir: str | None = None
    by_basename: dict[str, GpkgMember] = {}
    members: list[GpkgMember] = []
    metadata_member: GpkgMember | None = None
    image_member: GpkgMember | None = None
    signature_names: list[str] = []
    for tarinfo in infos:
        directory, basename = _check_name(tarinfo, binpkg=binpkg)
        if container_dir is None:
            container_dir = directory
        elif directory != container_dir:
            raise BinpkgError(
                binpkg,
                f"unexpected member: more than one top directory ({container_dir!r} and "
                f"{directory!r})",
                member=tarinfo.name,
            )
        if basename in by_basename:
            raise BinpkgError(binpkg, "duplicate member", member=tarinfo.name)
        member = _member(tarinfo)
        if basename in (GPKG_VERSION_FILE, MANIFEST_FILE):
            pass
        elif basename.endswith(SIGNATURE_SUFFIX):
            signature_names.append(tarinfo.name)
        elif basename.startswith("metadata.tar"):
            metadata_member = member
        elif basename.startswith("image.tar"):
            image_member = member
        else:
            raise BinpkgError(binpkg, "unexpected member", member=tarinfo.name)
        by_basename[basename] = member
        members.append(member)

    if container_dir is None:
        raise BinpkgError(binpkg, "empty GPKG container")
    for required, present in (
        (GPKG_VERSION_FILE, GPKG_VERSION_FILE in by_basename),
        ("metadata.tar[.<compression>]", metadata_member is not None),
        ("image.tar[.<compression>]", image_member is not None),
        (MANIFEST_FILE, MANIFEST_FILE in by_basename),
    ):
        if not present:
            raise BinpkgError(
                binpkg, "missing from the GPKG container", member=f"{container_dir}/{required}"
            )
    assert metadata_member is not None and image_member is not None
    signed = {metadata_member.basename, image_member.basename}
    for signature in signature_names:
        signed_name = signature.rsplit("/", 1)[-1][: -len(SIGNATURE_SUFFIX)]
        if signed_name not in signed:
            raise BinpkgError(
                binpkg, "unexpected member: a signature of no metadata or image", member=signature
            )

    manifest_member = by_basename[MANIFEST_FILE]
    if manifest_member.size > MAX_MANIFEST_SIZE:
        raise BinpkgError(binpkg, "Manifest too large", member=manifest_member.name)
    raw_manifest = SegmentReader(f, manifest_member.offset_data, manifest_member.size).read(
        manifest_member.size
    ) or b""
    if len(raw_manifest) != manifest_member.size:
        raise BinpkgError(binpkg, "truncated", member=manifest_member.name)
    try:
        manifest_text = raw_manifest.decode("utf-8")
    except UnicodeDecodeError:
        raise BinpkgError(binpkg, "Manifest is not UTF-8", member=manifest_member.name) from None

    compression = _check_compression(f, image_member, binpkg=binpkg)
    _check_compression(f, metadata_member, binpkg=binpkg)
    for signature in signature_names:
        if by_basename[signature.rsplit("/", 1)[-1]].size > MAX_SIGNATURE_SIZE:
            raise BinpkgError(binpkg, "signature too large", member=signature)

    if verify_manifest:
        records = parse_manifest(manifest_text, binpkg=binpkg, member=manifest_member.name)
        for member in members:
            if member is manifest_member:
                continue
            record = records.get(member.basename)
            if record is None:
                raise BinpkgError(binpkg, "missing from the Manifest", member=member.name)
            _verify_member(f, member, record, binpkg=binpkg)
        for name in records:
            if name == MANIFEST_FILE:
                raise BinpkgError(
                    binpkg, "the Manifest lists itself", member=manifest_member.name
                )
            if name not in by_basename:
                raise BinpkgError(
                    binpkg,
                    "listed in the Manifest but absent from the container",
                    member=f"{container_dir}/{name}",
                )

    return GpkgLayout(
        container_dir=container_dir,
        members=tuple(members),
        manifest_text=manifest_text,
        compression=compression,
        metadata_member=metadata_member,
        image_member=image_member,
        signatures=tuple(signature_names),
    )


def read_gpkg_metadata(
    f: BinaryIO,
    layout: GpkgLayout,
    *,
    binpkg: str,
    tools: Mapping[str, str] | None = None,
) -> dict[str, bytes]:
    """The `metadata/<KEY>` files of the metadata tar, by KEY, in archive order."""
    member = layout.metadata_member
    raw = SegmentReader(f, member.offset_data, member.size)
    metadata: dict[str, bytes] = {}
    total = 0
    with decompressed(
        raw, layout.metadata_compression, binpkg=binpkg, member=member.name, tools=tools
    ) as stream:
        for tar, tarinfo in iter_tar_members(stream, binpkg=binpkg, member=member.name):
            entry = f"{member.name}:{tarinfo.name}"
            if tarinfo.type not in (tarfile.REGTYPE, tarfile.AREGTYPE):
                raise BinpkgError(binpkg, "metadata entries must be regular files", member=entry)
            prefix, _, key = tarinfo.name.partition("/")
            if prefix != "metadata" or not key or "/" in key or key in (".", ".."):
                raise BinpkgError(
                    binpkg, "unexpected metadata entry (want metadata/<KEY>)", member=entry
                )
            try:
                key.encode("utf-8")
            except UnicodeEncodeError:
                raise BinpkgError(binpkg, "metadata key is not UTF-8", member=entry) from None
            if key in metadata:
                raise BinpkgError(binpkg, "duplicate metadata entry", member=entry)
            total += tarinfo.size
            if tarinfo.size > MAX_METADATA_VALUE_SIZE or total > MAX_METADATA_TOTAL_SIZE:
                raise BinpkgError(binpkg, "metadata entry too large", member=entry)
            metadata[key] = read_member_data(tar, tarinfo, binpkg=binpkg, member=entry)
    return metadata
