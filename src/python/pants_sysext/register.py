"""The `pants_sysext` backend: systemd-sysext images from binary packages.

Enable it with `backend_packages = ["pants_sysext"]` in pants.toml.
"""

from pants_sysext import binpkg_set, package, sandbox_code, squash, stage, system_tools, unpack
from pants_sysext.target_types import target_types as _target_types


def target_types():
    return _target_types()


def rules():
    return [
        *binpkg_set.rules(),
        *package.rules(),
        *sandbox_code.rules(),
        *squash.rules(),
        *stage.rules(),
        *system_tools.rules(),
        *unpack.rules(),
    ]
