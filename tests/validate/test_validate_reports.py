"""The reports, and the step run as the sandbox runs it: system python3, stdlib + elftools."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import elftools

from pants_sysext.sandbox import validate as validate_module
from pants_sysext.sandbox.reports import contents_lines, disk_usage_lines, packages_lines
from pants_sysext.sandbox.manifest import read_manifest
from tests.validate.helpers import (
    JQ,
    ONIG,
    SRC,
    SYSTEM_PYTHON,
    glibc_base,
    installed,
    member_bytes,
    stage_tree,
    write_package,
)

JQ_CONTENTS = """\
drwxr-xr-x     0     0          0 /usr
drwxr-xr-x     0     0          0 /usr/bin
-rwxr-xr-x     0     0      30800 /usr/bin/jq
drwxr-xr-x     0     0          0 /usr/lib
drwxr-xr-x     0     0          0 /usr/lib/extension-release.d
-rw-r--r--     0     0          8 /usr/lib/extension-release.d/extension-release.jq
drwxr-xr-x     0     0          0 /usr/lib64
lrwxrwxrwx     0     0         14 /usr/lib64/libjq.so.1 -> libjq.so.1.0.4
-rwxr-xr-x     0     0     321632 /usr/lib64/libjq.so.1.0.4
lrwxrwxrwx     0     0         16 /usr/lib64/libonig.so.5 -> libonig.so.5.3.0
-rwxr-xr-x     0     0     614016 /usr/lib64/libonig.so.5.3.0
drwxr-xr-x     0     0          0 /usr/share
drwxr-xr-x     0     0          0 /usr/share/doc
drwxr-xr-x     0     0          0 /usr/share/doc/jq-1.6-r3
-rw-r--r--     0     0       1533 /usr/share/doc/jq-1.6-r3/README.bz2
drwxr-xr-x     0     0          0 /usr/share/doc/oniguruma-6.9.8
-rw-r--r--     0     0       1366 /usr/share/doc/oniguruma-6.9.8/COPYING.bz2
drwxr-xr-x     0     0          0 /usr/share/man
drwxr-xr-x     0     0          0 /usr/share/man/man1
-rw-r--r--     0     0      26821 /usr/share/man/man1/jq.1.bz2
"""

JQ_DISK_USAGE = """\
# jq: apparent size of regular files in bytes (hard links counted once)

       bytes   files  directory
      935648       2  /usr/lib64
       30800       1  /usr/bin
       29720       3  /usr/share
           8       1  /usr/lib
      996176       7  total

       bytes   files  package
      615382       2  dev-libs/oniguruma-6.9.8
      380786       4  app-misc/jq-1.6-r3
           8       1  sysext
      996176       7  total
"""


def _spec(path: Path, tree: Path, base: Path | None, **extra) -> Path:
    data = {
        "name": "jq",
        "architecture": "x86-64",
        "tar": os.path.relpath(tree / "staged.tar", path.parent),
        "manifest": os.path.relpath(tree / "manifest.jsonl", path.parent),
        "base": os.path.relpath(base, path.parent) if base else None,
        "stacked": [],
        "allow_missing_libraries": [],
        "shadow": "warn",
        "packages": [{"cpv": JQ, "repo": "portage-stable"}, {"cpv": ONIG, "repo": None}],
    }
    data.update(extra)
    path.write_text(json.dumps(data, sort_keys=True))
    return path


def test_reports_of_the_jq_image(tmp_path, fixture_packages, capsys, monkeypatch) -> None:
    tree = stage_tree(tmp_path, [fixture_packages["jq"], fixture_packages["onig"]])
    _spec(tmp_path / "validate.json", tree, glibc_base(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert validate_module.main(["validate.json", "out"]) == 0
    assert capsys.readouterr().out == "jq is valid: 20 entries, 3 ELF files, 0 warnings\n"
    out = tmp_path / "out"
    assert sorted(os.listdir(out)) == [
        "jq_contents.txt", "jq_disk_usage.txt", "jq_packages.txt", "validation.json",
    ]
    assert (out / "jq_packages.txt").read_text() == (
        "app-misc/jq-1.6-r3::portage-stable\ndev-libs/oniguruma-6.9.8::gentoo\n"
    )
    assert (out / "jq_contents.txt").read_text() == JQ_CONTENTS
    assert (out / "jq_disk_usage.txt").read_text() == JQ_DISK_USAGE
    assert json.loads((out / "validation.json").read_text()) == {
        "allowed_missing_libraries": [], "elf_files": 3, "errors": [], "warnings": [],
    }


def test_hard_links_setuid_and_packages_without_a_repo(tmp_path) -> None:
    pkg = write_package(tmp_path, "sys-fs/fuse-3.14.0", [
        ("usr/bin/fusermount3", "file", 0o4755, b"x" * 10),
        ("usr/bin/fusermount", "hardlink", 0o4755, "usr/bin/fusermount3"),
        ("usr/share/fuse", "dir", 0o2750, None),
    ])
    tree = stage_tree(tmp_path, [pkg], name="fuse")
    with open(tree / "manifest.jsonl") as f:
        entries = list(read_manifest(f))
    assert list(contents_lines(entries)) == [
        "drwxr-xr-x     0     0          0 /usr",
        "drwxr-xr-x     0     0          0 /usr/bin",
        "-rwsr-xr-x     0     0         10 /usr/bin/fusermount",
        "-rwsr-xr-x     0     0         10 /usr/bin/fusermount3 link to /usr/bin/fusermount",
        "drwxr-xr-x     0     0          0 /usr/lib",
        "drwxr-xr-x     0     0          0 /usr/lib/extension-release.d",
        "-rw-r--r--     0     0          8 /usr/lib/extension-release.d/extension-release.fuse",
        "drwxr-xr-x     0     0          0 /usr/share",
        "drwxr-s---     0     0          0 /usr/share/fuse",
    ]
    assert disk_usage_lines("fuse", entries)[2:5] == [
        "       bytes   files  directory",
        "          10       1  /usr/bin",
        "           8       1  /usr/lib",
    ]
    assert packages_lines({}, entries) == ["sys-fs/fuse-3.14.0::gentoo"]
    assert packages_lines({"sys-fs/fuse-3.14.0": "\n"}, entries) == ["sys-fs/fuse-3.14.0::gentoo"]


def _sandbox(tmp_path: Path) -> Path:
    """A directory laid out like the Pants sandbox: our code and pyelftools' source, no more."""
    sandbox = tmp_path / "sandbox"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(SRC / "pants_sysext", sandbox / "pants_sysext", ignore=ignore)
    shutil.copytree(os.path.dirname(elftools.__file__), sandbox / "elftools", ignore=ignore)
    return sandbox


def _run_sandboxed(sandbox: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [SYSTEM_PYTHON, "-E", "-s", "-B", "-m", "pants_sysext.sandbox.validate", "validate.json", "out"],
        cwd=sandbox, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"},
    )


def test_runs_with_the_system_python_and_only_elftools(tmp_path, fixture_packages) -> None:
    version = subprocess.run(
        [SYSTEM_PYTHON, "-E", "-s", "-c", "import sys; print(sys.version_info[:2])"],
        capture_output=True, text=True, check=True,
    ).stdout
    assert version.strip() == "(3, 11)"
    sandbox = _sandbox(tmp_path)
    jq = member_bytes(fixture_packages["jq"], "usr/bin/jq")
    base = glibc_base(sandbox, installed("app-misc/jq-1.6-r2", "", [f"obj /usr/bin/jq {hashlib.md5(jq).hexdigest()} 1"]))

    # jq alone: the missing library fails the step, naming the binary and the soname.
    broken = stage_tree(sandbox, [fixture_packages["jq"]], label="broken")
    _spec(sandbox / "validate.json", broken, base)
    proc = _run_sandboxed(sandbox)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: The extension jq is not valid (1 problem):\n\n")
    assert f"  /usr/lib64/libjq.so.1.0.4 ({JQ}) → libonig.so.5\n" in proc.stderr
    assert f"      loaded by /usr/bin/jq ({JQ}) via libjq.so.1\n" in proc.stderr
    assert proc.stdout.startswith(f"warning: /usr/bin/jq ({JQ}) shadows the base's file /usr/bin/jq")
    assert not (sandbox / "out").exists()

    # With oniguruma: valid, one warning, the reports.
    tree = stage_tree(sandbox, [fixture_packages["jq"], fixture_packages["onig"]], label="tree")
    _spec(sandbox / "validate.json", tree, base)
    proc = _run_sandboxed(sandbox)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    warning, summary = proc.stdout.splitlines()
    assert warning.startswith(f"warning: /usr/bin/jq ({JQ}) shadows the base's file /usr/bin/jq")
    assert summary == "jq is valid: 20 entries, 3 ELF files, 1 warnings"
    assert (sandbox / "out/jq_contents.txt").read_text() == JQ_CONTENTS
    assert json.loads((sandbox / "out/validation.json").read_text())["warnings"] == [warning[len("warning: "):]]
    assert not list(sandbox.rglob("__pycache__"))  # -B: nothing written next to the code


def test_a_malformed_spec_is_an_error_not_a_traceback(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "validate.json").write_text(json.dumps({"name": "jq", "tar": "x", "manifest": "y", "shadow": "maybe"}))
    assert validate_module.main(["validate.json", "out"]) == 2
    assert capsys.readouterr().err == (
        "error: cannot validate: SpecError: `shadow` must be one of warn, error, not 'maybe'\n"
    )
    (tmp_path / "validate.json").write_text(json.dumps({"name": "jq", "tar": "x", "manifest": "y"}))
    assert validate_module.main(["validate.json", "out"]) == 2
    assert "error: cannot validate: FileNotFoundError" in capsys.readouterr().err
