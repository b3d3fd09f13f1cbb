"""Target types of the `pants_sysext` backend: `binpkg_set` and `sysext_image`."""

from __future__ import annotations

import os
import re
from typing import ClassVar, Dict, Iterable, Optional

from pants.core.goals.package import OutputPathField
from pants.engine.addresses import Address
from pants.engine.target import (
    COMMON_TARGET_FIELDS,
    BoolField,
    Dependencies,
    DictStringToStringField,
    IntField,
    InvalidFieldException,
    MultipleSourcesField,
    SpecialCasedDependencies,
    StringField,
    StringSequenceField,
    Target,
)
from pants.util.frozendict import FrozenDict
from pants.util.strutil import help_text

from pants_sysext.extension_release import (
    ARCHITECTURES,
    RESERVED_RELEASE_KEYS,
    validate_release_key,
)

# -----------------------------------------------------------------------------------------------
# binpkg_set
# -----------------------------------------------------------------------------------------------

BINPKG_FILE_EXTENSIONS = (".gpkg.tar", ".tbz2", ".xpak", ".deb")


class BinpkgSourcesField(MultipleSourcesField):
    alias = "sources"
    default = ()
    expected_file_extensions: ClassVar[tuple[str, ...]] = (".tar", ".tbz2", ".xpak", ".deb")
    help = help_text(
        """
        Binary package files in this repository, relative to this BUILD file: Portage GPKG
        (`*.gpkg.tar`) or XPAK (`*.tbz2`, `*.xpak`), or Debian `*.deb`. Globs are allowed.

        The format and compression are read from the file's content, not its name.
        """
    )


class BinpkgDependenciesField(Dependencies):
    help = help_text(
        """
        `file` targets whose file is a binary package, typically with an `http_source` (URL,
        sha256 and length), so that the package is fetched and verified by Pants:

            file(name="jq", source=http_source(url="…/app-misc/jq-1.6-r3.gpkg.tar", len=…,
                 sha256="…", filename="jq-1.6-r3.gpkg.tar"))
        """
    )


class BinhostField(StringField):
    alias = "binhost"
    help = help_text(
        """
        A Portage binhost (a `PKGDIR`): a `Packages` index and the binary packages it lists.
        Either a URL (`https://`, `http://`, `file://`), or a directory in the repository:
        relative to this BUILD file, or, starting with `//`, relative to the build root.

        Packages are taken from it by `cpvs` (pinned by hand), or resolved from `packages`
        into a lockfile by `pants generate-lockfiles`.
        """
    )

    @classmethod
    def compute_value(cls, raw_value: Optional[str], address: Address) -> Optional[str]:
        value = super().compute_value(raw_value, address)
        if value is None:
            return None
        if "://" in value and not value.startswith(("https://", "http://", "file://")):
            raise InvalidFieldException(
                f"The {cls.alias!r} field in target {address} must be an https://, http:// or "
                f"file:// URL, or a directory in the repository, got {value!r}."
            )
        return value

    def is_url(self) -> bool:
        return self.value is not None and "://" in self.value

    def directory(self) -> str | None:
        """The binhost directory relative to the build root (None for a URL)."""
        if self.value is None or self.is_url():
            return None
        if self.value.startswith("//"):
            return os.path.normpath(self.value[2:])
        return os.path.normpath(os.path.join(self.address.spec_path, self.value))

    def location(self) -> str | None:
        """What the lockfile records: the URL, or the directory relative to the build root."""
        return self.value if self.is_url() else self.directory()


_CPV_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9+_.-]*/[A-Za-z0-9_][A-Za-z0-9+_.-]*$")


class CpvsField(StringSequenceField):
    alias = "cpvs"
    help = help_text(
        """
        The packages to take from `binhost`, each as a CPV: `CATEGORY/PF`, for example
        `app-misc/jq-1.6-r3`. When the binhost holds several builds of one CPV
        (`binpkg-multi-instance`), the one with the highest `BUILD_ID` is used.
        """
    )

    @classmethod
    def compute_value(
        cls, raw_value: Optional[Iterable[str]], address: Address
    ) -> Optional[tuple[str, ...]]:
        value = super().compute_value(raw_value, address)
        for cpv in value or ():
            if not _CPV_RE.match(cpv):
                raise InvalidFieldException(
                    f"The {cls.alias!r} field in target {address} must hold CPVs like "
                    f"`app-misc/jq-1.6-r3`, got {cpv!r}."
                )
        return value


class BinpkgPackagesField(StringSequenceField):
    alias = "packages"
    help = help_text(
        """
        What to install, as Portage atoms (`app-containers/docker`, `>=dev-libs/foo-2:3`,
        `=app-misc/jq-1.6-r3`). `pants generate-lockfiles` resolves them and their RDEPEND
        closure against `binhost`, leaving out what the `base` image already has, and pins the
        result in `lockfile`; `pants package` then uses only the lockfile.
        """
    )

    @classmethod
    def compute_value(
        cls, raw_value: Optional[Iterable[str]], address: Address
    ) -> Optional[tuple[str, ...]]:
        # Atoms (Portage) or package names (Debian, with `apt_suite`): checked when resolved.
        return super().compute_value(raw_value, address)


class BinpkgExcludeField(StringSequenceField):
    alias = "exclude"
    default = ()
    help = help_text(
        """
        Atoms never to install from the binhost, as emerge's `--exclude`: a dependency on an
        excluded package must then be satisfied by the base or a stacked extension, or
        `generate-lockfiles` fails saying it was excluded.
        """
    )

    @classmethod
    def compute_value(
        cls, raw_value: Optional[Iterable[str]], address: Address
    ) -> Optional[tuple[str, ...]]:
        return super().compute_value(raw_value, address)


class BinpkgBaseField(StringField):
    alias = "base"
    help = help_text(
        """
        Address of the `sysext_base` the packages are resolved against: dependencies its
        package database satisfies are left out (and recorded in the lockfile as such).
        """
    )


class ResolveField(StringField):
    alias = "resolve"
    help = help_text(
        """
        The name of this set's resolve, for `pants generate-lockfiles --resolve=NAME`.
        Defaults to the target's name.
        """
    )

    def value_or_default(self, address: Address) -> str:
        return self.value or address.target_name


class LockfileField(StringField):
    alias = "lockfile"
    help = help_text(
        """
        The lockfile of this set (when `packages` is set), relative to this BUILD file.
        Defaults to `RESOLVE.lock.json` next to it. Written by
        `pants generate-lockfiles --resolve=RESOLVE`; commit it.
        """
    )

    def path(self, address: Address, resolve: str) -> str:
        return os.path.normpath(os.path.join(address.spec_path, self.value or f"{resolve}.lock.json"))


class AptSuiteField(StringField):
    alias = "apt_suite"
    help = help_text(
        """
        Take Debian packages from an apt archive's suite (e.g. `bookworm`) instead of a Portage
        binhost: `packages` are then Debian package names (optionally `name (>= 1.2)`),
        resolved against the `base`'s dpkg status into a lockfile. The archive's `InRelease` is
        verified with `gpgv` against `apt_keyring`, and every `Packages` index against it. The
        mirror is `apt_mirror`, else `[debian].mirror`, else the machine's own apt sources; it
        is not written into the lockfile (which pins archive paths, sizes and sha256).
        """
    )


class AptComponentsField(StringSequenceField):
    alias = "apt_components"
    default = ("main",)
    help = "The archive components to take packages from (with `apt_suite`)."


class AptArchitectureField(StringField):
    alias = "apt_architecture"
    default = "amd64"
    help = "The Debian architecture of the packages (with `apt_suite`); `all` packages come too."


class AptKeyringField(StringField):
    alias = "apt_keyring"
    default = "/usr/share/keyrings/debian-archive-keyring.gpg"
    help = help_text(
        """
        The keyring `InRelease` must be signed with (with `apt_suite`): a path on the machine
        (default: Debian's archive keyring), or, starting with `//`, a file in the repository.
        """
    )


class AptMirrorField(StringField):
    alias = "apt_mirror"
    help = help_text(
        """
        The apt archive's base URL (with `apt_suite`). Unset: `[debian].mirror`, else the first
        `deb` source of the machine's apt configuration that serves `apt_suite`.
        """
    )


class BinpkgSetTarget(Target):
    alias = "binpkg_set"
    core_fields = (
        *COMMON_TARGET_FIELDS,
        BinpkgSourcesField,
        BinpkgDependenciesField,
        BinhostField,
        CpvsField,
        BinpkgPackagesField,
        BinpkgExcludeField,
        BinpkgBaseField,
        ResolveField,
        LockfileField,
        AptSuiteField,
        AptComponentsField,
        AptArchitectureField,
        AptKeyringField,
        AptMirrorField,
    )
    help = help_text(
        """
        A set of binary packages (Portage GPKG/XPAK, or Debian `.deb` from files or an apt
        archive with `apt_suite`) (GPKG or XPAK) to install into a system extension.

        Either resolved: `packages` (atoms) + `binhost` + `base`, pinned in a lockfile by
        `pants generate-lockfiles`; or pinned by hand: files (`sources`, or `file` targets in
        `dependencies`), or CPVs from a binhost (`binhost` + `cpvs`).
        """
    )

    def validate(self) -> None:
        binhost = self[BinhostField].value
        cpvs = self[CpvsField].value
        packages = self[BinpkgPackagesField].value
        if cpvs and packages:
            raise InvalidFieldException(
                f"The target {self.address} sets both `cpvs` and `packages`: use `packages` "
                f"(resolved into a lockfile) or `cpvs` (pinned by hand), not both."
            )
        if self[AptSuiteField].value:
            if binhost or cpvs:
                raise InvalidFieldException(
                    f"The target {self.address} sets `apt_suite` (Debian packages from an apt "
                    f"archive) and also `binhost`/`cpvs` (Portage): use one source."
                )
            if not packages:
                raise InvalidFieldException(
                    f"The target {self.address} sets `apt_suite` but lists no `packages`."
                )
            return
        if (cpvs or packages) and not binhost:
            field = "cpvs" if cpvs else "packages"
            raise InvalidFieldException(
                f"The `{field}` field in target {self.address} needs a `binhost` to take them from."
            )
        if binhost and not (cpvs or packages):
            raise InvalidFieldException(
                f"The target {self.address} sets `binhost` but lists no `packages` (atoms to "
                f"resolve) and no `cpvs` (pinned CPVs)."
            )
        if cpvs and self[BinhostField].is_url():
            raise InvalidFieldException(
                f"The target {self.address} takes `cpvs` from a URL binhost: unpinned downloads "
                f"are not allowed. Use `packages` and a lockfile (`pants generate-lockfiles`)."
            )
        if packages and (self[BinpkgSourcesField].value or self[BinpkgDependenciesField].value):
            raise InvalidFieldException(
                f"The target {self.address} mixes resolved `packages` with `sources` or "
                f"`dependencies`: put pinned files in a binpkg_set of their own."
            )


# -----------------------------------------------------------------------------------------------
# sysext_base
# -----------------------------------------------------------------------------------------------


class BaseRootField(StringField):
    alias = "root"
    help = help_text(
        """
        A directory in the repository holding the base OS's package database as
        `var/db/pkg/CATEGORY/PF/…` (and optionally `usr/lib/os-release`), relative to this
        BUILD file or `//`-prefixed.
        """
    )

    def directory(self, address: Address) -> str | None:
        if self.value is None:
            return None
        if self.value.startswith("//"):
            return os.path.normpath(self.value[2:])
        return os.path.normpath(os.path.join(address.spec_path, self.value))


class BaseImageField(StringField):
    alias = "image"
    help = help_text(
        """
        Address of a `file` target (typically with an `http_source`) holding the base OS image
        or its package-info image: a squashfs (Flatcar's
        `flatcar_production_image_sysext.squashfs`, `*_pkginfo.raw`) or a tarball
        (`.tar`, `.tar.gz`, `.tar.xz`, `.tar.zst`, `.tar.bz2`), containing `var/db/pkg`.
        """
    )


class BaseArchitectureField(StringField):
    alias = "architecture"
    valid_choices = ARCHITECTURES
    help = "The base OS's architecture, in systemd's names (`x86-64`, `arm64`, …)."


class BaseOsIdField(StringField):
    alias = "os_id"
    help = help_text(
        """
        The base OS's os-release `ID` (`flatcar`, `debian`, …). Images built on this base take
        it as their `ID=` unless they set `os_id`. Defaults to the `ID` in the base's
        `usr/lib/os-release`, if it has one.
        """
    )


class BaseVersionIdField(StringField):
    alias = "version_id"
    help = help_text(
        """
        The base OS's os-release `VERSION_ID` (e.g. `3975.2.0`), inherited by images that set
        neither `version_id` nor `sysext_level`.
        """
    )


class BaseSysextLevelField(StringField):
    alias = "sysext_level"
    help = help_text(
        """
        The base OS's os-release `SYSEXT_LEVEL`, inherited by images that set neither
        `version_id` nor `sysext_level` (takes precedence over the base's `version_id`).
        """
    )


class SysextBaseTarget(Target):
    alias = "sysext_base"
    core_fields = (
        *COMMON_TARGET_FIELDS,
        BaseRootField,
        BaseImageField,
        BaseOsIdField,
        BaseVersionIdField,
        BaseSysextLevelField,
        BaseArchitectureField,
    )
    help = help_text(
        """
        The OS an extension will be merged into: its os-release identity and its installed
        package database (Portage's VDB), from a directory (`root`) or an image (`image`).
        `binpkg_set(base=…)` resolves against it; `sysext_image(base=…)` inherits its `ID`,
        `VERSION_ID`/`SYSEXT_LEVEL` and `ARCHITECTURE`.
        """
    )

    def validate(self) -> None:
        if bool(self[BaseRootField].value) == bool(self[BaseImageField].value):
            raise InvalidFieldException(
                f"The target {self.address} must set exactly one of `root` (a directory holding "
                f"var/db/pkg) and `image` (a `file` target with the base image)."
            )


# -----------------------------------------------------------------------------------------------
# sysext_image
# -----------------------------------------------------------------------------------------------

_EXTENSION_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*$")


class ExtensionNameField(StringField):
    alias = "extension_name"
    help = help_text(
        """
        The extension's name, NAME: the image is `NAME.raw` and its release file
        `usr/lib/extension-release.d/extension-release.NAME`. systemd-sysext refuses an image
        whose file name does not match. Defaults to the target's name.
        """
    )

    @classmethod
    def compute_value(cls, raw_value: Optional[str], address: Address) -> Optional[str]:
        value = super().compute_value(raw_value, address)
        if value is not None and (not _EXTENSION_NAME_RE.match(value) or value.endswith(".raw")):
            raise InvalidFieldException(
                f"The {cls.alias!r} field in target {address} must be a plain file name of "
                f"letters, digits and `_.+-` without the `.raw` suffix, got {value!r}."
            )
        return value

    def value_or_default(self, address: Address) -> str:
        return self.value or address.target_name


class SysextPackagesField(SpecialCasedDependencies):
    alias = "packages"
    required = True
    help = help_text(
        """
        Addresses of `binpkg_set` targets whose packages are installed into the extension, e.g.
        `["3rdparty/portage:jq"]`. Packages are merged in CPV order; two packages that write
        one path with different content are an error.
        """
    )


class OsIdField(StringField):
    alias = "os_id"
    help = help_text(
        """
        `ID=` of the extension-release file: the `ID` of the OS the extension is for, as in its
        `os-release` (`flatcar`, `debian`, `fedora`, …), or `_any` to match every OS (then
        `version_id` and `sysext_level` are not checked by systemd). Defaults to the `base`'s
        `ID`, or `_any` without a base.
        """
    )

    @classmethod
    def compute_value(cls, raw_value: Optional[str], address: Address) -> Optional[str]:
        value = super().compute_value(raw_value, address)
        if value is not None and not re.match(r"^(_any|[a-z0-9._-]+)$", value):
            raise InvalidFieldException(
                f"The {cls.alias!r} field in target {address} must be `_any` or an os-release "
                f"ID (lower-case letters, digits, `._-`), got {value!r}."
            )
        return value


class _ReleaseValueField(StringField):
    @classmethod
    def compute_value(cls, raw_value: Optional[str], address: Address) -> Optional[str]:
        value = super().compute_value(raw_value, address)
        if value is not None and not re.match(r"^[A-Za-z0-9._~+-]+$", value):
            raise InvalidFieldException(
                f"The {cls.alias!r} field in target {address} must be letters, digits and "
                f"`._~+-`, got {value!r}."
            )
        return value


class VersionIdField(_ReleaseValueField):
    alias = "version_id"
    help = help_text(
        """
        `VERSION_ID=` of the extension-release file: systemd-sysext merges the extension only
        into an OS whose os-release `VERSION_ID` is equal (e.g. Flatcar's `3975.2.0`). Use
        either this or `sysext_level`.
        """
    )


class SysextLevelField(_ReleaseValueField):
    alias = "sysext_level"
    help = help_text(
        """
        `SYSEXT_LEVEL=` of the extension-release file: merged only into an OS whose os-release
        `SYSEXT_LEVEL` is equal (e.g. `1.0`), which survives OS updates unlike `version_id`.
        Use either this or `version_id`.
        """
    )


class ArchitectureField(StringField):
    alias = "architecture"
    valid_choices = ARCHITECTURES
    help = help_text(
        """
        `ARCHITECTURE=` of the extension-release file, in systemd's names. Defaults to the
        architecture of the packages, from their `CHOST` (`x86_64-*` gives `x86-64`,
        `aarch64-*` gives `arm64`, …); packages of different architectures are an error.
        """
    )


class ExtensionReleaseField(DictStringToStringField):
    alias = "extension_release"
    help = help_text(
        f"""
        Extra keys for the extension-release file, e.g.
        `{{"SYSEXT_ID": "jq", "EXTENSION_RELOAD_MANAGER": "1"}}`. Keys are upper-case
        os-release style names; values are quoted as needed. The keys
        {", ".join(f"`{k}`" for k in RESERVED_RELEASE_KEYS)} have fields of their own.
        """
    )

    @classmethod
    def compute_value(
        cls, raw_value: Optional[Dict[str, str]], address: Address
    ) -> Optional[FrozenDict[str, str]]:
        value = super().compute_value(raw_value, address)
        for key in value or {}:
            problem = validate_release_key(key)
            if problem:
                raise InvalidFieldException(
                    f"The {cls.alias!r} field in target {address} has the key {key!r}: {problem}"
                )
        return value


class CompressionField(StringField):
    alias = "compression"
    default = "zstd"
    valid_choices = ("zstd", "xz", "gzip", "lz4", "none")
    help = help_text(
        """
        Compression of the squashfs image. `zstd` (512 KiB blocks) is what Flatcar uses for
        downloadable extensions; `none` suits extensions stored on an already compressed file
        system.
        """
    )


class ExcludeField(StringSequenceField):
    alias = "exclude"
    default = ()
    help = help_text(
        """
        Paths in the packages to leave out of the image, as absolute paths or globs
        (`fnmatch`), each covering everything below it: e.g. `["/etc", "/var"]`, or
        `["/usr/share/doc/*"]`.

        Only `/usr` and `/opt` reach an extension image: any other top-level content in the
        packages is an error that lists it, unless it is excluded here.
        """
    )


class SourceDateEpochField(IntField):
    alias = "source_date_epoch"
    default = 0
    help = help_text(
        """
        The time stamp (seconds since the epoch) given to every file and to the squashfs
        super block, so that the same inputs give a byte-identical image.
        """
    )

    @classmethod
    def compute_value(cls, raw_value: Optional[int], address: Address) -> Optional[int]:
        value = super().compute_value(raw_value, address)
        if value is not None and not (0 <= value < 2**32):
            raise InvalidFieldException(
                f"The {cls.alias!r} field in target {address} must be between 0 and 2**32 - 1."
            )
        return value


class ImageBaseField(StringField):
    alias = "base"
    help = help_text(
        """
        Address of the `sysext_base` this extension is for. The image takes its `ID`,
        `VERSION_ID`/`SYSEXT_LEVEL` and `ARCHITECTURE` unless set here, and the packages'
        architecture must match it.
        """
    )


class BaseExtensionsField(SpecialCasedDependencies):
    alias = "base_extensions"
    help = help_text(
        """
        `sysext_image` targets this extension is stacked on (Flatcar's `--base_pkginfo`
        chain): their packages count as installed when this extension's `binpkg_set`s are
        resolved, so e.g. docker on top of containerd does not ship containerd or runc again.
        """
    )


class PkginfoField(BoolField):
    alias = "pkginfo"
    default = False
    help = help_text(
        """
        Also write `NAME_pkginfo.raw` next to the image: a squashfs holding the package
        database entries (`var/db/pkg/CATEGORY/PF/…`) of the packages in the extension, for
        consumers outside this repository that stack on it.
        """
    )


class EtcPolicyField(StringField):
    alias = "etc"
    default = "error"
    valid_choices = ("error", "drop", "relocate")
    help = help_text(
        """
        What to do with `/etc` content of the packages, which systemd-sysext cannot merge:
        `error` (the default) lists it and fails; `drop` leaves it out; `relocate` moves it to
        `/usr/share/NAME/etc/…` and writes `/usr/lib/tmpfiles.d/NAME.conf` so that
        `systemd-tmpfiles` creates the directories (`d`, with their modes and owners) and
        copies the files (`C`) and links (`L`) into `/etc` at boot, as Flatcar's mangle scripts
        do by hand. Files already in `/etc` are not overwritten.
        """
    )


STRIP_PRESETS = {
    "docs": ("/usr/share/doc", "/usr/share/info", "/usr/share/gtk-doc"),
    "man": ("/usr/share/man",),
    "headers": ("/usr/include",),
    "static-libs": ("/usr/lib*/*.a", "/usr/lib*/*.la", "/opt/*.a", "/opt/*.la"),
    "debug": ("/usr/lib/debug", "/usr/src/debug", "*.debug"),
    "keep-markers": ("*/.keep", "*/.keep_*"),
    "pkgconfig": ("/usr/lib*/pkgconfig", "/usr/share/pkgconfig"),
}


class StripField(StringSequenceField):
    alias = "strip"
    default = ()
    valid_choices = tuple(STRIP_PRESETS)
    help = help_text(
        f"""
        Named sets of files to leave out of the image: {", ".join(f"`{k}`" for k in STRIP_PRESETS)}.
        Off by default.
        """
    )


class RemoveField(StringSequenceField):
    alias = "remove"
    default = ()
    help = help_text(
        """
        Paths or globs (`fnmatch`, absolute) to delete from the staged tree, each covering
        everything below it, e.g. `["/usr/bin/containerd-stress", "/usr/share/docker/contrib"]`.
        Like `exclude`, but meant for files inside `/usr` and `/opt`.
        """
    )


class AddFilesField(DictStringToStringField):
    alias = "add_files"
    help = help_text(
        """
        Files from the repository to add to the image: `{"/usr/lib/systemd/system/x.service":
        "x.service"}` maps an image path (under `/usr` or `/opt`) to a file relative to this
        BUILD file. Added files are root-owned, 0755 if the source is executable, else 0644.
        """
    )


class EnableUnitsField(StringSequenceField):
    alias = "enable_units"
    default = ()
    help = help_text(
        """
        systemd units of the image to start when it is merged, through `Upholds=` drop-ins as
        Flatcar does: a `.socket` goes into `sockets.target.d/10-UNIT.conf`, a `.timer` into
        `timers.target.d/`, anything else into `multi-user.target.d/`. The unit must be in the
        image under `/usr/lib/systemd/system/`.
        """
    )


class MangleField(StringField):
    alias = "mangle"
    help = help_text(
        """
        Address of a `file` target with a bash script run over the staged tree, like Flatcar's
        `sysext_mangle_*` scripts: it is called as `bash SCRIPT ROOT` in a sandbox, may add,
        change and delete files under ROOT, and its result goes through the same validation.
        Existing files keep their owners and xattrs; new files are owned by root.
        """
    )


class AllowMissingLibrariesField(StringSequenceField):
    alias = "allow_missing_libraries"
    default = ()
    help = help_text(
        """
        Sonames (`libfoo.so.1`) or `PATH:SONAME` pairs (`/usr/bin/x:libfoo.so.1`) that may stay
        unresolved: deliberate exceptions to the check that every ELF file's `DT_NEEDED`
        resolves inside the extension, the base or a stacked extension.
        """
    )


class ShadowField(StringField):
    alias = "shadow"
    default = "warn"
    valid_choices = ("warn", "error")
    help = help_text(
        """
        What to do when the image has a file at a path where the `base` has one (the image's
        file would hide the base's): `warn` (the default) or `error`.
        """
    )


class NameMismatchField(StringField):
    alias = "name_mismatch"
    default = "error"
    valid_choices = ("error", "xattr", "warn")
    help = help_text(
        """
        What to do when the image's file name (from `output_path`) is not `NAME.raw`, e.g. a
        versioned `docker-24.0.9-x86-64.raw`: systemd-sysext refuses such an image ("No medium
        found") unless its release file carries the xattr `user.extension-release.strict=0`.
        `error` (the default) refuses to build; `xattr` sets that xattr; `warn` builds it as is.
        """
    )


class SysextOutputPathField(OutputPathField):
    help = help_text(
        """
        Where the image is written, relative to `dist/`. Its file name must be
        `NAME.raw` (NAME is `extension_name`): systemd-sysext matches the file name against
        the release file. Defaults to `path.to.build.dir/NAME.raw`.
        """
    )

    def value_or_default_for(self, extension_name: str) -> str:
        if self.value:
            return self.value
        return os.path.join(self.address.spec_path.replace(os.sep, "."), f"{extension_name}.raw")


class SysextImageTarget(Target):
    alias = "sysext_image"
    core_fields = (
        *COMMON_TARGET_FIELDS,
        ExtensionNameField,
        SysextPackagesField,
        OsIdField,
        VersionIdField,
        SysextLevelField,
        ArchitectureField,
        ExtensionReleaseField,
        CompressionField,
        ExcludeField,
        SourceDateEpochField,
        SysextOutputPathField,
        ImageBaseField,
        BaseExtensionsField,
        PkginfoField,
        EtcPolicyField,
        StripField,
        RemoveField,
        AddFilesField,
        EnableUnitsField,
        MangleField,
        AllowMissingLibrariesField,
        ShadowField,
        NameMismatchField,
    )
    help = help_text(
        """
        A systemd-sysext image (`NAME.raw`, squashfs) built from binary packages: the packages'
        `/usr` and `/opt`, plus `usr/lib/extension-release.d/extension-release.NAME`.

        Build it with `pants package`; the result can be merged with
        `systemd-sysext merge` after copying it to `/var/lib/extensions/NAME.raw`.
        """
    )

    # Field combinations are checked when the target is built (see `tree.py`), not here: a
    # target-level error would break every build that lists all targets (stacking does).


def target_types():
    return [BinpkgSetTarget, SysextBaseTarget, SysextImageTarget]
