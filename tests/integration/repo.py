"""Helpers for tests that run `./pants` for real in throw-away copies of this repository."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Our sandboxed steps log "Completed: <description>" at INFO only when they really run (a
# cache hit logs nothing at INFO), so these lines count executed processes.
_STEP_RE = re.compile(r"Completed: ((?:Unpacking|Staging|Validating|Squashing) \S+)")
_COUNTER_RE = re.compile(r"^\s+([a-z_]+): (\d+)$", re.M)


def _repo_files() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, check=True, capture_output=True,
    ).stdout.decode()
    return [p for p in out.split("\0") if p and (REPO / p).exists()]


def copy_repo(dest: Path) -> Path:
    """Copy what git tracks (plus new, not ignored files): a stand-in for a fresh clone."""
    for rel in _repo_files():
        src, dst = REPO / rel, dest / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            os.symlink(os.readlink(src), dst)
        else:
            shutil.copy2(src, dst)
    return dest


@dataclass
class PantsRun:
    returncode: int
    output: str

    @property
    def steps(self) -> list[str]:
        """The sandboxed steps that ran (not cache hits)."""
        return _STEP_RE.findall(self.output)

    @property
    def counters(self) -> dict[str, int]:
        return {k: int(v) for k, v in _COUNTER_RE.findall(self.output)}


def run_pants(repo: Path, *args: str, store: Path, umask: int | None = None, env: dict | None = None) -> PantsRun:
    """`./pants --no-pantsd …` in `repo`, with its own local store (and so its own cache)."""
    cmd = [
        "./pants",
        "--no-pantsd",
        "--no-dynamic-ui",
        "--stats-log",
        f"--local-store-dir={store}/lmdb_store",
        f"--named-caches-dir={store}/named_caches",
        *args,
    ]
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PANTS_")}
    full_env.update(env or {})
    proc = subprocess.run(
        cmd,
        cwd=repo,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=(lambda: os.umask(umask)) if umask is not None else None,
        timeout=900,
    )
    return PantsRun(proc.returncode, proc.stdout.decode("utf-8", "replace"))


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
