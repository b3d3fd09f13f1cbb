"""`./pants package` end to end: file metadata in the image, reproducibility, caching, errors."""

from __future__ import annotations

import hashlib
import json
import re
import stat
import subprocess
from pathlib import Path

import pytest

from tests.integration.conftest import FUSE_PPP, JQ, Build
from tests.integration.repo import REPO, copy_repo, run_pants, sha256

EXPECTED = REPO / "tests/fixtures/portage/expected"
_TYPE_BITS = {"file": stat.S_IFREG, "dir": stat.S_IFDIR, "symlink": stat.S_IFLNK, "hardlink": stat.S_IFREG}


def _listing(image: Path) -> dict[str, dict]:
    """`unsquashfs -lln`, parsed: path → mode string, owner, size, link target."""
    out = subprocess.run(["unsquashfs", "-lln", str(image)], check=True, capture_output=True, text=True).stdout
    entries = {}
    for line in out.splitlines():
        m = re.match(r"^(\S{10}) (\d+)/(\d+)\s+(\d+) \S+ \S+ squashfs-root(/\S*)?(?: -> (.*))?$", line)
        assert m, line
        mode, uid, gid, size, path, target = m.groups()
        entries[path or "/"] = {"mode": mode, "uid": int(uid), "gid": int(gid), "size": int(size), "target": target}
    return entries


def _stat(image: Path, path: str) -> str:
    return subprocess.run(["rdsquashfs", "-s", path, str(image)], check=True, capture_output=True, text=True).stdout


def _fixture_entries(name: str, *, skip_etc: bool) -> list[dict]:
    data = json.loads((EXPECTED / name).read_text())
    entries = []
    for e in data["image"]:
        path = e["path"]
        if path in ("/", "/image") or (skip_etc and (path == "/etc" or path.startswith("/etc/"))):
            continue
        entries.append(e)
    return entries


def _assert_image_matches_fixtures(image: Path, fixtures: list[str]) -> int:
    listing = _listing(image)
    checked = 0
    for name in fixtures:
        for e in _fixture_entries(name, skip_etc=True):
            got = listing.get(e["path"])
            assert got is not None, f"{e['path']} from {name} is missing from {image.name}"
            want_mode = stat.filemode(_TYPE_BITS[e["type"]] | int(e["mode"], 8))
            assert got["mode"] == want_mode, (e["path"], got, e)
            assert (got["uid"], got["gid"]) == (e["uid"], e["gid"]), (e["path"], got, e)
            if e["type"] == "symlink":
                assert got["target"] == e["linkname"], (e["path"], got, e)
            if e["type"] == "file":
                assert got["size"] == e["size"], (e["path"], got, e)
            if e["type"] == "hardlink":
                target = "/" + e["linkname"].split("/", 1)[1] if e["linkname"].startswith("image/") else "/" + e["linkname"].lstrip("./")
                link_stat, target_stat = _stat(image, e["path"]), _stat(image, target)
                assert "Hard link count: 2" in link_stat and "Hard link count: 2" in target_stat
                inode = lambda s: re.search(r"Inode number: (\d+)", s).group(1)  # noqa: E731
                assert inode(link_stat) == inode(target_stat), (e["path"], target)
            for key, value in (e.get("xattrs") or {}).items():
                xattrs = subprocess.run(
                    ["rdsquashfs", "-x", e["path"], str(image)], check=True, capture_output=True, text=True
                ).stdout
                assert f"{key}={value}" in xattrs.splitlines(), (e["path"], xattrs)
            checked += 1
    return checked


def test_jq_image_keeps_every_entry_of_the_fixtures(built: Build) -> None:
    checked = _assert_image_matches_fixtures(
        built.jq, ["app-misc__jq-1.6-r3.gpkg.tar.json", "dev-libs__oniguruma-6.9.8.gpkg.tar.json"]
    )
    assert checked >= 15
    listing = _listing(built.jq)
    assert set(p.split("/")[1] for p in listing if p != "/") == {"usr"}
    assert listing["/"]["mode"] == "drwxr-xr-x" and (listing["/"]["uid"], listing["/"]["gid"]) == (0, 0)


def test_fuse_ppp_image_keeps_modes_owners_links_and_xattrs(built: Build) -> None:
    checked = _assert_image_matches_fixtures(
        built.fuse_ppp, ["sys-fs__fuse-3.14.0.gpkg.tar.json", "net-dialup__ppp-2.4.9-r1.tbz2.json"]
    )
    assert checked >= 50
    listing = _listing(built.fuse_ppp)
    # The highlights, spelled out: setuid root:dip pppd, setuid fusermount3, absolute symlink.
    assert listing["/usr/sbin/pppd"]["mode"] == "-rwsr-xr--" and listing["/usr/sbin/pppd"]["gid"] == 30
    assert listing["/usr/bin/fusermount3"]["mode"] == "-rwsr-xr-x"
    assert listing["/usr/bin/fusermount"]["target"] == "/usr/bin/fusermount3"
    assert not any(p.startswith("/etc") for p in listing), "the excluded /etc reached the image"


def test_extension_release_file(built: Build) -> None:
    out = subprocess.run(
        ["unsquashfs", "-cat", str(built.jq), "usr/lib/extension-release.d/extension-release.jq"],
        check=True, capture_output=True, text=True,
    ).stdout
    assert out == (
        "ID=_any\nARCHITECTURE=x86-64\nEXTENSION_RELOAD_MANAGER=1\nSYSEXT_ID=jq\n"
        "SYSEXT_VERSION_ID=1.6-r3\n"
    )
    entry = _listing(built.jq)["/usr/lib/extension-release.d/extension-release.jq"]
    assert entry["mode"] == "-rw-r--r--" and (entry["uid"], entry["gid"]) == (0, 0)


def test_same_image_from_another_clone_path_umask_and_cache(built: Build, tmp_path_factory) -> None:
    root = tmp_path_factory.mktemp("clone-b-with-a-longer-path")
    repo = copy_repo(root / "nested" / "checkout")
    run = run_pants(
        repo, "package", JQ, FUSE_PPP, store=root / "separate-cache", umask=0o077,
        env={"TZ": "Asia/Tokyo", "LANG": "C"},
    )
    assert run.returncode == 0, run.output
    assert sorted(run.steps) == sorted(
        [
            "Unpacking jq-1.6-r3.gpkg.tar", "Unpacking oniguruma-6.9.8.gpkg.tar",
            "Unpacking fuse-3.14.0.gpkg.tar", "Unpacking ppp-2.4.9-r1.tbz2",
            "Staging jq", "Staging fuse-ppp", "Validating jq", "Validating fuse-ppp",
            "Squashing jq.raw", "Squashing fuse-ppp.raw",
        ]
    ), "clone B has its own empty cache: every step must really run"
    assert sha256(repo / "dist/extensions.jq/jq.raw") == sha256(built.jq)
    assert sha256(repo / "dist/extensions.fuse-ppp/fuse-ppp.raw") == sha256(built.fuse_ppp)


def test_unchanged_second_build_runs_no_step(built: Build) -> None:
    before = sha256(built.jq)
    run = run_pants(built.repo, "package", JQ, FUSE_PPP, store=built.store)
    assert run.returncode == 0, run.output
    assert run.steps == []
    assert run.counters["local_cache_requests_cached"] >= 10, run.counters
    assert sha256(built.jq) == before


def _rewrite_xpak_description(binpkg: Path, description: bytes) -> None:
    """Change one metadata value of an XPAK binpkg with Portage's own xpak module."""
    from portage import xpak

    tbz2 = xpak.tbz2(str(binpkg))
    metadata = tbz2.get_data()
    metadata[b"DESCRIPTION"] = description
    assert tbz2.recompose_mem(xpak.xpak_mem(metadata))


def _refresh_index_entry(packages: Path, cpv: str, binpkg: Path) -> None:
    data = binpkg.read_bytes()
    blocks = packages.read_text().split("\n\n")
    for i, block in enumerate(blocks):
        if f"CPV: {cpv}\n" in block + "\n":
            block = re.sub(r"^SIZE: .*$", f"SIZE: {len(data)}", block, flags=re.M)
            block = re.sub(r"^MD5: .*$", f"MD5: {hashlib.md5(data).hexdigest()}", block, flags=re.M)
            block = re.sub(r"^SHA1: .*$", f"SHA1: {hashlib.sha1(data).hexdigest()}", block, flags=re.M)
            blocks[i] = block
    packages.write_text("\n\n".join(blocks))


@pytest.fixture
def scratch(tmp_path: Path) -> tuple[Path, Path]:
    repo = copy_repo(tmp_path / "repo")
    return repo, tmp_path / "cache"


def test_changing_one_package_reunpacks_only_that_one(scratch) -> None:
    repo, store = scratch
    first = run_pants(repo, "package", FUSE_PPP, store=store)
    assert first.returncode == 0, first.output
    image = repo / "dist/extensions.fuse-ppp/fuse-ppp.raw"
    before = sha256(image)

    binhost = repo / "tests/fixtures/portage/binhost"
    ppp = binhost / "net-dialup/ppp-2.4.9-r1.tbz2"
    _rewrite_xpak_description(ppp, b"Point-to-Point Protocol, rebuilt\n")
    _refresh_index_entry(binhost / "Packages", "net-dialup/ppp-2.4.9-r1", ppp)

    second = run_pants(repo, "package", FUSE_PPP, store=store)
    assert second.returncode == 0, second.output
    # Only ppp is unpacked again; its files did not change, so the staged tree is the same
    # and the squash step is a cache hit.
    assert second.steps == ["Unpacking ppp-2.4.9-r1.tbz2", "Staging fuse-ppp"], second.output
    assert sha256(image) == before


def test_binpkg_that_differs_from_its_index_is_refused(scratch) -> None:
    repo, store = scratch
    packages = repo / "tests/fixtures/portage/binhost/Packages"
    text = packages.read_text().replace("SHA1: 2f487ce9d5506505788e3a4473f9eaccf9de56ae", "SHA1: " + "0" * 40)
    packages.write_text(text)
    run = run_pants(repo, "package", JQ, store=store)
    assert run.returncode != 0
    assert "jq-1.6-r3.gpkg.tar: does not match tests/fixtures/portage/binhost/Packages (entry app-misc/jq-1.6-r3)" in run.output
    assert "SHA1 2f487ce9d5506505788e3a4473f9eaccf9de56ae, expected 0000000000000000000000000000000000000000" in run.output
    assert not (repo / "dist/extensions.jq/jq.raw").exists()


def test_etc_content_is_an_error_that_lists_it(scratch) -> None:
    repo, store = scratch
    (repo / "extensions/fuse-noexclude").mkdir()
    (repo / "extensions/fuse-noexclude/BUILD").write_text(
        'sysext_image(name="fuse", packages=["3rdparty/portage:fuse"])\n'
    )
    run = run_pants(repo, "package", "extensions/fuse-noexclude:fuse", store=store)
    assert run.returncode != 0
    assert "The packages install content outside /usr and /opt" in run.output
    assert "/etc: /etc, /etc/fuse.conf  [from sys-fs/fuse-3.14.0]" in run.output
    assert 'exclude=["/etc"]' in run.output
    assert not (repo / "dist/extensions.fuse-noexclude").exists()


def test_unknown_cpv_names_what_the_binhost_has(scratch) -> None:
    repo, store = scratch
    build = repo / "3rdparty/portage/BUILD"
    build.write_text(build.read_text().replace('"app-misc/jq-1.6-r3"', '"app-misc/jq-1.7"'))
    run = run_pants(repo, "package", JQ, store=store)
    assert run.returncode != 0
    assert "app-misc/jq-1.7 is not in tests/fixtures/portage/binhost/Packages. It has: app-misc/jq-1.6-r3." in run.output


def test_binpkg_files_and_http_sources_give_the_same_image(scratch, built: Build) -> None:
    """`sources` in the repo and `file` targets with `http_source` (fetched by Pants from a
    server on 127.0.0.1 and verified by sha256 and length) build the binhost-built image."""
    import functools
    import http.server
    import shutil
    import threading

    repo, store = scratch
    binhost = repo / "tests/fixtures/portage/binhost"
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(binhost))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        onig = binhost / "dev-libs/oniguruma-6.9.8.gpkg.tar"
        ext = repo / "extensions/jq-files"
        ext.mkdir()
        shutil.copy(binhost / "app-misc/jq-1.6-r3.gpkg.tar", ext)
        url = f"http://127.0.0.1:{server.server_address[1]}/dev-libs/oniguruma-6.9.8.gpkg.tar"
        build = (REPO / "extensions/jq/BUILD").read_text()
        image = build[build.index("sysext_image("):].replace(
            'packages=["3rdparty/portage:jq"]', 'packages=[":pkgs"]'
        )
        (ext / "BUILD").write_text(
            f'file(name="onig", source=http_source(url="{url}", len={onig.stat().st_size}, '
            f'sha256="{sha256(onig)}"))\n'
            'binpkg_set(name="pkgs", sources=["jq-1.6-r3.gpkg.tar"], dependencies=[":onig"])\n'
            + image
        )
        run = run_pants(repo, "package", "extensions/jq-files:jq", store=store)
        assert run.returncode == 0, run.output
        assert sha256(repo / "dist/extensions.jq-files/jq.raw") == sha256(built.jq)

        # A wrong checksum is refused by Pants' download, and nothing reaches dist/.
        shutil.rmtree(repo / "dist")
        (ext / "BUILD").write_text((ext / "BUILD").read_text().replace(sha256(onig), "0" * 64))
        run = run_pants(repo, "package", "extensions/jq-files:jq", store=store)
        assert run.returncode != 0
        assert "Wrong digest" in run.output or "digest" in run.output.lower(), run.output
        assert not (repo / "dist/extensions.jq-files").exists()
    finally:
        server.shutdown()


def test_a_different_sqfstar_at_the_same_path_does_not_reuse_images(scratch) -> None:
    """The version of each tool is part of its steps' cache keys, not just its path."""
    repo, store = scratch
    tools = repo.parent / "tools"
    tools.mkdir()
    wrapper = tools / "sqfstar"

    def install(build: str) -> None:
        wrapper.write_text(
            "#!/bin/sh\n"
            f'if [ "$1" = "-version" ]; then /usr/bin/sqfstar -version; echo "{build}"; exit 0; fi\n'
            'exec /usr/bin/sqfstar "$@"\n'
        )
        wrapper.chmod(0o755)

    search_path = f'--sysext-search-path=["{tools}", "/usr/bin", "/bin", "/usr/sbin", "/sbin"]'
    install("local build 1")
    first = run_pants(repo, search_path, "package", JQ, store=store)
    assert first.returncode == 0, first.output
    assert "Squashing jq.raw" in first.steps
    install("local build 2")
    second = run_pants(repo, search_path, "package", JQ, store=store)
    assert second.returncode == 0, second.output
    assert second.steps == ["Squashing jq.raw"], second.output
