"""The one error type raised by the Portage binary package readers.

These modules run inside a sandbox on a plain interpreter, so they depend on the standard library
only.
"""

from __future__ import annotations


class BinpkgError(Exception):
    """A binary package (binpkg) could not be read, or was refused as unsafe or inconsistent.

    The message names the binpkg file and, when known, the member of it that is at fault: a GPKG
    container member (`jq-1.6-r3/image.tar.zst`), `XPAK`, an XPAK metadata key, or an image entry
    written as `<image member>:<tar name>`.
    """

    def __init__(self, binpkg: str, message: str, *, member: str | None = None) -> None:
        self.binpkg = binpkg
        self.member = member
        self.message = message
        super().__init__(binpkg, message, member)

    def __str__(self) -> str:
        if self.member is None:
            return f"{self.binpkg}: {self.message}"
        return f"{self.binpkg}: {self.member}: {self.message}"

    def __reduce__(self):  # Keep the keyword-only `member` across pickling.
        return (_rebuild, (self.binpkg, self.message, self.member))


def _rebuild(binpkg: str, message: str, member: str | None) -> BinpkgError:
    return BinpkgError(binpkg, message, member=member)
