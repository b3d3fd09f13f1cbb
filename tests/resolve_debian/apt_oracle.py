"""Real apt as the oracle: `apt-get --simulate install` against a throwaway flat repository.

The repository is a `Packages` file of generated stanzas (placeholder Filename/Size/SHA256:
--simulate never downloads) listed as `deb [trusted=yes] file:DIR ./`; the base is a temporary
dpkg status file. Every apt directory (lists, cache, preferences, extended states) points into
the temporary directory, so the machine's own apt state is neither read nor changed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence, Union

Stanza = Mapping[str, str]

_INST = re.compile(r"^Inst (\S+?)(?::(\S+))? (?:\[(\S+)\] )?\((\S+) ")
_REMV = re.compile(r"^Remv (\S+?)(?::(\S+))? ")


def apt_available() -> bool:
    return shutil.which("apt-get") is not None


@dataclass(frozen=True)
class AptResult:
    returncode: int
    installs: Mapping[str, str]  # name -> version apt would install (new or upgrade)
    upgrades: Mapping[str, str]  # name -> the installed version an Inst line replaces
    removes: tuple[str, ...]
    output: str

    @property
    def new(self) -> dict[str, str]:
        """What apt would newly install (not upgrades of installed packages)."""
        return {n: v for n, v in self.installs.items() if n not in self.upgrades}


def render_stanzas(stanzas: Iterable[Stanza], *, placeholders: bool) -> str:
    out = []
    for i, stanza in enumerate(stanzas):
        fields = dict(stanza)
        if placeholders:
            fields.setdefault("Filename", f"pool/{fields['Package']}_{i}.deb")
            fields.setdefault("Size", "1")
            fields.setdefault("SHA256", "0" * 64)
        lines = []
        for key, value in fields.items():
            value = str(value)
            if not value.strip():
                continue
            first, *rest = value.split("\n")
            lines.append(f"{key}: {first}")
            lines.extend(line if line.startswith(" ") else f" {line}" for line in rest)
        out.append("\n".join(lines) + "\n")
    return "\n".join(out)


def status_stanzas(stanzas: Iterable[Stanza]) -> list[dict[str, str]]:
    return [{"Package": s["Package"], "Status": "install ok installed",
             **{k: v for k, v in s.items() if k != "Package"}} for s in stanzas]


def apt_install(
    workdir: Path,
    packages: Union[str, Iterable[Stanza]],
    status: Union[str, Iterable[Stanza]],
    requested: Sequence[str],
    *,
    architectures: Sequence[str] = ("amd64",),
) -> AptResult:
    """Run `apt-get -s install REQUESTED` on the given archive and dpkg status."""
    workdir = Path(workdir)
    repo = workdir / "repo"
    for sub in ("repo", "lists/partial", "cache/archives/partial", "preferences.d", "parts"):
        (workdir / sub).mkdir(parents=True, exist_ok=True)
    if not isinstance(packages, str):
        packages = render_stanzas(packages, placeholders=True)
    (repo / "Packages").write_text(packages, encoding="utf-8")
    if not isinstance(status, str):
        status = render_stanzas(status_stanzas(status), placeholders=False)
    (workdir / "status").write_text(status, encoding="utf-8")
    (workdir / "sources.list").write_text(f"deb [trusted=yes] file:{repo} ./\n")
    (workdir / "extended_states").write_text("")

    options = {
        "Dir::State::status": workdir / "status",
        "Dir::State::extended_states": workdir / "extended_states",
        "Dir::Etc::sourcelist": workdir / "sources.list",
        "Dir::Etc::sourceparts": "-",
        "Dir::Etc::preferences": workdir / "preferences",
        "Dir::Etc::preferencesparts": workdir / "preferences.d",
        "Dir::State::Lists": workdir / "lists",
        "Dir::Cache": workdir / "cache",
        "APT::Architecture": architectures[0],
        "APT::Architectures": ",".join(architectures),
        "APT::Install-Recommends": "false",
        "APT::Install-Suggests": "false",
        "APT::Get::Show-Versions": "false",
        "Debug::NoLocking": "1",
    }
    args = [arg for key, value in options.items() for arg in ("-o", f"{key}={value}")]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8",
           "DEBIAN_FRONTEND": "noninteractive"}
    update = subprocess.run(["apt-get", *args, "-q", "update"], capture_output=True, text=True,
                            env=env)
    if update.returncode != 0:
        raise RuntimeError(f"apt-get update failed:\n{update.stdout}\n{update.stderr}")
    run = subprocess.run(["apt-get", *args, "-s", "install", *requested],
                         capture_output=True, text=True, env=env)
    installs: dict[str, str] = {}
    upgrades: dict[str, str] = {}
    removes = []
    for line in run.stdout.splitlines():
        m = _INST.match(line)
        if m:
            name, _arch, old, version = m.groups()
            installs[name] = version
            if old is not None:
                upgrades[name] = old
            continue
        m = _REMV.match(line)
        if m:
            removes.append(m.group(1))
    return AptResult(run.returncode, installs, upgrades, tuple(sorted(removes)),
                     run.stdout + run.stderr)
