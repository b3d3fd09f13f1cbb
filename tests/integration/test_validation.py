"""Validation and tree shaping (issue 4) end to end: /etc relocation merged by the real
systemd-sysext + systemd-tmpfiles, ELF closure, ownership, reports, `pants check`, mangle
scripts, declarative helpers and versioned file names."""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.integration.repo import copy_repo, run_pants
from tests.integration.test_sysext_merge import _in_namespace, _make_root


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("validation")
    return copy_repo(root / "repo"), root / "cache"


def _listing(image: Path) -> str:
    return subprocess.run(
        ["unsquashfs", "-lln", str(image)], check=True, capture_output=True, text=True
    ).stdout


def _cat(image: Path, path: str) -> str:
    return subprocess.run(
        ["unsquashfs", "-cat", str(image), path], check=True, capture_output=True, text=True
    ).stdout


def _write_build(repo: Path, directory: str, text: str) -> None:
    (repo / directory).mkdir(parents=True, exist_ok=True)
    (repo / directory / "BUILD").write_text(textwrap.dedent(text))


def test_ppp_etc_is_relocated_and_lands_in_etc_with_its_modes(repo) -> None:
    assert os.geteuid() == 0, "this test needs root: run ./run-tests as root (CI does)"
    repo_dir, store = repo
    run = run_pants(repo_dir, "package", "extensions/ppp:ppp", store=store)
    assert run.returncode == 0, run.output
    image = repo_dir / "dist/extensions.ppp/ppp.raw"
    listing = _listing(image)
    assert "-rw------- 0/0" in listing and "usr/share/ppp/etc/ppp/pap-secrets" in listing
    assert "drwxr-s--- 0/30" in listing and "usr/share/ppp/etc/ppp/peers" in listing
    assert "/etc/" not in listing.replace("share/ppp/etc/", "")
    assert "usr/share/doc" not in listing and ".keep" not in listing  # strip=["docs", "keep-markers"]
    conf = _cat(image, "usr/lib/tmpfiles.d/ppp.conf")
    assert "d /etc/ppp/peers 2750 0 30 -" in conf
    assert "C /etc/ppp/pap-secrets - - - - /usr/share/ppp/etc/ppp/pap-secrets" in conf
    assert "z /etc/ppp/pap-secrets 0600 0 0 -" in conf

    root = repo_dir.parent / "root"
    _make_root(root, image, "ppp")
    proc = _in_namespace(
        root,
        textwrap.dedent(
            f"""
            systemd-tmpfiles --root={root} --create
            stat -c '%n %a %u:%g' {root}/etc/ppp/pap-secrets {root}/etc/ppp/chap-secrets {root}/etc/ppp/peers {root}/etc/ppp/options
            """
        ),
    )
    out = proc.stdout
    assert "merge failed" not in out, out + proc.stderr
    assert f"{root}/etc/ppp/pap-secrets 600 0:0" in out, out + proc.stderr
    assert f"{root}/etc/ppp/chap-secrets 600 0:0" in out
    assert f"{root}/etc/ppp/peers 2750 0:30" in out
    assert f"{root}/etc/ppp/options 644 0:0" in out


def test_reports_are_written_next_to_the_image(repo) -> None:
    repo_dir, store = repo
    run = run_pants(repo_dir, "package", "extensions/jq-stacked:", store=store)
    assert run.returncode == 0, run.output
    out = repo_dir / "dist/extensions.jq-stacked"
    assert (out / "jq-stacked_packages.txt").read_text() == "app-misc/jq-1.6-r3::portage-stable\n"
    contents = (out / "jq-stacked_contents.txt").read_text()
    assert "/usr/bin/jq" in contents and "-rwxr-xr-x" in contents
    assert "libonig" not in contents
    usage = (out / "jq-stacked_disk_usage.txt").read_text()
    assert "app-misc/jq-1.6-r3" in usage


def test_missing_library_fails_naming_binary_and_soname(repo) -> None:
    repo_dir, store = repo
    _write_build(
        repo_dir,
        "extensions/jq-broken",
        """
        binpkg_set(name="only-jq", binhost="//tests/fixtures/portage/binhost", cpvs=["app-misc/jq-1.6-r3"])
        sysext_image(name="jq-broken", packages=[":only-jq"], base="3rdparty/bases:fixture")
        """,
    )
    run = run_pants(repo_dir, "package", "extensions/jq-broken:jq-broken", store=store)
    assert run.returncode != 0
    assert "libonig.so.5" in run.output and "/usr/bin/jq" in run.output, run.output
    assert "app-misc/jq-1.6-r3" in run.output
    assert not (repo_dir / "dist/extensions.jq-broken").exists()

    check = run_pants(repo_dir, "check", "extensions/jq-broken:jq-broken", store=store)
    assert check.returncode != 0 and "libonig.so.5" in check.output
    assert "Squashing" not in check.output


def test_check_validates_without_squashing(repo) -> None:
    repo_dir, store = repo
    run = run_pants(repo_dir, "check", "extensions/jq-stacked:", "extensions/ppp:", store=store)
    assert run.returncode == 0, run.output
    assert "extensions/jq-stacked:jq-stacked: jq-stacked is valid" in run.output
    assert "Squashing" not in run.output


def test_unknown_group_in_base_is_an_error(repo) -> None:
    repo_dir, store = repo
    group = repo_dir / "3rdparty/bases/fixture/usr/share/baselayout/group"
    original = group.read_text()
    try:
        group.write_text("".join(l + "\n" for l in original.splitlines() if not l.startswith("dip:")))
        run = run_pants(repo_dir, "package", "extensions/ppp:ppp", store=store)
    finally:
        group.write_text(original)
    assert run.returncode != 0
    assert "/usr/sbin/pppd (net-dialup/ppp-2.4.9-r1): group 'dip' (gid 30)" in run.output, run.output


def test_mangle_script_and_declarative_helpers(repo) -> None:
    repo_dir, store = repo
    ext = "extensions/jq-mangled"
    _write_build(
        repo_dir,
        ext,
        """
        file(name="mangle", source="mangle.sh")
        sysext_image(
            name="jq-mangled",
            packages=["3rdparty/portage:jq"],
            mangle=":mangle",
            remove=["/usr/share/man"],
            add_files={"/usr/lib/systemd/system/jq-hello.service": "jq-hello.service"},
            enable_units=["jq-hello.service"],
        )
        """,
    )
    (repo_dir / ext / "mangle.sh").write_text(
        'set -eu\nroot="$1"\nrm "$root/usr/share/doc/jq-1.6-r3/README.bz2"\n'
        'mkdir -p "$root/usr/share/jq"\necho "made by mangle" > "$root/usr/share/jq/note"\n'
        'chmod 0600 "$root/usr/share/jq/note"\necho "mangled $root"\n'
    )
    (repo_dir / ext / "jq-hello.service").write_text("[Service]\nExecStart=/usr/bin/jq --version\n")
    run = run_pants(repo_dir, "package", f"{ext}:jq-mangled", store=store)
    assert run.returncode == 0, run.output
    image = repo_dir / "dist/extensions.jq-mangled/jq-mangled.raw"
    listing = _listing(image)
    assert "README.bz2" not in listing and "usr/share/man" not in listing
    assert "-rw------- 0/0" in listing and "usr/share/jq/note" in listing
    assert "-rwxr-xr-x 0/0" in listing and "usr/bin/jq" in listing  # unchanged files keep modes
    assert _cat(image, "usr/lib/systemd/system/jq-hello.service").startswith("[Service]")
    dropin = _cat(image, "usr/lib/systemd/system/multi-user.target.d/10-jq-hello-service.conf")
    assert "[Unit]\nUpholds=jq-hello.service\n" in dropin

    _write_build(
        repo_dir,
        "extensions/jq-nounit",
        """
        sysext_image(name="jq-nounit", packages=["3rdparty/portage:jq"], enable_units=["nothere.service"])
        """,
    )
    run = run_pants(repo_dir, "package", "extensions/jq-nounit:jq-nounit", store=store)
    assert run.returncode != 0
    assert "/usr/lib/systemd/system/nothere.service (`enable_units` starts nothere.service)" in run.output


def test_versioned_file_name_with_non_strict_release_merges(repo) -> None:
    assert os.geteuid() == 0, "this test needs root: run ./run-tests as root (CI does)"
    repo_dir, store = repo
    _write_build(
        repo_dir,
        "extensions/jq-versioned",
        """
        sysext_image(
            name="jq-v",
            extension_name="jq",
            packages=["3rdparty/portage:jq"],
            output_path="versioned/jq-1.6-x86-64.raw",
            name_mismatch="xattr",
        )
        """,
    )
    _write_build(
        repo_dir,
        "extensions/jq-strict",
        """
        sysext_image(
            name="jq-strict",
            extension_name="jq",
            packages=["3rdparty/portage:jq"],
            output_path="versioned/jq-1.6-strict.raw",
        )
        """,
    )
    bad = run_pants(repo_dir, "package", "extensions/jq-strict:jq-strict", store=store)
    assert bad.returncode != 0
    assert "must be `jq.raw` to match `extension-release.jq`" in bad.output, bad.output
    assert 'name_mismatch="xattr"' in bad.output
    run = run_pants(repo_dir, "package", "extensions/jq-versioned:jq-v", store=store)
    assert run.returncode == 0, run.output
    image = repo_dir / "dist/versioned/jq-1.6-x86-64.raw"
    xattrs = subprocess.run(
        ["rdsquashfs", "-x", "/usr/lib/extension-release.d/extension-release.jq", str(image)],
        check=True, capture_output=True, text=True,
    ).stdout
    assert "user.extension-release.strict=0" in xattrs

    root = repo_dir.parent / "root-versioned"
    _make_root(root, image, "jq-1.6-x86-64")
    proc = _in_namespace(root, f"test -x {root}/usr/bin/jq && echo MERGED\n")
    assert "MERGED" in proc.stdout, proc.stdout + proc.stderr
