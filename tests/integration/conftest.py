from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.repo import copy_repo, run_pants

JQ = "extensions/jq:jq"
FUSE_PPP = "extensions/fuse-ppp:fuse-ppp"


@dataclass(frozen=True)
class Build:
    repo: Path
    store: Path
    output: str

    @property
    def jq(self) -> Path:
        return self.repo / "dist/extensions.jq/jq.raw"

    @property
    def fuse_ppp(self) -> Path:
        return self.repo / "dist/extensions.fuse-ppp/fuse-ppp.raw"


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> Build:
    """The jq and fuse-ppp images, built by `./pants package` in a copy of the repository."""
    root = tmp_path_factory.mktemp("clone-a")
    repo = copy_repo(root / "repo")
    store = root / "cache"
    run = run_pants(repo, "package", JQ, FUSE_PPP, store=store)
    assert run.returncode == 0, run.output
    return Build(repo, store, run.output)
