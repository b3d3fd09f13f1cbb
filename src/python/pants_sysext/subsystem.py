"""Options of the `pants_sysext` backend (`[sysext]` in pants.toml)."""

from __future__ import annotations

from pants.option.option_types import IntOption, StrListOption, StrOption
from pants.option.subsystem import Subsystem
from pants.util.strutil import help_text


class SysextSubsystem(Subsystem):
    options_scope = "sysext"
    help = "Options for building systemd-sysext images from binary packages."

    search_path = StrListOption(
        default=["/usr/bin", "/bin", "/usr/sbin", "/sbin"],
        help=help_text(
            """
            Directories searched for the system tools the build runs in its sandboxes:
            `python3`, `sqfstar` (squashfs-tools), `zstd` and `lz4`. Each tool's version is
            part of the cache key of the steps that run it, so a different `sqfstar` never
            reuses an image built by another.
            """
        ),
        advanced=True,
    )
    remote_cache_speculation_delay = IntOption(
        default=3000,
        help=help_text(
            """
            With a remote cache on, how long (in milliseconds) the unpack, stage, validate and
            squash steps wait for a remote cache hit before also running locally. These steps
            are heavy, so a short wait for the cache usually beats running them; without a
            remote cache the setting has no effect.
            """
        ),
        advanced=True,
    )
    squash_processors = IntOption(
        default=2,
        help=help_text(
            """
            Threads `sqfstar` compresses with. The image bytes do not depend on it
            (`-reproducible`), but it is part of the squash step's cache key.
            """
        ),
        advanced=True,
    )


class DebianSubsystem(Subsystem):
    options_scope = "debian"
    help = "Options for Debian packages taken from apt archives (`binpkg_set(apt_suite=…)`)."

    mirror = StrOption(
        default=None,
        help=help_text(
            """
            The apt archive to download from, e.g. a team's mirror. Unset: the first `deb`
            source of the machine's apt configuration (`/etc/apt/sources.list` and
            `sources.list.d/*.list|*.sources`) serving the suite. Lockfiles pin archive paths
            and sha256, never the mirror, so any mirror of the archive gives the same image.
            """
        ),
    )
