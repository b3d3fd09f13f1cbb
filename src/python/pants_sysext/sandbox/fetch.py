"""Read a binhost over a URL or from a directory: its `Packages` index, and binpkg hashes.

Runs in a Pants sandbox with the system Python (standard library only). Used only by
`pants generate-lockfiles`; `pants package` fetches pinned binpkgs with Pants' own
verified downloads instead.

    python3 -m pants_sysext.sandbox.fetch index BINHOST OUT
    python3 -m pants_sysext.sandbox.fetch hash BINHOST SPEC.json OUT.json

BINHOST is an `https://`, `http://` or `file://` URL, or a directory. `index` writes the
binhost's `Packages` (or the decompressed `Packages.gz`). `hash` streams every binpkg listed in
SPEC (`[{"cpv", "path", "size", "md5", "sha1"}]`) and writes its sha256 and size, after checking
them against the index's SIZE, MD5 and SHA1.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import sys
import urllib.error
import urllib.request
from typing import BinaryIO

_CHUNK = 1024 * 1024
_TIMEOUT = 60


class FetchError(Exception):
    pass


def _join(binhost: str, path: str) -> str:
    if "://" in binhost:
        return binhost.rstrip("/") + "/" + path
    return os.path.join(binhost, path)


def _open(location: str) -> BinaryIO:
    if "://" not in location:
        return open(location, "rb")
    request = urllib.request.Request(location, headers={"User-Agent": "pants-sysext"})
    return urllib.request.urlopen(request, timeout=_TIMEOUT)  # noqa: S310 (a binhost the user named)


def fetch_index(binhost: str, out: str) -> str:
    errors = []
    for name in ("Packages", "Packages.gz"):
        location = _join(binhost, name)
        try:
            with _open(location) as src, open(out + ".part", "wb") as dst:
                stream = gzip.GzipFile(fileobj=src) if name.endswith(".gz") else src
                shutil.copyfileobj(stream, dst, _CHUNK)
        except (OSError, urllib.error.URLError, EOFError) as e:
            errors.append(f"{location}: {e}")
            continue
        os.replace(out + ".part", out)
        return location
    raise FetchError(
        f"cannot read the binhost index at {binhost}:\n  " + "\n  ".join(errors)
        + "\nCheck the `binhost` URL or directory, and that the binhost is reachable."
    )


def hash_binpkgs(binhost: str, spec: list[dict]) -> dict[str, dict]:
    out = {}
    problems = []
    for item in spec:
        location = _join(binhost, item["path"])
        sha256, md5, sha1, size = hashlib.sha256(), hashlib.md5(), hashlib.sha1(), 0
        try:
            with _open(location) as src:
                for chunk in iter(lambda: src.read(_CHUNK), b""):
                    sha256.update(chunk)
                    md5.update(chunk)
                    sha1.update(chunk)
                    size += len(chunk)
        except (OSError, urllib.error.URLError) as e:
            problems.append(f"{item['cpv']}: cannot fetch {location}: {e}")
            continue
        mismatch = []
        if item.get("size") is not None and int(item["size"]) != size:
            mismatch.append(f"size {size}, the index says {item['size']}")
        if item.get("md5") and item["md5"].lower() != md5.hexdigest():
            mismatch.append(f"MD5 {md5.hexdigest()}, the index says {item['md5']}")
        if item.get("sha1") and item["sha1"].lower() != sha1.hexdigest():
            mismatch.append(f"SHA1 {sha1.hexdigest()}, the index says {item['sha1']}")
        if mismatch:
            problems.append(f"{item['cpv']}: {location} has {'; '.join(mismatch)}")
            continue
        out[item["path"]] = {"sha256": sha256.hexdigest(), "size": size}
    if problems:
        raise FetchError(
            "binary packages do not match the binhost index:\n  " + "\n  ".join(problems)
            + "\nThe binhost is inconsistent (a package was replaced without updating "
            "Packages) or unreachable; fix the binhost and generate the lockfile again."
        )
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        if args[:1] == ["index"] and len(args) == 3:
            location = fetch_index(args[1], args[2])
            print(f"read {location}")
        elif args[:1] == ["hash"] and len(args) == 4:
            with open(args[2], encoding="utf-8") as f:
                spec = json.load(f)
            result = hash_binpkgs(args[1], spec)
            with open(args[3], "w", encoding="utf-8") as f:
                json.dump(result, f, indent=1, sort_keys=True)
            print(f"hashed {len(result)} binary packages from {args[1]}")
        else:
            print("usage: fetch index BINHOST OUT | fetch hash BINHOST SPEC OUT", file=sys.stderr)
            return 64
    except FetchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
