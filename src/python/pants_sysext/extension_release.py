"""The extension-release file and systemd's architecture names.

Pure functions, no Pants: `usr/lib/extension-release.d/extension-release.NAME` is an os-release
style file (see os-release(5)) that systemd-sysext matches against the host's `os-release`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Mapping

# systemd's architecture names (src/basic/architecture.c), as used in ARCHITECTURE=.
ARCHITECTURES = (
    "x86-64",
    "x86",
    "arm64",
    "arm64-be",
    "arm",
    "arm-be",
    "alpha",
    "arc",
    "arc-be",
    "cris",
    "ia64",
    "loongarch64",
    "m68k",
    "mips64-le",
    "mips64",
    "mips-le",
    "mips",
    "nios2",
    "parisc64",
    "parisc",
    "ppc64-le",
    "ppc64",
    "ppc",
    "riscv32",
    "riscv64",
    "s390x",
    "s390",
    "sh64",
    "sh",
    "sparc64",
    "sparc",
    "tilegx",
)

# CHOST machine part (the text before the first "-") → systemd architecture.
_CHOST_MACHINES = (
    (re.compile(r"^x86_64$"), "x86-64"),
    (re.compile(r"^i[3-6]86$"), "x86"),
    (re.compile(r"^aarch64$"), "arm64"),
    (re.compile(r"^aarch64_be$"), "arm64-be"),
    # Big-endian first: `armv7b`, `armv5teb` and `armeb` end in "b".
    (re.compile(r"^armv\d+\w*b$|^armeb$"), "arm-be"),
    (re.compile(r"^arm(v\d+\w*)?$"), "arm"),
    (re.compile(r"^riscv64$"), "riscv64"),
    (re.compile(r"^riscv32$"), "riscv32"),
    (re.compile(r"^powerpc64le$"), "ppc64-le"),
    (re.compile(r"^powerpc64$"), "ppc64"),
    (re.compile(r"^powerpc$"), "ppc"),
    (re.compile(r"^s390x$"), "s390x"),
    (re.compile(r"^s390$"), "s390"),
    (re.compile(r"^loongarch64$"), "loongarch64"),
    (re.compile(r"^mips64el$"), "mips64-le"),
    (re.compile(r"^mips64$"), "mips64"),
    (re.compile(r"^mipsel$"), "mips-le"),
    (re.compile(r"^mips$"), "mips"),
    (re.compile(r"^sparc64$"), "sparc64"),
    (re.compile(r"^alpha$"), "alpha"),
    (re.compile(r"^ia64$"), "ia64"),
    (re.compile(r"^m68k$"), "m68k"),
    (re.compile(r"^hppa64$"), "parisc64"),
    (re.compile(r"^hppa(1\.\d|2\.0)?$"), "parisc"),
)

# Debian/Portage ARCH keywords → systemd architecture.
_ARCH_KEYWORDS = {
    "amd64": "x86-64",
    "x86": "x86",
    "i386": "x86",
    "arm64": "arm64",
    "arm": "arm",
    "armhf": "arm",
    "armel": "arm",
    "riscv": "riscv64",
    "riscv64": "riscv64",
    "ppc64": "ppc64",
    "ppc64el": "ppc64-le",
    "ppc": "ppc",
    "s390": "s390x",
    "s390x": "s390x",
    "loong": "loongarch64",
    "loong64": "loongarch64",
    "mips64el": "mips64-le",
    "alpha": "alpha",
    "ia64": "ia64",
    "m68k": "m68k",
    "hppa": "parisc",
    "sparc": "sparc64",
}

RESERVED_RELEASE_KEYS = ("ID", "VERSION_ID", "SYSEXT_LEVEL", "ARCHITECTURE")

_KEY_RE = re.compile(r"^[A-Z][A-Z0-9_]*$")
# Characters a shell leaves alone in an unquoted assignment value. Not `~`: bash expands it
# after `=` and `:` (KEY=~ reads back as $HOME).
_SAFE_VALUE_RE = re.compile(r"^[A-Za-z0-9._,:/+@%=-]+$")


def architecture_from_chost(chost: str) -> str | None:
    """systemd's architecture name for a GNU triplet such as `x86_64-pc-linux-gnu`."""
    machine = chost.strip().split("-", 1)[0]
    for pattern, arch in _CHOST_MACHINES:
        if pattern.match(machine):
            return arch
    return None


def architecture_from_keyword(keyword: str) -> str | None:
    """systemd's architecture name for a Portage ARCH or Debian architecture (`amd64`)."""
    return _ARCH_KEYWORDS.get(keyword.strip())


def validate_release_key(key: str) -> str | None:
    """A reason why `key` cannot be an extra extension-release key, or None if it can."""
    if key in RESERVED_RELEASE_KEYS:
        field = {"ID": "os_id"}.get(key, key.lower())
        return f"set it with the `{field}` field instead."
    if not _KEY_RE.match(key):
        return "keys must be upper-case letters, digits and `_`, starting with a letter."
    return None


def quote_value(value: str) -> str:
    """Quote a value as os-release(5) allows: bare when safe, else double-quoted."""
    if value and _SAFE_VALUE_RE.match(value):
        return value
    escaped = re.sub(r'(["\\`$])', r"\\\1", value)
    return f'"{escaped}"'


@dataclass(frozen=True)
class ExtensionRelease:
    """The content of `extension-release.NAME`."""

    name: str
    os_id: str
    version_id: str | None = None
    sysext_level: str | None = None
    architecture: str | None = None
    extra: tuple[tuple[str, str], ...] = ()

    @classmethod
    def create(
        cls,
        *,
        name: str,
        os_id: str,
        version_id: str | None = None,
        sysext_level: str | None = None,
        architecture: str | None = None,
        extra: Mapping[str, str] | Iterable[tuple[str, str]] = (),
    ) -> "ExtensionRelease":
        items = extra.items() if isinstance(extra, Mapping) else extra
        for key, _ in items:
            problem = validate_release_key(key)
            if problem:
                raise ValueError(f"extension-release key {key!r}: {problem}")
        return cls(
            name=name,
            os_id=os_id,
            version_id=version_id,
            sysext_level=sysext_level,
            architecture=architecture,
            extra=tuple(sorted(items)),
        )

    @property
    def path(self) -> str:
        return f"usr/lib/extension-release.d/extension-release.{self.name}"

    def render(self) -> str:
        lines = [("ID", self.os_id)]
        if self.version_id:
            lines.append(("VERSION_ID", self.version_id))
        if self.sysext_level:
            lines.append(("SYSEXT_LEVEL", self.sysext_level))
        if self.architecture:
            lines.append(("ARCHITECTURE", self.architecture))
        lines.extend(self.extra)
        return "".join(f"{key}={quote_value(value)}\n" for key, value in lines)
