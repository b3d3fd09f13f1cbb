"""Validate an extension's staged tree before it is squashed, and write its reports.

Runs in a Pants sandbox with the system Python (standard library plus pyelftools, which is
shipped next to `pants_sysext/`):

    python3 -m pants_sysext.sandbox.validate SPEC.json OUTDIR

SPEC (JSON):

    {"name": "jq", "architecture": "x86-64",
     "tar": "staged/staged.tar", "manifest": "staged/manifest.jsonl",
     "base": "base/base.json" or null,               # as written by sandbox.read_base
     "stacked": [{"name": "…", "provides": ["x86_64: libonig.so.5"], "files": ["usr/…"]}],
     "allow_missing_libraries": ["libfoo.so.1", "/usr/bin/x:libbar.so.2"],
     "shadow": "warn" | "error",
     "packages": [{"cpv": "app-misc/jq-1.6-r3", "repo": "gentoo"}]}

Checks, all of them, before reporting: the ELF closure (`elf_closure`), the tar against its
manifest, no os-release and no other extension's release file, no device nodes, FIFOs or
overlayfs whiteouts, no `trusted.overlay.*` xattrs, and against the base: no base symlink or
directory replaced by something else, no base directory replaced by a file, and files that
shadow the base's (a warning, or an error with `"shadow": "error"`). Without a base, the
target OS is assumed to have the GNU C library and nothing else is known about it: libraries
the image lacks are then warnings, not errors (a program interpreter that is not glibc's
standard loader is still an error).

Exit 0: warnings on stdout (`warning: …`, one line each), OUTDIR/validation.json and the
reports (`NAME_packages.txt`, `NAME_contents.txt`, `NAME_disk_usage.txt`). Exit 2: every
problem on stderr after `error: `, each naming the path, its package and the fix.
"""

from __future__ import annotations

import argparse
import json
import os
import posixpath
import sys
import tarfile
from dataclasses import dataclass
from typing import Mapping, Sequence

from pants_sysext.formats.vdb import VdbError, vdb_from_json
from pants_sysext.sandbox.elf_closure import (
    OTHER,
    LowerLayer,
    StagedTree,
    assumed_c_library,
    check_elf_closure,
    format_elf_problems,
    format_unverified,
    scan_elf_files,
)
from pants_sysext.sandbox.manifest import DIR, FILE, HARDLINK, SYMLINK, ManifestEntry
from pants_sysext.sandbox.reports import write_reports

GENERATED = "sysext"
RELEASE_DIR = "usr/lib/extension-release.d"
OS_RELEASE_PATHS = ("usr/lib/os-release", "etc/os-release")
OVERLAY_XATTR_PREFIX = "trusted.overlay."
_PAX_XATTR = "SCHILY.xattr."
_SHADOW_POLICIES = ("warn", "error")
_TAR_KINDS = {
    tarfile.REGTYPE: FILE,
    tarfile.AREGTYPE: FILE,
    tarfile.CONTTYPE: FILE,
    tarfile.DIRTYPE: DIR,
    tarfile.SYMTYPE: SYMLINK,
    tarfile.LNKTYPE: HARDLINK,
}


class SpecError(ValueError):
    pass


@dataclass(frozen=True)
class StackedExtension:
    name: str
    provides: tuple[str, ...] = ()
    files: tuple[str, ...] = ()


@dataclass(frozen=True)
class ValidateSpec:
    name: str
    architecture: str | None
    tar: str
    manifest: str
    base: str | None = None
    stacked: tuple[StackedExtension, ...] = ()
    allow_missing_libraries: tuple[str, ...] = ()
    shadow: str = "warn"
    packages: tuple[tuple[str, str | None], ...] = ()  # (cpv, repo)

    @classmethod
    def from_json(cls, data: Mapping) -> "ValidateSpec":
        try:
            shadow = data.get("shadow") or "warn"
            if shadow not in _SHADOW_POLICIES:
                raise SpecError(f"`shadow` must be one of {', '.join(_SHADOW_POLICIES)}, not {shadow!r}")
            return cls(
                name=str(data["name"]),
                architecture=data.get("architecture") or None,
                tar=str(data["tar"]),
                manifest=str(data["manifest"]),
                base=data.get("base") or None,
                stacked=tuple(
                    StackedExtension(
                        str(s["name"]),
                        tuple(s.get("provides") or ()),
                        tuple(s.get("files") or ()),
                    )
                    for s in data.get("stacked") or ()
                ),
                allow_missing_libraries=tuple(data.get("allow_missing_libraries") or ()),
                shadow=shadow,
                packages=tuple((p["cpv"], p.get("repo")) for p in data.get("packages") or ()),
            )
        except (KeyError, TypeError, AttributeError) as e:
            raise SpecError(f"the validation spec is malformed: {type(e).__name__}: {e}") from e


@dataclass(frozen=True)
class Validation:
    errors: tuple[str, ...]
    warnings: tuple[str, ...]
    elf_files: int = 0
    allowed: tuple[str, ...] = ()

    def to_json(self) -> str:
        return json.dumps(
            {
                "errors": list(self.errors),
                "warnings": list(self.warnings),
                "elf_files": self.elf_files,
                "allowed_missing_libraries": list(self.allowed),
            },
            indent=1,
            sort_keys=True,
        )


def load_base(path: str) -> LowerLayer:
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    packages = vdb_from_json(json.dumps(doc["packages"]))
    os_release = doc.get("os_release") or {}
    label = os_release.get("PRETTY_NAME") or " ".join(
        v for v in (os_release.get("NAME") or os_release.get("ID"), os_release.get("VERSION_ID")) if v
    )
    return LowerLayer.from_packages(f"the base ({label})" if label else "the base", packages)


def validate(spec: ValidateSpec) -> Validation:
    tree = StagedTree.load(spec.tar, spec.manifest)
    base = load_base(spec.base) if spec.base else None
    lower = [LowerLayer.from_stacked(s.name, s.provides, s.files) for s in spec.stacked]
    # Without a base nothing is known about the target OS but that it has a C library.
    lower.append(base if base is not None else assumed_c_library())

    members = _MemberCheck(tree)
    scanned = scan_elf_files(tree, visit=members.visit)
    errors = members.finish()
    errors += _check_release_files(tree, spec.name)
    warnings: list[str] = []
    if base is not None:
        base_errors, shadows = _check_against_base(tree, base)
        errors += base_errors
        if spec.shadow == "error":
            errors += [_shadow_message(s, fatal=True) for s in shadows]
        else:
            warnings += [_shadow_message(s, fatal=False) for s in shadows]

    closure = check_elf_closure(
        tree,
        architecture=spec.architecture,
        lower=lower,
        allow=spec.allow_missing_libraries,
        scanned=scanned,
    )
    problems = closure.problems
    if base is None:
        # Whether the target OS has a library the image lacks cannot be known: say so only.
        warnings += format_unverified(problems)
        problems = tuple(p for p in problems if p.kind != "missing")
    errors += format_elf_problems(problems, architecture=spec.architecture, lower=lower)
    warnings += [
        f"allow_missing_libraries: {entry!r} matched no missing library; remove it"
        for entry in closure.unused_allow
    ]
    return Validation(tuple(errors), tuple(warnings), closure.elf_files, closure.allowed)


# --------------------------------------------------------------------------------------------
# The tar against its manifest; devices, FIFOs, whiteouts and overlayfs xattrs


def _owners(tree: StagedTree, path: str, limit: int = 3) -> str:
    """The package of `path`; for a generated directory, the packages of what it holds."""
    entry = tree.entries.get(path)
    if entry is not None and entry.package and entry.package != GENERATED:
        return entry.package
    prefix = path + "/"
    found: list[str] = []
    for other in tree.entries.values():
        if other.path.startswith(prefix) and other.package and other.package not in found:
            found.append(other.package)
    if not found:
        return entry.package if entry is not None and entry.package else "unknown package"
    found.sort(key=lambda p: (p == GENERATED, p))
    more = f", … ({len(found)} packages)" if len(found) > limit else ""
    return ", ".join(found[:limit]) + more


def _exclude_hint(path: str) -> str:
    return f'`exclude=["/{path}"]` on the sysext_image target'


class _MemberCheck:
    """Looks at every tar member once (called from the ELF scan's pass over the tar)."""

    def __init__(self, tree: StagedTree) -> None:
        self._tree = tree
        self._seen: set[str] = set()
        self._special: list[str] = []
        self._xattrs: list[str] = []
        self._disagree: list[str] = []

    def visit(self, member: tarfile.TarInfo) -> None:
        tree = self._tree
        path = member.name
        self._seen.add(path)
        entry = tree.entries.get(path)

        def package() -> str:  # only when there is a problem: it may scan the manifest
            return _owners(tree, path) if entry is not None else "in no package's manifest"

        if member.ischr() or member.isblk() or member.isfifo():
            self._special.append(self._special_message(member, package()))
        elif entry is None:
            self._disagree.append(f"/{path}: in staged.tar but not in manifest.jsonl")
        else:
            kind = _TAR_KINDS.get(member.type)
            if kind != entry.type:
                self._disagree.append(
                    f"/{path} ({package()}): a {kind or 'tar type ' + repr(member.type)} in "
                    f"staged.tar, a {entry.type} in manifest.jsonl"
                )
        names = {
            k[len(_PAX_XATTR):] for k in member.pax_headers if k.startswith(_PAX_XATTR)
        }
        if entry is not None:
            names.update(name for name, _ in entry.xattrs)
        for name in sorted(names):
            if name.startswith(OVERLAY_XATTR_PREFIX):
                self._xattrs.append(f"  /{path} ({package()}): {name}")

    @staticmethod
    def _special_message(member: tarfile.TarInfo, package: str) -> str:
        path = member.name
        if member.ischr() and member.devmajor == 0 and member.devminor == 0:
            return (
                f"/{path} ({package}) is an overlayfs whiteout (a character device 0:0): merged, "
                f"it would delete the base's /{path} from view. It comes from copying an "
                f"overlayfs upper directory; leave it out with {_exclude_hint(path)}, or fix "
                f"the package or mangle script that made it."
            )
        if member.isfifo():
            what = "a FIFO"
        else:
            kind = "character" if member.ischr() else "block"
            what = f"a {kind} device {member.devmajor}:{member.devminor}"
        return (
            f"/{path} ({package}) is {what}: an extension may not ship device nodes or FIFOs "
            f"(device nodes belong in /dev, FIFOs are made at run time). Leave it out with "
            f"{_exclude_hint(path)}, or fix the package or mangle script that made it."
        )

    def finish(self) -> list[str]:
        errors = list(self._special)
        for path, entry in self._tree.entries.items():
            if path not in self._seen:
                self._disagree.append(
                    f"/{path} ({entry.package or 'unknown package'}): in manifest.jsonl but "
                    f"not in staged.tar"
                )
        if self._disagree:
            errors.append(
                "The staged tree's tar and manifest disagree:\n"
                + "\n".join(f"  {d}" for d in self._disagree[:50])
                + (f"\n  … and {len(self._disagree) - 50} more" if len(self._disagree) > 50 else "")
                + "\nThe staging step or a mangle script wrote an inconsistent tree: rebuild it, "
                "and check that the mangle script changes only files."
            )
        if self._xattrs:
            errors.append(
                "Entries carry overlayfs xattrs (trusted.overlay.*), which the unpack step drops: "
                "they describe the build machine's overlay and would make the merged overlay hide "
                "or redirect files of the base:\n"
                + "\n".join(self._xattrs)
                + "\nThey should already have been dropped: rebuild the unpacked packages, and "
                "check the mangle script; if they remain, leave the paths out with `exclude=` "
                "and report a bug."
            )
        return errors


# --------------------------------------------------------------------------------------------
# Identity files


def _check_release_files(tree: StagedTree, name: str) -> list[str]:
    errors = []
    for path in OS_RELEASE_PATHS:
        if path in tree.entries:
            errors.append(
                f"/{path} ({_owners(tree, path)}) is the OS's own identity file: an extension "
                f"must not ship it (merged, it would replace the host's os-release, and "
                f"systemd-sysext identifies extensions by their extension-release file instead). "
                f"Leave it out with {_exclude_hint(path)}."
            )
    own = f"{RELEASE_DIR}/extension-release.{name}"
    for path in tree.entries:
        parent, _, base = path.rpartition("/")
        if parent == RELEASE_DIR and base.startswith("extension-release.") and path != own:
            other = base[len("extension-release."):]
            errors.append(
                f"/{path} ({_owners(tree, path)}) is the release file of another extension "
                f"({other!r}); this image is {name!r}, and systemd-sysext reads only "
                f"/{own}. Leave it out with {_exclude_hint(path)} (the staging step writes this "
                f"image's own release file)."
            )
    entry = tree.entries.get(own)
    if entry is None or entry.type not in (FILE, HARDLINK):
        errors.append(
            f"/{own} is missing: systemd-sysext ignores an image without its release file. The "
            f"staging step writes it for the extension name; validate the tree staged for "
            f"{name!r} (a mangle script must not remove it)."
        )
    return errors


# --------------------------------------------------------------------------------------------
# Against the base


@dataclass(frozen=True)
class Shadow:
    path: str
    package: str
    base_kind: str  # file | symlink
    base_owner: str
    base_target: str | None
    identical: bool | None  # None: unknown


def _kind(entry: ManifestEntry) -> str:
    if entry.type in (FILE, HARDLINK):
        return "file"
    if entry.type == SYMLINK:
        return "symlink"
    return "directory" if entry.type == DIR else entry.type


def _link_target(path: str, target: str) -> str:
    if target.startswith("/"):
        return posixpath.normpath(target)
    return posixpath.normpath(posixpath.join("/" + posixpath.dirname(path), target))


def _check_against_base(tree: StagedTree, base: LowerLayer) -> tuple[list[str], list[Shadow]]:
    errors: list[str] = []
    shadows: list[Shadow] = []
    for path, entry in tree.entries.items():
        node = base.nodes.get(path)
        if node is None:
            continue
        kind = _kind(entry)
        if node.kind == "dir" and kind == "directory":
            continue
        owner = _owners(tree, path)
        from_base = f"from {node.owner}" if node.owner else "from the base"
        if node.kind == "symlink":
            target = node.target or ""
            if kind == "symlink":
                if entry.linkname != node.target:
                    shadows.append(Shadow(path, owner, "symlink", node.owner, target, False))
                continue
            resolved = _link_target(path, target)
            if kind == "directory":
                errors.append(
                    f"/{path} (a directory, holding files of {owner}) would replace the base's "
                    f"symlink /{path} -> {target} ({from_base}) with a directory: on a "
                    f"merged-usr base this breaks boot; install under the symlink's target "
                    f"{resolved} instead (build the package for a merged-usr layout, or move "
                    f"the files there with a mangle script)."
                )
            else:
                errors.append(
                    f"/{path} (a {kind} from {owner}) would replace the base's symlink "
                    f"/{path} -> {target} ({from_base}) with a {kind}: whatever the base "
                    f"reaches through it would see the extension's {kind} instead. Leave it "
                    f"out with {_exclude_hint(path)}, or install it at the symlink's target "
                    f"{resolved} if it is meant to replace that."
                )
        elif node.kind == "dir":
            if kind != "directory":
                errors.append(
                    f"/{path} (a {kind} from {owner}) is a directory in the base ({from_base}): "
                    f"merged, it would hide that whole directory of the base. Leave it out "
                    f"with {_exclude_hint(path)}, or fix the package to install it elsewhere."
                )
        elif kind == "directory":
            what = "file" if node.kind == "file" else "special file"
            errors.append(
                f"/{path} (a directory, holding files of {owner}) is a {what} in the base "
                f"({from_base}): merged, the directory would hide the base's {what}. Leave it "
                f"out with {_exclude_hint(path)}, or fix the package to install elsewhere."
            )
        elif node.kind in ("file", OTHER):
            identical = None
            if kind == "file" and node.md5 and entry.md5:
                identical = node.md5 == entry.md5.lower()
            shadows.append(Shadow(path, owner, "file", node.owner, None, identical))
    return errors, shadows


def _shadow_message(s: Shadow, *, fatal: bool) -> str:
    owner = f"from {s.base_owner}" if s.base_owner else "from the base"
    if s.base_kind == "symlink":
        what = f"the base's symlink /{s.path} -> {s.base_target} ({owner})"
    else:
        what = f"the base's file /{s.path} ({owner})"
    same = {True: " (identical content today)", False: " (different content)", None: ""}[s.identical]
    policy = (
        '`shadow="warn"` on the sysext_image target makes this a warning'
        if fatal
        else '`shadow="error"` makes this an error'
    )
    return (
        f"/{s.path} ({s.package}) shadows {what}{same}: merged, the base's copy is hidden, "
        f"and updates of the base no longer reach it. If the base already has what the package "
        f"brings, drop the package from the image; otherwise leave the path out with "
        f"{_exclude_hint(s.path)}. ({policy}.)"
    )


# --------------------------------------------------------------------------------------------


def _package_repos(spec: ValidateSpec) -> dict[str, str | None]:
    return {cpv: repo for cpv, repo in spec.packages}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="validate", description=__doc__)
    parser.add_argument("spec")
    parser.add_argument("outdir")
    args = parser.parse_args(argv)
    try:
        with open(args.spec, encoding="utf-8") as f:
            spec = ValidateSpec.from_json(json.load(f))
        result = validate(spec)
    except (SpecError, VdbError, OSError, ValueError, KeyError, tarfile.TarError) as e:
        print(f"error: cannot validate: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    for warning in result.warnings:
        print(f"warning: {warning}")
    if result.errors:
        count = len(result.errors)
        print(
            f"error: The extension {spec.name} is not valid ({count} "
            f"problem{'s' if count != 1 else ''}):\n\n" + "\n\n".join(result.errors),
            file=sys.stderr,
        )
        return 2
    os.makedirs(args.outdir, exist_ok=True)
    with open(os.path.join(args.outdir, "validation.json"), "w", encoding="utf-8") as f:
        f.write(result.to_json() + "\n")
    tree = StagedTree.load(spec.tar, spec.manifest)
    write_reports(args.outdir, spec.name, tree.entries.values(), _package_repos(spec))
    print(
        f"{spec.name} is valid: {len(tree.entries)} entries, {result.elf_files} ELF files, "
        f"{len(result.warnings)} warnings"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
