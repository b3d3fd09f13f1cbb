"""Squash a staged tree (a tar) into a reproducible squashfs image with `sqfstar`.

Runs in a Pants sandbox with the system Python (standard library only):

    python3 -m pants_sysext.sandbox.squash --sqfstar /usr/bin/sqfstar \
        --tar staged/staged.tar --out image.raw --compression zstd --mtime 0

The tar keeps every mode, numeric owner, hard link and xattr; `sqfstar` reads it from stdin,
so nothing is extracted and no file metadata depends on the user or umask running the build.
Every time stamp (files and super block) is `--mtime`; the root directory is 0755 root:root.
The image is written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

# Compressor arguments. Debian 12's sqfstar (4.5.1) mis-parses compressor options (`-X…`)
# before the output file and ignores every option after it, so only the compressor's default
# level is available: zstd 15, xz 6 (with 512 KiB blocks, as Flatcar uses), gzip 9, lz4.
COMPRESSION_ARGS = {
    "zstd": ["-comp", "zstd", "-b", "512K"],
    "xz": ["-comp", "xz", "-b", "512K"],
    "gzip": ["-comp", "gzip"],
    "lz4": ["-comp", "lz4"],
    "none": ["-noI", "-noD", "-noF", "-noX"],
}


def sqfstar_argv(sqfstar: str, out: str, *, compression: str, mtime: int, processors: int) -> list[str]:
    return [
        sqfstar,
        *COMPRESSION_ARGS[compression],
        "-reproducible",
        "-mkfs-time", str(mtime),
        "-all-time", str(mtime),
        "-root-mode", "0755",
        "-root-uid", "0",
        "-root-gid", "0",
        "-processors", str(processors),
        "-mem", "64M",  # bounds its caches: memory stays flat as images grow
        "-exit-on-error",
        "-no-progress",
        "-quiet",
        out,
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="squash", description=__doc__)
    parser.add_argument("--sqfstar", required=True)
    parser.add_argument("--tar", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--compression", choices=sorted(COMPRESSION_ARGS), default="zstd")
    parser.add_argument("--mtime", type=int, default=0)
    parser.add_argument("--processors", type=int, default=2)
    args = parser.parse_args(argv)

    tmp = args.out + ".partial"
    if os.path.exists(tmp):
        os.unlink(tmp)
    cmd = sqfstar_argv(
        args.sqfstar, tmp, compression=args.compression, mtime=args.mtime, processors=args.processors
    )
    with open(args.tar, "rb") as stdin:
        proc = subprocess.run(cmd, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        if os.path.exists(tmp):
            os.unlink(tmp)
        output = proc.stdout.decode("utf-8", "replace").strip()
        print(f"error: sqfstar failed (exit {proc.returncode}): {' '.join(cmd)}\n{output}", file=sys.stderr)
        return 2
    os.replace(tmp, args.out)
    print(f"{args.out}: {os.path.getsize(args.out)} bytes, {args.compression}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
