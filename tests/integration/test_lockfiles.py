"""Resolved `binpkg_set`s end to end: `./pants generate-lockfiles`, then `./pants package`.

Every test runs the real `./pants --no-pantsd` in throw-away copies of the repository. Binhosts
are served over HTTP by a real server on 127.0.0.1 started here (a copy of the fixture binhost
plus binary packages written with Portage's own `xpak` module), base images are real squashfs
and tarball images, and the stacked images are merged by the real systemd-sysext.

Stores: Pants' DownloadFile skips the download when the store already holds the digest, and a
directory binhost puts the same binpkg digests into the store. Tests that must see a download
really happen (or fail) therefore use a store of their own; the others share one.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import json
import os
import re
import shutil
import socket
import subprocess
import tarfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pants_sysext.formats.packages_index import render_packages_index
from tests.integration.repo import REPO, PantsRun, copy_repo, run_pants, sha256
from tests.integration.test_sysext_merge import _in_namespace, _make_root

FIXTURE_BINHOST = REPO / "tests/fixtures/portage/binhost"
FIXTURE_BASE = REPO / "3rdparty/bases/fixture"
FIXTURE_VDB = REPO / "tests/fixtures/portage/vdb"
PORTAGE_LOCKS = ("jq-resolved", "oniguruma", "jq-on-oniguruma")

JQ = "app-misc/jq-1.6-r3"
ONIG = "dev-libs/oniguruma-6.9.8"
JQ_PATH = "app-misc/jq-1.6-r3.gpkg.tar"
ONIG_PATH = "dev-libs/oniguruma-6.9.8.gpkg.tar"


# -- helpers: an HTTP server, binary packages, images -------------------------------------------


class _Server:
    """A ThreadingHTTPServer on 127.0.0.1 serving `root`, recording every request."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: list[tuple[str, str, int]] = []
        log = self.requests

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(root), **kwargs)

            def log_message(self, format, *args):  # noqa: A002 (the base class's name)
                pass

            def log_request(self, code="-", size="-"):
                log.append((self.command, self.path, int(getattr(code, "value", code))))

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def gets(self) -> list[str]:
        """Paths successfully fetched with GET, in order."""
        return [p for method, p, code in self.requests if method == "GET" and code == 200]

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _parse_blocks(text: str) -> list[dict[str, str]]:
    """A Packages index as raw blocks (header first), without Portage's inherited defaults."""
    blocks = []
    for chunk in text.split("\n\n"):
        block = {}
        for line in chunk.splitlines():
            if line.strip():
                key, _, value = line.partition(": ")
                block[key] = value.strip()
        if block:
            blocks.append(block)
    return blocks


@dataclass(frozen=True)
class FakePkg:
    """A binary package to write into a binhost (XPAK, content: one marker file)."""

    cpv: str
    slot: str = "0"
    rdepend: str = ""
    provides: str = ""
    requires: str = ""
    use: str = "amd64 elibc_glibc kernel_linux"
    build_id: int | None = None

    @property
    def category(self) -> str:
        return self.cpv.split("/")[0]

    @property
    def pf(self) -> str:
        return self.cpv.split("/")[1]

    @property
    def pn(self) -> str:
        return re.sub(r"-[0-9].*$", "", self.pf)

    @property
    def path(self) -> str:
        """Portage's layout: CATEGORY/PF.tbz2, or CATEGORY/PN/PF-BUILD_ID.xpak (multi-instance)."""
        if self.build_id is None:
            return f"{self.category}/{self.pf}.tbz2"
        return f"{self.category}/{self.pn}/{self.pf}-{self.build_id}.xpak"

    @property
    def marker_path(self) -> str:
        return f"usr/share/sysext-test/{self.pf}"

    @property
    def marker(self) -> bytes:
        return f"{self.cpv} BUILD_ID={self.build_id}\n".encode()


def _write_xpak(binhost: Path, pkg: FakePkg) -> dict[str, str]:
    """Write `pkg` into `binhost` with Portage's xpak module; return its Packages block.

    The metadata is the fixture ppp binpkg's (written by Portage), with the identity and
    dependency keys replaced; the image is a bzip2 tar holding one marker file.
    """
    from portage import xpak

    image = io.BytesIO()
    with tarfile.open(fileobj=image, mode="w:bz2", format=tarfile.GNU_FORMAT) as tar:
        parts = ["."] + [
            "./" + "/".join(pkg.marker_path.split("/")[: i + 1])
            for i in range(pkg.marker_path.count("/"))
        ]
        for d in parts:
            info = tarfile.TarInfo(d + "/" if d != "." else "./")
            info.type, info.mode, info.mtime, info.uname, info.gname = tarfile.DIRTYPE, 0o755, 0, "root", "root"
            tar.addfile(info)
        info = tarfile.TarInfo("./" + pkg.marker_path)
        info.size, info.mode, info.mtime, info.uname, info.gname = len(pkg.marker), 0o644, 0, "root", "root"
        tar.addfile(info, io.BytesIO(pkg.marker))
    dest = binhost / pkg.path
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(image.getvalue())

    metadata = xpak.tbz2(str(FIXTURE_BINHOST / "net-dialup/ppp-2.4.9-r1.tbz2")).get_data()
    for key in list(metadata):
        if key.startswith(b"NEEDED") or key.endswith(b".ebuild") or key == b"DEPEND":
            del metadata[key]
    values = {
        "CATEGORY": pkg.category,
        "PF": pkg.pf,
        "SLOT": pkg.slot,
        "RDEPEND": pkg.rdepend,
        "PROVIDES": pkg.provides,
        "REQUIRES": pkg.requires,
        "USE": pkg.use,
        "IUSE": "",
        "DESCRIPTION": f"test package {pkg.cpv}",
        "SIZE": str(len(pkg.marker)),
    }
    if pkg.build_id is not None:
        values["BUILD_ID"] = str(pkg.build_id)
    for key, value in values.items():
        metadata[key.encode()] = value.encode() + b"\n"
    assert xpak.tbz2(str(dest)).recompose_mem(xpak.xpak_mem(metadata))
    assert xpak.tbz2(str(dest)).get_data()[b"PF"] == pkg.pf.encode() + b"\n"

    data = dest.read_bytes()
    block = {
        "CPV": pkg.cpv,
        "SLOT": pkg.slot,
        "RDEPEND": pkg.rdepend,
        "PROVIDES": pkg.provides,
        "REQUIRES": pkg.requires,
        "USE": pkg.use,
        "EAPI": "8",
        "KEYWORDS": "amd64",
        "LICENSE": "MIT",
        "DEFINED_PHASES": "install",
        "BUILD_TIME": "1795979242",
        "MTIME": "1795979243",
        "BUILD_ID": str(pkg.build_id) if pkg.build_id is not None else "",
        "PATH": pkg.path,
        "SIZE": str(len(data)),
        "MD5": _md5(data),
        "SHA1": hashlib.sha1(data).hexdigest(),
    }
    return {k: v for k, v in block.items() if v}  # Portage leaves out empty values


def _make_binhost(dest: Path, extra: list[FakePkg]) -> Path:
    """A copy of the fixture binhost plus `extra` packages, with a regenerated index."""
    shutil.copytree(FIXTURE_BINHOST, dest)
    header, *blocks = _parse_blocks((FIXTURE_BINHOST / "Packages").read_text())
    blocks += [_write_xpak(dest, pkg) for pkg in extra]
    blocks.sort(key=lambda b: (b["CPV"], int(b.get("BUILD_ID", "0"))))
    header["PACKAGES"] = str(len(blocks))
    text = render_packages_index(header, blocks)
    (dest / "Packages").write_text(text)
    with open(dest / "Packages.gz", "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        gz.write(text.encode())
    return dest


def _write_vdb_entry(root: Path, pkg: FakePkg) -> None:
    """An installed package, as Portage records it in var/db/pkg/CATEGORY/PF."""
    d = root / "var/db/pkg" / pkg.category / pkg.pf
    d.mkdir(parents=True)
    for key, value in {
        "CATEGORY": pkg.category,
        "PF": pkg.pf,
        "SLOT": pkg.slot,
        "USE": pkg.use,
        "RDEPEND": pkg.rdepend,
        "PROVIDES": pkg.provides,
        "REQUIRES": pkg.requires,
        "EAPI": "8",
        "CHOST": "x86_64-pc-linux-gnu",
        "repository": "gentoo",
    }.items():
        if value:
            (d / key).write_text(value + "\n")
    (d / "CONTENTS").write_text(f"obj /{pkg.marker_path} {_md5(pkg.marker)} 0\n")


def _lock(path: Path) -> dict:
    return json.loads(path.read_text())


def _cpvs(lock: dict) -> list[str]:
    return [p["cpv"] for p in lock["packages"]]


def _satisfied(lock: dict) -> set[tuple[str, str, str, str]]:
    return {(s["atom"], s["by"], s["source"], s["needed_by"]) for s in lock["satisfied"]}


def _release(image: Path, name: str) -> str:
    return subprocess.run(
        ["unsquashfs", "-cat", str(image), f"usr/lib/extension-release.d/extension-release.{name}"],
        check=True, capture_output=True, text=True,
    ).stdout


def _files(image: Path) -> list[str]:
    """Every path in a squashfs image (`unsquashfs -lln`), without the squashfs-root prefix."""
    out = subprocess.run(["unsquashfs", "-lln", str(image)], check=True, capture_output=True, text=True).stdout
    paths = []
    for line in out.splitlines():
        m = re.search(r" squashfs-root(/\S*)", line)
        if m:
            paths.append(m.group(1))
    return paths


def _cat(image: Path, path: str) -> bytes:
    return subprocess.run(["unsquashfs", "-cat", str(image), path], check=True, capture_output=True).stdout


def _mksquashfs(tree: Path, image: Path) -> None:
    subprocess.run(
        ["mksquashfs", str(tree), str(image), "-all-root", "-noappend", "-all-time", "0",
         "-no-progress", "-quiet"],
        check=True, capture_output=True,
    )


def _assert_failed(run: PantsRun, *needles: str) -> None:
    assert run.returncode != 0, run.output
    for needle in needles:
        assert needle in run.output, f"{needle!r} not in:\n{run.output}"


def _dist_files(repo: Path) -> list[str]:
    dist = repo / "dist"
    return sorted(str(p.relative_to(dist)) for p in dist.rglob("*")) if dist.exists() else []


# -- the synthetic packages of the served binhost ----------------------------------------------

# `|| ( dev-libs/alt-a dev-libs/alt-b )`: the base has alt-b, the binhost both; alt-a (the first
# alternative, which a naive resolver takes) must not be pulled in.
ANYOF = FakePkg("app-misc/anyof-1", rdepend="|| ( dev-libs/alt-a dev-libs/alt-b )")
ALT_A = FakePkg("dev-libs/alt-a-1")
ALT_B = FakePkg("dev-libs/alt-b-1")
# `dev-libs/foo:2`: slots 1, 2 (two versions) and 3; the best of slot 2 is foo-2.1.
SLOTUSER = FakePkg("app-misc/slotuser-1", rdepend="dev-libs/foo:2")
FOOS = [
    FakePkg("dev-libs/foo-1", slot="1"),
    FakePkg("dev-libs/foo-2.0", slot="2"),
    FakePkg("dev-libs/foo-2.1", slot="2"),
    FakePkg("dev-libs/foo-3", slot="3"),
]
# binpkg-multi-instance: two builds of one CPV.
MULTI_1 = FakePkg("app-misc/multi-1", build_id=1)
MULTI_2 = FakePkg("app-misc/multi-1", build_id=2)
# A blocker against a package of the base, and a soname nothing provides.
BLOCKY = FakePkg("app-misc/blocky-1", rdepend="!app-misc/bar")
BAR = FakePkg("app-misc/bar-1")
NEEDY = FakePkg("app-misc/needy-1", requires="x86_64: libc.so.6 libnothere.so.1")

EXTRA_PKGS = [ANYOF, ALT_A, ALT_B, SLOTUSER, *FOOS, MULTI_1, MULTI_2, BLOCKY, NEEDY]


# -- module fixtures ---------------------------------------------------------------------------


@dataclass
class Env:
    tmp: Path
    shared_store: Path
    server: _Server
    binhost_dir: Path  # the served binhost (fixture binhost + EXTRA_PKGS)

    @property
    def binhost_url(self) -> str:
        return f"{self.server.url}/binhost"

    def fresh_store(self, name: str) -> Path:
        return self.tmp / "stores" / name

    def copy(self, name: str) -> Path:
        return copy_repo(self.tmp / "copies" / name)


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> Env:
    tmp = tmp_path_factory.mktemp("lockfiles")
    www = tmp / "www"
    www.mkdir()
    binhost = _make_binhost(www / "binhost", EXTRA_PKGS)
    (www / "images").mkdir()
    server = _Server(www)
    try:
        yield Env(tmp=tmp, shared_store=tmp / "stores/shared", server=server, binhost_dir=binhost)
    finally:
        server.stop()


@dataclass
class Stack:
    repo: Path
    run: PantsRun

    @property
    def jq_stacked(self) -> Path:
        return self.repo / "dist/extensions.jq-stacked/jq-stacked.raw"

    @property
    def oniguruma(self) -> Path:
        return self.repo / "dist/extensions.oniguruma/oniguruma.raw"

    @property
    def oniguruma_pkginfo(self) -> Path:
        return self.repo / "dist/extensions.oniguruma/oniguruma_pkginfo.raw"


@pytest.fixture(scope="module")
def stack(env: Env) -> Stack:
    """`./pants package extensions/jq-stacked: extensions/oniguruma:` from the committed locks."""
    repo = env.copy("stack")
    run = run_pants(repo, "package", "extensions/jq-stacked:", "extensions/oniguruma:", store=env.shared_store)
    assert run.returncode == 0, run.output
    return Stack(repo, run)


# The BUILD files the tests write into one copy ("b"). Every resolve name is distinct from the
# repository's own (resolve names are global).

_GRAPHS_BUILD = """\
# Deeper graphs against the served binhost and a base with app-misc/bar and dev-libs/alt-b.
sysext_base(name="base", root="base")
sysext_base(name="arm", root="base", architecture="arm64")

binpkg_set(name="anyof", resolve="t-anyof", packages=["app-misc/anyof"], binhost="{url}", base=":base")
binpkg_set(name="slot", resolve="t-slot", packages=["app-misc/slotuser"], binhost="{url}", base=":base")
binpkg_set(name="slot2", resolve="t-slot2", packages=["dev-libs/foo:2"], binhost="{url}", base=":base")
binpkg_set(name="multi", resolve="t-multi", packages=["app-misc/multi"], binhost="{url}", base=":base")
binpkg_set(name="blocky", resolve="t-blocky", packages=["app-misc/blocky"], binhost="{url}", base=":base")
binpkg_set(name="needy", resolve="t-needy", packages=["app-misc/needy"], binhost="{url}", base=":base")
binpkg_set(name="jq2", resolve="t-jq2", packages=[">=app-misc/jq-2"], binhost="{url}", base=":base")
binpkg_set(name="armjq", resolve="t-armjq", packages=["app-misc/jq"], binhost="{url}", base=":arm")

sysext_image(name="multi-img", extension_name="multi", packages=[":multi"], base=":base")
"""

def _http_build(http: str, file: str) -> str:
    """app-misc/jq from one binhost three ways: HTTP, file:// and a repository directory."""
    out = []
    for kind, binhost in (("http", http), ("file", file), ("dir", "//tests/fixtures/portage/binhost")):
        out.append(
            f"""
binpkg_set(
    name="jq-{kind}",
    resolve="t-jq-{kind}",
    packages=["app-misc/jq"],
    binhost="{binhost}",
    base="3rdparty/bases:fixture",
)
sysext_image(
    name="img-{kind}",
    extension_name="jq",
    packages=[":jq-{kind}"],
    base="3rdparty/bases:fixture",
    extension_release={{"SYSEXT_ID": "jq"}},
    output_path="lockfile_tests/{kind}/jq.raw",
)
"""
        )
    return "".join(out)


_BASES_BUILD = """\
# Bases read from images: a squashfs served over HTTP (made from oniguruma_pkginfo.raw plus the
# fixture base's glibc) and a local tarball. Both already have dev-libs/oniguruma.
file(name="sq-image", source=http_source(url="{sq_url}", len={sq_len}, sha256="{sq_sha256}"))
sysext_base(name="sq", image=":sq-image")
file(name="tar-image", source="base.tar.gz")
sysext_base(name="tar", image=":tar-image")

binpkg_set(name="jq-sq", resolve="t-jq-sq", packages=["app-misc/jq"], binhost="//tests/fixtures/portage/binhost", base=":sq")
binpkg_set(name="jq-tar", resolve="t-jq-tar", packages=["app-misc/jq"], binhost="//tests/fixtures/portage/binhost", base=":tar")

sysext_image(name="img-sq", extension_name="jq", packages=[":jq-sq"], base=":sq", output_path="lockfile_tests/sq/jq.raw")
sysext_image(name="img-tar", extension_name="jq", packages=[":jq-tar"], base=":tar", output_path="lockfile_tests/tar/jq.raw")
"""

SQ_OS_RELEASE = 'NAME="Flatcar Container Linux by Kinvolk"\nID=flatcar\nVERSION_ID=3975.2.0\n'
TAR_OS_RELEASE = 'NAME=TestOS\nID=testos\nVERSION_ID="7.1"\n'


@dataclass
class RepoB:
    repo: Path
    generate: PantsRun
    package: PantsRun
    sq_image: Path
    generate_gets: list[str] = field(default_factory=list)
    package_gets: list[str] = field(default_factory=list)

    def lock(self, rel: str) -> dict:
        return _lock(self.repo / "lockfile_tests" / rel)


def _base_images(env: Env, stack: Stack, repo: Path) -> Path:
    """The squashfs base (served) and the tarball base (in the repository)."""
    # Squashfs: the pkginfo image of the oniguruma extension, plus the fixture base's packages
    # (glibc, virtual/libc) and a Flatcar os-release.
    tree = env.tmp / "sq-tree"
    subprocess.run(["unsquashfs", "-no-progress", "-d", str(tree), str(stack.oniguruma_pkginfo)],
                   check=True, capture_output=True)
    assert (tree / "var/db/pkg/dev-libs/oniguruma-6.9.8/PROVIDES").read_text().strip() == "x86_64: libonig.so.5"
    shutil.copytree(FIXTURE_BASE / "var/db/pkg", tree / "var/db/pkg", dirs_exist_ok=True)
    (tree / "usr/lib").mkdir(parents=True)
    (tree / "usr/lib/os-release").write_text(SQ_OS_RELEASE)
    sq = env.server.root / "images/base.squashfs"
    _mksquashfs(tree, sq)

    # Tarball: var/db/pkg (fixture base + the oniguruma entry Portage wrote) and an os-release.
    with tarfile.open(repo / "lockfile_tests/bases/base.tar.gz", "w:gz") as tar:
        tar.add(FIXTURE_BASE / "var", "var")
        tar.add(FIXTURE_VDB / "var/db/pkg/dev-libs/oniguruma-6.9.8", "var/db/pkg/dev-libs/oniguruma-6.9.8")
        data = TAR_OS_RELEASE.encode()
        info = tarfile.TarInfo("usr/lib/os-release")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return sq


@pytest.fixture(scope="module")
def repo_b(env: Env, stack: Stack) -> RepoB:
    """One copy with the test BUILD files; every resolve that must succeed is locked in one
    `generate-lockfiles` run, and the directory-binhost, multi-instance and image-base images
    are built in one `package` run (shared store)."""
    repo = env.copy("b")
    graphs = repo / "lockfile_tests/graphs"
    shutil.copytree(FIXTURE_BASE, graphs / "base")
    _write_vdb_entry(graphs / "base", BAR)
    _write_vdb_entry(graphs / "base", ALT_B)
    (graphs / "BUILD").write_text(_GRAPHS_BUILD.format(url=env.binhost_url))
    (repo / "lockfile_tests/http").mkdir(parents=True)
    (repo / "lockfile_tests/http/BUILD").write_text(
        _http_build(env.binhost_url, f"file://{env.binhost_dir}")
    )
    (repo / "lockfile_tests/bases").mkdir(parents=True)
    sq = _base_images(env, stack, repo)
    (repo / "lockfile_tests/bases/BUILD").write_text(
        _BASES_BUILD.format(sq_url=f"{env.server.url}/images/base.squashfs", sq_len=sq.stat().st_size,
                            sq_sha256=sha256(sq))
    )
    resolves = ("t-anyof", "t-slot", "t-slot2", "t-multi", "t-jq-dir", "t-jq-sq", "t-jq-tar")
    env.server.requests.clear()
    generate = run_pants(repo, "generate-lockfiles", *(f"--resolve={r}" for r in resolves),
                         store=env.shared_store)
    assert generate.returncode == 0, generate.output
    generate_gets = env.server.gets()
    env.server.requests.clear()
    package = run_pants(
        repo, "package", "lockfile_tests/graphs:multi-img", "lockfile_tests/http:img-dir",
        "lockfile_tests/bases:img-sq", "lockfile_tests/bases:img-tar", store=env.shared_store,
    )
    assert package.returncode == 0, package.output
    return RepoB(repo, generate, package, sq, generate_gets=generate_gets, package_gets=env.server.gets())


# -- 1. committed lockfiles --------------------------------------------------------------------


def test_committed_lockfiles_are_up_to_date_and_deterministic(env: Env) -> None:
    repo = env.copy("regenerate")
    locks = {name: repo / f"3rdparty/portage/{name}.lock.json" for name in PORTAGE_LOCKS}
    # Clobber them first: an unchanged file must come from a rewrite, not from being left alone.
    for path in locks.values():
        path.write_text("{}\n")
    run = run_pants(repo, "generate-lockfiles", store=env.shared_store)
    assert run.returncode == 0, run.output
    for name, path in locks.items():
        assert f"Wrote lockfile for the resolve `{name}` to 3rdparty/portage/{name}.lock.json" in run.output
        committed = (REPO / f"3rdparty/portage/{name}.lock.json").read_bytes()
        assert path.read_bytes() == committed, f"{name}.lock.json is stale: regenerate and commit it"

    stacked = _lock(locks["jq-on-oniguruma"])
    assert stacked["version"] == 1 and stacked["resolve"] == "jq-on-oniguruma"
    assert _cpvs(stacked) == [JQ], "the stacked lock must not ship oniguruma again"
    assert stacked["inputs"]["stacked"] == ["extensions/oniguruma:oniguruma: dev-libs/oniguruma-6.9.8"]
    assert _satisfied(stacked) == {
        ("dev-libs/oniguruma:0/5=", ONIG, "stacked extension extensions/oniguruma:oniguruma", JQ),
        (">=sys-libs/glibc-2.36-r7", "sys-libs/glibc-2.36-r7", "base", JQ),
    }
    jq = stacked["packages"][0]
    assert (jq["path"], jq["size"], jq["sha256"]) == (JQ_PATH, 194560, sha256(FIXTURE_BINHOST / JQ_PATH))
    assert jq["md5"] == "cea8455a4de5132f24e52506127061bd"
    assert jq["sha1"] == "2f487ce9d5506505788e3a4473f9eaccf9de56ae"
    assert jq["why"] == ["requested: app-misc/jq"]

    # The unstacked lock of the same atom ships both, oniguruma pulled in by jq's RDEPEND.
    resolved = _lock(locks["jq-resolved"])
    assert _cpvs(resolved) == [JQ, ONIG]
    assert resolved["packages"][1]["why"] == ["dev-libs/oniguruma:0/5= (RDEPEND of app-misc/jq-1.6-r3)"]
    assert resolved["packages"][1]["slot"] == "0/5"
    assert resolved["inputs"]["stacked"] == []


# -- 2. HTTP and file:// binhosts --------------------------------------------------------------


def test_http_and_file_binhosts_lock_and_build_the_directory_binhost_image(env: Env, repo_b: RepoB) -> None:
    repo = repo_b.repo
    store = env.fresh_store("http")  # holds no binpkg digest: the download must really happen
    env.server.requests.clear()
    generate = run_pants(repo, "generate-lockfiles", "--resolve=t-jq-http", "--resolve=t-jq-file", store=store)
    assert generate.returncode == 0, generate.output
    assert "Wrote lockfile for the resolve `t-jq-http` to lockfile_tests/http/t-jq-http.lock.json" in generate.output
    assert "Wrote lockfile for the resolve `t-jq-file` to lockfile_tests/http/t-jq-file.lock.json" in generate.output
    # The index and the locked binpkgs (only those) were read from the server.
    gets = env.server.gets()
    assert "/binhost/Packages" in gets
    assert {f"/binhost/{JQ_PATH}", f"/binhost/{ONIG_PATH}"} <= set(gets)
    assert not any("ppp" in g or "fuse" in g or "multi" in g for g in gets), gets

    http_lock = repo_b.lock("http/t-jq-http.lock.json")
    file_lock = repo_b.lock("http/t-jq-file.lock.json")
    dir_lock = repo_b.lock("http/t-jq-dir.lock.json")
    assert http_lock["inputs"]["binhost"] == env.binhost_url
    assert file_lock["inputs"]["binhost"] == f"file://{env.binhost_dir}"
    assert dir_lock["inputs"]["binhost"] == "tests/fixtures/portage/binhost"
    assert [(p["cpv"], p["path"], p["sha256"]) for p in http_lock["packages"]] == [
        (JQ, JQ_PATH, sha256(FIXTURE_BINHOST / JQ_PATH)),
        (ONIG, ONIG_PATH, sha256(FIXTURE_BINHOST / ONIG_PATH)),
    ]
    # Apart from where the binhost is, the three locks are the same.
    for lock in (http_lock, file_lock):
        assert lock["packages"] == dir_lock["packages"]
        assert lock["satisfied"] == dir_lock["satisfied"]
        assert {k: v for k, v in lock["inputs"].items() if k != "binhost"} == {
            k: v for k, v in dir_lock["inputs"].items() if k != "binhost"
        }

    env.server.requests.clear()
    package = run_pants(repo, "package", "lockfile_tests/http:img-http", store=store)
    assert package.returncode == 0, package.output
    # `package` fetched the pinned files from the server (Pants' DownloadFile), nothing else.
    assert sorted(env.server.gets()) == [f"/binhost/{JQ_PATH}", f"/binhost/{ONIG_PATH}"]

    file_run = run_pants(repo, "package", "lockfile_tests/http:img-file", store=env.fresh_store("file-url"))
    assert file_run.returncode == 0, file_run.output

    dist = repo / "dist/lockfile_tests"
    assert sha256(dist / "http/jq.raw") == sha256(dist / "dir/jq.raw")
    assert sha256(dist / "file/jq.raw") == sha256(dist / "dir/jq.raw")
    assert _release(dist / "http/jq.raw", "jq") == "ID=debian\nVERSION_ID=12\nARCHITECTURE=x86-64\nSYSEXT_ID=jq\n"
    files = _files(dist / "http/jq.raw")
    assert "/usr/bin/jq" in files and "/usr/lib64/libonig.so.5" in files


# -- 3. deeper graphs --------------------------------------------------------------------------


def test_any_of_takes_the_alternative_the_base_has(repo_b: RepoB) -> None:
    lock = repo_b.lock("graphs/t-anyof.lock.json")
    assert _cpvs(lock) == ["app-misc/anyof-1"], "dev-libs/alt-a must not be pulled in"
    assert ("dev-libs/alt-b", "dev-libs/alt-b-1", "base", "app-misc/anyof-1") in _satisfied(lock)
    assert lock["packages"][0]["rdepend"] == "|| ( dev-libs/alt-a dev-libs/alt-b )"


def test_slot_dependency_takes_the_best_version_of_that_slot(repo_b: RepoB) -> None:
    lock = repo_b.lock("graphs/t-slot.lock.json")
    assert _cpvs(lock) == ["app-misc/slotuser-1", "dev-libs/foo-2.1"]
    foo = lock["packages"][1]
    assert foo["slot"] == "2"
    assert foo["path"] == "dev-libs/foo-2.1.tbz2"
    assert foo["why"] == ["dev-libs/foo:2 (RDEPEND of app-misc/slotuser-1)"]
    # The same atom requested directly.
    direct = repo_b.lock("graphs/t-slot2.lock.json")
    assert [(p["cpv"], p["slot"], p["why"]) for p in direct["packages"]] == [
        ("dev-libs/foo-2.1", "2", ["requested: dev-libs/foo:2"])
    ]


def test_multi_instance_locks_and_unpacks_the_highest_build_id(env: Env, repo_b: RepoB) -> None:
    lock = repo_b.lock("graphs/t-multi.lock.json")
    built = env.binhost_dir / MULTI_2.path
    assert [(p["cpv"], p["build_id"], p["path"]) for p in lock["packages"]] == [
        ("app-misc/multi-1", 2, "app-misc/multi/multi-1-2.xpak")
    ]
    assert (lock["packages"][0]["sha256"], lock["packages"][0]["size"]) == (sha256(built), built.stat().st_size)
    # `package` downloaded build 2 only, unpacked it, and its file is the one in the image.
    assert f"/binhost/{MULTI_2.path}" in repo_b.package_gets
    assert f"/binhost/{MULTI_1.path}" not in repo_b.package_gets
    assert "Unpacking multi-1-2.xpak" in repo_b.package.steps
    assert "Unpacking multi-1-1.xpak" not in repo_b.package.steps
    image = repo_b.repo / "dist/lockfile_tests.graphs/multi.raw"
    assert _cat(image, MULTI_2.marker_path) == b"app-misc/multi-1 BUILD_ID=2\n"


def test_blocker_against_the_base_fails_naming_both(env: Env, repo_b: RepoB) -> None:
    run = run_pants(repo_b.repo, "generate-lockfiles", "--resolve=t-blocky", store=env.shared_store)
    _assert_failed(
        run,
        "lockfile_tests/graphs:blocky (resolve `t-blocky`): blocked packages",
        "app-misc/blocky-1 (to be installed) has the blocker !app-misc/bar against app-misc/bar-1 (base image)",
    )
    assert not (repo_b.repo / "lockfile_tests/graphs/t-blocky.lock.json").exists()


def test_missing_soname_fails_naming_package_and_soname(env: Env, repo_b: RepoB) -> None:
    run = run_pants(repo_b.repo, "generate-lockfiles", "--resolve=t-needy", store=env.shared_store)
    _assert_failed(
        run,
        "lockfile_tests/graphs:needy (resolve `t-needy`): shared libraries that nothing provides",
        "app-misc/needy-1 requires libnothere.so.1 (x86_64)",
    )
    assert "requires libc.so.6" not in run.output, "libc.so.6 is provided by the base's glibc"
    assert not (repo_b.repo / "lockfile_tests/graphs/t-needy.lock.json").exists()


def test_unsatisfiable_atom_lists_the_candidates_and_why(env: Env, repo_b: RepoB) -> None:
    run = run_pants(repo_b.repo, "generate-lockfiles", "--resolve=t-jq2", store=env.shared_store)
    _assert_failed(
        run,
        "lockfile_tests/graphs:jq2 (resolve `t-jq2`): cannot satisfy >=app-misc/jq-2 (requested):",
        "app-misc/jq-1.6-r3: version 1.6-r3 does not satisfy >=app-misc/jq-2",
    )
    assert not (repo_b.repo / "lockfile_tests/graphs/t-jq2.lock.json").exists()


def test_architecture_mismatch_names_both_architectures(env: Env, repo_b: RepoB) -> None:
    run = run_pants(repo_b.repo, "generate-lockfiles", "--resolve=t-armjq", store=env.shared_store)
    _assert_failed(
        run,
        f"lockfile_tests/graphs:armjq: the binhost {env.binhost_url} holds x86-64 packages "
        f"(CHOST=x86_64-pc-linux-gnu), but the base lockfile_tests/graphs:arm is arm64.",
    )
    assert not (repo_b.repo / "lockfile_tests/graphs/t-armjq.lock.json").exists()


# -- 4. a lock that no longer matches its target ------------------------------------------------


def test_package_refuses_a_lock_that_no_longer_matches(env: Env) -> None:
    repo = env.copy("stale")
    build = repo / "3rdparty/portage/BUILD"
    original = build.read_text()
    jq_block = 'name="jq-on-oniguruma",\n    packages=["app-misc/jq"],'
    assert jq_block in original
    build.write_text(original.replace(jq_block, 'name="jq-on-oniguruma",\n    packages=["app-misc/jq", "sys-fs/fuse"],'))
    run = run_pants(repo, "package", "extensions/jq-stacked:jq-stacked", store=env.shared_store)
    _assert_failed(
        run,
        "The lockfile 3rdparty/portage/jq-on-oniguruma.lock.json no longer matches its binpkg_set:",
        "requested: the lock has [app-misc/jq], the target now has [app-misc/jq, sys-fs/fuse]",
        "Run `./pants generate-lockfiles --resolve=jq-on-oniguruma` and commit the result.",
    )
    assert _dist_files(repo) == []

    onig_block = 'name="oniguruma",\n    packages=["dev-libs/oniguruma"],'
    assert onig_block in original
    build.write_text(original.replace(onig_block, onig_block + '\n    exclude=["app-misc/jq"],'))
    run = run_pants(repo, "package", "extensions/oniguruma:oniguruma", store=env.shared_store)
    _assert_failed(
        run,
        "The lockfile 3rdparty/portage/oniguruma.lock.json no longer matches its binpkg_set:",
        "exclude: the lock has [], the target now has [app-misc/jq]",
        "Run `./pants generate-lockfiles --resolve=oniguruma` and commit the result.",
    )
    assert _dist_files(repo) == []


def test_package_refuses_directory_binpkgs_that_differ_from_the_lock(env: Env) -> None:
    repo = env.copy("stale-binhost")
    onig = repo / "tests/fixtures/portage/binhost" / ONIG_PATH
    before = onig.read_bytes()
    onig.write_bytes(before + b"\0" * 512)  # one more tar block: still a valid GPKG container
    run = run_pants(repo, "package", "extensions/oniguruma:oniguruma", store=env.shared_store)
    _assert_failed(
        run,
        "The binary packages of 3rdparty/portage:oniguruma differ from its lockfile "
        "3rdparty/portage/oniguruma.lock.json:",
        f"  {ONIG}: tests/fixtures/portage/binhost/{ONIG_PATH} has sha256 {sha256(onig)} and size "
        f"{len(before) + 512}, the lock pins {hashlib.sha256(before).hexdigest()} and {len(before)}",
        "Run `./pants generate-lockfiles --resolve=oniguruma` and commit the result.",
    )
    assert _dist_files(repo) == []


# -- 5. fetch errors with an HTTP binhost --------------------------------------------------------

_FETCH_BUILD = """\
binpkg_set(name="pkgs", resolve="t-fetch", packages=["app-misc/jq"], binhost="{url}", base="3rdparty/bases:fixture")
sysext_image(name="jq", packages=[":pkgs"], base="3rdparty/bases:fixture")
"""
FETCH_TARGET = "lockfile_tests/fetch:jq"


@dataclass
class FetchEnv:
    repo: Path
    binhost: Path  # what the server serves
    url: str
    lock_path: Path


@pytest.fixture(scope="module")
def fetch_env(env: Env) -> FetchEnv:
    repo = env.copy("fetch")
    binhost = env.server.root / "fetchhost"
    shutil.copytree(FIXTURE_BINHOST, binhost)
    url = f"{env.server.url}/fetchhost"
    (repo / "lockfile_tests/fetch").mkdir(parents=True)
    (repo / "lockfile_tests/fetch/BUILD").write_text(_FETCH_BUILD.format(url=url))
    run = run_pants(repo, "generate-lockfiles", "--resolve=t-fetch", store=env.fresh_store("fetch-generate"))
    assert run.returncode == 0, run.output
    lock_path = repo / "lockfile_tests/fetch/t-fetch.lock.json"
    assert _cpvs(_lock(lock_path)) == [JQ, ONIG]
    return FetchEnv(repo, binhost, url, lock_path)


def _package_fetch(env: Env, fetch: FetchEnv, store_name: str) -> PantsRun:
    # A fresh store each time: a digest already in the store is not downloaded again.
    shutil.rmtree(fetch.repo / "dist", ignore_errors=True)
    return run_pants(fetch.repo, "package", FETCH_TARGET, store=env.fresh_store(store_name))


_FETCH_FAILED = "Fetching the binary packages of lockfile_tests/fetch:pkgs (lockfile lockfile_tests/fetch/t-fetch.lock.json) failed:"


def test_fetch_from_a_server_that_is_down_names_cpv_and_url(env: Env, fetch_env: FetchEnv) -> None:
    # The binhost moved to a port nothing listens on: BUILD and lock both say so (so the lock
    # still matches its target) and the download fails.
    dead = f"http://127.0.0.1:{_free_port()}/fetchhost"
    build = fetch_env.repo / "lockfile_tests/fetch/BUILD"
    build_text, lock_text = build.read_text(), fetch_env.lock_path.read_text()
    try:
        build.write_text(build_text.replace(fetch_env.url, dead))
        fetch_env.lock_path.write_text(lock_text.replace(fetch_env.url, dead))
        run = _package_fetch(env, fetch_env, "fetch-down")
    finally:
        build.write_text(build_text)
        fetch_env.lock_path.write_text(lock_text)
    _assert_failed(
        run,
        _FETCH_FAILED,
        f"  {JQ}: {dead}/{JQ_PATH}\n",
        f"  {ONIG}: {dead}/{ONIG_PATH}\n",
        "tcp connect error: Connection refused",
        "Check that the binhost is reachable",
        "Run `./pants generate-lockfiles --resolve=t-fetch` and commit the result.",
    )
    assert _dist_files(fetch_env.repo) == []


def test_fetch_of_a_file_that_differs_from_the_lock_names_cpv_and_url(env: Env, fetch_env: FetchEnv) -> None:
    lock_text = fetch_env.lock_path.read_text()
    real = sha256(FIXTURE_BINHOST / ONIG_PATH)
    assert lock_text.count(real) == 1
    try:
        fetch_env.lock_path.write_text(lock_text.replace(real, "0" * 64))
        run = _package_fetch(env, fetch_env, "fetch-sha256")
    finally:
        fetch_env.lock_path.write_text(lock_text)
    _assert_failed(
        run,
        _FETCH_FAILED,
        f"  {ONIG}: {fetch_env.url}/{ONIG_PATH}\n"
        f"    Wrong digest for downloaded file: want Digest {{ hash: Fingerprint<{'0' * 64}>, "
        f"size_bytes: 163840 }} got Digest {{ hash: Fingerprint<{real}>, size_bytes: 163840 }}\n",
    )
    failed = run.output.split(_FETCH_FAILED, 1)[1].split("The lock pins", 1)[0]
    assert JQ not in failed, "only the edited package fails"
    assert _dist_files(fetch_env.repo) == []


def test_fetch_of_a_file_gone_from_the_server_names_cpv_and_url(env: Env, fetch_env: FetchEnv) -> None:
    served = fetch_env.binhost / JQ_PATH
    aside = served.with_name("jq.moved")
    served.rename(aside)
    env.server.requests.clear()
    try:
        run = _package_fetch(env, fetch_env, "fetch-404")
    finally:
        aside.rename(served)
    assert ("GET", f"/fetchhost/{JQ_PATH}", 404) in env.server.requests
    url = f"{fetch_env.url}/{JQ_PATH}"
    _assert_failed(
        run,
        _FETCH_FAILED,
        f"  {JQ}: {url}\n    Client error (404) downloading file jq-1.6-r3.gpkg.tar from {url}\n",
    )
    failed = run.output.split(_FETCH_FAILED, 1)[1].split("The lock pins", 1)[0]
    assert ONIG not in failed, "oniguruma is still on the server"
    assert _dist_files(fetch_env.repo) == []


# -- 6. bases from images ----------------------------------------------------------------------


def test_bases_from_a_served_squashfs_and_a_tarball(env: Env, repo_b: RepoB) -> None:
    # The squashfs was fetched by Pants from the server (http_source), not read from disk.
    assert "/images/base.squashfs" in repo_b.generate_gets
    for name, base in (("sq", "lockfile_tests/bases:sq"), ("tar", "lockfile_tests/bases:tar")):
        lock = repo_b.lock(f"bases/t-jq-{name}.lock.json")
        assert _cpvs(lock) == [JQ], f"{name}: the base already has oniguruma"
        assert _satisfied(lock) == {
            ("dev-libs/oniguruma:0/5=", ONIG, "base", JQ),
            (">=sys-libs/glibc-2.36-r7", "sys-libs/glibc-2.36-r7", "base", JQ),
        }
        assert re.fullmatch(rf"{re.escape(base)} sha256:[0-9a-f]{{64}}", lock["inputs"]["base"]), lock["inputs"]
    fingerprints = {repo_b.lock(f"bases/t-jq-{n}.lock.json")["inputs"]["base"].split()[1] for n in ("sq", "tar")}
    fixture = _lock(REPO / "3rdparty/portage/jq-resolved.lock.json")["inputs"]["base"].split()[1]
    assert fixture not in fingerprints

    dist = repo_b.repo / "dist/lockfile_tests"
    # The images take ID and VERSION_ID from their base's os-release.
    assert _release(dist / "sq/jq.raw", "jq") == "ID=flatcar\nVERSION_ID=3975.2.0\nARCHITECTURE=x86-64\n"
    assert _release(dist / "tar/jq.raw", "jq") == "ID=testos\nVERSION_ID=7.1\nARCHITECTURE=x86-64\n"
    for name in ("sq", "tar"):
        files = _files(dist / f"{name}/jq.raw")
        assert "/usr/bin/jq" in files and "/usr/lib64/libjq.so.1" in files
        assert not [f for f in files if "libonig" in f], files


# -- 7. stacking, merged by systemd-sysext -------------------------------------------------------


def test_stacked_image_leaves_out_what_the_lower_extension_ships(stack: Stack) -> None:
    upper, lower = _files(stack.jq_stacked), _files(stack.oniguruma)
    assert "/usr/bin/jq" in upper and "/usr/lib64/libjq.so.1" in upper
    assert not [f for f in upper if "libonig" in f], upper
    assert "/usr/lib64/libonig.so.5" in lower
    assert "/usr/bin/jq" not in lower
    assert _release(stack.jq_stacked, "jq-stacked") == (
        "ID=debian\nVERSION_ID=12\nARCHITECTURE=x86-64\nSYSEXT_ID=jq-stacked\n"
    )
    assert _release(stack.oniguruma, "oniguruma") == (
        "ID=debian\nVERSION_ID=12\nARCHITECTURE=x86-64\nSYSEXT_ID=oniguruma\n"
    )
    pkginfo = _files(stack.oniguruma_pkginfo)
    assert "/var/db/pkg/dev-libs/oniguruma-6.9.8/CONTENTS" in pkginfo
    assert not [f for f in pkginfo if f.startswith("/usr")], pkginfo


_RUN_JQ = """
echo "== jq --version"
chroot {root} /usr/bin/jq --version 2>&1 || echo "jq failed: $?"
echo "== jq filter"
echo '{{"a": [1, 2, 3]}}' | chroot {root} /usr/bin/jq -c '.a | map(. * 10)' 2>&1 || true
echo "== libraries"
chroot {root} /lib64/ld-linux-x86-64.so.2 --list /usr/bin/jq 2>&1 || true
echo "== end"
"""


def test_stacked_extensions_merged_by_systemd_sysext_run_jq(stack: Stack, tmp_path: Path) -> None:
    assert os.geteuid() == 0, "this test needs root for a private mount namespace: run ./run-tests as root (CI does)"
    # The test root's os-release (ID=debian VERSION_ID=12) is what the images' release files
    # name, as the fixture base's os-release does.
    assert "ID=debian\nVERSION_ID=12\n" in (FIXTURE_BASE / "usr/lib/os-release").read_text()

    # Both extensions: jq from the upper one runs with libonig from the lower one.
    both = tmp_path / "both"
    _make_root(both, stack.jq_stacked, "jq-stacked")
    shutil.copy(stack.oniguruma, both / "var/lib/extensions/oniguruma.raw")
    proc = _in_namespace(both, f"ldconfig -r {both}\n" + _RUN_JQ.format(root=both))
    out = proc.stdout
    assert proc.returncode == 0 and "merge failed" not in out, out + proc.stderr
    assert "Using extensions 'jq-stacked', 'oniguruma'." in proc.stderr + out, proc.stderr
    assert "== jq --version\njq-1.6\n" in out, out
    assert "== jq filter\n[10,20,30]\n" in out, out
    libs = out.split("== libraries\n", 1)[1].split("== end", 1)[0]
    assert "libonig.so.5 => /usr/lib64/libonig.so.5" in libs, libs
    assert "libjq.so.1 => /usr/lib64/libjq.so.1" in libs, libs
    assert "not found" not in libs, libs
    assert not (both / "usr/bin/jq").exists(), "nothing is merged outside the namespace"

    # The upper extension alone: jq is there but its libonig is not.
    alone = tmp_path / "alone"
    _make_root(alone, stack.jq_stacked, "jq-stacked")
    proc = _in_namespace(alone, f"ldconfig -r {alone}\n" + _RUN_JQ.format(root=alone))
    out = proc.stdout
    assert "Using extensions 'jq-stacked'." in proc.stderr + out, proc.stderr
    assert "libonig.so.5: cannot open shared object file" in out, out
    assert "jq failed:" in out, out


# -- the Packages header `URI` ------------------------------------------------------------------


def test_index_uri_header_points_at_where_the_packages_are(env: Env) -> None:
    """A binhost whose `Packages` says `URI: …` keeps its binpkgs there: the lock pins those
    URLs, and `package` downloads from them."""
    repo = env.copy("uri-header")
    index_only = repo / "third_party_index"
    index_only.mkdir()
    text = (FIXTURE_BINHOST / "Packages").read_text()
    header, rest = text.split("\n\n", 1)
    (index_only / "Packages").write_text(f"{header}\nURI: {env.server.url}/binhost\n\n{rest}")
    (repo / "extensions/jq-uri").mkdir()
    (repo / "extensions/jq-uri/BUILD").write_text(
        'binpkg_set(name="pkgs", packages=["app-misc/jq"], binhost="//third_party_index",\n'
        '           base="3rdparty/bases:fixture")\n'
        'sysext_image(name="jq-uri", packages=[":pkgs"], base="3rdparty/bases:fixture")\n'
    )
    before = len(env.server.gets())
    run = run_pants(repo, "generate-lockfiles", "--resolve=pkgs", store=env.fresh_store("uri-gen"))
    assert run.returncode == 0, run.output
    lock = _lock(repo / "extensions/jq-uri/pkgs.lock.json")
    assert [p["url"] for p in lock["packages"]] == [
        f"{env.server.url}/binhost/{JQ_PATH}",
        f"{env.server.url}/binhost/{ONIG_PATH}",
    ]
    run = run_pants(repo, "package", "extensions/jq-uri:jq-uri", store=env.fresh_store("uri-pkg"))
    assert run.returncode == 0, run.output
    fetched = env.server.gets()[before:]
    assert fetched.count(f"/binhost/{JQ_PATH}") == 2  # hashed for the lock, then downloaded
    assert fetched.count(f"/binhost/{ONIG_PATH}") == 2
    assert "/usr/bin/jq" in _files(repo / "dist/extensions.jq-uri/jq-uri.raw")
