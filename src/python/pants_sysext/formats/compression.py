"""Compression detection and streaming decompression for binpkg members.

gzip, bzip2 and xz are decompressed with the standard library; zstd and lz4 by piping through the
external `zstd -dc` / `lz4 -dc` binaries. Everything streams: no member is read into memory.
"""

from __future__ import annotations

import bz2
import enum
import gzip
import io
import lzma
import os
import shutil
import subprocess
import threading
import zlib
from contextlib import contextmanager
from typing import BinaryIO, Iterator, Mapping

from pants_sysext.formats.errors import BinpkgError

# How many bytes `detect_compression` wants to see: enough for the `ustar` magic of a tar header.
DETECT_HEAD_SIZE = 512

_CHUNK_SIZE = 64 * 1024
# How much of an external tool's stderr is kept for the error message.
_STDERR_KEEP = 8 * 1024


class Compression(str, enum.Enum):
    """How a binpkg tar stream is compressed."""

    NONE = "none"
    GZIP = "gzip"
    BZIP2 = "bzip2"
    XZ = "xz"
    ZSTD = "zstd"
    LZ4 = "lz4"


_MAGICS: tuple[tuple[bytes, Compression], ...] = (
    (b"BZh", Compression.BZIP2),
    (b"\x28\xb5\x2f\xfd", Compression.ZSTD),
    (b"\xfd7zXZ\x00", Compression.XZ),
    (b"\x1f\x8b", Compression.GZIP),
    (b"\x04\x22\x4d\x18", Compression.LZ4),
)

# File name suffixes used by Portage (`portage.util.compression_probe._compressors`).
_SUFFIXES: dict[str, Compression] = {
    ".gz": Compression.GZIP,
    ".bz2": Compression.BZIP2,
    ".xz": Compression.XZ,
    ".zst": Compression.ZSTD,
    ".lz4": Compression.LZ4,
}

# The Debian package that ships each external decompressor.
_EXTERNAL_TOOLS: dict[Compression, tuple[str, str]] = {
    Compression.ZSTD: ("zstd", "zstd"),
    Compression.LZ4: ("lz4", "lz4"),
}


def detect_compression(head: bytes) -> Compression | None:
    """The compression of a stream starting with `head`, by magic bytes; None if unknown.

    An uncompressed stream is recognised as a tar archive (`ustar` at offset 257), so pass at least
    `DETECT_HEAD_SIZE` bytes when you have them.
    """
    for magic, compression in _MAGICS:
        if head.startswith(magic):
            return compression
    if head[257:262] == b"ustar":
        return Compression.NONE
    return None


def compression_from_suffix(name: str) -> Compression | None:
    """The compression of a tar member named `name` (e.g. `image.tar.zst`), or None if unknown.

    `image.tar` is uncompressed (`Compression.NONE`); a name that is not `*.tar` or `*.tar.<ext>`
    with a known extension gives None.
    """
    if name.endswith(".tar"):
        return Compression.NONE
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem.endswith(".tar"):
        return None
    return _SUFFIXES.get(f".{ext}")


def describe_head(head: bytes) -> str:
    """A short hex rendering of the first bytes of a stream, for error messages."""
    return head[:8].hex(" ") if head else "(empty)"


class SegmentReader(io.RawIOBase):
    """A read-only view of the bytes `[offset, offset + length)` of a seekable binary file object.

    Every read seeks the underlying file first, so the file object may be shared, as long as it is
    not used concurrently. Reads stop early if the underlying file is shorter than the segment.
    """

    def __init__(self, fileobj: BinaryIO, offset: int, length: int) -> None:
        super().__init__()
        if offset < 0 or length < 0:
            raise ValueError(f"invalid segment: offset={offset} length={length}")
        self._fileobj = fileobj
        self._offset = offset
        self._length = length
        self._pos = 0

    @property
    def length(self) -> int:
        return self._length

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_SET:
            new = pos
        elif whence == os.SEEK_CUR:
            new = self._pos + pos
        elif whence == os.SEEK_END:
            new = self._length + pos
        else:
            raise ValueError(f"invalid whence: {whence}")
        if new < 0:
            raise ValueError(f"negative seek position {new}")
        self._pos = new
        return new

    def readinto(self, buffer) -> int:  # type: ignore[override]
        remaining = self._length - self._pos
        if remaining <= 0:
            return 0
        view = memoryview(buffer).cast("B")
        want = min(len(view), remaining)
        if want == 0:
            return 0
        self._fileobj.seek(self._offset + self._pos)
        data = self._fileobj.read(want)
        n = len(data)
        view[:n] = data
        self._pos += n
        return n


class _CheckedReader(io.RawIOBase):
    """Wraps a stdlib decompressor, turning its errors into `BinpkgError`s."""

    def __init__(
        self, inner: BinaryIO, compression: Compression, *, binpkg: str, member: str
    ) -> None:
        super().__init__()
        self._inner = inner
        self._compression = compression
        self._binpkg = binpkg
        self._member = member

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        try:
            data = self._inner.read(len(view))
        except EOFError as e:
            raise BinpkgError(
                self._binpkg,
                f"truncated {self._compression.value} stream: {e}",
                member=self._member,
            ) from e
        except (OSError, lzma.LZMAError, zlib.error, ValueError) as e:
            raise BinpkgError(
                self._binpkg,
                f"corrupt {self._compression.value} stream: {e}",
                member=self._member,
            ) from e
        n = len(data)
        view[:n] = data
        return n

    def close(self) -> None:
        if not self.closed:
            try:
                self._inner.close()
            finally:
                super().close()


def _resolve_tool(
    compression: Compression, tools: Mapping[str, str] | None, *, binpkg: str, member: str
) -> str:
    key, debian_package = _EXTERNAL_TOOLS[compression]
    path = (tools or {}).get(key) or shutil.which(key)
    if not path:
        raise BinpkgError(
            binpkg,
            f"cannot decompress {compression.value}: the `{key}` tool was not found "
            f"(install the Debian package `{debian_package}`)",
            member=member,
        )
    return path


class _ToolReader(io.RawIOBase):
    """The stdout of `<tool> -dc`, with stdin fed from `raw` by a background thread.

    When stdout reaches its end the tool's exit status is checked; a failure raises `BinpkgError`
    with the tool's stderr. Closing before the end kills the tool.
    """

    def __init__(
        self,
        tool: str,
        raw: BinaryIO,
        compression: Compression,
        *,
        binpkg: str,
        member: str,
    ) -> None:
        super().__init__()
        self._tool = tool
        self._compression = compression
        self._binpkg = binpkg
        self._member = member
        self._raw = raw
        self._feed_error: BaseException | None = None
        self._stderr = bytearray()
        self._finished = False
        try:
            self._proc = subprocess.Popen(
                [tool, "-dc"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        except OSError as e:
            raise BinpkgError(
                binpkg,
                f"cannot run `{tool}` to decompress {compression.value}: {e}",
                member=member,
            ) from e
        self._feeder = threading.Thread(
            target=self._feed, name=f"binpkg-{compression.value}-feed", daemon=True
        )
        self._stderr_reader = threading.Thread(
            target=self._drain_stderr, name=f"binpkg-{compression.value}-stderr", daemon=True
        )
        self._feeder.start()
        self._stderr_reader.start()

    def _feed(self) -> None:
        stdin = self._proc.stdin
        assert stdin is not None
        try:
            while True:
                chunk = self._raw.read(_CHUNK_SIZE)
                if not chunk:
                    break
                stdin.write(chunk)
        except (BrokenPipeError, ValueError):
            # The tool exited (or was killed) before consuming all input: its exit status or
            # our own close() tells the story.
            pass
        except BaseException as e:  # Reported to the reading thread at end of stream.
            self._feed_error = e
        finally:
            try:
                stdin.close()
            except (BrokenPipeError, OSError, ValueError):
                pass

    def _drain_stderr(self) -> None:
        stderr = self._proc.stderr
        assert stderr is not None
        try:
            while True:
                chunk = stderr.read(4096)
                if not chunk:
                    break
                self._stderr += chunk
                if len(self._stderr) > _STDERR_KEEP:
                    del self._stderr[: len(self._stderr) - _STDERR_KEEP]
        except (OSError, ValueError):
            pass

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        if self._finished:
            return 0
        stdout = self._proc.stdout
        assert stdout is not None
        n = stdout.readinto1(buffer)
        if n:
            return n
        self._finish()
        return 0

    def _finish(self) -> None:
        self._finished = True
        self._feeder.join()
        returncode = self._proc.wait()
        self._stderr_reader.join()
        if self._feed_error is not None:
            raise BinpkgError(
                self._binpkg,
                f"reading compressed data failed: {self._feed_error}",
                member=self._member,
            ) from self._feed_error
        if returncode != 0:
            stderr = bytes(self._stderr).decode("utf-8", "replace").strip()
            raise BinpkgError(
                self._binpkg,
                f"truncated or corrupt {self._compression.value} stream: "
                f"`{self._tool} -dc` exited with status {returncode}: {stderr or '(no output)'}",
                member=self._member,
            )

    def close(self) -> None:
        if self.closed:
            return
        try:
            if self._proc.poll() is None:
                self._proc.kill()
            for pipe in (self._proc.stdout,):
                if pipe is not None:
                    pipe.close()
            self._proc.wait()
            self._feeder.join()
            self._stderr_reader.join()
            if self._proc.stderr is not None:
                self._proc.stderr.close()
        finally:
            super().close()


@contextmanager
def decompressed(
    raw: BinaryIO,
    compression: Compression,
    *,
    binpkg: str,
    member: str,
    tools: Mapping[str, str] | None = None,
) -> Iterator[BinaryIO]:
    """A readable stream of the decompressed bytes of `raw`.

    Corrupt or truncated data and failures of external tools raise `BinpkgError(binpkg, ...,
    member=member)` from the stream's reads. `tools` maps "zstd" / "lz4" to the binaries to use;
    missing entries are looked up on the PATH.
    """
    if compression == Compression.NONE:
        yield raw
        return

    inner: io.RawIOBase
    if compression == Compression.GZIP:
        inner = _CheckedReader(
            gzip.GzipFile(fileobj=raw, mode="rb"),  # type: ignore[arg-type]
            compression,
            binpkg=binpkg,
            member=member,
        )
    elif compression == Compression.BZIP2:
        inner = _CheckedReader(
            bz2.BZ2File(raw, mode="rb"), compression, binpkg=binpkg, member=member
        )
    elif compression == Compression.XZ:
        inner = _CheckedReader(
            lzma.LZMAFile(raw, mode="rb"), compression, binpkg=binpkg, member=member
        )
    elif compression in _EXTERNAL_TOOLS:
        tool = _resolve_tool(compression, tools, binpkg=binpkg, member=member)
        inner = _ToolReader(tool, raw, compression, binpkg=binpkg, member=member)
    else:
        raise BinpkgError(binpkg, f"unsupported compression {compression!r}", member=member)

    stream = io.BufferedReader(inner, buffer_size=_CHUNK_SIZE)
    try:
        yield stream  # type: ignore[misc]
    finally:
        stream.close()
