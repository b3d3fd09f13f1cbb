"""The readers run in sandboxes on Debian's own interpreter with the standard library only."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from pants_sysext.formats.deb import open_deb_image
from tests.debian.deb_builders import FIXTURE_DEBS, fixture_deb, reader_entries

SYSTEM_PYTHON = "/usr/bin/python3"
SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                   "src", "python")

SCRIPT = r"""
import hashlib, json, sys
sys.path.insert(0, sys.argv[1])
from pants_sysext.formats import apt_archive, deb, deb822, dpkg_status
from pants_sysext.formats.deb import open_deb_image

rows = []
with open_deb_image(sys.argv[2]) as (info, entries):
    for entry, data in entries:
        sha = hashlib.sha256(data.read()).hexdigest() if data is not None else None
        rows.append([entry.path, entry.type, entry.mode, entry.uid, entry.gid, entry.uname,
                     entry.gname, entry.mtime, entry.size, sha, entry.linkname])
third_party = sorted(
    name for name, module in sys.modules.items()
    if name.split(".")[0] not in sys.stdlib_module_names and name.split(".")[0] != "pants_sysext"
    and getattr(module, "__file__", None)
)
print(json.dumps({"label": info.label, "rows": rows, "third_party": third_party,
                  "version": list(sys.version_info[:2])}))
"""


@pytest.mark.skipif(not os.path.exists(SYSTEM_PYTHON), reason="no /usr/bin/python3")
@pytest.mark.parametrize("name", [FIXTURE_DEBS[0], FIXTURE_DEBS[-1]])
def test_system_python_reads_debs_like_the_venv(name: str) -> None:
    version = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import sys; print(sys.version_info >= (3, 10))"],
        stdout=subprocess.PIPE, text=True, check=True,
    ).stdout.strip()
    if version != "True":
        pytest.skip("sys.stdlib_module_names needs Python >= 3.10")
    out = subprocess.run(
        [SYSTEM_PYTHON, "-I", "-S", "-c", SCRIPT, SRC, fixture_deb(name)],
        stdout=subprocess.PIPE,
        check=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"},
    ).stdout
    result = json.loads(out)
    assert result["third_party"] == []
    with open_deb_image(fixture_deb(name)) as (info, entries):
        assert [list(row) for row in reader_entries(entries)] == result["rows"]
    assert result["label"] == info.label
