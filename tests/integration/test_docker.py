"""Debian archives end to end: apt-archive lockfiles (a signed local repository served on
127.0.0.1), and the README's main command, `./pants package extensions/docker:image`, merged
into the running Debian 12 host by the real systemd-sysext."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.debian.apt_repo import Server, build_repo
from tests.integration.repo import REPO, copy_repo, run_pants, sha256

DOCKER = "extensions/docker:image"
BINARIES = (
    "/usr/bin/docker", "/usr/sbin/dockerd", "/usr/bin/containerd", "/usr/bin/ctr",
    "/usr/sbin/runc", "/usr/bin/docker-init",
)


def _listing(image: Path) -> str:
    return subprocess.run(["unsquashfs", "-lln", str(image)], check=True, capture_output=True, text=True).stdout


def _cat(image: Path, path: str) -> str:
    return subprocess.run(["unsquashfs", "-cat", str(image), path], check=True, capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def docker(tmp_path_factory) -> tuple[Path, Path, str]:
    """docker.raw from a fresh copy and an empty cache: the .debs are downloaded from the
    machine's Debian mirror, pinned by 3rdparty/debian/docker.lock.json."""
    root = tmp_path_factory.mktemp("docker")
    repo = copy_repo(root / "repo")
    run = run_pants(repo, "package", DOCKER, store=root / "cache")
    assert run.returncode == 0, run.output
    return repo, root / "cache", run.output


def test_docker_image_has_the_binaries_units_and_release(docker) -> None:
    repo, _, output = docker
    image = repo / "dist/extensions.docker/docker.raw"
    listing = _listing(image)
    for binary in BINARIES:
        assert f"squashfs-root{binary}" in listing, binary
    assert " /etc" not in listing and "squashfs-root/etc" not in listing
    assert _cat(image, "usr/lib/extension-release.d/extension-release.docker") == (
        "ID=debian\nVERSION_ID=12\nARCHITECTURE=x86-64\nEXTENSION_RELOAD_MANAGER=1\nSYSEXT_ID=docker\n"
    )
    assert "Upholds=docker.socket" in _cat(image, "usr/lib/systemd/system/sockets.target.d/10-docker-socket.conf")
    assert "Upholds=containerd.service" in _cat(
        image, "usr/lib/systemd/system/multi-user.target.d/10-containerd-service.conf"
    )
    assert "SocketGroup=docker" in _cat(image, "usr/lib/systemd/system/docker.socket")
    assert "g docker -" in _cat(image, "usr/lib/sysusers.d/docker.conf")
    # /etc is relocated, not lost: copied to /etc at boot by systemd-tmpfiles.
    assert "C /etc/default/docker - - - - /usr/share/docker/etc/default/docker" in _cat(
        image, "usr/lib/tmpfiles.d/docker.conf"
    )
    scripts = (repo / "dist/extensions.docker/docker_maintainer_scripts.txt").read_text()
    assert "docker.io_20.10.24+dfsg1-1+deb12u1+b6_amd64: preinst postinst prerm postrm" in scripts
    assert "maintainer scripts do not run in an extension" in output
    lock = json.loads((REPO / "3rdparty/debian/docker.lock.json").read_text())
    assert lock["inputs"]["binhost"] == "apt:bookworm/main/amd64"
    assert "://" not in (REPO / "3rdparty/debian/docker.lock.json").read_text()  # no mirror host


def test_docker_second_build_is_a_cache_hit(docker) -> None:
    repo, store, _ = docker
    before = sha256(repo / "dist/extensions.docker/docker.raw")
    run = run_pants(repo, "package", DOCKER, store=store)
    assert run.returncode == 0, run.output
    assert run.steps == [], run.output
    assert sha256(repo / "dist/extensions.docker/docker.raw") == before


def test_docker_merged_into_the_host_runs(docker) -> None:
    assert os.geteuid() == 0, "this test needs root: run ./run-tests as root (CI does)"
    repo, _, _ = docker
    script = textwrap.dedent(
        f"""
        set -eu
        mount --make-rshared /
        mount -t tmpfs tmpfs /run
        mkdir -p /run/extensions
        cp {repo}/dist/extensions.docker/docker.raw /run/extensions/docker.raw
        systemd-sysext merge || echo "merge failed: $?"
        for b in {' '.join(BINARIES)}; do
          echo "== $b"; "$b" --version 2>&1 | head -2
          echo "-- ldd"; ldd "$b" 2>&1 || true
        done
        """
    )
    proc = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "bash", "-c", script],
        capture_output=True, text=True, timeout=300,
    )
    out = proc.stdout
    assert "merge failed" not in out and "Using extensions 'docker'." in proc.stderr + out, out + proc.stderr
    assert "== /usr/bin/docker\nDocker version 20.10.24+dfsg1" in out
    assert "== /usr/sbin/dockerd\nDocker version 20.10.24+dfsg1" in out
    assert "== /usr/bin/containerd\ncontainerd github.com/containerd/containerd 1.6.20~ds1" in out
    assert "== /usr/bin/ctr\nctr github.com/containerd/containerd 1.6.20~ds1" in out
    assert "== /usr/sbin/runc\nrunc version 1.1.5+ds1" in out
    assert "== /usr/bin/docker-init\ntini version 0.19.0" in out
    assert "not found" not in out, out
    # Outside the namespace the host is untouched.
    assert not os.path.exists("/usr/sbin/dockerd") or "20.10.24" not in subprocess.run(
        ["/usr/sbin/dockerd", "--version"], capture_output=True, text=True
    ).stdout


# -- a signed apt archive on 127.0.0.1 ---------------------------------------------------------


@pytest.fixture(scope="module")
def apt_repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("aptrepo")
    repo = build_repo(root / "archive")
    server = Server(root / "archive")
    try:
        yield repo, server
    finally:
        server.close()
        repo.gpg.close()


def _debian_build(repo_dir: Path, mirror: str, keyring: Path) -> None:
    (repo_dir / "extensions/jq-apt").mkdir()
    shutil.copy(keyring, repo_dir / "extensions/jq-apt/test-archive.gpg")
    (repo_dir / "extensions/jq-apt/BUILD").write_text(textwrap.dedent(
        f"""
        binpkg_set(
            name="jq-apt",
            packages=["jq"],
            apt_suite="bookworm",
            apt_mirror="{mirror}",
            apt_keyring="//extensions/jq-apt/test-archive.gpg",
            base="3rdparty/bases:debian12",
        )
        sysext_image(
            name="jq-debian",
            packages=[":jq-apt"],
            base="3rdparty/bases:debian12",
            strip=["docs", "man"],
            extension_release={{"SYSEXT_ID": "jq-debian"}},
        )
        """
    ))


def test_apt_archive_lock_and_build(apt_repo, tmp_path: Path) -> None:
    repo, server = apt_repo
    repo_dir = copy_repo(tmp_path / "repo")
    _debian_build(repo_dir, server.url, repo.keyring)
    store = tmp_path / "cache"
    run = run_pants(repo_dir, "generate-lockfiles", "--resolve=jq-apt", store=store)
    assert run.returncode == 0, run.output
    lock = json.loads((repo_dir / "extensions/jq-apt/jq-apt.lock.json").read_text())
    assert [p["cpv"] for p in lock["packages"]] == [
        "jq_1.6-2.1+deb12u3_amd64", "libjq1_1.6-2.1+deb12u3_amd64", "libonig5_6.9.8-1_amd64",
    ]
    assert lock["packages"][0]["why"] == ["requested: jq"]
    assert any(s["source"] == "base" and s["by"].startswith("libc6 ") for s in lock["satisfied"])
    assert "127.0.0.1" not in json.dumps(lock)
    run = run_pants(repo_dir, "package", "extensions/jq-apt:jq-debian", store=store)
    assert run.returncode == 0, run.output
    # The same three .debs as extensions/jq-debian (pinned as files): the same image.
    files = run_pants(repo_dir, "package", "extensions/jq-debian:jq-debian", store=store)
    assert files.returncode == 0, files.output
    assert sha256(repo_dir / "dist/extensions.jq-apt/jq-debian.raw") == sha256(
        repo_dir / "dist/extensions.jq-debian/jq-debian.raw"
    )


def test_apt_archive_with_a_bad_signature_is_refused(apt_repo, tmp_path: Path) -> None:
    repo, server = apt_repo
    repo_dir = copy_repo(tmp_path / "repo")
    _debian_build(repo_dir, server.url, repo.other_keyring)
    run = run_pants(repo_dir, "generate-lockfiles", "--resolve=jq-apt", store=tmp_path / "cache")
    assert run.returncode != 0
    assert "the signature did not verify with the keyring(s)" in run.output, run.output
    assert not (repo_dir / "extensions/jq-apt/jq-apt.lock.json").exists()


def test_version_gone_from_the_archive_names_the_refresh_command(apt_repo, tmp_path: Path) -> None:
    repo, server = apt_repo
    repo_dir = copy_repo(tmp_path / "repo")
    _debian_build(repo_dir, server.url, repo.keyring)
    store = tmp_path / "cache"
    assert run_pants(repo_dir, "generate-lockfiles", "--resolve=jq-apt", store=store).returncode == 0
    pool = repo.root / "pool/main"
    moved = pool / "libonig5_6.9.8-1_amd64.deb"
    shutil.move(moved, tmp_path / moved.name)
    try:
        run = run_pants(repo_dir, "package", "extensions/jq-apt:jq-debian", store=tmp_path / "fresh")
    finally:
        shutil.move(tmp_path / moved.name, moved)
    assert run.returncode != 0
    assert "libonig5_6.9.8-1_amd64: " in run.output and "pool/main/libonig5_6.9.8-1_amd64.deb" in run.output
    assert "./pants generate-lockfiles --resolve=jq-apt" in run.output
    assert not (repo_dir / "dist/extensions.jq-apt").exists()
