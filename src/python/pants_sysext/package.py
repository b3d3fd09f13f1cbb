"""`pants package` for `sysext_image` targets: the validated tree, squashed, plus reports."""

from __future__ import annotations

import os

from pants.core.goals.package import BuiltPackage, BuiltPackageArtifact, PackageFieldSet
from pants.engine.fs import AddPrefix, CreateDigest, Digest, DigestEntries, FileEntry, MergeDigests
from pants.engine.rules import Get, collect_rules, rule
from pants.engine.unions import UnionRule
from pants.util.logging import LogLevel

from pants_sysext.squash import IMAGE_FILE, SquashedImage, SquashRequest
from pants_sysext.stage import PkginfoRequest, StagedTree
from pants_sysext.tree import SysextImageFieldSet, SysextTree, SysextTreeRequest

__all__ = ["SysextImageFieldSet", "package_sysext_image", "rules"]


@rule(desc="Package a systemd-sysext image", level=LogLevel.DEBUG)
async def package_sysext_image(field_set: SysextImageFieldSet) -> BuiltPackage:
    tree = await Get(SysextTree, SysextTreeRequest(field_set))
    name, output_path = tree.name, tree.output_path
    compression = field_set.compression.value or "zstd"
    image = await Get(
        SquashedImage, SquashRequest(name=name, staged=tree.staged, compression=compression, mtime=tree.mtime)
    )
    outputs = [(output_path, image)]
    if field_set.pkginfo.value:
        pkginfo_tree = await Get(
            StagedTree,
            PkginfoRequest(name=name, packages=tree.packages, staged=tree.staged, mtime=tree.mtime),
        )
        pkginfo_image = await Get(
            SquashedImage,
            SquashRequest(name=f"{name}_pkginfo", staged=pkginfo_tree, compression=compression, mtime=tree.mtime),
        )
        outputs.append((os.path.join(os.path.dirname(output_path), f"{name}_pkginfo.raw"), pkginfo_image))
    file_entries = []
    for path, squashed in outputs:
        entries = await Get(DigestEntries, Digest, squashed.digest)
        (entry,) = [e for e in entries if isinstance(e, FileEntry) and e.path == IMAGE_FILE]
        file_entries.append(FileEntry(path, entry.file_digest, is_executable=False))
    reports = await Get(Digest, AddPrefix(tree.reports, os.path.dirname(output_path)))
    digest = await Get(Digest, MergeDigests([await Get(Digest, CreateDigest(file_entries)), reports]))
    release = tree.release
    artifacts = [
        BuiltPackageArtifact(
            output_path,
            extra_log_lines=(
                f"    {len(tree.packages)} packages: {', '.join(p.cpv for p in tree.packages)}",
                f"    {release.path}: " + " ".join(release.render().split()),
                *(f"    warning: {w}" for w in tree.warnings),
            ),
        ),
        *(BuiltPackageArtifact(path) for path, _ in outputs[1:]),
        *(
            BuiltPackageArtifact(os.path.join(os.path.dirname(output_path), path))
            for path in sorted(tree.report_files)
        ),
    ]
    return BuiltPackage(digest, tuple(artifacts))


def rules():
    return [*collect_rules(), UnionRule(PackageFieldSet, SysextImageFieldSet)]
