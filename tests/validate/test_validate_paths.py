"""Path policy: identity files, special files, overlayfs leftovers, and the base's layout."""

from __future__ import annotations

import hashlib
import io
import shutil
import tarfile
from pathlib import Path

from pants_sysext.sandbox.manifest import ManifestEntry
from pants_sysext.sandbox.stage import stage
from tests.validate.helpers import (
    JQ,
    glibc_base,
    installed,
    member_bytes,
    one_error,
    run,
    stage_tree,
    write_package,
)

PKG = "net-misc/foo-1"


def _tree(tmp_path: Path, entries: list[tuple], name: str = "foo") -> Path:
    return stage_tree(tmp_path, [write_package(tmp_path, PKG, entries)], name=name)


def test_os_release_is_refused(tmp_path) -> None:
    tree = _tree(tmp_path, [("usr/lib/os-release", "file", 0o644, b"ID=foo\n")])
    error = one_error(run(tree, name="foo"))
    assert error.startswith(f"/usr/lib/os-release ({PKG}) is the OS's own identity file: an extension must not ship it")
    assert 'Leave it out with `exclude=["/usr/lib/os-release"]` on the sysext_image target.' in error


def test_another_extensions_release_file_is_refused(tmp_path) -> None:
    tree = _tree(tmp_path, [("usr/lib/extension-release.d/extension-release.bar", "file", 0o644, b"ID=_any\n")])
    error = one_error(run(tree, name="foo"))
    assert error.startswith(
        f"/usr/lib/extension-release.d/extension-release.bar ({PKG}) is the release file of another "
        "extension ('bar'); this image is 'foo', and systemd-sysext reads only "
        "/usr/lib/extension-release.d/extension-release.foo."
    )
    assert '`exclude=["/usr/lib/extension-release.d/extension-release.bar"]`' in error


def test_the_images_own_release_file_must_be_there(tmp_path) -> None:
    pkg = write_package(tmp_path, PKG, [("usr/bin/foo", "file", 0o755, b"#!/bin/sh\n")])
    stage([pkg], str(tmp_path / "tree"))
    error = one_error(run(tmp_path / "tree", name="foo"))
    assert error.startswith(
        "/usr/lib/extension-release.d/extension-release.foo is missing: systemd-sysext ignores an "
        "image without its release file."
    )


def test_a_base_symlink_replaced_by_a_directory_breaks_merged_usr(tmp_path) -> None:
    tree = _tree(tmp_path, [("usr/sbin/foo", "file", 0o755, b"#!/bin/sh\n")])
    error = one_error(run(tree, name="foo", base=glibc_base(tmp_path)))
    assert error == (
        f"/usr/sbin (a directory, holding files of {PKG}) would replace the base's symlink "
        "/usr/sbin -> bin (from sys-apps/baselayout-3.6.8-r1) with a directory: on a merged-usr "
        "base this breaks boot; install under the symlink's target /usr/bin instead (build the "
        "package for a merged-usr layout, or move the files there with a mangle script)."
    )


def test_a_base_symlink_replaced_by_a_file(tmp_path) -> None:
    base = glibc_base(tmp_path, installed("dev-libs/libbar-2", "", ["sym /usr/lib64/libbar.so -> libbar.so.2 1"]))
    tree = _tree(tmp_path, [("usr/lib64/libbar.so", "file", 0o644, b"INPUT(-lbar)\n")])
    error = one_error(run(tree, name="foo", base=base))
    assert error.startswith(
        f"/usr/lib64/libbar.so (a file from {PKG}) would replace the base's symlink "
        "/usr/lib64/libbar.so -> libbar.so.2 (from dev-libs/libbar-2) with a file"
    )
    assert '`exclude=["/usr/lib64/libbar.so"]`' in error and "/usr/lib64/libbar.so.2" in error


def test_file_over_a_base_directory_and_directory_over_a_base_file(tmp_path) -> None:
    base = glibc_base(tmp_path, installed("app-misc/bar-1", "", [
        "dir /usr/share/bar", "obj /usr/share/baz 0123456789abcdef0123456789abcdef 1",
    ]))
    tree = _tree(tmp_path, [
        ("usr/share/bar", "symlink", 0o777, "elsewhere"),
        ("usr/share/baz/inside", "file", 0o644, b"x"),
    ])
    first, second = run(tree, name="foo", base=base).errors
    assert first.startswith(
        f"/usr/share/bar (a symlink from {PKG}) is a directory in the base (from app-misc/bar-1): "
        "merged, it would hide that whole directory of the base."
    )
    assert second.startswith(
        f"/usr/share/baz (a directory, holding files of {PKG}) is a file in the base (from "
        "app-misc/bar-1): merged, the directory would hide the base's file."
    )


def test_shadowing_a_base_file_warns_or_fails(tmp_path, fixture_packages) -> None:
    jq = member_bytes(fixture_packages["jq"], "usr/bin/jq")
    base = glibc_base(tmp_path, installed("app-misc/jq-1.6-r2", "", [
        f"obj /usr/bin/jq {hashlib.md5(jq).hexdigest()} 1",
        "obj /usr/share/man/man1/jq.1.bz2 0123456789abcdef0123456789abcdef 1",
        "sym /usr/lib64/libjq.so.1 -> libjq.so.1.0.3 1",
        "sym /usr/lib64/libonig.so.5 -> libonig.so.5.3.0 1",
    ]))
    tree = stage_tree(tmp_path, [fixture_packages["jq"], fixture_packages["onig"]])
    result = run(tree, base=base)
    assert result.errors == ()
    assert len(result.warnings) == 3, result.warnings
    jq_warning, lib_warning, man_warning = result.warnings
    assert jq_warning == (
        f"/usr/bin/jq ({JQ}) shadows the base's file /usr/bin/jq (from app-misc/jq-1.6-r2) "
        "(identical content today): merged, the base's copy is hidden, and updates of the base "
        "no longer reach it. If the base already has what the package brings, drop the package "
        'from the image; otherwise leave the path out with `exclude=["/usr/bin/jq"]` on the '
        'sysext_image target. (`shadow="error"` makes this an error.)'
    )
    assert lib_warning.startswith(
        f"/usr/lib64/libjq.so.1 ({JQ}) shadows the base's symlink /usr/lib64/libjq.so.1 -> "
        "libjq.so.1.0.3 (from app-misc/jq-1.6-r2) (different content)"
    )
    assert man_warning.startswith(
        f"/usr/share/man/man1/jq.1.bz2 ({JQ}) shadows the base's file /usr/share/man/man1/jq.1.bz2 "
        "(from app-misc/jq-1.6-r2) (different content)"
    )
    assert "\n" not in "".join(result.warnings)  # one line each: the rule reads them line by line
    # The same symlink as the base's: no warning.
    assert not any("libonig" in w for w in result.warnings)

    strict = run(tree, base=base, shadow="error")
    assert strict.warnings == ()
    assert len(strict.errors) == 3
    assert strict.errors[0].startswith(f"/usr/bin/jq ({JQ}) shadows the base's file /usr/bin/jq")
    assert strict.errors[0].endswith('(`shadow="warn"` on the sysext_image target makes this a warning.)')


def _add_members(tree: Path, members: list[tuple[tarfile.TarInfo, bytes | None]], manifest: list[ManifestEntry] = ()) -> None:
    """Append members to a staged tree, as a mangle step gone wrong might."""
    original = tree / "staged.tar.orig"
    shutil.move(str(tree / "staged.tar"), original)
    with tarfile.open(original, "r:") as src, tarfile.open(tree / "staged.tar", "w", format=tarfile.PAX_FORMAT) as out:
        for m in src:
            out.addfile(m, src.extractfile(m) if m.isreg() else None)
        for info, data in members:
            out.addfile(info, io.BytesIO(data) if data is not None else None)
    with open(tree / "manifest.jsonl", "a") as f:
        for entry in manifest:
            f.write(entry.to_json() + "\n")


def _special(name: str, type_: bytes, major: int = 0, minor: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.devmajor, info.devminor, info.mode = type_, major, minor, 0o644
    return info


def test_devices_fifos_and_whiteouts_are_refused(tmp_path) -> None:
    tree = _tree(tmp_path, [("usr/share/foo/data", "file", 0o644, b"x")])
    _add_members(
        tree,
        [
            (_special("usr/share/foo/gone", tarfile.CHRTYPE), None),
            (_special("usr/share/foo/tty", tarfile.CHRTYPE, 4, 1), None),
            (_special("usr/share/foo/disk", tarfile.BLKTYPE, 8, 0), None),
            (_special("usr/share/foo/pipe", tarfile.FIFOTYPE), None),
        ],
        # the manifest (written by a careless mangle step) calls the whiteout a file
        [ManifestEntry("usr/share/foo/gone", "file", 0o644, 0, 0, package=PKG)],
    )
    errors = run(tree, name="foo").errors
    assert len(errors) == 4, errors
    assert errors[0].startswith(
        f"/usr/share/foo/gone ({PKG}) is an overlayfs whiteout (a character device 0:0): merged, "
        "it would delete the base's /usr/share/foo/gone from view."
    )
    assert '`exclude=["/usr/share/foo/gone"]`' in errors[0]
    assert errors[1].startswith(
        "/usr/share/foo/tty (in no package's manifest) is a character device 4:1: an extension "
        "may not ship device nodes or FIFOs"
    )
    assert errors[2].startswith("/usr/share/foo/disk (in no package's manifest) is a block device 8:0")
    assert errors[3].startswith("/usr/share/foo/pipe (in no package's manifest) is a FIFO")


def test_overlayfs_xattrs_are_refused(tmp_path) -> None:
    tree = _tree(tmp_path, [
        ("usr/share/foo", "dir", 0o755, None, [("trusted.overlay.opaque", b"y")]),
        ("usr/share/foo/x", "file", 0o644, b"x", [("user.pax.flags", b"em")]),
    ])
    error = one_error(run(tree, name="foo"))
    assert error.startswith("Entries carry overlayfs xattrs (trusted.overlay.*), which the unpack step drops")
    assert f"  /usr/share/foo ({PKG}): trusted.overlay.opaque\n" in error
    assert "They should already have been dropped" in error
    assert "user.pax.flags" not in error


def test_tar_and_manifest_must_agree(tmp_path) -> None:
    tree = _tree(tmp_path, [("usr/share/foo/a", "file", 0o644, b"a"), ("usr/share/foo/b", "file", 0o644, b"b")])
    lines = (tree / "manifest.jsonl").read_text().splitlines(keepends=True)
    (tree / "manifest.jsonl").write_text("".join(l for l in lines if '"usr/share/foo/a"' not in l))
    _add_members(tree, [], [ManifestEntry("usr/share/foo/c", "file", 0o644, 0, 0, package=PKG)])
    error = one_error(run(tree, name="foo"))
    assert error.startswith("The staged tree's tar and manifest disagree:\n")
    assert "  /usr/share/foo/a: in staged.tar but not in manifest.jsonl\n" in error
    assert f"  /usr/share/foo/c ({PKG}): in manifest.jsonl but not in staged.tar\n" in error
