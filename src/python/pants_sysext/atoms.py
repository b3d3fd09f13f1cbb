"""Atom validation with Portage's own parser (used when BUILD files are read)."""

from __future__ import annotations


def atom_problem(atom: str) -> str | None:
    """Why `atom` is not a valid dependency atom, or None if it is."""
    from portage.dep import Atom
    from portage.exception import InvalidAtom

    try:
        parsed = Atom(atom, allow_repo=True)
    except InvalidAtom as e:
        return str(e) or "invalid atom"
    if parsed.blocker:
        return "blockers (`!`) cannot be requested"
    return None
