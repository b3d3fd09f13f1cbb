"""`pants generate-lockfiles` for resolved `binpkg_set`s (one lockfile per resolve)."""

from __future__ import annotations

from dataclasses import dataclass

from pants.core.goals.generate_lockfiles import (
    GenerateLockfile,
    GenerateLockfileResult,
    KnownUserResolveNames,
    KnownUserResolveNamesRequest,
    RequestedUserResolveNames,
    UserGenerateLockfiles,
)
from pants.engine.addresses import Address
from pants.engine.fs import CreateDigest, Digest, FileContent
from pants.engine.rules import Get, collect_rules, rule
from pants.engine.target import AllTargets
from pants.engine.unions import UnionRule

from pants_sysext.resolution import ResolvedLockfile, ResolveBinpkgSetRequest
from pants_sysext.target_types import BinpkgPackagesField, LockfileField, ResolveField


class DuplicateResolveError(Exception):
    pass


@dataclass(frozen=True)
class GenerateBinpkgLockfile(GenerateLockfile):
    address: Address


class KnownBinpkgResolveNamesRequest(KnownUserResolveNamesRequest):
    pass


class RequestedBinpkgResolveNames(RequestedUserResolveNames):
    pass


@dataclass(frozen=True)
class BinpkgResolves:
    """resolve name → (binpkg_set address, lockfile path)"""

    resolves: tuple[tuple[str, Address, str], ...]


@rule
async def binpkg_resolves(all_targets: AllTargets) -> BinpkgResolves:
    found: dict[str, tuple[Address, str]] = {}
    for target in all_targets:
        if not target.has_field(BinpkgPackagesField) or not target[BinpkgPackagesField].value:
            continue
        name = target[ResolveField].value_or_default(target.address)
        if name in found:
            raise DuplicateResolveError(
                f"The resolve `{name}` is used by both {found[name][0]} and {target.address}: "
                f"set a distinct `resolve=` on one of them."
            )
        found[name] = (target.address, target[LockfileField].path(target.address, name))
    return BinpkgResolves(tuple((n, a, p) for n, (a, p) in sorted(found.items())))


@rule
async def known_binpkg_resolves(
    _: KnownBinpkgResolveNamesRequest, resolves: BinpkgResolves
) -> KnownUserResolveNames:
    return KnownUserResolveNames(
        names=tuple(name for name, _, _ in resolves.resolves),
        option_name="the `resolve` field of `binpkg_set` targets",
        requested_resolve_names_cls=RequestedBinpkgResolveNames,
    )


@rule
async def binpkg_lockfile_requests(
    requested: RequestedBinpkgResolveNames, resolves: BinpkgResolves
) -> UserGenerateLockfiles:
    by_name = {name: (address, path) for name, address, path in resolves.resolves}
    return UserGenerateLockfiles(
        GenerateBinpkgLockfile(
            resolve_name=name,
            lockfile_dest=by_name[name][1],
            diff=False,
            address=by_name[name][0],
        )
        for name in requested
    )


@rule(desc="Generate a binpkg lockfile")
async def generate_binpkg_lockfile(request: GenerateBinpkgLockfile) -> GenerateLockfileResult:
    resolved = await Get(ResolvedLockfile, ResolveBinpkgSetRequest(request.address))
    digest = await Get(
        Digest,
        CreateDigest([FileContent(request.lockfile_dest, resolved.lockfile.to_json().encode())]),
    )
    return GenerateLockfileResult(digest, request.resolve_name, request.lockfile_dest)


def rules():
    return [
        *collect_rules(),
        UnionRule(GenerateLockfile, GenerateBinpkgLockfile),
        UnionRule(KnownUserResolveNamesRequest, KnownBinpkgResolveNamesRequest),
        UnionRule(RequestedUserResolveNames, RequestedBinpkgResolveNames),
    ]
