"""Run Portage's own resolver (emerge's depgraph) in a ResolverPlayground; used by the tests.

Run as a program, in its own process: a playground changes Portage's global state (EPREFIX,
legacy globals, `portage.data`) the way Portage's test suite does in its conftest. Reads a JSON
list of scenarios from the file named by its first argument:

    {"name": …, "binpkgs": [[cpv, {KEY: value}], …], "installed": {cpv: {KEY: value}},
     "binpkg_format": "xpak" | "gpkg", "multi_instance": bool,
     "atoms": [...], "options": {"--usepkgonly": true, …}}

and writes a JSON list of results to the file named by its second argument:

    {"name": …, "success": bool, "merge": [{"cpv", "build_id", "type", "operation"}],
     "blockers": [atom, …], "packages_index": text of PKGDIR/Packages,
     "vdb_json": the playground's var/db/pkg through pants_sysext.formats.vdb}
"""

from __future__ import annotations

import contextlib
import grp
import importlib
import json
import os
import pwd
import shutil
import sys
import tempfile


def _prepare_environment(shim_dir: str, gnupg_dir: str) -> None:
    """What portage/tests/conftest.py's prepare_environment fixture does."""
    import portage
    import portage.data
    from portage.const import PORTAGE_BIN_PATH

    os.environ["PORTAGE_USERNAME"] = pwd.getpwuid(os.getuid()).pw_name
    os.environ["PORTAGE_GRPNAME"] = grp.getgrgid(os.getgid()).gr_name
    importlib.reload(portage.data)
    portage._internal_caller = True
    portage._disable_legacy_globals()

    # The playground links the essential tools into its EPREFIX; GNU tar is looked up as
    # `gtar`, which Debian does not install under that name.
    tar = shutil.which("gtar") or shutil.which("tar")
    if tar is None:
        raise SystemExit("neither gtar nor tar is on PATH; the playground needs GNU tar")
    if not shutil.which("gtar"):
        os.symlink(tar, os.path.join(shim_dir, "gtar"))
    os.environ["PATH"] = ":".join([PORTAGE_BIN_PATH, shim_dir, os.environ.get("PATH", "")])
    os.environ["PORTAGE_GNUPGHOME"] = gnupg_dir


def _playground_class():
    from portage.const import GLOBAL_CONFIG_PATH
    from portage.tests import cnf_path
    from portage.tests.resolver.ResolverPlayground import ResolverPlayground

    class Playground(ResolverPlayground):
        # With Portage installed as a Python module (pip), GLOBAL_CONFIG_PATH is
        # /share/portage/config, but the playground puts sets/portage.conf under
        # usr/share/portage/config only; without it there is no @system set and the depgraph
        # fails with KeyError: 'system'. Link it where this installation looks.
        def _create_profile(self, *args, **kwargs):
            super()._create_profile(*args, **kwargs)
            sets_dir = os.path.join(self.eroot, GLOBAL_CONFIG_PATH.lstrip(os.sep), "sets")
            target = os.path.join(sets_dir, "portage.conf")
            if not os.path.exists(target):
                os.makedirs(sets_dir, exist_ok=True)
                os.symlink(os.path.join(str(cnf_path), "sets", "portage.conf"), target)

    return Playground


def _run(scenario: dict) -> dict:
    from _emerge.Blocker import Blocker
    from _emerge.Package import Package

    from pants_sysext.formats.vdb import read_vdb, vdb_to_json

    binpkg_format = scenario.get("binpkg_format", "xpak")
    make_conf = [
        f'BINPKG_FORMAT="{binpkg_format}"',
        # No signing: the playground's test keys are not shipped with the pip package.
        'BINPKG_GPG_SIGNING_BASE_COMMAND=""',
        'FEATURES="${FEATURES} -binpkg-signing -binpkg-request-signature -gpg-keepalive"',
    ]
    if scenario.get("multi_instance"):
        make_conf.append('FEATURES="${FEATURES} binpkg-multi-instance"')
    playground = _playground_class()(
        binpkgs=[(cpv, dict(md)) for cpv, md in scenario.get("binpkgs", [])],
        installed={cpv: dict(md) for cpv, md in scenario.get("installed", {}).items()},
        user_config={"make.conf": tuple(make_conf)},
        world=scenario.get("world", []),
    )
    try:
        result = playground.run(scenario["atoms"], options=dict(scenario.get("options", {})))
        merge, blockers = [], []
        for task in result.depgraph._dynamic_config._serialized_tasks_cache or ():
            if isinstance(task, Blocker):
                blockers.append(str(task.atom))
            elif isinstance(task, Package):
                merge.append({
                    "cpv": str(task.cpv),
                    "build_id": task.cpv.build_id,
                    "type": task.type_name,
                    "operation": task.operation,
                })
        with open(os.path.join(playground.pkgdir, "Packages"), encoding="utf-8") as f:
            packages_index = f.read()
        try:
            vdb_json = vdb_to_json(read_vdb(playground.eroot))
        except ValueError:
            vdb_json = None  # no installed packages
        return {
            "name": scenario.get("name"),
            "success": bool(result.success),
            "mergelist": [str(x) for x in result.mergelist or ()],
            "merge": merge,
            "blockers": blockers,
            "packages_index": packages_index,
            "vdb_json": vdb_json,
        }
    finally:
        playground.cleanup()


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as f:
        scenarios = json.load(f)
    work = tempfile.mkdtemp(prefix="pants-sysext-playground-")
    try:
        shim, gnupg = os.path.join(work, "bin"), os.path.join(work, "gnupg")
        os.makedirs(shim)
        os.makedirs(gnupg, mode=0o700)
        _prepare_environment(shim, gnupg)
        # The depgraph prints its merge list; keep it out of the way.
        with contextlib.redirect_stdout(sys.stderr):
            results = [_run(s) for s in scenarios]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    with open(sys.argv[2], "w", encoding="utf-8") as f:
        json.dump(results, f, sort_keys=True)


if __name__ == "__main__":
    main()
