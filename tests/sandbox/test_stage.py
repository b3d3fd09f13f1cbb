"""The staging step: merge order, conflicts, top-level policy, hard links, generated files."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from pants_sysext.sandbox.manifest import FILE, ManifestEntry, open_tar_writer, read_manifest
from pants_sysext.sandbox.stage import ExtraFile, PackageImage, StageError, stage


def _write_package(root: Path, label: str, entries: list[tuple]) -> PackageImage:
    """entries: (path, type, mode, data_or_linkname[, uid, gid, xattrs])"""
    d = root / label.replace("/", "_")
    d.mkdir(parents=True)
    with open_tar_writer(str(d / "image.tar")) as tar, open(d / "entries.jsonl", "w") as m:
        for path, type_, mode, payload, *rest in entries:
            uid, gid, xattrs = (list(rest) + [0, 0, ()][len(rest):])[:3]
            data = payload if type_ == FILE else b""
            entry = ManifestEntry(
                path=path, type=type_, mode=mode, uid=uid, gid=gid,
                uname="root", gname="root",
                size=len(data),
                sha256=hashlib.sha256(data).hexdigest() if type_ == FILE else None,
                linkname=None if type_ in ("file", "dir") else payload,
                xattrs=tuple(xattrs),
                package=label,
            )
            tar.addfile(entry.to_tarinfo(mtime=123), io.BytesIO(data) if type_ == FILE else None)
            m.write(entry.to_json() + "\n")
    return PackageImage(label, str(d))


def _members(out: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(out / "staged.tar") as t:
        return {m.name: m for m in t.getmembers()}


def test_merge_sorts_dedupes_dirs_and_adds_parents(tmp_path: Path) -> None:
    a = _write_package(tmp_path, "cat/a-1", [
        ("usr", "dir", 0o755, None),
        ("usr/bin", "dir", 0o755, None),
        ("usr/bin/a", "file", 0o755, b"A"),
    ])
    b = _write_package(tmp_path, "cat/b-1", [
        ("usr", "dir", 0o755, None),
        ("usr/bin", "dir", 0o755, None),
        ("usr/bin/b", "file", 0o4711, b"B", 0, 30),
        ("usr/lib64/libb.so", "symlink", 0o777, "libb.so.1"),
    ])
    release = tmp_path / "release"
    release.write_text("ID=_any\n")
    out = tmp_path / "out"
    entries = stage(
        [a, b], str(out),
        extra_files=(ExtraFile("usr/lib/extension-release.d/extension-release.x", str(release)),),
        mtime=7,
    )
    paths = [e.path for e in entries]
    assert paths == [
        "usr", "usr/bin", "usr/bin/a", "usr/bin/b", "usr/lib",
        "usr/lib/extension-release.d", "usr/lib/extension-release.d/extension-release.x",
        "usr/lib64", "usr/lib64/libb.so",
    ]
    members = _members(out)
    assert list(members) == paths
    assert members["usr/bin/b"].mode == 0o4711 and members["usr/bin/b"].gid == 30
    assert members["usr/lib64/libb.so"].issym() and members["usr/lib64/libb.so"].linkname == "libb.so.1"
    assert {m.mtime for m in members.values()} == {7}
    rel = members["usr/lib/extension-release.d/extension-release.x"]
    assert rel.mode == 0o644 and rel.uid == 0 and rel.gid == 0
    with open(out / "manifest.jsonl") as f:
        owners = {e.path: e.package for e in read_manifest(f)}
    assert owners["usr/bin/b"] == "cat/b-1" and owners["usr/lib"] == "sysext"


def test_conflicting_file_names_both_packages(tmp_path: Path) -> None:
    a = _write_package(tmp_path, "cat/a-1", [("usr/bin/x", "file", 0o755, b"one")])
    b = _write_package(tmp_path, "cat/b-1", [("usr/bin/x", "file", 0o755, b"two")])
    with pytest.raises(StageError) as e:
        stage([a, b], str(tmp_path / "out"))
    msg = str(e.value)
    assert "/usr/bin/x is written by cat/a-1 and cat/b-1" in msg and "content" in msg
    assert not (tmp_path / "out" / "staged.tar").exists()


def test_identical_files_from_two_packages_are_fine(tmp_path: Path) -> None:
    a = _write_package(tmp_path, "cat/a-1", [("usr/share/x", "file", 0o644, b"same")])
    b = _write_package(tmp_path, "cat/b-1", [("usr/share/x", "file", 0o644, b"same")])
    entries = stage([a, b], str(tmp_path / "out"))
    assert [e.package for e in entries if e.path == "usr/share/x"] == ["cat/a-1"]


def test_dir_mode_conflict_and_type_conflict(tmp_path: Path) -> None:
    a = _write_package(tmp_path, "cat/a-1", [("usr/x", "dir", 0o755, None), ("usr/y", "file", 0o644, b"")])
    b = _write_package(tmp_path, "cat/b-1", [("usr/x", "dir", 0o700, None), ("usr/y", "symlink", 0o777, "z")])
    with pytest.raises(StageError) as e:
        stage([a, b], str(tmp_path / "out"))
    assert "/usr/x is written by cat/a-1 and cat/b-1 with different mode 0755 vs 0700" in str(e.value)
    assert "/usr/y is written by cat/a-1 and cat/b-1 with different type file vs symlink" in str(e.value)


def test_content_outside_usr_and_opt_is_listed_unless_excluded(tmp_path: Path) -> None:
    a = _write_package(tmp_path, "sys-fs/fuse-3", [
        ("etc", "dir", 0o755, None),
        ("etc/fuse.conf", "file", 0o644, b"conf"),
        ("var/lib/x", "file", 0o644, b""),
        ("usr/bin/f", "file", 0o755, b"f"),
        ("opt/f/data", "file", 0o644, b"d"),
    ])
    with pytest.raises(StageError) as e:
        stage([a], str(tmp_path / "out"))
    msg = str(e.value)
    assert "/etc: /etc, /etc/fuse.conf  [from sys-fs/fuse-3]" in msg
    assert "/var: /var/lib/x  [from sys-fs/fuse-3]" in msg
    assert 'exclude=["/etc", "/var"]' in msg

    entries = stage([a], str(tmp_path / "out2"), exclude=("/etc", "var"))
    assert [e.path for e in entries] == ["opt", "opt/f", "opt/f/data", "usr", "usr/bin", "usr/bin/f"]


def test_exclude_globs_cover_subtrees(tmp_path: Path) -> None:
    a = _write_package(tmp_path, "cat/a-1", [
        ("usr/share/doc/a-1/README", "file", 0o644, b"r"),
        ("usr/share/man/man1/a.1", "file", 0o644, b"m"),
        ("usr/bin/a", "file", 0o755, b"a"),
    ])
    entries = stage([a], str(tmp_path / "out"), exclude=("/usr/share/doc/*", "/usr/share/man"))
    # No directory entries were packaged for usr/share: nothing is left to create there.
    assert [e.path for e in entries] == ["usr", "usr/bin", "usr/bin/a"]


def test_hard_links_point_at_first_member_in_tree_order(tmp_path: Path) -> None:
    a = _write_package(tmp_path, "cat/a-1", [
        ("usr/sbin/z-tool", "file", 0o755, b"ELF..."),
        ("usr/sbin/a-tool", "hardlink", 0o755, "usr/sbin/z-tool"),
        ("usr/sbin/m-tool", "hardlink", 0o755, "usr/sbin/z-tool"),
    ])
    out = tmp_path / "out"
    stage([a], str(out))
    with tarfile.open(out / "staged.tar") as t:
        members = {m.name: m for m in t.getmembers()}
        assert members["usr/sbin/a-tool"].isreg()
        assert t.extractfile("usr/sbin/a-tool").read() == b"ELF..."
        assert members["usr/sbin/m-tool"].islnk() and members["usr/sbin/m-tool"].linkname == "usr/sbin/a-tool"
        assert members["usr/sbin/z-tool"].islnk() and members["usr/sbin/z-tool"].linkname == "usr/sbin/a-tool"


def test_hard_link_to_excluded_target_keeps_data(tmp_path: Path) -> None:
    a = _write_package(tmp_path, "cat/a-1", [
        ("etc/tool", "file", 0o755, b"data"),
        ("usr/bin/tool", "hardlink", 0o755, "etc/tool"),
    ])
    out = tmp_path / "out"
    stage([a], str(out), exclude=("/etc",))
    with tarfile.open(out / "staged.tar") as t:
        assert t.getmember("usr/bin/tool").isreg()
        assert t.extractfile("usr/bin/tool").read() == b"data"


def test_xattrs_survive_and_generated_file_clash(tmp_path: Path) -> None:
    a = _write_package(tmp_path, "net-dialup/ppp-2", [
        ("usr/sbin/pppd", "file", 0o4754, b"p", 0, 30, [("user.pax.flags", b"em")]),
        ("usr/lib/extension-release.d/extension-release.x", "file", 0o644, b"ID=evil\n"),
    ])
    out = tmp_path / "out"
    stage([a], str(out), exclude=("/usr/lib/extension-release.d",))
    with tarfile.open(out / "staged.tar") as t:
        assert t.getmember("usr/sbin/pppd").pax_headers["SCHILY.xattr.user.pax.flags"] == "em"
    release = tmp_path / "r"
    release.write_text("ID=_any\n")
    with pytest.raises(StageError) as e:
        stage([a], str(tmp_path / "out2"),
              extra_files=(ExtraFile("usr/lib/extension-release.d/extension-release.x", str(release)),))
    assert "generated for the extension, but net-dialup/ppp-2 ships it too" in str(e.value)


def test_file_used_as_directory_is_refused(tmp_path: Path) -> None:
    a = _write_package(tmp_path, "cat/a-1", [("usr/sbin", "symlink", 0o777, "bin")])
    b = _write_package(tmp_path, "cat/b-1", [("usr/sbin/x", "file", 0o755, b"x")])
    with pytest.raises(StageError) as e:
        stage([a, b], str(tmp_path / "out"))
    assert "/usr/sbin is a symlink from cat/a-1, but cat/b-1 installs /usr/sbin/x below it" in str(e.value)
