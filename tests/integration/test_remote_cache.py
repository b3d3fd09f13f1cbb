"""A shared REAPI remote cache (BuildGrid, build-support/buildgrid/) between two clones, and a
build that survives the cache server going away.

Each clone gets its own, initially empty, local store; `pants.ci.toml` turns the remote cache
on, and the test only overrides its address with the port of the server it started.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from tests.integration.conftest import FUSE_PPP, JQ
from tests.integration.repo import REPO, PantsRun, copy_repo, run_pants, sha256

SERVER_SH = REPO / "build-support/buildgrid/server.sh"
OUR_STEPS = sorted(
    [
        "Unpacking jq-1.6-r3.gpkg.tar", "Unpacking oniguruma-6.9.8.gpkg.tar",
        "Unpacking fuse-3.14.0.gpkg.tar", "Unpacking ppp-2.4.9-r1.tbz2",
        "Staging jq", "Staging fuse-ppp", "Validating jq", "Validating fuse-ppp",
            "Squashing jq.raw", "Squashing fuse-ppp.raw",
    ]
)


@dataclass
class BuildGrid:
    address: str
    run_dir: Path

    def _script(self, command: str, check: bool = True) -> subprocess.CompletedProcess:
        env = {**os.environ, "BUILDGRID_RUN_DIR": str(self.run_dir)}
        return subprocess.run(
            [str(SERVER_SH), command], env=env, capture_output=True, text=True, timeout=300, check=check
        )

    def stop(self) -> None:
        self._script("stop")

    def running(self) -> bool:
        return self._script("status", check=False).returncode == 0

    def log(self) -> str:
        log = self.run_dir / "buildgrid.log"
        return log.read_text(errors="replace") if log.exists() else "(no log)"


@pytest.fixture(scope="module")
def buildgrid(tmp_path_factory) -> Iterator[BuildGrid]:
    """The BuildGrid server `.ci/run` started (its run dir in PANTS_SYSEXT_BUILDGRID_RUN_DIR),
    or, outside CI, one on a free port of 127.0.0.1 for this module; stopped whatever happens."""
    shared = os.environ.get("PANTS_SYSEXT_BUILDGRID_RUN_DIR")
    run_dir = Path(shared) if shared else tmp_path_factory.mktemp("buildgrid")
    env = {**os.environ, "BUILDGRID_RUN_DIR": str(run_dir), "BUILDGRID_PORT": "0"}
    server = BuildGrid(address="", run_dir=run_dir)
    try:
        # The first use creates the BuildGrid venv (pip install, ~25 s); later ones start at once.
        # `start` on a running server only prints its address.
        proc = subprocess.run(
            [str(SERVER_SH), "start"], env=env, capture_output=True, text=True, timeout=600
        )
        assert proc.returncode == 0, f"server.sh start failed:\n{proc.stdout}\n{proc.stderr}"
        server.address = proc.stdout.strip().splitlines()[-1]
        assert server.address.startswith("grpc://127.0.0.1:"), proc.stdout
        assert server.running(), server.log()
        yield server
    finally:
        server.stop()


def _build(repo: Path, store: Path, address: str) -> PantsRun:
    return run_pants(
        repo,
        "--pants-config-files=pants.ci.toml",
        f"--remote-store-address={address}",
        "package", JQ, FUSE_PPP,
        store=store,
    )


def test_second_clone_takes_every_step_from_the_remote_cache(buildgrid: BuildGrid, tmp_path_factory) -> None:
    root_a = tmp_path_factory.mktemp("remote-clone-a")
    repo_a = copy_repo(root_a / "repo")
    a = _build(repo_a, root_a / "cache", buildgrid.address)
    assert a.returncode == 0, a.output
    # The server is new and A's store empty: A runs every step and uploads each result.
    assert sorted(a.steps) == OUR_STEPS, a.output
    assert a.counters["remote_cache_write_successes"] >= len(OUR_STEPS), (a.counters, buildgrid.log())
    assert a.counters["remote_cache_write_errors"] == 0, a.output

    root_b = tmp_path_factory.mktemp("remote-clone-b-elsewhere")
    repo_b = copy_repo(root_b / "some" / "other" / "checkout")
    b = _build(repo_b, root_b / "empty-cache", buildgrid.address)
    print("B:", {k: v for k, v in b.counters.items() if k.startswith("remote_")})
    assert b.returncode == 0, b.output
    assert b.steps == [], f"B ran steps instead of using the remote cache:\n{b.output}"
    assert b.counters["remote_cache_requests_cached"] >= len(OUR_STEPS), b.counters
    assert b.counters["remote_cache_read_errors"] == 0, b.output
    # All answers came from BuildGrid, none from a local run that won the race.
    assert b.counters["remote_cache_speculation_local_completed_first"] == 0, b.counters
    for image in ("dist/extensions.jq/jq.raw", "dist/extensions.fuse-ppp/fuse-ppp.raw"):
        assert sha256(repo_b / image) == sha256(repo_a / image), image


def test_build_without_the_server_warns_and_builds_locally(buildgrid: BuildGrid, tmp_path_factory) -> None:
    buildgrid.stop()
    assert not buildgrid.running()

    root = tmp_path_factory.mktemp("remote-clone-c")
    repo = copy_repo(root / "repo")
    c = _build(repo, root / "cache", buildgrid.address)
    print("C:", {k: v for k, v in c.counters.items() if k.startswith("remote_")})
    print("C warnings:", *sorted({l.split("[WARN]")[-1].replace("\x1b[0m", "").strip() for l in c.output.splitlines() if "remote cache" in l}), sep="\n  ")
    assert c.returncode == 0, c.output
    assert sorted(c.steps) == OUR_STEPS, c.output
    assert (repo / "dist/extensions.jq/jq.raw").is_file()
    assert (repo / "dist/extensions.fuse-ppp/fuse-ppp.raw").is_file()
    # Pants 2.17.1's words (remote_cache_warnings = "backoff": the 1st, 2nd, 4th, 8th … of each).
    assert "[WARN]" in c.output and "Failed to read from remote cache (1 occurrences so far): Unavailable" in c.output, c.output
    assert "Failed to write to remote cache (1 occurrences so far): Unavailable" in c.output, c.output
    assert "tcp connect error: Connection refused" in c.output, c.output
    # Every step looked the server up and tried to upload its result (a lookup still pending
    # when the local run finished first is dropped, uncounted).
    assert c.counters["remote_cache_requests"] == len(OUR_STEPS), c.counters
    assert 1 <= c.counters["remote_cache_read_errors"] <= len(OUR_STEPS), c.counters
    assert c.counters["remote_cache_write_errors"] == len(OUR_STEPS), c.counters
    assert c.counters["remote_cache_requests_cached"] == 0, c.counters
