from __future__ import annotations

import shutil

import pytest

from tests.debian.apt_repo import build_repo, serve

_TOOLS = ("gpg", "gpgv", "gpgconf", "dpkg-scanpackages", "dpkg-deb")


@pytest.fixture(scope="session")
def repo(tmp_path_factory):
    """A signed apt repository of the six fixture debs (shared: tests must not modify it)."""
    missing = [tool for tool in _TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)}")
    repo = build_repo(tmp_path_factory.mktemp("apt") / "repo")
    try:
        yield repo
    finally:
        repo.gpg.close()


@pytest.fixture(scope="session")
def server(repo):
    yield from serve(repo.root)
