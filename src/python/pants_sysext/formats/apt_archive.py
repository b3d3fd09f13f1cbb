"""Debian (apt) archives: sources lists, `InRelease`/`Release`, and `Packages` indexes.

- `parse_sources_list` / `parse_sources_deb822` read apt's source configuration (one-line
  `sources.list` entries and deb822 `.sources` stanzas; sources.list(5)), and `discover_mirror`
  finds the mirror a machine uses for a suite.
- `verify_inrelease` checks the OpenPGP signature of an `InRelease` file with `gpgv` against
  given keyrings only and returns the signed body; `verify_release_gpg` does the same for a
  `Release` + detached `Release.gpg`. `parse_release` reads the body; `check_index` checks a
  downloaded index against the size and SHA256 the `Release` lists for it.
- `parse_packages` / `iter_packages` read a `Packages` index (`open_index` and
  `decompress_index` undo its `.xz`/`.gz`/… compression).

The trust chain is apt's: keyring → signature of `InRelease` → SHA256 of `Packages` in it →
SHA256 of each `.deb` in `Packages`. Errors are `AptArchiveError`s naming the file at fault.
Standard library only (plus the `gpgv` binary for signatures): this module runs in sandboxes on
the system Python. Everything that can be large is streamed.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import hashlib
import io
import os
import re
import subprocess
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import BinaryIO, Iterable, Iterator, Mapping, Sequence, Union

from pants_sysext.formats.compression import (
    Compression,
    compression_from_suffix,
    decompressed,
    describe_head,
    detect_compression,
)
from pants_sysext.formats.deb822 import (
    Deb822Error,
    Relation,
    Stanza,
    check_package_fields,
    iter_stanzas,
    parse_relation_list,
    parse_relations,
    parse_single_stanza,
    parse_source_field,
    parse_yes_no,
)
from pants_sysext.formats.errors import BinpkgError

GPGV = "/usr/bin/gpgv"
ETC_APT = "/etc/apt"
SOURCE_TYPES = ("deb", "deb-src")
# apt reads only these files from sources.list.d (apt-pkg/sourcelist.cc, run-parts style names).
_SOURCE_PART_NAME = re.compile(r"[A-Za-z0-9_.-]+\.(list|sources)\Z")

MAX_RELEASE_SIZE = 64 * 1024 * 1024
MAX_KEYRING_SIZE = 64 * 1024 * 1024
_CHUNK_SIZE = 1024 * 1024
_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")

_PGP_SIGNED_MESSAGE = b"-----BEGIN PGP SIGNED MESSAGE-----"
_PGP_SIGNATURE = b"-----BEGIN PGP SIGNATURE-----"
_PGP_SIGNATURE_END = b"-----END PGP SIGNATURE-----"
_PGP_PUBLIC_KEY_BLOCK = "PGP PUBLIC KEY BLOCK"
# OpenPGP hash algorithm ids apt refuses for signatures (RFC 4880 §9.4): MD5, SHA1, RIPEMD160.
_WEAK_DIGESTS = {"1": "MD5", "2": "SHA1", "3": "RIPEMD160"}

# Index files named by apt, in the order apt prefers their compressions.
INDEX_SUFFIXES = (".xz", ".gz", ".bz2", ".zst", ".lz4", "")


class AptArchiveError(Exception):
    """An apt source list, signature, `Release` or index that cannot be read or trusted."""


# ---------------------------------------------------------------------------------------------
# Sources lists


@dataclass(frozen=True)
class AptSource:
    """One source entry: a one-line `sources.list` line or a deb822 `.sources` stanza.

    A one-line entry has one type and one URI. `signed_by` holds keyring paths or key
    fingerprints, or a single ASCII-armored key block embedded in a `.sources` file. `options`
    are all options as given, names lower-cased (`arch`, `signed-by`, `trusted`, … for one-line
    entries; the fields other than `Types`/`URIs`/`Suites`/`Components` for stanzas). `origin` is
    `file:line`.
    """

    types: tuple[str, ...]
    uris: tuple[str, ...]
    suites: tuple[str, ...]
    components: tuple[str, ...]
    architectures: tuple[str, ...] = ()
    signed_by: tuple[str, ...] = ()
    enabled: bool = True
    options: tuple[tuple[str, str], ...] = ()
    origin: str = ""

    def option(self, name: str) -> str | None:
        lower = name.lower()
        for key, value in self.options:
            if key == lower:
                return value
        return None


def _check_suites(suites: Sequence[str], components: Sequence[str], where: str) -> None:
    exact = [s for s in suites if s.endswith("/")]
    if exact and components:
        raise AptArchiveError(
            f"{where}: suite {exact[0]!r} is an exact path (ends with '/'), so no components "
            "may follow it"
        )
    if not components and len(exact) != len(suites):
        raise AptArchiveError(f"{where}: no components given for suite {suites[0]!r}")


def _split_option_values(value: str) -> tuple[str, ...]:
    return tuple(v for v in value.split(",") if v)


def parse_sources_list(text: str, *, source: str = "sources.list") -> tuple[AptSource, ...]:
    """The entries of a one-line style sources list (`deb [options] URI suite components…`).

    As apt does, everything from the first `#` of a line on is a comment. Unknown types (other
    than `deb`, `deb-src`) and malformed lines raise `AptArchiveError` naming `source:line`.
    """
    entries = []
    for lineno, line in enumerate(text.split("\n"), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{source}:{lineno}"
        kind, _, rest = line.replace("\t", " ").partition(" ")
        rest = rest.strip()
        if kind not in SOURCE_TYPES:
            raise AptArchiveError(f"{where}: unknown source type {kind!r} (want deb or deb-src)")
        options: list[tuple[str, str]] = []
        if rest.startswith("["):
            end = rest.find("]")
            if end == -1:
                raise AptArchiveError(f"{where}: unterminated option list '[' … ']'")
            for option in rest[1:end].split():
                name, sep, value = option.partition("=")
                if not sep or not name:
                    raise AptArchiveError(f"{where}: malformed option {option!r} (want name=value)")
                options.append((name.lower(), value))
            rest = rest[end + 1 :]
        words = rest.split()
        if len(words) < 2:
            raise AptArchiveError(f"{where}: want `{kind} [options] URI suite [components…]`")
        uri, suite, components = words[0], words[1], tuple(words[2:])
        _check_suites([suite], components, where)
        option_map = dict(options)
        entries.append(
            AptSource(
                types=(kind,),
                uris=(uri,),
                suites=(suite,),
                components=components,
                architectures=_split_option_values(option_map.get("arch", "")),
                signed_by=_split_option_values(option_map.get("signed-by", "")),
                enabled=True,
                options=tuple(options),
                origin=where,
            )
        )
    return tuple(entries)


_SOURCE_MAIN_FIELDS = ("types", "uris", "suites", "components")


def parse_sources_deb822(text: str, *, source: str = "sources") -> tuple[AptSource, ...]:
    """The stanzas of a deb822 `.sources` file (`Types`, `URIs`, `Suites`, `Components`, …).

    Stanzas with `Enabled: no` are returned with `enabled=False`. Missing required fields, unknown
    types and malformed stanzas raise `AptArchiveError` naming `source:line`.
    """
    entries = []
    try:
        stanzas = list(iter_stanzas(text, source=source, comments=True))
    except Deb822Error as e:
        raise AptArchiveError(str(e)) from None
    for stanza in stanzas:
        where = f"{source}:{stanza.lineno}"
        for name in ("Types", "URIs", "Suites"):
            if not stanza.words(name):
                raise AptArchiveError(f"{where}: missing or empty field {name!r}")
        types = stanza.words("Types")
        for kind in types:
            if kind not in SOURCE_TYPES:
                raise AptArchiveError(
                    f"{where}: unknown source type {kind!r} (want deb or deb-src)"
                )
        suites = stanza.words("Suites")
        components = stanza.words("Components")
        _check_suites(suites, components, where)
        enabled_value = stanza.get("Enabled")
        try:
            enabled = parse_yes_no(enabled_value, field="Enabled", source=where, default=True)
        except Deb822Error as e:
            raise AptArchiveError(str(e)) from None
        signed_by_value = stanza.get("Signed-By") or ""
        if "-----BEGIN PGP" in signed_by_value:
            signed_by: tuple[str, ...] = (
                "\n".join("" if line == "." else line for line in stanza.lines("Signed-By")),
            )
        else:
            signed_by = tuple(v for v in signed_by_value.replace(",", " ").split() if v)
        options = tuple(
            (name.lower(), value)
            for name, value in stanza.fields
            if name.lower() not in _SOURCE_MAIN_FIELDS
        )
        entries.append(
            AptSource(
                types=types,
                uris=stanza.words("URIs"),
                suites=suites,
                components=components,
                architectures=stanza.words("Architectures"),
                signed_by=signed_by,
                enabled=enabled,
                options=options,
                origin=where,
            )
        )
    return tuple(entries)


def read_apt_sources(etc_apt_dir: str = ETC_APT) -> tuple[AptSource, ...]:
    """All source entries configured under `etc_apt_dir`, in apt's order.

    `sources.list` first, then the files of `sources.list.d/` in name order; as apt does, only
    names made of `A-Za-z0-9_.-` ending in `.list` or `.sources` are read (so `x.list.disabled`,
    `x.list.save` or `x.dpkg-old` are ignored).
    """
    files = []
    main = os.path.join(etc_apt_dir, "sources.list")
    if os.path.isfile(main):
        files.append(main)
    parts = os.path.join(etc_apt_dir, "sources.list.d")
    if os.path.isdir(parts):
        for name in sorted(os.listdir(parts)):
            path = os.path.join(parts, name)
            if _SOURCE_PART_NAME.match(name) and os.path.isfile(path):
                files.append(path)
    entries: list[AptSource] = []
    for path in files:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as e:
            raise AptArchiveError(f"{path}: cannot read: {e}") from None
        if path.endswith(".sources"):
            entries.extend(parse_sources_deb822(text, source=path))
        else:
            entries.extend(parse_sources_list(text, source=path))
    return tuple(entries)


def discover_mirror(etc_apt_dir: str = ETC_APT, *, suite: str = "bookworm") -> str:
    """The URI of the first enabled `deb` source serving `suite` (without a trailing "/").

    Sources are read as `read_apt_sources` does. Raises `AptArchiveError` if none serves it.
    """
    entries = read_apt_sources(etc_apt_dir)
    for entry in entries:
        if entry.enabled and "deb" in entry.types and suite in entry.suites:
            return entry.uris[0].rstrip("/")
    seen = sorted({s for e in entries if e.enabled and "deb" in e.types for s in e.suites})
    raise AptArchiveError(
        f"no enabled `deb` source for suite {suite!r} in {etc_apt_dir}/sources.list or "
        f"{etc_apt_dir}/sources.list.d/*.list|*.sources (suites found: "
        f"{', '.join(seen) if seen else 'none'})"
    )


# ---------------------------------------------------------------------------------------------
# Release files


@dataclass(frozen=True)
class ReleaseFile:
    """One file listed in a `Release`'s `SHA256` field; `path` is relative to the suite dir."""

    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Release:
    """The body of an `InRelease` file, or a `Release` file.

    `date` and `valid_until` are the raw RFC 2822 strings (`date_time` and `valid_until_time`
    parse them); `fields` keeps every field of the stanza.
    """

    suite: str | None
    codename: str | None
    origin: str | None
    label: str | None
    version: str | None
    date: str | None
    valid_until: str | None
    architectures: tuple[str, ...]
    components: tuple[str, ...]
    acquire_by_hash: bool
    files: tuple[ReleaseFile, ...]
    fields: tuple[tuple[str, str], ...] = ()

    def file(self, relpath: str) -> ReleaseFile | None:
        """The entry for `relpath` (`main/binary-amd64/Packages.xz`), or None."""
        for entry in self.files:
            if entry.path == relpath:
                return entry
        return None

    def field(self, name: str) -> str | None:
        return Stanza(self.fields).get(name)

    @property
    def date_time(self) -> datetime | None:
        return _parse_date(self.date, "Date")

    @property
    def valid_until_time(self) -> datetime | None:
        return _parse_date(self.valid_until, "Valid-Until")

    def packages_index(
        self, component: str, architecture: str, *, suffixes: Sequence[str] = INDEX_SUFFIXES
    ) -> ReleaseFile:
        """The `Packages` index of `component`/`architecture` in the best listed compression."""
        base = f"{component}/binary-{architecture}/Packages"
        for suffix in suffixes:
            entry = self.file(base + suffix)
            if entry is not None:
                return entry
        raise AptArchiveError(
            f"Release ({self.suite or self.codename}) lists no {base}{{{','.join(suffixes)}}}"
        )


def _parse_date(value: str | None, field: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        parsed = None
    if parsed is None:
        raise AptArchiveError(f"Release: cannot parse {field} {value!r} (want RFC 2822)")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed


def _check_relpath(path: str, *, what: str, source: str) -> str:
    parts = path.split("/")
    if (
        not path
        or path.startswith("/")
        or any(part in ("", ".", "..") for part in parts)
        or "\\" in path
        or not path.isprintable()
    ):
        raise AptArchiveError(
            f"{source}: unsafe {what} {path!r} (want a relative path without '..')"
        )
    return path


def parse_release(data: str | bytes, *, source: str = "Release") -> Release:
    """Parse a `Release` file or the verified body of an `InRelease` file.

    A clear-signed text (an `InRelease` file itself) is refused: verify it with
    `verify_inrelease` and parse what that returns. Requires `Suite` or `Codename` and a `SHA256`
    list (MD5Sum/SHA1-only files are refused, as apt does).
    """
    if isinstance(data, bytes):
        head = data.lstrip()[: len(_PGP_SIGNED_MESSAGE)]
        text_data: str | bytes = data
    else:
        head = data.lstrip()[: len(_PGP_SIGNED_MESSAGE)].encode("utf-8", "replace")
        text_data = data
    if head == _PGP_SIGNED_MESSAGE:
        raise AptArchiveError(
            f"{source}: is a clear-signed message; check its signature with verify_inrelease() "
            "and parse the body it returns"
        )
    try:
        stanza = parse_single_stanza(text_data, source=source, comments=False)
    except Deb822Error as e:
        raise AptArchiveError(str(e)) from None
    if not (stanza.get("Suite") or stanza.get("Codename")):
        raise AptArchiveError(f"{source}: neither Suite nor Codename is given")
    if "SHA256" not in stanza:
        raise AptArchiveError(
            f"{source}: no SHA256 file list (Release files with only MD5Sum/SHA1 are not trusted)"
        )
    files = []
    seen: set[str] = set()
    for line in stanza.lines("SHA256"):
        words = line.split()
        if len(words) != 3 or not _SHA256_HEX.fullmatch(words[0]) or not words[1].isdigit():
            raise AptArchiveError(
                f"{source}: SHA256: malformed line {line!r} (want `hash size path`)"
            )
        path = _check_relpath(words[2], what="path", source=source)
        if path in seen:
            raise AptArchiveError(f"{source}: SHA256: {path} is listed twice")
        seen.add(path)
        files.append(ReleaseFile(path=path, size=int(words[1]), sha256=words[0].lower()))
    release = Release(
        suite=_strip(stanza.get("Suite")),
        codename=_strip(stanza.get("Codename")),
        origin=_strip(stanza.get("Origin")),
        label=_strip(stanza.get("Label")),
        version=_strip(stanza.get("Version")),
        date=_strip(stanza.get("Date")),
        valid_until=_strip(stanza.get("Valid-Until")),
        architectures=stanza.words("Architectures"),
        components=stanza.words("Components"),
        acquire_by_hash=(stanza.get("Acquire-By-Hash") or "").strip().lower() == "yes",
        files=tuple(files),
        fields=stanza.fields,
    )
    release.date_time  # noqa: B018 -- refuse unparsable dates early
    release.valid_until_time  # noqa: B018
    return release


def _strip(value: str | None) -> str | None:
    return value.strip() if value is not None else None


def check_release_dates(
    release: Release, *, now: datetime | None = None, source: str = "Release"
) -> None:
    """Refuse a `Release` that expired (`Valid-Until` passed) or is dated in the future, as apt."""
    now = now or datetime.now(timezone.utc)
    valid_until = release.valid_until_time
    if valid_until is not None and valid_until < now:
        raise AptArchiveError(
            f"{source}: expired on {release.valid_until} (Valid-Until); the mirror is stale or "
            "the file was replayed"
        )
    date = release.date_time
    if date is not None and date > now:
        raise AptArchiveError(f"{source}: dated {release.date}, in the future")


# ---------------------------------------------------------------------------------------------
# Signatures


def _crc24(data: bytes) -> int:
    crc = 0xB704CE
    for byte in data:
        crc ^= byte << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= 0x1864CFB
    return crc & 0xFFFFFF


def dearmor(text: str, *, source: str = "key") -> bytes:
    """The binary OpenPGP data of the ASCII-armored public key block(s) in `text`."""
    out = bytearray()
    lines = iter(text.replace("\r", "").split("\n"))
    found = False
    for line in lines:
        if line.strip() != f"-----BEGIN {_PGP_PUBLIC_KEY_BLOCK}-----":
            continue
        found = True
        # Armor headers ("Comment: …") up to an empty line.
        body: list[str] = []
        in_headers = True
        checksum: str | None = None
        for line in lines:
            stripped = line.strip()
            if stripped == f"-----END {_PGP_PUBLIC_KEY_BLOCK}-----":
                break
            if in_headers:
                if not stripped:
                    in_headers = False
                elif ":" not in stripped:
                    in_headers = False
                    body.append(stripped)
                continue
            if stripped.startswith("=") and len(stripped) == 5:
                checksum = stripped[1:]
            elif stripped:
                body.append(stripped)
        else:
            raise AptArchiveError(f"{source}: armored key block without an END line")
        try:
            data = base64.b64decode("".join(body), validate=True)
        except (ValueError, binascii.Error) as e:
            raise AptArchiveError(f"{source}: corrupt armored key block: {e}") from None
        if checksum is not None:
            try:
                want = int.from_bytes(base64.b64decode(checksum, validate=True), "big")
            except (ValueError, binascii.Error):
                raise AptArchiveError(f"{source}: corrupt armor checksum {checksum!r}") from None
            if _crc24(data) != want:
                raise AptArchiveError(
                    f"{source}: armor checksum mismatch: the key block is damaged"
                )
        out += data
    if not found:
        raise AptArchiveError(f"{source}: no `-----BEGIN {_PGP_PUBLIC_KEY_BLOCK}-----` block")
    return bytes(out)


def _prepare_keyrings(keyring_paths: str | Sequence[str], tmpdir: str) -> list[str]:
    """Absolute paths of binary keyrings for gpgv (armored ones are dearmored into tmpdir)."""
    if isinstance(keyring_paths, (str, os.PathLike)):
        keyring_paths = [os.fspath(keyring_paths)]
    paths = [os.fspath(p) for p in keyring_paths]
    if not paths:
        raise AptArchiveError("no keyring given to check the signature against")
    prepared = []
    for i, path in enumerate(paths):
        try:
            size = os.path.getsize(path)
            with open(path, "rb") as f:
                head = f.read(64)
                armored = head.lstrip().startswith(b"-----BEGIN PGP")
                if size > MAX_KEYRING_SIZE:
                    raise AptArchiveError(f"keyring {path}: {size} bytes, too large")
                if armored:
                    f.seek(0)
                    text = f.read().decode("ascii", "replace")
        except OSError as e:
            raise AptArchiveError(f"keyring {path}: cannot read: {e.strerror or e}") from None
        if size == 0:
            raise AptArchiveError(f"keyring {path}: empty file")
        if armored:
            binary = os.path.join(tmpdir, f"keyring-{i}.gpg")
            with open(binary, "wb") as f:
                f.write(dearmor(text, source=f"keyring {path}"))
            prepared.append(binary)
        else:
            prepared.append(os.path.abspath(path))  # gpgv reads a bare name from its homedir
    return prepared


@dataclass(frozen=True)
class _Verdict:
    good: tuple[str, ...]  # fingerprints of good signatures
    problems: tuple[str, ...]
    fatal: bool


def _judge_status(status: str) -> _Verdict:
    """apt's rules (methods/gpgv.cc), per signature (the lines after each `NEWSIG`).

    A signature is good when gpgv says GOODSIG and VALIDSIG with a strong digest (not MD5, SHA1
    or RIPEMD160) for it, and nothing against it. One good signature is enough: signatures by
    keys not in the keyrings (NO_PUBKEY) or by expired or revoked keys are reported but ignored,
    as Debian signs with several keys. A bad signature anywhere (BADSIG: the data was modified)
    or corrupt armor is always a failure.
    """
    good: list[str] = []
    problems: list[str] = []
    fatal = False
    block: list[tuple[str, list[str]]] = []

    def judge_block() -> None:
        keywords = {keyword for keyword, _ in block}
        if "GOODSIG" not in keywords or keywords & {"EXPKEYSIG", "REVKEYSIG", "EXPSIG", "BADSIG"}:
            return
        for keyword, args in block:
            if keyword == "VALIDSIG" and args:
                digest = args[7] if len(args) > 7 else ""
                if digest not in _WEAK_DIGESTS:
                    good.append(args[9] if len(args) > 9 else args[0])

    for line in status.splitlines():
        if not line.startswith("[GNUPG:] "):
            continue
        words = line[len("[GNUPG:] ") :].split()
        if not words:
            continue
        keyword, args = words[0], words[1:]
        key = args[0] if args else "?"
        if keyword == "NEWSIG":
            judge_block()
            block = []
            continue
        block.append((keyword, args))
        if keyword == "VALIDSIG" and len(args) > 7 and args[7] in _WEAK_DIGESTS:
            problems.append(f"signature by {key} uses the weak digest {_WEAK_DIGESTS[args[7]]}")
        elif keyword == "BADSIG":
            fatal = True
            problems.append(f"BAD signature by key {key} (BADSIG: the signed data was modified)")
        elif keyword == "NO_PUBKEY":
            problems.append(f"no public key {key} in the keyring(s) (NO_PUBKEY)")
        elif keyword == "EXPKEYSIG":
            problems.append(f"signed by the expired key {key} (EXPKEYSIG)")
        elif keyword == "REVKEYSIG":
            problems.append(f"signed by the revoked key {key} (REVKEYSIG)")
        elif keyword == "EXPSIG":
            problems.append(f"the signature by {key} has expired (EXPSIG)")
        elif keyword == "ERRSIG" and len(args) >= 6 and args[5] != "9":
            problems.append(f"cannot check the signature by key {key} (ERRSIG {args[5]})")
        elif keyword == "NODATA":
            problems.append("no signature found (NODATA)")
        elif keyword == "BADARMOR":
            fatal = True
            problems.append("corrupt armor (BADARMOR)")
    judge_block()
    return _Verdict(good=tuple(good), problems=tuple(problems), fatal=fatal or not good)


def _run_gpgv(
    args: list[str], *, keyrings: list[str], shown_keyrings: Sequence[str], what: str,
    gpgv: str, homedir: str
) -> None:
    command = [gpgv, "--homedir", homedir, "--status-fd", "1"]
    for keyring in keyrings:
        command += ["--keyring", keyring]
    command += args
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "GNUPGHOME": homedir}
    try:
        result = subprocess.run(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, check=False
        )
    except OSError as e:
        raise AptArchiveError(
            f"{what}: cannot run {gpgv} to check the signature: {e} (install the Debian package "
            "`gpgv`)"
        ) from None
    verdict = _judge_status(result.stdout.decode("utf-8", "replace"))
    if verdict.fatal or result.returncode not in (0, 1, 2):
        stderr = result.stderr.decode("utf-8", "replace").strip()
        details = "; ".join(verdict.problems) or f"gpgv exited with status {result.returncode}"
        raise AptArchiveError(
            f"{what}: the signature did not verify with the keyring(s) "
            f"{', '.join(shown_keyrings)}: {details}"
            + (f"\ngpgv said:\n{stderr[-4000:]}" if stderr else "")
        )


def _keyring_names(keyring_paths: str | Sequence[str]) -> list[str]:
    if isinstance(keyring_paths, (str, os.PathLike)):
        return [os.fspath(keyring_paths)]
    return [os.fspath(p) for p in keyring_paths]


def _check_clearsigned_structure(data: bytes, *, what: str) -> None:
    """Like apt (SplitClearSignedFile): one clear-signed message, nothing before or after it."""
    lines = data.replace(b"\r\n", b"\n").split(b"\n")
    while lines and not lines[-1].strip():
        lines.pop()
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None or lines[first].rstrip() != _PGP_SIGNED_MESSAGE:
        raise AptArchiveError(
            f"{what}: not a clear-signed message (it must start with "
            f"{_PGP_SIGNED_MESSAGE.decode()}; got {describe_head(data)})"
        )
    begins = [i for i, line in enumerate(lines) if line.rstrip() == _PGP_SIGNED_MESSAGE]
    signatures = [i for i, line in enumerate(lines) if line.rstrip() == _PGP_SIGNATURE]
    ends = [i for i, line in enumerate(lines) if line.rstrip() == _PGP_SIGNATURE_END]
    if len(begins) != 1 or len(signatures) != 1 or len(ends) != 1:
        raise AptArchiveError(
            f"{what}: expected exactly one signed message and one signature block, found "
            f"{len(begins)} and {len(signatures)}"
        )
    if ends[0] != len(lines) - 1:
        raise AptArchiveError(f"{what}: unsigned data after the signature")


def verify_inrelease(
    inrelease_path: str, keyring_paths: str | Sequence[str], *, gpgv: str = GPGV
) -> bytes:
    """Check the clear-signed `InRelease` file against the given keyrings only; its signed body.

    Runs `gpgv --status-fd 1 --keyring K… --output BODY InRelease` in an empty GnuPG home (no
    default keyring is consulted). Accepted, as apt accepts: at least one good signature by a key
    in the keyrings with a strong digest (not MD5/SHA1/RIPEMD160), and no bad one; signatures by
    keys not in the keyrings are ignored. The body returned is gpgv's output — the signed text
    only — so nothing outside the signature can slip in. Keyrings may be binary or
    ASCII-armored (`.asc`). Any failure raises `AptArchiveError` naming the file, the keyrings
    and the reason ("the signature did not verify …").
    """
    shown = _keyring_names(keyring_paths)
    try:
        with open(inrelease_path, "rb") as f:
            data = f.read(MAX_RELEASE_SIZE + 1)
    except OSError as e:
        raise AptArchiveError(f"{inrelease_path}: cannot read: {e.strerror or e}") from None
    if len(data) > MAX_RELEASE_SIZE:
        raise AptArchiveError(f"{inrelease_path}: larger than {MAX_RELEASE_SIZE} bytes")
    _check_clearsigned_structure(data, what=inrelease_path)
    with tempfile.TemporaryDirectory(prefix="pants-sysext-gpgv-") as tmpdir:
        homedir = os.path.join(tmpdir, "home")
        os.mkdir(homedir, 0o700)
        keyrings = _prepare_keyrings(keyring_paths, tmpdir)
        # Check the bytes read above, not a file that may have changed since.
        signed = os.path.join(tmpdir, "InRelease")
        body = os.path.join(tmpdir, "body")
        with open(signed, "wb") as f:
            f.write(data)
        _run_gpgv(
            ["--output", body, signed],
            keyrings=keyrings,
            shown_keyrings=shown,
            what=inrelease_path,
            gpgv=gpgv,
            homedir=homedir,
        )
        try:
            with open(body, "rb") as f:
                return f.read()
        except OSError as e:
            raise AptArchiveError(
                f"{inrelease_path}: gpgv accepted the signature but wrote no signed text: {e}"
            ) from None


def verify_release_gpg(
    release_path: str,
    signature_path: str,
    keyring_paths: str | Sequence[str],
    *,
    gpgv: str = GPGV,
) -> bytes:
    """Check a `Release` file against its detached signature `Release.gpg`; the `Release` bytes.

    Same rules and errors as `verify_inrelease`.
    """
    shown = _keyring_names(keyring_paths)
    try:
        with open(release_path, "rb") as f:
            data = f.read(MAX_RELEASE_SIZE + 1)
        with open(signature_path, "rb") as f:
            signature = f.read(MAX_RELEASE_SIZE + 1)
    except OSError as e:
        raise AptArchiveError(f"{e.filename}: cannot read: {e.strerror or e}") from None
    if len(data) > MAX_RELEASE_SIZE or len(signature) > MAX_RELEASE_SIZE:
        raise AptArchiveError(f"{release_path}: larger than {MAX_RELEASE_SIZE} bytes")
    with tempfile.TemporaryDirectory(prefix="pants-sysext-gpgv-") as tmpdir:
        homedir = os.path.join(tmpdir, "home")
        os.mkdir(homedir, 0o700)
        keyrings = _prepare_keyrings(keyring_paths, tmpdir)
        copy = os.path.join(tmpdir, "Release")
        sig = os.path.join(tmpdir, "Release.gpg")
        with open(copy, "wb") as f:
            f.write(data)
        with open(sig, "wb") as f:
            f.write(signature)
        _run_gpgv(
            [sig, copy],
            keyrings=keyrings,
            shown_keyrings=shown,
            what=f"{release_path} (signature {signature_path})",
            gpgv=gpgv,
            homedir=homedir,
        )
    return data


# ---------------------------------------------------------------------------------------------
# Index files


def _sha256_and_size(stream: BinaryIO) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    while True:
        chunk = stream.read(_CHUNK_SIZE)
        if not chunk:
            break
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def check_index(release: Release, relpath: str, file: str | BinaryIO) -> ReleaseFile:
    """Check that `file` (a path or a binary stream) is the `relpath` listed in `release`.

    `relpath` is relative to the suite directory (`main/binary-amd64/Packages.xz`). The file is
    streamed. A file not listed, or whose size or SHA256 differ, raises `AptArchiveError` naming
    the file and both sizes and hashes. Returns the `Release` entry.
    """
    entry = release.file(relpath)
    name = file if isinstance(file, str) else getattr(file, "name", relpath)
    if entry is None:
        raise AptArchiveError(
            f"{name}: {relpath} is not listed in the SHA256 list of Release "
            f"({release.suite or release.codename}); refusing an unverifiable index"
        )
    if isinstance(file, str):
        try:
            with open(file, "rb") as f:
                sha256, size = _sha256_and_size(f)
        except OSError as e:
            raise AptArchiveError(f"{file}: cannot read: {e.strerror or e}") from None
    else:
        sha256, size = _sha256_and_size(file)
    if sha256 != entry.sha256 or size != entry.size:
        raise AptArchiveError(
            f"{name}: does not match {relpath} in Release "
            f"({release.suite or release.codename}): SHA256 {sha256}, size {size}; Release says "
            f"SHA256 {entry.sha256}, size {entry.size}. The mirror is inconsistent (an update "
            "in progress?) or the file was tampered with."
        )
    return entry


def index_compression(name: str) -> Compression:
    """The compression of an index file, by suffix (`Packages.xz` → xz; `Packages` → none)."""
    base = os.path.basename(name)
    stem, dot, ext = base.rpartition(".")
    if dot and stem:
        compression = compression_from_suffix(f"index.tar.{ext}")
        if compression is not None:
            return compression
    return Compression.NONE


def _check_index_magic(head: bytes, compression: Compression, name: str) -> None:
    detected = detect_compression(head)
    if compression == Compression.NONE:
        if detected not in (None, Compression.NONE):
            raise AptArchiveError(
                f"{name}: the name says uncompressed, but the content is {detected.value}"
            )
    elif detected != compression:
        raise AptArchiveError(
            f"{name}: the name says {compression.value}, but the content starts with "
            f"{describe_head(head)}"
        )


@contextmanager
def open_index(
    path: str, *, tools: Mapping[str, str] | None = None
) -> Iterator[BinaryIO]:
    """A binary stream of the decompressed content of index file `path` (by its suffix).

    The suffix must agree with the magic bytes. Corrupt data raises `BinpkgError` from reads
    (`parse_packages` turns it into `AptArchiveError`).
    """
    with open(path, "rb") as f:
        compression = index_compression(path)
        head = f.read(512)
        f.seek(0)
        _check_index_magic(head, compression, path)
        with decompressed(
            f, compression, binpkg=path, member=os.path.basename(path), tools=tools
        ) as stream:
            yield stream


def decompress_index(
    data: bytes, *, name: str = "Packages", tools: Mapping[str, str] | None = None
) -> bytes:
    """The decompressed bytes of an index held in memory, compression found by magic bytes."""
    compression = detect_compression(data[:512])
    if compression is None or compression == Compression.NONE:
        return data
    try:
        with decompressed(
            io.BytesIO(data), compression, binpkg=name, member=compression.value, tools=tools
        ) as stream:
            return stream.read()
    except BinpkgError as e:
        raise AptArchiveError(str(e)) from None


@dataclass(frozen=True)
class ArchivePackage:
    """One binary package of a `Packages` index.

    `filename` is relative to the archive root (`pool/main/j/jq/jq_1.6-2.1_amd64.deb`), checked
    to contain no `..`; `size` and `sha256` describe that file. Relationship fields are parsed
    as in `formats.dpkg_status`. `multi_arch` is `no` when absent.
    """

    package: str
    version: str
    architecture: str
    filename: str
    size: int
    sha256: str
    depends: tuple[tuple[Relation, ...], ...]
    pre_depends: tuple[tuple[Relation, ...], ...]
    provides: tuple[Relation, ...]
    conflicts: tuple[Relation, ...]
    breaks: tuple[Relation, ...]
    multi_arch: str
    essential: bool
    source: str
    source_version: str = ""

    @property
    def label(self) -> str:
        return f"{self.package}_{self.version}_{self.architecture}"

    def url(self, mirror: str) -> str:
        """The download URL of the `.deb` below archive root `mirror`."""
        return f"{mirror.rstrip('/')}/{self.filename}"


_MULTI_ARCH_VALUES = ("no", "same", "foreign", "allowed")


def _archive_package(stanza: Stanza, *, source: str) -> ArchivePackage:
    where = f"{source}:{stanza.lineno}"
    try:
        package, version, architecture = check_package_fields(
            stanza, source=where, required=("Filename", "Size", "SHA256")
        )
        filename = _check_relpath(stanza["Filename"].strip(), what="Filename", source=where)
        size_text = stanza["Size"].strip()
        sha256 = stanza["SHA256"].strip()
        if not size_text.isdigit():
            raise AptArchiveError(f"{where}: {package}: invalid Size {size_text!r}")
        if not _SHA256_HEX.fullmatch(sha256):
            raise AptArchiveError(f"{where}: {package}: invalid SHA256 {sha256!r}")
        multi_arch = (stanza.get("Multi-Arch") or "no").strip()
        if multi_arch not in _MULTI_ARCH_VALUES:
            raise AptArchiveError(f"{where}: {package}: invalid Multi-Arch {multi_arch!r}")
        source_name, source_version = parse_source_field(
            stanza.get("Source"), package=package, version=version, source=where
        )
        return ArchivePackage(
            package=package,
            version=version,
            architecture=architecture,
            filename=filename,
            size=int(size_text),
            sha256=sha256.lower(),
            depends=parse_relations(stanza.get("Depends"), field="Depends", source=where),
            pre_depends=parse_relations(
                stanza.get("Pre-Depends"), field="Pre-Depends", source=where
            ),
            provides=parse_relation_list(stanza.get("Provides"), field="Provides", source=where),
            conflicts=parse_relation_list(
                stanza.get("Conflicts"), field="Conflicts", source=where
            ),
            breaks=parse_relation_list(stanza.get("Breaks"), field="Breaks", source=where),
            multi_arch=multi_arch,
            essential=parse_yes_no(stanza.get("Essential"), field="Essential", source=where),
            source=source_name,
            source_version=source_version,
        )
    except Deb822Error as e:
        raise AptArchiveError(str(e)) from None


PackagesInput = Union[bytes, str, BinaryIO, Iterable[str]]


def iter_packages(data: PackagesInput, *, source: str = "Packages") -> Iterator[ArchivePackage]:
    """Yield the packages of a `Packages` index: text, bytes (compressed ones are decompressed,
    found by magic bytes) or a binary stream of the uncompressed index (see `open_index`).

    Every package must have valid `Package`, `Version`, `Architecture`, a safe relative
    `Filename`, `Size` and `SHA256`; anything else raises `AptArchiveError` naming the line.
    """
    if isinstance(data, bytes):
        data = decompress_index(data, name=source)
    try:
        for stanza in iter_stanzas(data, source=source, comments=False):
            yield _archive_package(stanza, source=source)
    except Deb822Error as e:
        raise AptArchiveError(str(e)) from None
    except BinpkgError as e:
        raise AptArchiveError(str(e)) from None


def parse_packages(data: PackagesInput, *, source: str = "Packages") -> tuple[ArchivePackage, ...]:
    """All the packages of a `Packages` index (see `iter_packages`)."""
    return tuple(iter_packages(data, source=source))


def read_packages_file(
    path: str, *, tools: Mapping[str, str] | None = None
) -> tuple[ArchivePackage, ...]:
    """The packages of the index file `path` (`Packages`, `Packages.xz`, …), streamed."""
    try:
        with open_index(path, tools=tools) as stream:
            return parse_packages(stream, source=path)
    except BinpkgError as e:
        raise AptArchiveError(str(e)) from None
