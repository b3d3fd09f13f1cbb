"""`pants package` for `sysext_image` targets: resolve, unpack, stage, squash."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from pants.core.goals.package import BuiltPackage, BuiltPackageArtifact, PackageFieldSet
from pants.engine.addresses import Address, AddressInput, Addresses, UnparsedAddressInputs
from pants.engine.fs import CreateDigest, Digest, DigestEntries, FileEntry
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.engine.unions import UnionRule
from pants.util.logging import LogLevel

from pants_sysext.binpkg_types import BinpkgSet, BinpkgSetRequest
from pants_sysext.extension_release import ExtensionRelease, architecture_from_chost
from pants_sysext.squash import IMAGE_FILE, SquashedImage, SquashRequest
from pants_sysext.stage import GeneratedFile, PkginfoRequest, StagedTree, StageRequest
from pants_sysext.base_image import BaseImage, BaseImageRequest
from pants_sysext.resolution import StackedPackages, StackedPackagesRequest
from pants_sysext.target_types import (
    ArchitectureField,
    BaseExtensionsField,
    ImageBaseField,
    PkginfoField,
    CompressionField,
    ExcludeField,
    ExtensionNameField,
    ExtensionReleaseField,
    OsIdField,
    SourceDateEpochField,
    SysextLevelField,
    SysextOutputPathField,
    SysextPackagesField,
    VersionIdField,
)
from pants_sysext.unpack import UnpackBinpkgRequest, UnpackedBinpkg

logger = logging.getLogger(__name__)


class ArchitectureMismatchError(Exception):
    pass


@dataclass(frozen=True)
class SysextImageFieldSet(PackageFieldSet):
    required_fields = (ExtensionNameField, SysextPackagesField)

    extension_name: ExtensionNameField
    packages: SysextPackagesField
    os_id: OsIdField
    version_id: VersionIdField
    sysext_level: SysextLevelField
    architecture: ArchitectureField
    extension_release: ExtensionReleaseField
    compression: CompressionField
    exclude: ExcludeField
    source_date_epoch: SourceDateEpochField
    output_path: SysextOutputPathField
    base: ImageBaseField
    base_extensions: BaseExtensionsField
    pkginfo: PkginfoField


def resolve_architecture(
    address: str,
    requested: str | None,
    packages: tuple[UnpackedBinpkg, ...],
    *,
    requested_by: str = "sets architecture=",
) -> str | None:
    """The extension's ARCHITECTURE: the packages' (from CHOST), checked against the field."""
    by_arch: dict[str, list[str]] = {}
    for pkg in packages:
        chost = pkg.text("CHOST")
        arch = architecture_from_chost(chost) if chost else None
        if chost and arch is None:
            raise ArchitectureMismatchError(
                f"{address}: {pkg.cpv} has CHOST={chost}, which maps to no systemd "
                f"architecture; set `architecture` explicitly."
            )
        if arch:
            by_arch.setdefault(arch, []).append(pkg.cpv)
    if len(by_arch) > 1:
        detail = "; ".join(f"{a}: {', '.join(sorted(c))}" for a, c in sorted(by_arch.items()))
        raise ArchitectureMismatchError(
            f"{address} mixes packages of different architectures ({detail}). An extension "
            f"holds one architecture: take all packages from one binhost."
        )
    found = next(iter(by_arch), None)
    if requested and found and requested != found:
        raise ArchitectureMismatchError(
            f"{address} {requested_by}{requested!r}, but its packages are {found} "
            f"({', '.join(sorted(by_arch[found]))}). Use packages built for {requested}."
        )
    return requested or found


@rule(desc="Package a systemd-sysext image", level=LogLevel.DEBUG)
async def package_sysext_image(field_set: SysextImageFieldSet) -> BuiltPackage:
    name = field_set.extension_name.value_or_default(field_set.address)
    addresses = await Get(
        Addresses, UnparsedAddressInputs, field_set.packages.to_unparsed_address_inputs()
    )
    sets = await MultiGet(Get(BinpkgSet, BinpkgSetRequest(a)) for a in addresses)
    binpkgs = {b.filename: b for s in sets for b in s.binpkgs}
    unpacked = await MultiGet(
        Get(UnpackedBinpkg, UnpackBinpkgRequest(b)) for _, b in sorted(binpkgs.items())
    )
    seen: dict[str, str] = {}
    for pkg in unpacked:
        if pkg.cpv in seen:
            raise ValueError(
                f"{field_set.address}: {pkg.cpv} comes twice, from {seen[pkg.cpv]} and "
                f"{pkg.info['binpkg']}; keep one."
            )
        seen[pkg.cpv] = pkg.info["binpkg"]
    packages = tuple(sorted(unpacked, key=lambda p: p.cpv))

    # Stacked extensions: nothing they ship may be shipped again.
    stacked = await MultiGet(Get(StackedPackages, StackedPackagesRequest(a)) for a in addresses)
    stacked_cpvs = {cpv: str(e.address) for s in stacked for e in s.extensions for cpv in e.cpvs}
    again = sorted(f"{p.cpv} (already in {stacked_cpvs[p.cpv]})" for p in packages if p.cpv in stacked_cpvs)
    if again:
        raise ValueError(
            f"{field_set.address} is stacked on extensions that ship some of its packages "
            f"again: {', '.join(again)}. Drop them from its binpkg_set (or resolve it with "
            f"`packages=` and `pants generate-lockfiles`, which leaves them out)."
        )

    base: BaseImage | None = None
    if field_set.base.value:
        base_address = await Get(
            Address,
            AddressInput,
            AddressInput.parse(
                field_set.base.value,
                relative_to=field_set.address.spec_path,
                description_of_origin=f"the `base` field of {field_set.address}",
            ),
        )
        base = await Get(
            BaseImage, BaseImageRequest(base_address, f"the `base` field of {field_set.address}")
        )
    os_id = field_set.os_id.value or (base.os_id if base else None) or "_any"
    version_id, sysext_level = field_set.version_id.value, field_set.sysext_level.value
    if base and os_id != "_any" and not (version_id or sysext_level):
        if base.sysext_level:
            sysext_level = base.sysext_level
        else:
            version_id = base.version_id
    if field_set.architecture.value:
        requested_arch, requested_by = field_set.architecture.value, "sets architecture="
    elif base and base.architecture:
        requested_arch, requested_by = base.architecture, f"is for the base {base.address}, "
    else:
        requested_arch, requested_by = None, ""
    release = ExtensionRelease.create(
        name=name,
        os_id=os_id,
        version_id=version_id,
        sysext_level=sysext_level,
        architecture=resolve_architecture(
            str(field_set.address), requested_arch, packages, requested_by=requested_by
        ),
        extra=field_set.extension_release.value or {},
    )
    mtime = field_set.source_date_epoch.value or 0
    staged = await Get(
        StagedTree,
        StageRequest(
            name=name,
            packages=packages,
            generated=(GeneratedFile(release.path, release.render().encode()),),
            exclude=tuple(field_set.exclude.value or ()),
            mtime=mtime,
        ),
    )
    image = await Get(
        SquashedImage,
        SquashRequest(
            name=name,
            staged=staged,
            compression=field_set.compression.value or "zstd",
            mtime=mtime,
        ),
    )
    output_path = field_set.output_path.value_or_default_for(name)
    outputs = [(output_path, image)]
    if field_set.pkginfo.value:
        pkginfo_tree = await Get(
            StagedTree, PkginfoRequest(name=name, packages=packages, staged=staged, mtime=mtime)
        )
        pkginfo_image = await Get(
            SquashedImage,
            SquashRequest(
                name=f"{name}_pkginfo",
                staged=pkginfo_tree,
                compression=field_set.compression.value or "zstd",
                mtime=mtime,
            ),
        )
        outputs.append(
            (os.path.join(os.path.dirname(output_path), f"{name}_pkginfo.raw"), pkginfo_image)
        )
    file_entries = []
    for path, squashed in outputs:
        entries = await Get(DigestEntries, Digest, squashed.digest)
        (entry,) = [e for e in entries if isinstance(e, FileEntry) and e.path == IMAGE_FILE]
        file_entries.append(FileEntry(path, entry.file_digest, is_executable=False))
    digest = await Get(Digest, CreateDigest(file_entries))
    artifacts = [
        BuiltPackageArtifact(
            output_path,
            extra_log_lines=(
                f"    {len(packages)} packages: {', '.join(p.cpv for p in packages)}",
                f"    {release.path}: " + " ".join(release.render().split()),
            ),
        ),
        *(BuiltPackageArtifact(path) for path, _ in outputs[1:]),
    ]
    return BuiltPackage(digest, tuple(artifacts))


def rules():
    return [*collect_rules(), UnionRule(PackageFieldSet, SysextImageFieldSet)]
