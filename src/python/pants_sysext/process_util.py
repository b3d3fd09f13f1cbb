"""Running sandboxed steps and turning their failures into errors a user can act on."""

from __future__ import annotations

from pants.engine.process import FallibleProcessResult


class SysextBuildError(Exception):
    """A sandboxed build step failed; the message is the step's own explanation."""


def raise_for_failure(result: FallibleProcessResult, *, what: str) -> None:
    if result.exit_code == 0:
        return
    stderr = result.stderr.decode("utf-8", "replace").strip()
    stdout = result.stdout.decode("utf-8", "replace").strip()
    lines = [line[len("error: "):] if line.startswith("error: ") else line for line in stderr.splitlines()]
    detail = "\n".join(lines) or stdout or f"exit code {result.exit_code}"
    raise SysextBuildError(f"{what} failed:\n{detail}")
