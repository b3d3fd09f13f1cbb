"""Everything before squashing: resolve, unpack, stage, mangle and validate an extension's tree.

Shared by `pants package` (which then squashes) and `pants check` (which stops here).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass

from pants.core.goals.package import PackageFieldSet
from pants.core.util_rules.system_binaries import BashBinary
from pants.engine.addresses import Addresses, UnparsedAddressInputs
from pants.engine.fs import (
    AddPrefix,
    CreateDigest,
    Digest,
    DigestContents,
    DigestSubset,
    FileContent,
    GlobMatchErrorBehavior,
    MergeDigests,
    PathGlobs,
    RemovePrefix,
    Snapshot,
)
from pants.engine.process import FallibleProcessResult, Process
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.engine.target import InvalidFieldException
from pants.util.logging import LogLevel

from pants_sysext.base_image import BaseFieldRequest, BaseImage
from pants_sysext.field_targets import FieldAddressRequest, FileFieldRequest, FileFieldSource
from pants_sysext.binpkg_types import BinpkgSet, BinpkgSetRequest
from pants_sysext.extension_release import (
    ExtensionRelease,
    architecture_from_chost,
    architecture_from_keyword,
)
from pants_sysext.process_util import SysextBuildError, raise_for_failure
from pants_sysext.resolution import StackedPackages, StackedPackagesRequest
from pants_sysext.sandbox_code import SandboxCode
from pants_sysext.stage import GeneratedFile, StagedTree, StageRequest
from pants_sysext.system_tools import SysextTools
from pants_sysext.target_types import (
    _EXTENSION_NAME_RE,
    STRIP_PRESETS,
    AddFilesField,
    AllowMissingLibrariesField,
    ArchitectureField,
    BaseExtensionsField,
    CompressionField,
    EnableUnitsField,
    EtcPolicyField,
    ExcludeField,
    ExtensionNameField,
    ExtensionReleaseField,
    ImageBaseField,
    MangleField,
    NameMismatchField,
    OsIdField,
    PkginfoField,
    RemoveField,
    ShadowField,
    SourceDateEpochField,
    StripField,
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
    etc: EtcPolicyField
    strip: StripField
    remove: RemoveField
    add_files: AddFilesField
    enable_units: EnableUnitsField
    mangle: MangleField
    allow_missing_libraries: AllowMissingLibrariesField
    shadow: ShadowField
    name_mismatch: NameMismatchField


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
        if pkg.info.get("format") == "deb":
            deb_arch = pkg.text("Architecture") or "all"
            arch = None if deb_arch == "all" else architecture_from_keyword(deb_arch)
            if deb_arch != "all" and arch is None:
                raise ArchitectureMismatchError(
                    f"{address}: {pkg.cpv} is for the Debian architecture {deb_arch}, which maps "
                    f"to no systemd architecture; set `architecture` explicitly."
                )
            if arch:
                by_arch.setdefault(arch, []).append(pkg.cpv)
            continue
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


def upholds_dropin(unit: str, name: str) -> GeneratedFile:
    """Flatcar's way to start a unit of an extension: an `Upholds=` drop-in on a target."""
    kind = unit.rsplit(".", 1)[-1]
    target = {"socket": "sockets.target", "timer": "timers.target", "path": "paths.target"}.get(
        kind, "multi-user.target"
    )
    stem = unit.rsplit(".", 1)[0]
    return GeneratedFile(
        f"usr/lib/systemd/system/{target}.d/10-{stem}-{kind}.conf",
        f"# Generated for the sysext {name}: start {unit} while the extension is merged.\n"
        f"[Unit]\nUpholds={unit}\n".encode(),
    )


def check_image_fields(field_set: "SysextImageFieldSet") -> None:
    """Field combinations of a sysext_image, checked when it is built."""
    address = field_set.address
    if field_set.version_id.value and field_set.sysext_level.value:
        raise InvalidFieldException(
            f"The target {address} sets both `version_id` and `sysext_level`: set one."
        )
    name = field_set.extension_name.value_or_default(address)
    output = field_set.output_path.value_or_default_for(name)
    if os.path.basename(output) != f"{name}.raw" and field_set.name_mismatch.value == "error":
        raise InvalidFieldException(
            f"The `output_path` of target {address} is {output!r}, but its file name "
            f"must be `{name}.raw` to match `extension-release.{name}`: systemd-sysext "
            f"refuses images whose file name differs from the release file's NAME (\"No "
            f"medium found\"). For a versioned name, set `name_mismatch=\"xattr\"`."
        )
    if not output.endswith(".raw"):
        raise InvalidFieldException(
            f"The `output_path` of target {address} must end in `.raw`, got {output!r}."
        )
    for image_path in field_set.add_files.value or {}:
        top = image_path.strip("/").split("/", 1)[0]
        if top not in ("usr", "opt"):
            raise InvalidFieldException(
                f"The `add_files` field of target {address} adds {image_path!r}: images "
                f"hold only /usr and /opt."
            )
    for unit in field_set.enable_units.value or ():
        if "/" in unit or "." not in unit:
            raise InvalidFieldException(
                f"The `enable_units` field of target {address} has {unit!r}: give unit "
                f"names like `docker.socket`."
            )
    if not _EXTENSION_NAME_RE.match(name):
        raise InvalidFieldException(
            f"The target name of {address} is not a valid extension name; set "
            f"`extension_name` to letters, digits and `_.+-`."
        )


@dataclass(frozen=True)
class SysextTreeRequest:
    field_set: SysextImageFieldSet


@dataclass(frozen=True)
class SysextTree:
    name: str
    output_path: str
    release: ExtensionRelease
    packages: tuple[UnpackedBinpkg, ...]
    staged: StagedTree  # after mangling
    reports: Digest  # NAME_packages.txt, NAME_contents.txt, NAME_disk_usage.txt, …
    report_files: tuple[str, ...]
    warnings: tuple[str, ...]
    mtime: int


async def _base(field_set: SysextImageFieldSet) -> BaseImage | None:
    if not field_set.base.value:
        return None
    return await Get(BaseImage, BaseFieldRequest(field_set.base.value, field_set.address))


async def _add_files(field_set: SysextImageFieldSet) -> list[GeneratedFile]:
    mapping = field_set.add_files.value or {}
    if not mapping:
        return []
    sources = {
        image_path: os.path.normpath(os.path.join(field_set.address.spec_path, src))
        for image_path, src in mapping.items()
    }
    snapshot = await Get(
        Snapshot,
        PathGlobs(
            sorted(set(sources.values())),
            glob_match_error_behavior=GlobMatchErrorBehavior.error,
            description_of_origin=f"the `add_files` field of {field_set.address}",
        ),
    )
    contents = {c.path: c for c in await Get(DigestContents, Digest, snapshot.digest)}
    return [
        GeneratedFile(
            image_path.strip("/"),
            contents[src].content,
            mode=0o755 if contents[src].is_executable else 0o644,
        )
        for image_path, src in sorted(sources.items())
    ]


async def _mangle(
    field_set: SysextImageFieldSet,
    staged: StagedTree,
    tools: SysextTools,
    code: SandboxCode,
    bash: BashBinary,
    mtime: int,
) -> StagedTree:
    script = await Get(
        FileFieldSource,
        FileFieldRequest(
            FieldAddressRequest(field_set.mangle.value or "", field_set.address, "mangle"),
            holding="a bash script",
        ),
    )
    script_path = script.path
    result = await Get(
        FallibleProcessResult,
        Process(
            [
                *SandboxCode.module_argv(tools.python3.path, "mangle"),
                "--bash", bash.path,
                "--script", script_path,
                "--tar", "staged/staged.tar",
                "--manifest", "staged/manifest.jsonl",
                "--mtime", str(mtime),
                "out",
            ],
            description=f"Running the mangle script {script_path} over {field_set.address}",
            input_digest=await Get(
                Digest,
                MergeDigests(
                    [code.digest, script.digest, await Get(Digest, AddPrefix(staged.digest, "staged"))]
                ),
            ),
            output_directories=["out"],
            env={**tools.env(), "SYSEXT_BASH_FINGERPRINT": bash.fingerprint or ""},
            level=LogLevel.INFO,
            remote_cache_speculation_delay_millis=tools.speculation_delay_millis,
        ),
    )
    raise_for_failure(result, what=f"Mangling {field_set.address}")
    return StagedTree(await Get(Digest, RemovePrefix(result.output_digest, "out")))


@rule(desc="Build and validate an extension's tree", level=LogLevel.DEBUG)
async def build_sysext_tree(
    request: SysextTreeRequest, tools: SysextTools, code: SandboxCode, bash: BashBinary
) -> SysextTree:
    field_set = request.field_set
    check_image_fields(field_set)
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
            raise SysextBuildError(
                f"{field_set.address}: {pkg.cpv} comes twice, from {seen[pkg.cpv]} and "
                f"{pkg.info['binpkg']}; keep one."
            )
        seen[pkg.cpv] = pkg.info["binpkg"]
    packages = tuple(sorted(unpacked, key=lambda p: p.cpv))

    # Stacked extensions: nothing they ship may be shipped again.
    stacked = await MultiGet(Get(StackedPackages, StackedPackagesRequest(a)) for a in addresses)
    stacked_exts = {e.address: e for s in stacked for e in s.extensions}
    stacked_cpvs = {cpv: str(e.address) for e in stacked_exts.values() for cpv in e.cpvs}
    again = sorted(f"{p.cpv} (already in {stacked_cpvs[p.cpv]})" for p in packages if p.cpv in stacked_cpvs)
    if again:
        raise SysextBuildError(
            f"{field_set.address} is stacked on extensions that ship some of its packages "
            f"again: {', '.join(again)}. Drop them from its binpkg_set (or resolve it with "
            f"`packages=` and `pants generate-lockfiles`, which leaves them out)."
        )

    base = await _base(field_set)
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
    output_path = field_set.output_path.value_or_default_for(name)
    warnings: list[str] = []
    release_xattrs: tuple[tuple[str, str], ...] = ()
    if os.path.basename(output_path) != f"{name}.raw":
        if field_set.name_mismatch.value == "xattr":
            release_xattrs = (("user.extension-release.strict", "0"),)
        else:
            warnings.append(
                f"{field_set.address}: the image is written as {os.path.basename(output_path)}, "
                f"but its release file is extension-release.{name}: systemd-sysext will refuse "
                f"it (\"No medium found\") unless it is renamed to {name}.raw. Set "
                f"`name_mismatch=\"xattr\"` to mark the release file as non-strict instead."
            )

    # Debian maintainer scripts do not run for an extension: say which packages have them.
    scripted = [
        (p.cpv, p.text("MAINTAINER_SCRIPTS") or "")
        for p in packages
        if p.info.get("format") == "deb" and p.text("MAINTAINER_SCRIPTS")
    ]
    scripts_that_matter = [
        (label, [x for x in scripts.split() if x != "triggers"]) for label, scripts in scripted
    ]
    scripts_that_matter = [(label, xs) for label, xs in scripts_that_matter if xs]
    if scripts_that_matter:
        listed = "; ".join(f"{label} ({', '.join(xs)})" for label, xs in scripts_that_matter)
        warnings.append(
            f"{field_set.address}: maintainer scripts do not run in an extension: {listed}. "
            f"Provide what they set up with `add_files` (users and groups through "
            f"usr/lib/sysusers.d/, directories through usr/lib/tmpfiles.d/); the list is in "
            f"{name}_maintainer_scripts.txt."
        )
    maintainer_report = "".join(f"{label}: {scripts}\n" for label, scripts in scripted)

    generated = [GeneratedFile(release.path, release.render().encode(), xattrs=release_xattrs)]
    generated.extend(await _add_files(field_set))
    units = tuple(field_set.enable_units.value or ())
    generated.extend(upholds_dropin(unit, name) for unit in units)
    exclude = [
        *(field_set.exclude.value or ()),
        *(field_set.remove.value or ()),
        *(p for preset in field_set.strip.value or () for p in STRIP_PRESETS[preset]),
    ]
    mtime = field_set.source_date_epoch.value or 0
    staged = await Get(
        StagedTree,
        StageRequest(
            name=name,
            packages=packages,
            generated=tuple(generated),
            exclude=tuple(exclude),
            mtime=mtime,
            etc=field_set.etc.value or "error",
            users=base.users if base else None,
            groups=base.groups if base else None,
            required=tuple(
                (f"usr/lib/systemd/system/{u}", f"`enable_units` starts {u}") for u in units
            ),
            merged_usr=base.merged_usr if base else False,
        ),
    )

    if field_set.mangle.value:
        staged = await _mangle(field_set, staged, tools, code, bash, mtime)

    # Validation: ELF closure, path policy, shadowing; writes the reports.
    spec = {
        "name": name,
        "architecture": release.architecture,
        "tar": "staged/staged.tar",
        "manifest": "staged/manifest.jsonl",
        "base": "base/base.json" if base else None,
        "stacked": [
            {
                "name": str(e.address),
                "provides": [r.provides for r in e.records if r.provides],
                "files": [],
            }
            for e in stacked_exts.values()
        ],
        "allow_missing_libraries": list(field_set.allow_missing_libraries.value or ()),
        "shadow": field_set.shadow.value or "warn",
        "packages": [
            {
                "cpv": p.cpv,
                "repo": "debian" if p.info.get("format") == "deb" else (p.text("repository") or p.text("REPO")),
            }
            for p in packages
        ],
    }
    inputs = [
        code.digest,
        await Get(Digest, AddPrefix(staged.digest, "staged")),
        await Get(Digest, CreateDigest([FileContent("validate.json", json.dumps(spec, sort_keys=True).encode())])),
    ]
    if base:
        inputs.append(await Get(Digest, AddPrefix(base.digest, "base")))
    result = await Get(
        FallibleProcessResult,
        Process(
            [*SandboxCode.module_argv(tools.python3.path, "validate"), "validate.json", "out"],
            description=f"Validating {name}",
            input_digest=await Get(Digest, MergeDigests(inputs)),
            output_directories=["out"],
            env=tools.env(),
            level=LogLevel.INFO,
            remote_cache_speculation_delay_millis=tools.speculation_delay_millis,
        ),
    )
    raise_for_failure(result, what=f"Validating the extension {name} ({field_set.address})")
    for line in result.stdout.decode("utf-8", "replace").splitlines():
        if line.startswith("warning: "):
            warnings.append(f"{field_set.address}: {line[len('warning: '):]}")
    reports = await Get(
        Digest,
        DigestSubset(await Get(Digest, RemovePrefix(result.output_digest, "out")), PathGlobs([f"{name}_*.txt"])),
    )
    if scripted:
        extra = await Get(
            Digest,
            CreateDigest([FileContent(f"{name}_maintainer_scripts.txt", maintainer_report.encode())]),
        )
        reports = await Get(Digest, MergeDigests([reports, extra]))
    for warning in warnings:
        logger.warning(warning)
    return SysextTree(
        name=name,
        output_path=output_path,
        release=release,
        packages=packages,
        staged=staged,
        reports=reports,
        report_files=tuple(sorted((await Get(Snapshot, Digest, reports)).files)),
        warnings=tuple(warnings),
        mtime=mtime,
    )


def rules():
    return collect_rules()
