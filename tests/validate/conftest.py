from __future__ import annotations

from pathlib import Path

import pytest

from pants_sysext.sandbox.stage import PackageImage
from tests.validate.helpers import unpack


@pytest.fixture(scope="session")
def fixture_packages(tmp_path_factory) -> dict[str, PackageImage]:
    """jq (zstd GPKG) and oniguruma (xz GPKG), unpacked by the unpack step."""
    root: Path = tmp_path_factory.mktemp("unpacked")
    jq = unpack("app-misc/jq-1.6-r3.gpkg.tar", root / "jq")
    onig = unpack("dev-libs/oniguruma-6.9.8.gpkg.tar", root / "onig")
    return {"jq": jq, "onig": onig}
