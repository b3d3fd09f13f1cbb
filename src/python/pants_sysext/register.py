"""The `pants_sysext` backend: systemd-sysext images from binary packages.

Enable it with `backend_packages = ["pants_sysext"]` in pants.toml.
"""

from pants_sysext import (
    base_image,
    binhost,
    binpkg_set,
    check,
    debian,
    field_targets,
    generate_lockfiles,
    package,
    resolution,
    sandbox_code,
    squash,
    stage,
    system_tools,
    tree,
    unpack,
)
from pants_sysext.target_types import target_types as _target_types


def target_types():
    return _target_types()


def rules():
    return [
        *base_image.rules(),
        *binhost.rules(),
        *binpkg_set.rules(),
        *check.rules(),
        *debian.rules(),
        *field_targets.rules(),
        *generate_lockfiles.rules(),
        *resolution.rules(),
        *package.rules(),
        *sandbox_code.rules(),
        *squash.rules(),
        *stage.rules(),
        *system_tools.rules(),
        *tree.rules(),
        *unpack.rules(),
    ]
