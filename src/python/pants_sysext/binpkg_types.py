"""The binary packages of a `binpkg_set`, as the unpack step takes them."""

from __future__ import annotations

from dataclasses import dataclass

from pants.engine.addresses import Address
from pants.engine.fs import Digest


@dataclass(frozen=True)
class BinpkgFile:
    """One binary package file, and what its origin says it must be."""

    filename: str  # base name, e.g. "jq-1.6-r3.gpkg.tar"
    digest: Digest  # a Digest holding just that file, at `filename`
    origin: str  # for messages: "binhost tests/…/binhost (Packages)" or a source path
    expected_cpv: str | None = None
    expected_size: int | None = None
    expected_sha1: str | None = None
    expected_md5: str | None = None


@dataclass(frozen=True)
class BinpkgSet:
    address: Address
    binpkgs: tuple[BinpkgFile, ...]


@dataclass(frozen=True)
class BinpkgSetRequest:
    address: Address

