"""Build a real, signed, local apt repository from the fixture `.deb` files.

`Packages` is written by `dpkg-scanpackages`, `Release` by hand (apt-ftparchive is not installed),
and both signatures by a throw-away GnuPG key made in a temporary GNUPGHOME.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import lzma
import os
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

from tests.debian.deb_builders import FIXTURE_DEBS, fixture_deb

SUITE = "bookworm"
COMPONENT = "main"
ARCH = "amd64"
INDEX_DIR = f"{COMPONENT}/binary-{ARCH}"
TEST_KEY = "Test Repo <test@example.org>"
OTHER_KEY = "Other Key <other@example.org>"


def release_date(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime("%a, %d %b %Y %H:%M:%S UTC")


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def release_text(
    suite_dir: Path,
    relpaths: list[str],
    *,
    date: datetime | None = None,
    valid_until: datetime | None = None,
) -> str:
    now = datetime.now(timezone.utc)
    date = date or now - timedelta(minutes=5)
    valid_until = valid_until or now + timedelta(days=7)
    lines = [
        "Origin: Test",
        "Label: Test",
        f"Suite: {SUITE}",
        f"Codename: {SUITE}",
        f"Date: {release_date(date)}",
        f"Valid-Until: {release_date(valid_until)}",
        f"Architectures: {ARCH}",
        f"Components: {COMPONENT}",
        "Description: throw-away test repository",
        "SHA256:",
    ]
    for relpath in relpaths:
        path = suite_dir / relpath
        lines.append(f" {sha256_file(path)} {path.stat().st_size:>8} {relpath}")
    return "\n".join(lines) + "\n"


class GnuPG:
    """A temporary GnuPG home (short path: the agent's socket lives in it)."""

    def __init__(self) -> None:
        self.home = tempfile.mkdtemp(prefix="gpg.", dir="/tmp")
        os.chmod(self.home, 0o700)
        self.env = {**os.environ, "GNUPGHOME": self.home, "LC_ALL": "C"}

    def run(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["gpg", "--batch", "--quiet", "--no-tty", *args],
            env=self.env,
            check=True,
            capture_output=True,
            **kwargs,
        )

    def gen_key(self, uid: str) -> None:
        self.run("--passphrase", "", "--quick-gen-key", uid, "ed25519", "sign", "never")

    def export(self, uid: str, path: Path, *, armor: bool = False) -> Path:
        out = self.run(*(["--armor"] if armor else []), "--export", uid).stdout
        assert out, f"no key exported for {uid}"
        path.write_bytes(out)
        return path

    def clearsign(self, src: Path, dst: Path, *uids: str) -> Path:
        users = [arg for uid in uids for arg in ("--local-user", uid)]
        self.run("--yes", *users, "--digest-algo", "SHA256", "--clearsign", "-o", str(dst), str(src))
        return dst

    def detach_sign(self, src: Path, dst: Path, uid: str) -> Path:
        self.run("--yes", "--local-user", uid, "--detach-sign", "-o", str(dst), str(src))
        return dst

    def close(self) -> None:
        subprocess.run(
            ["gpgconf", "--kill", "all"], env=self.env, check=False, capture_output=True
        )
        shutil.rmtree(self.home, ignore_errors=True)


@dataclass
class Repo:
    root: Path
    suite_dir: Path
    keyring: Path
    keyring_asc: Path
    other_keyring: Path
    gpg: GnuPG

    @property
    def inrelease(self) -> Path:
        return self.suite_dir / "InRelease"

    @property
    def release(self) -> Path:
        return self.suite_dir / "Release"

    def index(self, name: str = "Packages.xz") -> Path:
        return self.suite_dir / INDEX_DIR / name


def build_repo(root: Path) -> Repo:
    pool = root / "pool" / COMPONENT
    pool.mkdir(parents=True)
    for name in FIXTURE_DEBS:
        shutil.copyfile(fixture_deb(name), pool / name)
    suite_dir = root / "dists" / SUITE
    index_dir = suite_dir / INDEX_DIR
    index_dir.mkdir(parents=True)
    packages = subprocess.run(
        ["dpkg-scanpackages", "--multiversion", "pool", "/dev/null"],
        cwd=root,
        check=True,
        capture_output=True,
    ).stdout
    assert packages.count(b"\nPackage: ") + packages.startswith(b"Package: ") == len(FIXTURE_DEBS)
    (index_dir / "Packages").write_bytes(packages)
    (index_dir / "Packages.xz").write_bytes(lzma.compress(packages, format=lzma.FORMAT_XZ))
    (index_dir / "Packages.gz").write_bytes(gzip.compress(packages, mtime=0))
    relpaths = [f"{INDEX_DIR}/{name}" for name in ("Packages", "Packages.gz", "Packages.xz")]
    (suite_dir / "Release").write_text(release_text(suite_dir, relpaths))

    gpg = GnuPG()
    gpg.gen_key(TEST_KEY)
    gpg.gen_key(OTHER_KEY)
    keys = root.parent / "keys"
    keys.mkdir()
    repo = Repo(
        root=root,
        suite_dir=suite_dir,
        keyring=gpg.export(TEST_KEY, keys / "test.gpg"),
        keyring_asc=gpg.export(TEST_KEY, keys / "test.asc", armor=True),
        other_keyring=gpg.export(OTHER_KEY, keys / "other.gpg"),
        gpg=gpg,
    )
    gpg.clearsign(repo.release, repo.inrelease, TEST_KEY)
    gpg.detach_sign(repo.release, suite_dir / "Release.gpg", TEST_KEY)
    return repo


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args) -> None:  # noqa: A002
        pass


class Server:
    """An HTTP server on 127.0.0.1 (a free port) serving `root`, in a thread."""

    def __init__(self, root: Path) -> None:
        handler = functools.partial(_QuietHandler, directory=str(root))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


def serve(root: Path) -> Iterator[Server]:
    server = Server(root)
    try:
        yield server
    finally:
        server.close()
