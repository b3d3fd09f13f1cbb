"""Build staged trees and base images for the validation tests.

Package images come from the real fixture binpkgs (unpacked by the unpack step, run as the
sandbox runs it) or are written here, like the staging tests do; trees are staged by the real
staging step.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
from pathlib import Path
from typing import Iterable, Sequence

from pants_sysext.formats.vdb import InstalledPackage, vdb_to_json
from pants_sysext.sandbox.manifest import FILE, ManifestEntry, open_tar_writer
from pants_sysext.sandbox.stage import ExtraFile, PackageImage, stage
from pants_sysext.sandbox.validate import Validation, ValidateSpec, validate

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src/python"
BINHOST = ROOT / "tests/fixtures/portage/binhost"
SYSTEM_PYTHON = "/usr/bin/python3"

JQ = "app-misc/jq-1.6-r3"
ONIG = "dev-libs/oniguruma-6.9.8"
GLIBC = "sys-libs/glibc-2.36-r7"
BASELAYOUT = "sys-apps/baselayout-3.6.8-r1"
GLIBC_PROVIDES = "x86_64: ld-linux-x86-64.so.2 libc.so.6 libm.so.6"


def unpack(binpkg: str, outdir: Path) -> PackageImage:
    """Unpack a fixture binpkg with the unpack step, as the sandbox runs it."""
    proc = subprocess.run(
        [SYSTEM_PYTHON, "-E", "-s", "-B", "-m", "pants_sysext.sandbox.unpack",
         str(BINHOST / binpkg), str(outdir), "--tool", "zstd=/usr/bin/zstd"],
        cwd=SRC, capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr
    cpv = json.loads((outdir / "metadata.json").read_text())["cpv"]
    return PackageImage(cpv, str(outdir))


def member_bytes(package: PackageImage, path: str) -> bytes:
    with tarfile.open(Path(package.directory) / "image.tar", "r:") as tar:
        f = tar.extractfile(path)
        assert f is not None
        return f.read()


def write_package(root: Path, label: str, entries: Sequence[tuple]) -> PackageImage:
    """entries: (path, type, mode, data_or_linkname[, xattrs]) → an unpacked package image."""
    d = root / ("pkg-" + label.replace("/", "_"))
    d.mkdir(parents=True)
    with open_tar_writer(str(d / "image.tar")) as tar, open(d / "entries.jsonl", "w") as m:
        for path, type_, mode, payload, *rest in entries:
            data = payload if type_ == FILE else b""
            entry = ManifestEntry(
                path=path, type=type_, mode=mode, uid=0, gid=0, uname="root", gname="root",
                size=len(data),
                sha256=hashlib.sha256(data).hexdigest() if type_ == FILE else None,
                md5=hashlib.md5(data).hexdigest() if type_ == FILE else None,
                linkname=None if type_ in ("file", "dir") else payload,
                xattrs=tuple(rest[0]) if rest else (),
                package=label,
            )
            tar.addfile(entry.to_tarinfo(mtime=1), io.BytesIO(data) if type_ == FILE else None)
            m.write(entry.to_json() + "\n")
    return PackageImage(label, str(d))


def stage_tree(tmp: Path, packages: Iterable[PackageImage], *, name: str = "jq", label: str = "tree") -> Path:
    """Stage `packages` with the extension-release file, as the build does: → the tree dir."""
    release = tmp / f"{label}.release"
    release.write_text("ID=_any\n")
    out = tmp / label
    stage(
        list(packages), str(out),
        extra_files=(ExtraFile(f"usr/lib/extension-release.d/extension-release.{name}", str(release)),),
    )
    return out


def installed(cpv: str, provides: str = "", contents: Sequence[str] = ()) -> InstalledPackage:
    values = (("PROVIDES", provides),) if provides else ()
    return InstalledPackage(cpv=cpv, values=values, contents=tuple(contents))


def base_json(tmp: Path, packages: Sequence[InstalledPackage], *, label: str = "base") -> Path:
    """A base.json as `sandbox.read_base` writes it."""
    path = tmp / f"{label}.json"
    doc = {
        "os_release": {"ID": "flatcar", "VERSION_ID": "3815.2.0", "NAME": "Flatcar Container Linux"},
        "packages": json.loads(vdb_to_json(packages)),
    }
    path.write_text(json.dumps(doc, indent=1, sort_keys=True))
    return path


def glibc_base(tmp: Path, *extra: InstalledPackage, label: str = "base") -> Path:
    """A merged-usr base: glibc's sonames, /lib64 -> usr/lib64 and /usr/sbin -> bin."""
    return base_json(
        tmp,
        [
            installed(GLIBC, GLIBC_PROVIDES, ["dir /usr", "dir /usr/lib64"]),
            installed(BASELAYOUT, "", [
                "dir /usr", "dir /usr/bin", "dir /usr/lib64", "dir /usr/share",
                "sym /lib64 -> usr/lib64 1700000000", "sym /usr/sbin -> bin 1700000000",
                "sym /bin -> usr/bin 1700000000",
            ]),
            *extra,
        ],
        label=label,
    )


def spec(tree: Path, *, name: str = "jq", base: Path | None = None, **kwargs) -> ValidateSpec:
    data = {
        "name": name,
        "architecture": "x86-64",
        "tar": str(tree / "staged.tar"),
        "manifest": str(tree / "manifest.jsonl"),
        "base": str(base) if base else None,
        "stacked": [],
        "allow_missing_libraries": [],
        "shadow": "warn",
    }
    data.update(kwargs)
    return ValidateSpec.from_json(data)


def run(tree: Path, **kwargs) -> Validation:
    return validate(spec(tree, **kwargs))


def one_error(result: Validation) -> str:
    assert len(result.errors) == 1, "\n\n".join(result.errors)
    return result.errors[0]
