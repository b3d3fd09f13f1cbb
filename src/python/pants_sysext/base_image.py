"""`sysext_base`: the OS an extension is merged into, and its installed-package database."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any

from pants.engine.addresses import Address
from pants.engine.fs import (
    Digest,
    DigestContents,
    GlobMatchErrorBehavior,
    MergeDigests,
    PathGlobs,
    Snapshot,
)
from pants.engine.process import FallibleProcessResult, Process
from pants.engine.rules import Get, collect_rules, rule
from pants.engine.target import WrappedTarget, WrappedTargetRequest
from pants.util.logging import LogLevel

from pants_sysext.extension_release import architecture_from_chost
from pants_sysext.field_targets import FieldAddressRequest, FileFieldRequest, FileFieldSource
from pants_sysext.process_util import raise_for_failure
from pants_sysext.sandbox_code import SandboxCode
from pants_sysext.system_tools import SysextTools
from pants_sysext.target_types import (
    BaseArchitectureField,
    BaseImageField,
    BaseOsIdField,
    BaseRootField,
    BaseSysextLevelField,
    BaseVersionIdField,
)


class SysextBaseError(Exception):
    pass


@dataclass(frozen=True)
class BaseImageRequest:
    address: Address
    description_of_origin: str


@dataclass(frozen=True)
class BaseImage:
    """A base OS: identity, package database (`base.json`) and its fingerprint."""

    address: Address
    os_id: str | None
    version_id: str | None
    sysext_level: str | None
    architecture: str | None
    fingerprint: str  # "sha256:…" of the package database, recorded in lockfiles
    digest: Digest  # holds base.json
    packages_json: str  # the `packages` part of base.json, as vdb_to_json wrote it
    users: tuple[tuple[str, int], ...] | None = None  # from the base's passwd, if it has one
    groups: tuple[tuple[str, int], ...] | None = None
    merged_usr: bool = False  # /bin, /lib, … are symlinks into /usr
    kind: str = "vdb"  # the package database: Portage's VDB, or dpkg's status
    dpkg_status: str | None = None  # the status file of a dpkg base

    @property
    def lock_fingerprint(self) -> str:
        return f"{self.address} {self.fingerprint}"

    def installed_records(self) -> tuple[Any, ...]:
        """The base's packages as resolver records (imports the `portage` library)."""
        from pants_sysext.formats.vdb import vdb_from_json
        from pants_sysext.resolve.portage_resolver import PackageRecord

        return tuple(
            PackageRecord.from_mapping({**dict(p.values), "CPV": p.cpv})
            for p in vdb_from_json(self.packages_json)
        )


@rule(desc="Read a sysext_base", level=LogLevel.DEBUG)
async def read_base_image(
    request: BaseImageRequest, tools: SysextTools, code: SandboxCode
) -> BaseImage:
    wrapped = await Get(
        WrappedTarget, WrappedTargetRequest(request.address, request.description_of_origin)
    )
    target = wrapped.target
    if not target.has_field(BaseRootField):
        raise SysextBaseError(
            f"{request.address} is a `{target.alias}` target, but {request.description_of_origin} "
            f"must name a `sysext_base` target."
        )
    root = target[BaseRootField].directory(request.address)
    if root is not None:
        snapshot = await Get(
            Snapshot,
            PathGlobs(
                [
                    f"{root}/var/db/pkg/**",
                    *(
                        f"{root}/{p}"
                        for p in (
                            "var/lib/dpkg/status",
                            "var/lib/dpkg/info/*.list",
                            "usr/lib/os-release",
                            "etc/os-release",
                            "usr/share/baselayout/passwd",
                            "usr/share/baselayout/group",
                            "etc/passwd",
                            "etc/group",
                        )
                    ),
                ],
                glob_match_error_behavior=GlobMatchErrorBehavior.ignore,
            ),
        )
        if not any(
            f.startswith(f"{root}/var/db/pkg/") or f == f"{root}/var/lib/dpkg/status"
            for f in snapshot.files
        ):
            raise SysextBaseError(
                f"{request.address}: `root` is {root}, which holds neither var/db/pkg/CATEGORY/PF "
                f"entries nor var/lib/dpkg/status. Point it at a directory holding the base's "
                f"package database (Portage's or dpkg's)."
            )
        argv_tail = ["root", root, "base.json"]
        input_digest = snapshot.digest
        what = root
    else:
        image = await Get(
            FileFieldSource,
            FileFieldRequest(
                FieldAddressRequest(target[BaseImageField].value or "", request.address, "image"),
                holding="the base image",
            ),
        )
        path = image.path
        argv_tail = [
            "image", path, "base.json", "--unsquashfs", tools.unsquashfs.path, *tools.decompressors
        ]
        input_digest = image.digest
        what = os.path.basename(path)

    result = await Get(
        FallibleProcessResult,
        Process(
            [*SandboxCode.module_argv(tools.python3.path, "read_base"), *argv_tail],
            description=f"Reading the package database of {request.address} ({what})",
            input_digest=await Get(Digest, MergeDigests([code.digest, input_digest])),
            output_files=["base.json"],
            env=tools.env(tools.unsquashfs, tools.zstd, tools.lz4),
            level=LogLevel.INFO,
        ),
    )
    raise_for_failure(result, what=f"Reading the base {request.address}")
    (content,) = await Get(DigestContents, Digest, result.output_digest)
    base = json.loads(content.content)
    packages_json = json.dumps(base["packages"], sort_keys=True)
    fingerprint = "sha256:" + hashlib.sha256(packages_json.encode()).hexdigest()
    os_release = base.get("os_release", {})

    architecture = target[BaseArchitectureField].value
    if architecture is None:
        from pants_sysext.formats.vdb import vdb_from_json

        chosts = {p.get("CHOST") for p in vdb_from_json(packages_json)}
        arches = {architecture_from_chost(c) for c in chosts if c}
        arches.discard(None)
        if len(arches) == 1:
            architecture = arches.pop()
    return BaseImage(
        address=request.address,
        os_id=target[BaseOsIdField].value or os_release.get("ID"),
        version_id=target[BaseVersionIdField].value or os_release.get("VERSION_ID"),
        sysext_level=target[BaseSysextLevelField].value or os_release.get("SYSEXT_LEVEL"),
        architecture=architecture,
        fingerprint=fingerprint,
        digest=result.output_digest,
        packages_json=packages_json,
        users=tuple(sorted(base["users"].items())) if base.get("users") is not None else None,
        groups=tuple(sorted(base["groups"].items())) if base.get("groups") is not None else None,
        merged_usr=bool(base.get("merged_usr")),
        kind=base.get("kind", "vdb"),
        dpkg_status=base.get("dpkg_status"),
    )


@dataclass(frozen=True)
class BaseFieldRequest:
    """The `sysext_base` named by the `base` field of `owner`."""

    value: str
    owner: Address


@rule
async def base_from_field(request: BaseFieldRequest) -> BaseImage:
    field = FieldAddressRequest(request.value, request.owner, "base")
    address = await Get(Address, FieldAddressRequest, field)
    return await Get(BaseImage, BaseImageRequest(address, field.description_of_origin))


def rules():
    return collect_rules()
