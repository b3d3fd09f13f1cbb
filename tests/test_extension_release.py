"""The extension-release file: architecture names, rendering, key checks, and shell parsing."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from pants_sysext.extension_release import (
    ARCHITECTURES,
    RESERVED_RELEASE_KEYS,
    ExtensionRelease,
    architecture_from_chost,
    architecture_from_keyword,
    quote_value,
    validate_release_key,
)

BASH = "/usr/bin/bash" if os.path.exists("/usr/bin/bash") else "/bin/bash"


@pytest.mark.parametrize(
    "chost, arch",
    [
        ("x86_64-pc-linux-gnu", "x86-64"),
        ("x86_64-gentoo-linux-musl", "x86-64"),
        ("aarch64-unknown-linux-gnu", "arm64"),
        ("aarch64_be-unknown-linux-gnu", "arm64-be"),
        ("i686-pc-linux-gnu", "x86"),
        ("i486-pc-linux-gnu", "x86"),
        ("riscv64-unknown-linux-gnu", "riscv64"),
        ("riscv32-unknown-linux-gnu", "riscv32"),
        ("powerpc64le-unknown-linux-gnu", "ppc64-le"),
        ("powerpc64-unknown-linux-gnu", "ppc64"),
        ("powerpc-unknown-linux-gnu", "ppc"),
        ("armv7a-unknown-linux-gnueabihf", "arm"),
        ("armv6j-unknown-linux-gnueabihf", "arm"),
        ("arm-unknown-linux-gnueabi", "arm"),
        ("armeb-unknown-linux-gnueabi", "arm-be"),
        ("armv5teb-softfloat-linux-gnueabi", "arm-be"),
        ("armv7b-unknown-linux-gnueabi", "arm-be"),
        ("s390x-ibm-linux-gnu", "s390x"),
        ("loongarch64-unknown-linux-gnu", "loongarch64"),
        ("mips64el-unknown-linux-gnuabi64", "mips64-le"),
        ("mipsel-unknown-linux-gnu", "mips-le"),
        ("hppa2.0-unknown-linux-gnu", "parisc"),
        ("sparc64-unknown-linux-gnu", "sparc64"),
        (" x86_64-pc-linux-gnu\n", "x86-64"),
        ("unknown", None),
        ("unknown-pc-linux-gnu", None),
        ("x86-64-pc-linux-gnu", None),
        ("", None),
    ],
)
def test_architecture_from_chost(chost: str, arch: str | None) -> None:
    assert architecture_from_chost(chost) == arch
    if arch is not None:
        assert arch in ARCHITECTURES


@pytest.mark.parametrize(
    "keyword, arch",
    [("amd64", "x86-64"), ("arm64", "arm64"), ("x86", "x86"), ("ppc64el", "ppc64-le"),
     ("riscv", "riscv64"), ("armhf", "arm"), (" amd64 ", "x86-64"), ("nonsense", None)],
)
def test_architecture_from_keyword(keyword: str, arch: str | None) -> None:
    assert architecture_from_keyword(keyword) == arch


# A value with spaces, both quote kinds, `$`, a backtick and a backslash.
SYSEXT_NAME = 'Docker "CE" 24.0 for $USER\'s `host` C:\\docker'


def _flatcar() -> ExtensionRelease:
    return ExtensionRelease.create(
        name="docker",
        os_id="flatcar",
        version_id="3975.2.0",
        architecture="x86-64",
        extra={"SYSEXT_NAME": SYSEXT_NAME, "SYSEXT_ID": "docker", "EXTENSION_RELOAD_MANAGER": "1"},
    )


def test_render_flatcar_like() -> None:
    release = _flatcar()
    assert release.path == "usr/lib/extension-release.d/extension-release.docker"
    assert release.render() == (
        "ID=flatcar\n"
        "VERSION_ID=3975.2.0\n"
        "ARCHITECTURE=x86-64\n"
        "EXTENSION_RELOAD_MANAGER=1\n"
        "SYSEXT_ID=docker\n"
        'SYSEXT_NAME="Docker \\"CE\\" 24.0 for \\$USER\'s \\`host\\` C:\\\\docker"\n'
    )


def test_render_minimal_and_sysext_level() -> None:
    assert ExtensionRelease.create(name="x", os_id="_any").render() == "ID=_any\n"
    release = ExtensionRelease.create(
        name="x", os_id="debian", sysext_level="1.0", extra=[("Z_KEY", "z"), ("A_KEY", "")]
    )
    assert release.render() == 'ID=debian\nSYSEXT_LEVEL=1.0\nA_KEY=""\nZ_KEY=z\n'


@pytest.mark.parametrize(
    "value, rendered",
    [
        ("3975.2.0", "3975.2.0"),
        ("x86-64", "x86-64"),
        ("a:b/c+d@e%f=g,h", "a:b/c+d@e%f=g,h"),
        ("1.0~rc1", '"1.0~rc1"'),
        ("~", '"~"'),
        ("", '""'),
        ("two words", '"two words"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("$HOME", '"\\$HOME"'),
        ("`id`", '"\\`id\\`"'),
        ("back\\slash", '"back\\\\slash"'),
        ("it's", "\"it's\""),
        ("semi;colon", '"semi;colon"'),
    ],
)
def test_quote_value(value: str, rendered: str) -> None:
    assert quote_value(value) == rendered


@pytest.mark.parametrize(
    "key, field", [("ID", "os_id"), ("VERSION_ID", "version_id"),
                   ("SYSEXT_LEVEL", "sysext_level"), ("ARCHITECTURE", "architecture")],
)
def test_reserved_keys_are_refused(key: str, field: str) -> None:
    assert key in RESERVED_RELEASE_KEYS
    with pytest.raises(ValueError) as e:
        ExtensionRelease.create(name="docker", os_id="flatcar", extra={key: "x"})
    message = str(e.value)
    assert repr(key) in message
    assert f"`{field}` field" in message
    assert validate_release_key(key) == f"set it with the `{field}` field instead."


@pytest.mark.parametrize("key", ["lower", "Mixed_Case", "1ABC", "_X", "SYS-EXT", "A B", "", "É"])
def test_bad_keys_are_refused(key: str) -> None:
    with pytest.raises(ValueError, match="keys must be upper-case letters, digits and `_`"):
        ExtensionRelease.create(name="docker", os_id="flatcar", extra=[(key, "x")])


@pytest.mark.parametrize("key", ["SYSEXT_ID", "A", "X1_2", "EXTENSION_RELOAD_MANAGER"])
def test_good_keys_are_accepted(key: str) -> None:
    assert validate_release_key(key) is None


def _parse_with_shell(path: Path, keys: list[str]) -> dict[str, str]:
    """os-release(5) files are shell-compatible: source one in a clean bash and print the values."""
    script = 'set -a; . "$1"; shift; for k in "$@"; do printf "%s=%s\\0" "$k" "${!k}"; done'
    proc = subprocess.run(
        # A fixed HOME, so that a tilde expansion shows up the same on every machine.
        ["/usr/bin/env", "-i", "HOME=/home-of-the-test", BASH, "-c", script, "bash", str(path),
         *keys],
        cwd=path.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        check=True,
    )
    assert proc.stderr == b""
    out = proc.stdout.decode("utf-8").split("\0")
    assert out[-1] == ""
    return dict(item.split("=", 1) for item in out[:-1])


def test_rendered_file_round_trips_through_the_shell(tmp_path: Path) -> None:
    release = _flatcar()
    path = tmp_path / "extension-release.docker"
    path.write_text(release.render(), encoding="utf-8")
    expected = {
        "ID": "flatcar",
        "VERSION_ID": "3975.2.0",
        "ARCHITECTURE": "x86-64",
        "EXTENSION_RELOAD_MANAGER": "1",
        "SYSEXT_ID": "docker",
        "SYSEXT_NAME": SYSEXT_NAME,
    }
    assert _parse_with_shell(path, list(expected)) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        " leading and trailing ",
        "tab\there",
        "ünïcödé ✓",
        "$(touch pwned)",
        "${HOME}",
        "\\",
        "\\\\\"",
        "a\\nb",
        "'single'",
        "!bang",
        "#not a comment",
        "*.glob?",
        "semi;colon&amp|pipe",
        "1.0~rc1",
        "a:b/c+d@e%f=g,h",
        "~",
        "a:~/x",
    ],
)
def test_values_round_trip_through_the_shell(tmp_path: Path, value: str) -> None:
    path = tmp_path / "extension-release.x"
    path.write_text(
        ExtensionRelease.create(name="x", os_id="flatcar", extra={"SYSEXT_NAME": value}).render(),
        encoding="utf-8",
    )
    assert not (tmp_path / "pwned").exists()
    assert _parse_with_shell(path, ["ID", "SYSEXT_NAME"]) == {"ID": "flatcar", "SYSEXT_NAME": value}
    assert not (tmp_path / "pwned").exists()
