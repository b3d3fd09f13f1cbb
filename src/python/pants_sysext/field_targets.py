"""Targets named by a field of another target: parsed relative to the owner, with errors that
name the field."""

from __future__ import annotations

from dataclasses import dataclass

from pants.core.target_types import FileSourceField
from pants.engine.addresses import Address, AddressInput
from pants.engine.fs import Digest
from pants.engine.rules import Get, collect_rules, rule
from pants.engine.target import (
    HydratedSources,
    HydrateSourcesRequest,
    WrappedTarget,
    WrappedTargetRequest,
)

from pants_sysext.process_util import SysextBuildError


@dataclass(frozen=True)
class FieldAddressRequest:
    """The address written in the field `field` of the target `owner`."""

    value: str
    owner: Address
    field: str

    @property
    def description_of_origin(self) -> str:
        return f"the `{self.field}` field of {self.owner}"


@rule
async def field_address(request: FieldAddressRequest) -> Address:
    return await Get(
        Address,
        AddressInput,
        AddressInput.parse(
            request.value,
            relative_to=request.owner.spec_path,
            description_of_origin=request.description_of_origin,
        ),
    )


@dataclass(frozen=True)
class FileFieldRequest:
    """The one file of the `file` target a field names (an `http_source` is downloaded)."""

    field: FieldAddressRequest
    holding: str  # for errors: "a bash script", "the base image"


@dataclass(frozen=True)
class FileFieldSource:
    path: str
    digest: Digest  # holds just `path`


@rule
async def file_field_source(request: FileFieldRequest) -> FileFieldSource:
    address = await Get(Address, FieldAddressRequest, request.field)
    target = (
        await Get(WrappedTarget, WrappedTargetRequest(address, request.field.description_of_origin))
    ).target
    if not target.has_field(FileSourceField):
        raise SysextBuildError(
            f"{request.field.owner}: `{request.field.field}` must name a `file` target holding "
            f"{request.holding}, got the `{target.alias}` target {address}."
        )
    # `http_source` files are "generated" by downloading them: codegen must be enabled.
    hydrated = await Get(
        HydratedSources,
        HydrateSourcesRequest(
            target[FileSourceField], for_sources_types=(FileSourceField,), enable_codegen=True
        ),
    )
    (path,) = hydrated.snapshot.files
    return FileFieldSource(path, hydrated.snapshot.digest)


def rules():
    return collect_rules()
