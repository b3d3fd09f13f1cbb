"""Resolving a `binpkg_set`'s atoms against its binhost, base and stacked extensions."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from pants.engine.addresses import Address, Addresses, UnparsedAddressInputs
from pants.engine.fs import Digest, DigestContents
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.engine.target import AllTargets, Target, WrappedTarget, WrappedTargetRequest

from pants_sysext.base_image import BaseFieldRequest, BaseImage
from pants_sysext.binhost import BinhostIndex, BinhostIndexRequest, BinpkgHashes, BinpkgHashesRequest
from pants_sysext.binpkg_lockfile import (
    BinpkgLockfile,
    LockedBinpkg,
    LockInputs,
    Satisfied,
    stacked_fingerprint,
)
from pants_sysext.binpkg_types import BinpkgSet, BinpkgSetRequest
from pants_sysext.unpack import UnpackBinpkgRequest, UnpackedBinpkg
from pants_sysext.debian import AptIndex, AptIndexRequest, apt_location, apt_mirror
from pants_sysext.subsystem import DebianSubsystem
from pants_sysext.target_types import (
    AptArchitectureField,
    AptComponentsField,
    AptKeyringField,
    AptSuiteField,
    BaseExtensionsField,
    BinhostField,
    BinpkgBaseField,
    BinpkgExcludeField,
    BinpkgPackagesField,
    LockfileField,
    ResolveField,
    SysextPackagesField,
)

logger = logging.getLogger(__name__)


class ResolutionError(Exception):
    """Atoms that cannot be resolved; the message explains why and what to change."""


@dataclass(frozen=True)
class StackedExtension:
    address: Address  # the sysext_image stacked upon
    cpvs: tuple[str, ...]
    records: tuple[Any, ...] = ()  # Portage PackageRecords (filled when resolving)
    deb_records: tuple[Any, ...] = ()  # Debian DebRecords

    @property
    def fingerprint(self) -> str:
        return stacked_fingerprint(str(self.address), self.cpvs)


@dataclass(frozen=True)
class StackedPackagesRequest:
    binpkg_set: Address
    # When generating lockfiles, resolved sets of the lower extensions are resolved afresh
    # rather than read from their (maybe not yet written) lockfiles, so that a whole stack can
    # be locked in one `generate-lockfiles` run.
    for_generation: bool = False


@dataclass(frozen=True)
class StackedPackages:
    extensions: tuple[StackedExtension, ...]


async def _image_package_sets(image: Target) -> Addresses:
    return await Get(
        Addresses, UnparsedAddressInputs, image[SysextPackagesField].to_unparsed_address_inputs()
    )


@dataclass(frozen=True)
class ResolveBinpkgSetRequest:
    address: Address


@dataclass(frozen=True)
class ResolvedLockfile:
    context: LockContext
    lockfile: BinpkgLockfile


@rule(desc="Find the extensions a binpkg_set is stacked on")
async def stacked_packages(request: StackedPackagesRequest, all_targets: AllTargets) -> StackedPackages:
    """The packages of the `base_extensions` of every `sysext_image` that uses this set."""
    images = [t for t in all_targets if t.has_field(BaseExtensionsField)]
    package_sets = await MultiGet(
        Get(Addresses, UnparsedAddressInputs, t[SysextPackagesField].to_unparsed_address_inputs())
        for t in images
    )
    users = [img for img, sets in zip(images, package_sets) if request.binpkg_set in sets]
    stacked_by_user = await MultiGet(
        Get(
            Addresses,
            UnparsedAddressInputs,
            img[BaseExtensionsField].to_unparsed_address_inputs(),
        )
        for img in users
    )
    distinct = {tuple(sorted(map(str, s))) for s in stacked_by_user}
    if len(distinct) > 1:
        detail = "; ".join(
            f"{img.address} stacks on [{', '.join(map(str, s))}]" for img, s in zip(users, stacked_by_user)
        )
        raise ResolutionError(
            f"{request.binpkg_set} is used by sysext_images stacked on different extensions "
            f"({detail}). A binpkg_set is resolved once: give each stack its own binpkg_set."
        )
    stacked_addresses = sorted({a for s in stacked_by_user for a in s})
    extensions = []
    for ext_address in stacked_addresses:
        ext = (
            await Get(
                WrappedTarget,
                WrappedTargetRequest(ext_address, f"the `base_extensions` of a user of {request.binpkg_set}"),
            )
        ).target
        if not ext.has_field(BaseExtensionsField):
            raise ResolutionError(
                f"`base_extensions` must name sysext_image targets; {ext_address} is a "
                f"`{ext.alias}`."
            )
        sets = await _image_package_sets(ext)
        if request.binpkg_set in sets:
            raise ResolutionError(f"{ext_address} is stacked on itself through {request.binpkg_set}.")
        cpvs: list[str] = []
        records: list[Any] = []
        deb_records: list[Any] = []
        for set_address in sets:
            set_target = (
                await Get(WrappedTarget, WrappedTargetRequest(set_address, f"the packages of {ext_address}"))
            ).target
            if request.for_generation and set_target.get(BinpkgPackagesField).value:
                lower = await Get(ResolvedLockfile, ResolveBinpkgSetRequest(set_address))
                for locked in lower.lockfile.packages:
                    cpvs.append(locked.cpv)
                    if locked.deb_control:
                        deb_records.append(_deb_record(dict(locked.deb_control)))
                    else:
                        records.append(_record_from_values(locked.as_index_values()))
                continue
            binpkg_set = await Get(BinpkgSet, BinpkgSetRequest(set_address))
            unpacked = await MultiGet(
                Get(UnpackedBinpkg, UnpackBinpkgRequest(b)) for b in binpkg_set.binpkgs
            )
            for p in unpacked:
                cpvs.append(p.cpv)
                if p.info.get("format") == "deb":
                    deb_records.append(_deb_record(dict(p.metadata)))
                else:
                    records.append(
                        _record_from_values({k: v.strip() for k, v in p.metadata.items()} | {"CPV": p.cpv})
                    )
        extensions.append(
            StackedExtension(
                address=ext_address,
                cpvs=tuple(sorted(cpvs)),
                records=tuple(records),
                deb_records=tuple(deb_records),
            )
        )
    return StackedPackages(tuple(extensions))


_DEB_RECORD_FIELDS = (
    "Package", "Version", "Architecture", "Depends", "Pre-Depends", "Provides", "Conflicts",
    "Breaks", "Multi-Arch", "Essential",
)


def _deb_record(control: dict[str, str]) -> Any:
    from pants_sysext.resolve.debian_resolver import DebRecord

    return DebRecord.from_mapping({k: control[k] for k in _DEB_RECORD_FIELDS if k in control})


def _record_from_values(values: dict[str, str]) -> Any:
    from pants_sysext.resolve.portage_resolver import PackageRecord

    return PackageRecord.from_mapping(values)


@dataclass(frozen=True)
class LockContextRequest:
    """What a resolved binpkg_set's lock depends on (for generating and for checking it)."""

    address: Address
    for_generation: bool = False


@dataclass(frozen=True)
class LockContext:
    address: Address
    resolve: str
    lockfile_path: str
    inputs: LockInputs
    base: BaseImage | None
    stacked: StackedPackages


@rule(desc="Collect the inputs of a binpkg_set's lock")
async def lock_context(request: LockContextRequest) -> LockContext:
    target = (
        await Get(WrappedTarget, WrappedTargetRequest(request.address, "a binpkg_set resolve"))
    ).target
    resolve = target[ResolveField].value_or_default(request.address)
    base = None
    base_spec = target[BinpkgBaseField].value
    if base_spec:
        base = await Get(BaseImage, BaseFieldRequest(base_spec, request.address))
    stacked = await Get(
        StackedPackages, StackedPackagesRequest(request.address, request.for_generation)
    )
    inputs = LockInputs(
        binhost=(
            apt_location(target) if target[AptSuiteField].value else target[BinhostField].location() or ""
        ),
        requested=tuple(target[BinpkgPackagesField].value or ()),
        exclude=tuple(target[BinpkgExcludeField].value or ()),
        base=base.lock_fingerprint if base else None,
        stacked=tuple(e.fingerprint for e in stacked.extensions),
    )
    return LockContext(
        address=request.address,
        resolve=resolve,
        lockfile_path=target[LockfileField].path(request.address, resolve),
        inputs=inputs,
        base=base,
        stacked=stacked,
    )


async def _resolve_debian(
    request: ResolveBinpkgSetRequest, context: LockContext, debian: DebianSubsystem
) -> ResolvedLockfile:
    from pants_sysext.resolve.debian_resolver import (
        DebResolveError,
        parse_dpkg_status,
        parse_packages_file,
        resolve,
    )

    target = (await Get(WrappedTarget, WrappedTargetRequest(request.address, "a Debian resolve"))).target
    if context.base is not None and context.base.kind != "dpkg":
        raise ResolutionError(
            f"{request.address} takes Debian packages (`apt_suite`), but its base "
            f"{context.base.address} has no dpkg status: use a Debian base."
        )
    arch = target[AptArchitectureField].value or "amd64"
    index = await Get(
        AptIndex,
        AptIndexRequest(
            description=str(request.address),
            mirror=apt_mirror(target, debian),
            suite=target[AptSuiteField].value or "",
            components=tuple(target[AptComponentsField].value or ("main",)),
            architecture=arch,
            keyring=target[AptKeyringField].value or "",
        ),
    )
    candidates = []
    for content in await Get(DigestContents, Digest, index.digest):
        if os.path.basename(content.path).startswith("Packages-"):
            candidates.extend(parse_packages_file(content.content))
    installed = (
        parse_dpkg_status(context.base.dpkg_status) if context.base and context.base.dpkg_status else ()
    )
    stacked = {str(e.address): e.deb_records for e in context.stacked.extensions}
    try:
        resolution = resolve(
            context.inputs.requested,
            candidates,
            installed=installed,
            stacked=stacked,
            architecture=arch,
            exclude=context.inputs.exclude,
        )
    except DebResolveError as e:
        raise ResolutionError(f"{request.address} (resolve `{context.resolve}`): {e}") from e
    locked = []
    for resolved in resolution.packages:
        record = resolved.record
        extra = dict(record.extra)
        control = {
            "Package": record.package,
            "Version": record.version,
            "Architecture": record.architecture,
            **{k: v for k, v in (
                ("Depends", record.depends), ("Pre-Depends", record.pre_depends),
                ("Provides", record.provides), ("Conflicts", record.conflicts),
                ("Breaks", record.breaks), ("Multi-Arch", record.multi_arch),
            ) if v},
        }
        if record.essential:
            control["Essential"] = "yes"
        locked.append(
            LockedBinpkg(
                cpv=f"{record.package}_{record.version}_{record.architecture}",
                path=extra["Filename"],
                size=int(extra["Size"]),
                sha256=extra["SHA256"],
                md5=extra.get("MD5sum"),
                slot="",
                rdepend=record.depends,
                why=tuple(resolved.why),
                deb_control=tuple(sorted(control.items())),
            )
        )
    satisfied = tuple(
        Satisfied(atom=s.relation, by=s.by, source=s.source, needed_by=s.needed_by)
        for s in resolution.satisfied
    )
    return ResolvedLockfile(
        context,
        BinpkgLockfile(
            resolve=context.resolve, inputs=context.inputs, packages=tuple(locked), satisfied=satisfied
        ),
    )


@rule(desc="Resolve a binpkg_set against its binhost and base")
async def resolve_binpkg_set_lock(
    request: ResolveBinpkgSetRequest, debian: DebianSubsystem
) -> ResolvedLockfile:
    from pants_sysext.extension_release import architecture_from_chost
    from pants_sysext.resolve.portage_resolver import PackageRecord, ResolveError, resolve

    context = await Get(LockContext, LockContextRequest(request.address, for_generation=True))
    if context.inputs.binhost.startswith("apt:"):
        return await _resolve_debian(request, context, debian)
    binhost = await Get(
        BinhostIndex,
        BinhostIndexRequest(context.inputs.binhost, f"the `binhost` of {request.address}"),
    )
    candidates = []
    for entry in binhost.index.packages:
        candidates.append(PackageRecord.from_mapping({**entry.as_dict(), "CPV": entry.cpv}))
    installed = context.base.installed_records() if context.base else ()
    stacked = {str(e.address): e.records for e in context.stacked.extensions}

    # Arch mismatch between binhost and base is an error before anything else.
    binhost_arch = architecture_from_chost(binhost.index.header_value("CHOST") or "") or None
    if context.base and context.base.architecture and binhost_arch and binhost_arch != context.base.architecture:
        raise ResolutionError(
            f"{request.address}: the binhost {binhost.location} holds {binhost_arch} packages "
            f"(CHOST={binhost.index.header_value('CHOST')}), but the base {context.base.address} "
            f"is {context.base.architecture}. Use the binhost built for the base's architecture."
        )
    try:
        resolution = resolve(
            context.inputs.requested,
            candidates,
            installed=installed,
            stacked=stacked,
            exclude=context.inputs.exclude,
        )
    except ResolveError as e:
        raise ResolutionError(f"{request.address} (resolve `{context.resolve}`): {e}") from e

    entries = []
    by_key = {}
    for entry in binhost.index.packages:
        by_key[(entry.cpv, entry.build_id)] = entry
    for resolved in resolution.packages:
        record = resolved.record
        entries.append(by_key[(record.cpv, record.build_id)])
    # Portage's `URI` header: the packages live elsewhere than the index.
    packages_uri = binhost.index.header_value("URI")
    packages_location = packages_uri.rstrip("/") if packages_uri else binhost.location
    hashes = await Get(BinpkgHashes, BinpkgHashesRequest(packages_location, tuple(entries)))
    locked = []
    for resolved, entry in zip(resolution.packages, entries):
        sha256, size = hashes.get(entry.path)
        locked.append(
            LockedBinpkg(
                cpv=entry.cpv,
                path=entry.path,
                size=size,
                sha256=sha256,
                build_id=entry.build_id,
                md5=entry.get("MD5"),
                sha1=entry.get("SHA1"),
                slot=entry.slot,
                use=entry.get("USE") or "",
                rdepend=entry.get("RDEPEND") or "",
                provides=entry.get("PROVIDES") or "",
                requires=entry.get("REQUIRES") or "",
                repo=entry.get("REPO"),
                chost=entry.get("CHOST"),
                why=tuple(resolved.why),
                url=f"{packages_location}/{entry.path}" if packages_uri else None,
            )
        )
    satisfied = tuple(
        Satisfied(atom=s.atom, by=s.by, source=s.source, needed_by=s.needed_by)
        for s in resolution.satisfied
    )
    lockfile = BinpkgLockfile(
        resolve=context.resolve,
        inputs=context.inputs,
        packages=tuple(locked),
        satisfied=satisfied,
    )
    return ResolvedLockfile(context, lockfile)


def rules():
    return collect_rules()
