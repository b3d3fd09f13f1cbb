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


def fetch_apt(mirror: str, suite: str, components: list[str], arch: str, keyring: str, gpgv: str, outdir: str) -> dict:
    """InRelease (verified with gpgv), then each component's Packages index (checked against
    it), decompressed into OUTDIR/Packages-COMPONENT."""
    import tempfile

    from pants_sysext.formats.apt_archive import (
        AptArchiveError,
        check_index,
        parse_release,
        verify_inrelease,
    )
    from pants_sysext.formats.compression import Compression, decompressed, detect_compression

    os.makedirs(outdir, exist_ok=True)
    base = f"{mirror.rstrip('/')}/dists/{suite}"
    work = tempfile.mkdtemp(prefix="apt-", dir=".")
    inrelease = os.path.join(work, "InRelease")
    try:
        with _open(f"{base}/InRelease") as src, open(inrelease, "wb") as dst:
            shutil.copyfileobj(src, dst, _CHUNK)
    except (OSError, urllib.error.URLError) as e:
        raise FetchError(f"cannot fetch {base}/InRelease: {e}. Check the mirror and suite.")
    try:
        body = verify_inrelease(inrelease, [keyring], gpgv=gpgv)
        release = parse_release(body, source=f"{base}/InRelease")
        out = {"suite": suite, "date": getattr(release, "date", None), "indexes": {}}
        for component in components:
            relpath = None
            for name in ("Packages.xz", "Packages.gz", "Packages"):
                candidate = f"{component}/binary-{arch}/{name}"
                if release.file(candidate) is not None:
                    relpath = candidate
                    break
            if relpath is None:
                raise FetchError(f"{base}/InRelease lists no Packages index for {component}/binary-{arch}")
            local = os.path.join(work, relpath.replace("/", "_"))
            with _open(f"{base}/{relpath}") as src, open(local, "wb") as dst:
                shutil.copyfileobj(src, dst, _CHUNK)
            check_index(release, relpath, local)
            target = os.path.join(outdir, f"Packages-{component}")
            with open(local, "rb") as raw, open(target, "wb") as dst:
                compression = detect_compression(raw.read(512)) or Compression.NONE
                raw.seek(0)
                with decompressed(raw, compression, binpkg=relpath, member=compression.value) as src:
                    shutil.copyfileobj(src, dst, _CHUNK)
            out["indexes"][component] = relpath
        return out
    except AptArchiveError as e:
        raise FetchError(str(e))
    finally:
        shutil.rmtree(work, ignore_errors=True)


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
        elif args[:1] == ["apt"] and len(args) == 8:
            _, mirror, suite, components, arch, keyring, gpgv, outdir = args
            result = fetch_apt(mirror, suite, components.split(","), arch, keyring, gpgv, outdir)
            with open(os.path.join(outdir, "release.json"), "w", encoding="utf-8") as f:
                json.dump(result, f, indent=1, sort_keys=True)
            print(f"verified {mirror}/dists/{suite}/InRelease and {len(result['indexes'])} Packages indexes")
        else:
            print(
                "usage: fetch index BINHOST OUT | fetch hash BINHOST SPEC OUT | "
                "fetch apt MIRROR SUITE COMPONENTS ARCH KEYRING GPGV OUTDIR",
                file=sys.stderr,
            )
            return 64
    except FetchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
