"""Turn a `binpkg_set` target into binary package files, one Digest each."""

from __future__ import annotations

import os

from pants.core.target_types import FileSourceField
from pants.engine.addresses import Address
from pants.engine.fs import (
    Digest,
    DigestEntries,
    DownloadFile,
    FileDigest,
    FileEntry,
    DigestContents,
    DigestSubset,
    GlobMatchErrorBehavior,
    PathGlobs,
    RemovePrefix,
    Snapshot,
)
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.engine.target import (
    DependenciesRequest,
    HydratedSources,
    HydrateSourcesRequest,
    Targets,
    WrappedTarget,
    WrappedTargetRequest,
)
from pants.util.strutil import softwrap

from pants_sysext.binhost import BinhostIndex, BinhostIndexRequest, binpkg_url, is_url
from pants_sysext.binpkg_lockfile import BinpkgLockfile, LockfileError, regenerate_hint
from pants_sysext.binpkg_types import BinpkgFile, BinpkgSet, BinpkgSetRequest
from pants_sysext.debian import APT_PREFIX, apt_mirror
from pants_sysext.resolution import LockContext, LockContextRequest
from pants_sysext.subsystem import DebianSubsystem
from pants_sysext.target_types import (
    BINPKG_FILE_EXTENSIONS,
    BinhostField,
    BinpkgDependenciesField,
    BinpkgSourcesField,
    BinpkgPackagesField,
    CpvsField,
)


class BinpkgSetError(Exception):
    """A `binpkg_set` that does not name usable binary packages."""


__all__ = ["BinpkgFile", "BinpkgSet", "BinpkgSetRequest", "BinpkgSetError", "rules"]


def _is_binpkg_name(path: str) -> bool:
    return path.endswith(BINPKG_FILE_EXTENSIONS)


async def _file_digests(snapshot_digest: Digest, paths: list[str]) -> tuple[Digest, ...]:
    """One Digest per file of `snapshot_digest`, each holding the file at its base name: the
    unpack step's cache key must not depend on where the file lives in the repository."""
    subsets = await MultiGet(
        Get(Digest, DigestSubset(snapshot_digest, PathGlobs([path]))) for path in paths
    )
    rerooted = await MultiGet(
        Get(Digest, RemovePrefix(d, os.path.dirname(p)))
        for d, p in zip(subsets, paths)
        if os.path.dirname(p)
    )
    moved = iter(rerooted)
    return tuple(next(moved) if os.path.dirname(p) else d for d, p in zip(subsets, paths))


async def _binpkgs_from_paths(
    paths: list[str], snapshot_digest: Digest, origin: str | None = None
) -> list[BinpkgFile]:
    """Binary package files of a snapshot; `origin` names where they come from (default: each
    file's own path)."""
    digests = await _file_digests(snapshot_digest, paths)
    return [
        BinpkgFile(filename=os.path.basename(p), digest=d, origin=origin or p)
        for p, d in zip(paths, digests)
    ]




async def _from_binhost(address: Address, binhost: str, cpvs: tuple[str, ...]) -> list[BinpkgFile]:
    index_path = os.path.join(binhost, "Packages")
    index = (
        await Get(BinhostIndex, BinhostIndexRequest(binhost, f"the `binhost` of {address}"))
    ).index

    chosen = []
    problems = []
    for cpv in cpvs:
        instances = index.find(cpv)
        if not instances:
            pn = cpv.rsplit("-", 1)[0]
            similar = sorted(p.cpv for p in index.packages if p.cpv.startswith(pn.rsplit("-", 1)[0]))
            hint = f" It has: {', '.join(similar)}." if similar else ""
            problems.append(f"{cpv} is not in {index_path}.{hint}")
            continue
        chosen.append(instances[0])
    if problems:
        raise BinpkgSetError(
            softwrap(f"{address}: {' '.join(problems)}")
            + " Fix `cpvs`, or add the packages to the binhost (and its Packages index)."
        )

    paths = [os.path.join(binhost, entry.path) for entry in chosen]
    snapshot = await Get(
        Snapshot,
        PathGlobs(
            paths,
            glob_match_error_behavior=GlobMatchErrorBehavior.error,
            description_of_origin=f"the Packages index of the binhost of {address}",
        ),
    )
    rerooted = await _file_digests(snapshot.digest, paths)
    out = []
    for entry, path, digest in zip(chosen, paths, rerooted):
        out.append(
            BinpkgFile(
                filename=os.path.basename(path),
                digest=digest,
                origin=f"{index_path} (entry {entry.cpv})",
                expected_cpv=entry.cpv,
                expected_size=entry.size,
                expected_sha1=entry.get("SHA1"),
                expected_md5=entry.get("MD5"),
            )
        )
    return out


async def _from_lockfile(address: Address, debian: DebianSubsystem) -> list[BinpkgFile]:
    context = await Get(LockContext, LockContextRequest(address))
    path = context.lockfile_path
    contents = await Get(
        DigestContents,
        PathGlobs([path], glob_match_error_behavior=GlobMatchErrorBehavior.ignore),
    )
    if not contents:
        raise LockfileError(
            f"{address} resolves `packages` but its lockfile {path} does not exist. "
            f"{regenerate_hint(context.resolve)}"
        )
    lock = BinpkgLockfile.from_json(contents[0].content, path=path, resolve=context.resolve)
    lock.check_inputs(context.inputs, path=path)
    binhost = lock.inputs.binhost
    out = []
    if binhost.startswith(APT_PREFIX):
        # Debian: the lock pins archive paths; the mirror is this machine's (or the option's).
        target = (await Get(WrappedTarget, WrappedTargetRequest(address, "a Debian binpkg_set"))).target
        mirror = apt_mirror(target, debian)
        urls = [binpkg_url(mirror, p.path) for p in lock.packages]
    elif is_url(binhost) or any(p.url for p in lock.packages):
        urls = [p.url or binpkg_url(binhost, p.path) for p in lock.packages]
    if binhost.startswith(APT_PREFIX) or is_url(binhost) or any(p.url for p in lock.packages):
        requests = [DownloadFile(url, FileDigest(p.sha256, p.size)) for url, p in zip(urls, lock.packages)]
        try:
            digests = await MultiGet(Get(Digest, DownloadFile, r) for r in requests)
        except Exception:
            # Find the package(s) that failed (successful downloads are memoized) and name them.
            failures = []
            for p, url, r in zip(lock.packages, urls, requests):
                try:
                    await Get(Digest, DownloadFile, r)
                except Exception as e:  # noqa: BLE001 (engine errors carry no finer type)
                    failures.append(f"  {p.cpv}: {url}\n    {str(e).strip().splitlines()[-1]}")
            raise BinpkgSetError(
                f"Fetching the binary packages of {address} (lockfile {path}) failed:\n"
                + "\n".join(failures)
                + "\nThe lock pins each by URL, sha256 and size. Check that the binhost is "
                f"reachable; if it moved or rebuilt its packages: {regenerate_hint(context.resolve)}"
            )
        for p, url, digest in zip(lock.packages, urls, digests):
            out.append(
                BinpkgFile(
                    filename=os.path.basename(p.path),
                    digest=digest,
                    origin=f"{url} (pinned in {path})",
                    expected_cpv=p.cpv,
                )
            )
        return out
    files = [os.path.join(binhost, p.path) for p in lock.packages]
    snapshot = await Get(
        Snapshot,
        PathGlobs(
            files,
            glob_match_error_behavior=GlobMatchErrorBehavior.error,
            description_of_origin=f"the lockfile {path}",
        ),
    )
    entries = {e.path: e for e in await Get(DigestEntries, Digest, snapshot.digest)}
    problems = []
    for p, file in zip(lock.packages, files):
        entry = entries.get(file)
        if not isinstance(entry, FileEntry):
            problems.append(f"{p.cpv}: {file} is missing")
        elif (entry.file_digest.fingerprint, entry.file_digest.serialized_bytes_length) != (p.sha256, p.size):
            problems.append(
                f"{p.cpv}: {file} has sha256 {entry.file_digest.fingerprint} and size "
                f"{entry.file_digest.serialized_bytes_length}, the lock pins {p.sha256} and {p.size}"
            )
    if problems:
        raise LockfileError(
            f"The binary packages of {address} differ from its lockfile {path}:\n"
            + "\n".join(f"  {x}" for x in problems)
            + f"\n{regenerate_hint(context.resolve)}"
        )
    rerooted = await _file_digests(snapshot.digest, files)
    for p, file, digest in zip(lock.packages, files, rerooted):
        out.append(
            BinpkgFile(
                filename=os.path.basename(file),
                digest=digest,
                origin=f"{file} (pinned in {path})",
                expected_cpv=p.cpv,
            )
        )
    return out


@rule(desc="Resolve a binpkg_set")
async def resolve_binpkg_set(request: BinpkgSetRequest, debian: DebianSubsystem) -> BinpkgSet:
    wrapped = await Get(
        WrappedTarget,
        WrappedTargetRequest(request.address, description_of_origin="a sysext_image's packages"),
    )
    target = wrapped.target
    if not target.has_field(CpvsField):
        raise BinpkgSetError(
            f"{request.address} is a `{target.alias}` target, but `packages` of a "
            f"`sysext_image` must name `binpkg_set` targets."
        )
    binpkgs: list[BinpkgFile] = []

    # 1. Files in the repository.
    sources = await Get(HydratedSources, HydrateSourcesRequest(target[BinpkgSourcesField]))
    for path in sources.snapshot.files:
        if not _is_binpkg_name(path):
            raise BinpkgSetError(
                f"{request.address}: `sources` holds {path}, which is not a binary package "
                f"(expected {', '.join(BINPKG_FILE_EXTENSIONS)})."
            )
    binpkgs.extend(
        await _binpkgs_from_paths(list(sources.snapshot.files), sources.snapshot.digest)
    )

    # 2. `file` targets (e.g. with `http_source`), fetched and verified by Pants.
    deps = await Get(Targets, DependenciesRequest(target[BinpkgDependenciesField]))
    for dep in deps:
        if not dep.has_field(FileSourceField):
            raise BinpkgSetError(
                f"{request.address}: dependency {dep.address} is a `{dep.alias}`; only `file` "
                f"targets holding a binary package can be listed."
            )
        # `http_source` files are "generated" by downloading them: codegen must be enabled.
        hydrated = await Get(
            HydratedSources,
            HydrateSourcesRequest(
                dep[FileSourceField], for_sources_types=(FileSourceField,), enable_codegen=True
            ),
        )
        if not hydrated.snapshot.files:
            raise BinpkgSetError(f"{request.address}: dependency {dep.address} provides no file.")
        for path in hydrated.snapshot.files:
            if not _is_binpkg_name(path):
                raise BinpkgSetError(
                    f"{request.address}: dependency {dep.address} provides {path}, which is "
                    f"not a binary package (expected {', '.join(BINPKG_FILE_EXTENSIONS)})."
                )
        binpkgs.extend(
            await _binpkgs_from_paths(
                list(hydrated.snapshot.files), hydrated.snapshot.digest, origin=str(dep.address)
            )
        )

    # 3. Atoms resolved into a lockfile by `pants generate-lockfiles`.
    if target[BinpkgPackagesField].value:
        binpkgs.extend(await _from_lockfile(request.address, debian))

    # 4. CPVs from a binhost directory, located through its Packages index.
    binhost = target[BinhostField].directory()
    cpvs = target[CpvsField].value or ()
    if binhost is not None and cpvs:
        binpkgs.extend(await _from_binhost(request.address, binhost, cpvs))

    if not binpkgs:
        raise BinpkgSetError(
            f"{request.address} names no binary packages: set `sources`, `dependencies` on "
            f"`file` targets, or `binhost` with `cpvs`."
        )
    names = [b.filename for b in binpkgs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise BinpkgSetError(f"{request.address} lists {', '.join(dupes)} more than once.")
    return BinpkgSet(request.address, tuple(binpkgs))


def rules():
    return collect_rules()
