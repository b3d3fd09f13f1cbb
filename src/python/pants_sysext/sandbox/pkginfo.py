"""Write the package database entries of an extension's packages, as a tree to squash.

Runs in a Pants sandbox with the system Python (standard library only):

    python3 -m pants_sysext.sandbox.pkginfo SPEC.json OUTDIR

SPEC: {"packages": [{"label": CPV, "metadata": "pkgs/0/metadata.json"}], "manifest":
"staged/manifest.jsonl", "mtime": 0}. Writes `OUTDIR/staged.tar` holding
`var/db/pkg/CATEGORY/PF/KEY` for each package's metadata keys, and a `CONTENTS` listing what
the package put into the image (after excludes), in Portage's format. This is Flatcar's
`NAME_pkginfo.raw`: mounted under a later extension's build root, it marks these packages as
installed.
"""

from __future__ import annotations

import io
import json
import sys
from typing import Iterable

from pants_sysext.sandbox.manifest import (
    DIR,
    FILE,
    HARDLINK,
    SYMLINK,
    ManifestEntry,
    open_tar_writer,
    read_manifest,
)

# Keys that describe the build host rather than the package, or that are not text.
_SKIP_KEYS = {"environment.bz2", "BINPKGMD5", "CONTENTS", "COUNTER"}


def contents_lines(entries: Iterable[ManifestEntry], *, mtime: int) -> list[str]:
    """Portage's CONTENTS: `dir P`, `obj P MD5 MTIME`, `sym P -> T MTIME`."""
    out = []
    for e in entries:
        path = "/" + e.path
        if e.type == DIR:
            out.append(f"dir {path}")
        elif e.type in (FILE, HARDLINK):
            out.append(f"obj {path} {e.md5} {mtime}")
        elif e.type == SYMLINK:
            out.append(f"sym {path} -> {e.linkname} {mtime}")
    return out


def _add(tar, path: str, data: bytes | None, *, mtime: int) -> None:
    entry = ManifestEntry(
        path=path, type=FILE if data is not None else DIR, mode=0o644 if data is not None else 0o755,
        uid=0, gid=0, size=len(data) if data is not None else 0,
    )
    info = entry.to_tarinfo(mtime=mtime, with_names=False)
    tar.addfile(info, io.BytesIO(data) if data is not None else None)


def write_pkginfo(spec: dict, outdir: str) -> int:
    import os

    mtime = int(spec.get("mtime", 0))
    owned: dict[str, list[ManifestEntry]] = {}
    with open(spec["manifest"], encoding="utf-8") as f:
        for entry in read_manifest(f):
            owned.setdefault(entry.package, []).append(entry)
    os.makedirs(outdir, exist_ok=True)
    count = 0
    with open_tar_writer(os.path.join(outdir, "staged.tar")) as tar:
        for d in ("var", "var/db", "var/db/pkg"):
            _add(tar, d, None, mtime=mtime)
        categories = set()
        for pkg in sorted(spec["packages"], key=lambda p: p["label"]):
            with open(pkg["metadata"], encoding="utf-8") as f:
                metadata = json.load(f)["metadata"]
            category, pf = pkg["label"].split("/", 1)
            if category not in categories:
                _add(tar, f"var/db/pkg/{category}", None, mtime=mtime)
                categories.add(category)
            base = f"var/db/pkg/{category}/{pf}"
            _add(tar, base, None, mtime=mtime)
            files = {k: v for k, v in metadata.items() if k not in _SKIP_KEYS and "/" not in k}
            files["CONTENTS"] = "".join(
                line + "\n" for line in contents_lines(owned.get(pkg["label"], ()), mtime=mtime)
            )
            for key in sorted(files):
                _add(tar, f"{base}/{key}", files[key].encode("utf-8"), mtime=mtime)
            count += 1
    return count


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: pkginfo SPEC.json OUTDIR", file=sys.stderr)
        return 64
    with open(args[0], encoding="utf-8") as f:
        spec = json.load(f)
    count = write_pkginfo(spec, args[1])
    print(f"wrote the package database entries of {count} packages")
    return 0


if __name__ == "__main__":
    sys.exit(main())
