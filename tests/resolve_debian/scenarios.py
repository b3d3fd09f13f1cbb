"""Crafted package graphs, one rule each: resolved by debian_resolver, and most also by apt.

A scenario is the archive (`candidates`, Packages stanzas), the base (`installed`, dpkg status
stanzas), optional `stacked` extensions, the request and `exclude`, and what must come out:
`expect` (name -> version of every package to install) or `error` (exception class and
substrings of its message).

`apt` says what `apt-get --simulate install` does with the same graph
(tests/resolve_debian/test_against_apt.py runs it; stacked extensions become part of apt's dpkg
status, since apt only knows "installed"):
  "same"  apt newly installs exactly `expect`, removes and upgrades nothing (for an `error`
          scenario: apt fails too);
  a dict  apt's own, different answer, pinned on purpose: `installs` (name -> version, new and
          upgrades), `removes`, or `fails`;
  absent  not a question for apt (e.g. invalid input).
"""

from __future__ import annotations

from typing import Any, Dict, List

from pants_sysext.resolve.debian_resolver import (
    ConflictError,
    InvalidInputError,
    ReplacesInstalledError,
    UnsatisfiableRelationError,
    VersionConflictError,
)

Stanza = Dict[str, str]


def S(package: str, version: str, architecture: str = "amd64", **fields: str) -> Stanza:
    """A stanza; keyword names become field names (Pre_Depends -> Pre-Depends)."""
    stanza = {"Package": package, "Version": version, "Architecture": architecture}
    for key, value in fields.items():
        stanza[key.replace("_", "-")] = value
    return stanza


SCENARIOS: Dict[str, Dict[str, Any]] = {
    # -- closure ---------------------------------------------------------------------------
    "depends and pre-depends closure": {
        "candidates": [
            S("app", "1", Depends="liba, libb (>= 1)", Pre_Depends="prep"),
            S("liba", "1", Depends="libc-dep"),
            S("libb", "1"),
            S("prep", "1"),
            S("libc-dep", "2"),
            S("unrelated", "1"),
        ],
        "requested": ["app"],
        "expect": {"app": "1", "liba": "1", "libb": "1", "prep": "1", "libc-dep": "2"},
        "apt": "same",
    },
    "dependency cycle": {
        "candidates": [S("a", "1", Depends="b"), S("b", "1", Depends="a")],
        "requested": ["a"],
        "expect": {"a": "1", "b": "1"},
        "apt": "same",
    },
    # -- versions --------------------------------------------------------------------------
    "highest version wins": {
        "candidates": [
            S("app", "1", Depends="lib (>= 1.0)"),
            S("lib", "1.0-1"), S("lib", "1.10-1"), S("lib", "1.9-1"), S("lib", "1:0.1"),
        ],
        "requested": ["app"],
        "expect": {"app": "1", "lib": "1:0.1"},  # the epoch wins
        "apt": "same",
    },
    "every version operator": {
        "candidates": [
            S("app", "1", Depends="lt (<< 2), le (<= 2), eq (= 2), ge (>= 2), gt (>> 2)"),
            *[S(name, v) for name in ("lt", "le", "eq", "ge", "gt") for v in ("1", "2", "3")],
        ],
        "requested": ["app"],
        "expect": {"app": "1", "lt": "1", "le": "2", "eq": "2", "ge": "3", "gt": "3"},
        # apt only looks at each package's candidate (the highest version): `lt (<< 2)`,
        # `le (<= 2)` and `eq (= 2)` fail there.
        "apt": {"fails": True},
    },
    "tilde sorts before everything": {
        "candidates": [
            S("app", "1", Depends="lib (<< 1.0)"),
            S("lib", "1.0~rc1"), S("lib", "1.0"), S("lib", "0.9+really1.0"),
        ],
        "requested": ["app"],
        "expect": {"app": "1", "lib": "1.0~rc1"},
    },
    "requested with a version relation": {
        "candidates": [S("tool", "1.1"), S("tool", "1.2"), S("tool", "2.0")],
        "requested": ["tool (<< 2)"],
        "expect": {"tool": "1.2"},
    },
    "requested with name=version": {
        "candidates": [S("tool", "1.1", Depends="lib (= 1.1)"), S("tool", "2.0"),
                       S("lib", "1.1"), S("lib", "2.0")],
        "requested": ["tool=1.1"],
        "expect": {"tool": "1.1", "lib": "1.1"},
        # apt keeps lib's candidate 2.0 (`apt-get install tool=1.1 lib=1.1` would do).
        "apt": {"fails": True},
    },
    "a version one relation picks and another rejects is retried": {
        "candidates": [
            S("first", "1", Depends="foo"),
            S("second", "1", Depends="foo (<< 3)"),
            S("foo", "2"), S("foo", "3"),
        ],
        "requested": ["first", "second"],
        "expect": {"first": "1", "second": "1", "foo": "2"},
        # apt keeps foo's candidate 3 and gives up on second.
        "apt": {"fails": True},
    },
    "versions that no single version satisfies": {
        "candidates": [
            S("first", "1", Depends="foo (>= 3)"),
            S("second", "1", Depends="foo (<< 3)"),
            S("foo", "2"), S("foo", "3"),
        ],
        "requested": ["first", "second"],
        "error": (VersionConflictError, ["version conflict in foo", "foo 3, pulled in by: "
                                         "foo (>= 3) (Depends of first 1)",
                                         "foo 2, pulled in by: foo (<< 3) (Depends of second 1)"]),
        "apt": "same",
    },
    "unsatisfiable version lists every candidate": {
        "candidates": [
            S("app", "1", Depends="lib (>= 2)"),
            S("lib", "1"), S("lib", "2", "i386"), S("lib", "3"),
        ],
        "installed": [S("lib", "0.5", "armhf")],
        "exclude": ["lib (>= 3)"],
        "requested": ["app"],
        "error": (UnsatisfiableRelationError, [
            "cannot satisfy lib (>= 2) (Depends of app 1):",
            "  lib 3 (amd64): excluded by `lib (>= 3)`",
            "  lib:i386 2 (i386): architecture i386 is neither amd64 nor all",
            "  lib 1 (amd64): version 1 does not satisfy >= 2",
            "  lib:armhf 0.5 (armhf) in the base: version 0.5 does not satisfy >= 2; "
            "architecture armhf is not amd64 and it is not Multi-Arch: foreign",
            "drop `lib (>= 3)` from exclude",
        ]),
    },
    # -- alternatives ----------------------------------------------------------------------
    "alternatives: the first available one": {
        "candidates": [S("app", "1", Depends="missing | second | third"),
                       S("second", "1"), S("third", "1")],
        "requested": ["app"],
        "expect": {"app": "1", "second": "1"},
        "apt": "same",
    },
    "alternatives: one the base has": {
        "candidates": [S("app", "1", Depends="first | second (>= 2)"),
                       S("first", "1"), S("second", "3")],
        "installed": [S("second", "2")],
        "requested": ["app"],
        "expect": {"app": "1"},
        "satisfied": [("first | second (>= 2)", "second 2", "base", "app 1")],
        "apt": "same",
    },
    "alternatives: one the base has at a version that does not do": {
        "candidates": [S("app", "1", Depends="second (>= 3) | first"),
                       S("first", "1"), S("second", "3")],
        "installed": [S("second", "2")],
        "requested": ["app"],
        "expect": {"app": "1", "first": "1"},
        # apt upgrades the base's second instead.
        "apt": {"installs": {"app": "1", "second": "3"}},
    },
    "alternatives: one a stacked extension has": {
        "candidates": [S("app", "1", Depends="first | second"),
                       S("first", "1"), S("second", "1")],
        "stacked": {"ext-b": [S("second", "1")], "ext-a": [S("other", "1")]},
        "requested": ["app"],
        "expect": {"app": "1"},
        "satisfied": [("first | second", "second 1", "stacked extension ext-b", "app 1")],
        "apt": "same",
    },
    "alternatives: one that is requested too": {
        "candidates": [S("app", "1", Depends="first | second"),
                       S("first", "1"), S("second", "1")],
        "requested": ["app", "second"],
        "expect": {"app": "1", "second": "1"},
        "apt": "same",
    },
    "alternatives: decided depth first, in field order, as apt does": {
        # apt resolves `first | second` before it walks into `other`, which pulls in second.
        "candidates": [S("app", "1", Depends="first | second, other"),
                       S("first", "1"), S("second", "1"),
                       S("other", "1", Depends="mid"), S("mid", "1", Depends="second")],
        "requested": ["app"],
        "expect": {"app": "1", "first": "1", "second": "1", "other": "1", "mid": "1"},
        "apt": "same",
    },
    "alternatives: an earlier relation pulled one in": {
        "candidates": [S("app", "1", Depends="other, first | second"),
                       S("first", "1"), S("second", "1"),
                       S("other", "1", Depends="second")],
        "requested": ["app"],
        "expect": {"app": "1", "second": "1", "other": "1"},
        "apt": "same",
    },
    "alternatives: Pre-Depends come first": {
        "candidates": [S("app", "1", Depends="first | second", Pre_Depends="setup"),
                       S("first", "1"), S("second", "1"), S("setup", "1", Depends="second")],
        "requested": ["app"],
        "expect": {"app": "1", "second": "1", "setup": "1"},
        "apt": "same",
    },
    "alternatives: one whose dependencies fail is passed over": {
        "candidates": [S("app", "1", Depends="deep | fallback"),
                       S("deep", "1", Depends="mid"), S("mid", "1", Depends="missing"),
                       S("fallback", "1")],
        "requested": ["app"],
        "expect": {"app": "1", "fallback": "1"},
        "apt": "same",
    },
    "alternatives: one that conflicts with a later package is passed over": {
        "candidates": [S("app", "1", Depends="first | second, other"),
                       S("first", "1"), S("second", "1"),
                       S("other", "1", Conflicts="first")],
        "requested": ["app"],
        "expect": {"app": "1", "second": "1", "other": "1"},
        "apt": "same",
    },
    "alternatives: one that conflicts with the base is passed over": {
        "candidates": [S("app", "1", Depends="first | second"),
                       S("first", "1", Conflicts="basepkg"), S("second", "1")],
        "installed": [S("basepkg", "1")],
        "requested": ["app"],
        "expect": {"app": "1", "second": "1"},
        # apt installs first and removes the base's basepkg.
        "apt": {"installs": {"app": "1", "first": "1"}, "removes": ["basepkg"]},
    },
    "alternatives: none works": {
        "candidates": [S("app", "1", Depends="first (>= 2) | second"),
                       S("first", "1"), S("second", "1", Depends="missing")],
        "requested": ["app"],
        "error": (UnsatisfiableRelationError, [
            "cannot satisfy any alternative of first (>= 2) | second (Depends of app 1):",
            "first (>= 2):", "first 1 (amd64): version 1 does not satisfy >= 2",
            "second: cannot be installed: cannot satisfy missing (Depends of second 1)",
        ]),
        "apt": "same",
    },
    # -- architectures and Multi-Arch ------------------------------------------------------
    "packages of another architecture are no candidates, all is": {
        "candidates": [S("app", "1", Depends="data, lib"),
                       S("data", "1", "all"), S("lib", "2", "i386"), S("lib", "1")],
        "requested": ["app"],
        "expect": {"app": "1", "data": "1", "lib": "1"},
        "apt": "same",
    },
    ":any is satisfied by Multi-Arch: allowed": {
        "candidates": [S("app", "1", Depends="interp:any"),
                       S("interp", "1", Multi_Arch="allowed")],
        "requested": ["app"],
        "expect": {"app": "1", "interp": "1"},
        "apt": "same",
    },
    ":any is satisfied by Multi-Arch: allowed of another architecture in the base": {
        "candidates": [S("app", "1", Depends="interp:any"), S("interp", "1",
                                                              Multi_Arch="allowed")],
        "installed": [S("interp", "1", "i386", Multi_Arch="allowed")],
        "architectures": ("amd64", "i386"),
        "requested": ["app"],
        "expect": {"app": "1"},
        "satisfied": [("interp:any", "interp:i386 1", "base", "app 1")],
        "apt": "same",
    },
    ":any is not satisfied by Multi-Arch: foreign (as dpkg and apt)": {
        "candidates": [S("app", "1", Depends="tool:any"),
                       S("tool", "1", Multi_Arch="foreign")],
        "requested": ["app"],
        "error": (UnsatisfiableRelationError, [
            "cannot satisfy tool:any (Depends of app 1)",
            "tool 1 (amd64): :any needs Multi-Arch: allowed, it is Multi-Arch: foreign",
        ]),
        "apt": "same",
    },
    ":any is not satisfied by a package without Multi-Arch": {
        "candidates": [S("app", "1", Depends="tool:any"), S("tool", "1")],
        "requested": ["app"],
        "error": (UnsatisfiableRelationError, [
            "tool 1 (amd64): :any needs Multi-Arch: allowed, it is not Multi-Arch",
        ]),
        "apt": "same",
    },
    ":any through a Multi-Arch: allowed provider": {
        "candidates": [S("app", "1", Depends="virt:any"),
                       S("impl", "1", Multi_Arch="allowed", Provides="virt")],
        "requested": ["app"],
        "expect": {"app": "1", "impl": "1"},
        "apt": "same",
    },
    ":native is satisfied by the native architecture and all": {
        "candidates": [S("app", "1", Depends="lib:native, data:native"),
                       S("lib", "1"), S("data", "1", "all")],
        "requested": ["app"],
        "expect": {"app": "1", "lib": "1", "data": "1"},
        "apt": "same",
    },
    ":native is not satisfied by another architecture": {
        "candidates": [S("app", "1", Depends="tool:native")],
        "installed": [S("tool", "1", "i386", Multi_Arch="foreign")],
        "requested": ["app"],
        "error": (UnsatisfiableRelationError, [
            "tool:i386 1 (i386) in the base: architecture i386 is not :native",
        ]),
    },
    "Multi-Arch: foreign of another architecture satisfies a plain dependency": {
        "candidates": [S("app", "1", Depends="tool (>= 1)")],
        "installed": [S("tool", "1", "i386", Multi_Arch="foreign")],
        "architectures": ("amd64", "i386"),
        "requested": ["app"],
        "expect": {"app": "1"},
        "satisfied": [("tool (>= 1)", "tool:i386 1", "base", "app 1")],
        "apt": "same",
    },
    "another architecture without Multi-Arch: foreign does not": {
        "candidates": [S("app", "1", Depends="lib")],
        "installed": [S("lib", "1", "i386")],
        "architectures": ("amd64", "i386"),
        "requested": ["app"],
        "error": (UnsatisfiableRelationError, [
            "lib:i386 1 (i386) in the base: architecture i386 is not amd64 and it is not "
            "Multi-Arch: foreign",
        ]),
        "apt": "same",
    },
    "Multi-Arch: same is co-installable with its other architecture at the same version": {
        "candidates": [S("app", "1", Depends="libfoo"),
                       S("libfoo", "2", Multi_Arch="same")],
        "installed": [S("libfoo", "2", "i386", Multi_Arch="same")],
        "architectures": ("amd64", "i386"),
        "requested": ["app"],
        "expect": {"app": "1", "libfoo": "2"},
        "apt": "same",
    },
    "Multi-Arch: same at another version than its other architecture in the base": {
        "candidates": [S("app", "1", Depends="libfoo"),
                       S("libfoo", "2", Multi_Arch="same")],
        "installed": [S("libfoo", "1", "i386", Multi_Arch="same")],
        "requested": ["app"],
        "error": (ReplacesInstalledError, [
            "the base has libfoo:i386 1 (i386), the archive's libfoo 2 would replace it",
        ]),
    },
    # -- virtual packages ------------------------------------------------------------------
    "virtual: an unversioned Provides satisfies an unversioned relation": {
        "candidates": [S("app", "1", Depends="mail-transport-agent"),
                       S("mta-impl", "1", Provides="mail-transport-agent")],
        "requested": ["app"],
        "expect": {"app": "1", "mta-impl": "1"},
        "apt": "same",
    },
    "virtual: an unversioned Provides does not satisfy a versioned relation": {
        "candidates": [S("app", "1", Depends="virt (>= 1)"),
                       S("impl", "1", Provides="virt")],
        "requested": ["app"],
        "error": (UnsatisfiableRelationError, [
            "cannot satisfy virt (>= 1) (Depends of app 1)",
            "impl 1 (amd64), provides virt: its Provides: virt has no version, so it does not "
            "satisfy a versioned relation",
        ]),
        "apt": "same",
    },
    "virtual: a versioned Provides satisfies a versioned relation": {
        "candidates": [S("app", "1", Depends="virt (>= 2)"),
                       S("old-impl", "1", Provides="virt (= 1)"),
                       S("plain-impl", "1", Provides="virt"),
                       S("new-impl", "1", Provides="virt (= 2.5)")],
        "requested": ["app"],
        "expect": {"app": "1", "new-impl": "1"},
        "apt": "same",
    },
    "virtual: a versioned Provides below the relation": {
        "candidates": [S("app", "1", Depends="virt (>= 2)"),
                       S("old-impl", "1", Provides="virt (= 1)")],
        "requested": ["app"],
        "error": (UnsatisfiableRelationError, [
            "old-impl 1 (amd64), provides virt: it provides virt (= 1), which does not "
            "satisfy >= 2",
        ]),
        "apt": "same",
    },
    "virtual: a real package of the name is preferred": {
        "candidates": [S("app", "1", Depends="awk"),
                       S("awk", "1"), S("aaa-awk", "1", Provides="awk")],
        "requested": ["app"],
        "expect": {"app": "1", "awk": "1"},
        "apt": "same",
    },
    "virtual: the base's provider satisfies it": {
        "candidates": [S("app", "1", Depends="awk"), S("gawk", "1", Provides="awk")],
        "installed": [S("mawk", "1.3", Provides="awk")],
        "requested": ["app"],
        "expect": {"app": "1"},
        "satisfied": [("awk", "mawk 1.3", "base", "app 1")],
        "apt": "same",
    },
    "virtual: among providers the higher Priority": {
        "candidates": [S("app", "1", Depends="virt"),
                       S("aaa-impl", "1", Provides="virt", Priority="optional"),
                       S("zzz-impl", "1", Provides="virt", Priority="important")],
        "requested": ["app"],
        "expect": {"app": "1", "zzz-impl": "1"},
        "apt": "same",
    },
    "virtual: among providers an Essential one": {
        "candidates": [S("app", "1", Depends="virt"),
                       S("aaa-impl", "1", Provides="virt", Priority="required"),
                       S("zzz-impl", "1", Provides="virt", Essential="yes",
                         Priority="optional")],
        "requested": ["app"],
        "expect": {"app": "1", "zzz-impl": "1"},
        "apt": "same",
    },
    "virtual: requested, one provider": {
        "candidates": [S("impl", "1", Provides="virt")],
        "requested": ["virt"],
        "expect": {"impl": "1"},
        "apt": "same",
    },
    "virtual: requested with one of its several providers": {
        "candidates": [S("impl-a", "1", Provides="mta"), S("impl-b", "1", Provides="mta"),
                       S("app", "1", Depends="mta")],
        "requested": ["app", "impl-b", "mta"],
        "expect": {"app": "1", "impl-b": "1"},
    },
    "virtual: a provider's version that another relation rejects is retried": {
        "candidates": [S("app", "1", Depends="virt, impl (<< 2)"),
                       S("impl", "1", Provides="virt"), S("impl", "2", Provides="virt")],
        "requested": ["app"],
        "expect": {"app": "1", "impl": "1"},
    },
    "virtual: requested, several providers": {
        "candidates": [S("impl-a", "1", Provides="virt"), S("impl-b", "1", Provides="virt")],
        "requested": ["virt"],
        "error": (InvalidInputError, ["virt is a virtual package provided by impl-a, impl-b; "
                                      "request one of them"]),
        "apt": "same",
    },
    # -- Conflicts and Breaks --------------------------------------------------------------
    "conflicts: a new package against the base": {
        "candidates": [S("app", "1", Conflicts="oldtool")],
        "installed": [S("oldtool", "1")],
        "requested": ["app"],
        "error": (ConflictError, [
            "app 1 (to be installed) Conflicts: oldtool — against oldtool 1 (base)",
        ]),
        "apt": {"installs": {"app": "1"}, "removes": ["oldtool"]},
    },
    "conflicts: the base against a new package": {
        "candidates": [S("app", "1", Depends="newlib"), S("newlib", "2")],
        "installed": [S("oldtool", "1", Breaks="newlib (>= 2)")],
        "requested": ["app"],
        "error": (ConflictError, [
            "oldtool 1 (base) Breaks: newlib (>= 2) — against newlib 2 (to be installed)",
        ]),
        "apt": {"installs": {"app": "1", "newlib": "2"}, "removes": ["oldtool"]},
    },
    "conflicts: a versioned Breaks that does not apply": {
        "candidates": [S("app", "1", Depends="newlib", Breaks="newlib (<< 2)"),
                       S("newlib", "2")],
        "installed": [S("oldtool", "1", Breaks="newlib (<< 2)")],
        "requested": ["app"],
        "expect": {"app": "1", "newlib": "2"},
        "apt": "same",
    },
    "conflicts: between two packages to install": {
        "candidates": [S("app", "1", Depends="left, right"),
                       S("left", "1"), S("right", "1", Conflicts="left")],
        "requested": ["app"],
        "error": (ConflictError, [
            "right 1 (to be installed) Conflicts: left — against left 1 (to be installed)",
        ]),
        "apt": "same",
    },
    "conflicts: against a virtual package the base provides": {
        "candidates": [S("new-mta", "1", Provides="mta", Conflicts="mta")],
        "installed": [S("old-mta", "1", Provides="mta", Conflicts="mta")],
        "requested": ["new-mta"],
        "error": (ConflictError, [
            "new-mta 1 (to be installed) Conflicts: mta — against old-mta 1 (base, which "
            "provides mta)",
            "old-mta 1 (base) Conflicts: mta — against new-mta 1 (to be installed, which "
            "provides mta)",
        ]),
        "apt": {"installs": {"new-mta": "1"}, "removes": ["old-mta"]},
    },
    "conflicts: a package's own Provides do not conflict with itself": {
        "candidates": [S("app", "1", Depends="mta"),
                       S("new-mta", "1", Provides="mta", Conflicts="mta", Replaces="mta")],
        "requested": ["app"],
        "expect": {"app": "1", "new-mta": "1"},
        "apt": "same",
    },
    "conflicts: Replaces does not excuse a Conflicts": {
        "candidates": [S("newtool", "1", Conflicts="oldtool", Replaces="oldtool")],
        "installed": [S("oldtool", "1")],
        "requested": ["newtool"],
        "error": (ConflictError, ["newtool 1 (to be installed) Conflicts: oldtool — against "
                                  "oldtool 1 (base)"]),
        "apt": {"installs": {"newtool": "1"}, "removes": ["oldtool"]},
    },
    "conflicts: without a qualifier, against every architecture": {
        "candidates": [S("app", "1", Conflicts="oldtool")],
        "installed": [S("oldtool", "1", "i386")],
        "architectures": ("amd64", "i386"),
        "requested": ["app"],
        "error": (ConflictError, ["app 1 (to be installed) Conflicts: oldtool — against "
                                  "oldtool:i386 1 (base)"]),
        "apt": {"installs": {"app": "1"}, "removes": ["oldtool"]},
    },
    "conflicts: a stacked extension": {
        "candidates": [S("app", "1", Depends="lib"), S("lib", "1")],
        "stacked": {"ext": [S("other", "1", Conflicts="lib")]},
        "requested": ["app"],
        "error": (ConflictError, ["other 1 (stacked extension ext) Conflicts: lib — against "
                                  "lib 1 (to be installed)"]),
    },
    # -- the base ---------------------------------------------------------------------------
    "base: what it has is left out": {
        "candidates": [S("app", "1", Depends="libc6 (>= 2.34), libfoo"),
                       S("libc6", "2.40"), S("libfoo", "1", Depends="libc6 (>= 2.36)")],
        "installed": [S("libc6", "2.36-9", Multi_Arch="same")],
        "requested": ["app"],
        "expect": {"app": "1", "libfoo": "1"},
        "satisfied": [("libc6 (>= 2.34)", "libc6 2.36-9", "base", "app 1"),
                      ("libc6 (>= 2.36)", "libc6 2.36-9", "base", "libfoo 1")],
        "apt": "same",
    },
    "base: a requested package it has is not reinstalled": {
        "candidates": [S("tool", "1.0"), S("extra", "1")],
        "installed": [S("tool", "1.0")],
        "requested": ["tool", "extra"],
        "expect": {"extra": "1"},
        "satisfied": [("tool", "tool 1.0", "base", "requested")],
        "apt": "same",
    },
    "base: a requested package it has at an older version is not upgraded": {
        "candidates": [S("tool", "2.0")],
        "installed": [S("tool", "1.0")],
        "requested": ["tool"],
        "expect": {},
        "apt": {"installs": {"tool": "2.0"}},
    },
    "base: a relation it has too old a version for": {
        "candidates": [S("app", "1", Depends="libfoo (>= 2)"), S("libfoo", "2")],
        "installed": [S("libfoo", "1")],
        "requested": ["app"],
        "error": (ReplacesInstalledError, [
            "cannot satisfy libfoo (>= 2) (Depends of app 1) without replacing a package of "
            "the base: the base has libfoo 1 (amd64), the archive's libfoo 2 would replace it",
            "libfoo 2 (amd64): it would replace libfoo 1 of the base",
        ]),
        "apt": {"installs": {"app": "1", "libfoo": "2"}},
    },
    "base: a request it has too old a version for": {
        "candidates": [S("tool", "2")],
        "installed": [S("tool", "1")],
        "requested": ["tool (>= 2)"],
        "error": (ReplacesInstalledError, ["cannot satisfy tool (>= 2) (requested)"]),
    },
    "base: another architecture of a package is replaced by a new one": {
        "candidates": [S("app", "1", Depends="tool"), S("tool", "1")],
        "installed": [S("tool", "1", "i386")],
        "requested": ["app"],
        "error": (ReplacesInstalledError, ["the base has tool:i386 1 (i386)"]),
    },
    # -- stacking --------------------------------------------------------------------------
    "stacked: dependencies a stacked extension has are left out": {
        "candidates": [S("app", "1", Depends="libonig (>= 6), libc6"), S("libonig", "6.9")],
        "installed": [S("libc6", "2.36")],
        "stacked": {"extensions/onig:onig": [S("libonig", "6.9")]},
        "requested": ["app"],
        "expect": {"app": "1"},
        "satisfied": [("libc6", "libc6 2.36", "base", "app 1"),
                      ("libonig (>= 6)", "libonig 6.9", "stacked extension extensions/onig:onig",
                       "app 1")],
        "apt": "same",
    },
    "stacked: the base is consulted first": {
        "candidates": [S("app", "1", Depends="lib")],
        "installed": [S("lib", "1")],
        "stacked": {"ext": [S("lib", "1")]},
        "requested": ["app"],
        "expect": {"app": "1"},
        "satisfied": [("lib", "lib 1", "base", "app 1")],
    },
    # -- exclude ---------------------------------------------------------------------------
    "exclude: an excluded version is passed over": {
        "candidates": [S("app", "1", Depends="lib"), S("lib", "1"), S("lib", "2")],
        "exclude": ["lib=2"],
        "requested": ["app"],
        "expect": {"app": "1", "lib": "1"},
    },
    "exclude: a glob, and the alternative it leaves": {
        "candidates": [S("app", "1", Depends="libgl-vendor | libgl-mesa"),
                       S("libgl-vendor", "1"), S("libgl-mesa", "1")],
        "exclude": ["libgl-v*"],
        "requested": ["app"],
        "expect": {"app": "1", "libgl-mesa": "1"},
    },
    "exclude: everything that would do": {
        "candidates": [S("app", "1", Depends="lib"), S("lib", "1")],
        "exclude": ["lib"],
        "requested": ["app"],
        "error": (UnsatisfiableRelationError, ["lib 1 (amd64): excluded by `lib`",
                                               "drop `lib` from exclude"]),
    },
}
