"""The CLI reference (docs/cli.md), generated from the commands' own `--help`.

`python -m circuitcat.cli.reference > docs/cli.md` rewrites it; a test fails when the file and
the commands disagree, so `--help` stays the reference.
"""

from __future__ import annotations

from typing import Any

import typer
from typer.testing import CliRunner

from .main import app

# Fixed width and no colour, so the text is the same on every machine.
_ENV = {"COLUMNS": "100", "NO_COLOR": "1", "TERM": "dumb", "CIRCUITCAT_STORE": ""}


def _help(path: list[str]) -> str:
    result = CliRunner().invoke(app, [*path, "--help"], env=_ENV, color=False)
    return "\n".join(line.rstrip() for line in result.stdout.rstrip().splitlines())


def _paths(command: Any, path: list[str]) -> list[list[str]]:
    paths = [path]
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        if not getattr(sub, "hidden", False):
            paths += _paths(sub, [*path, name])
    return paths


def reference() -> str:
    lines = [
        "# CLI reference",
        "",
        "Generated from the commands' `--help` by "
        "`python -m circuitcat.cli.reference > docs/cli.md`; a test keeps it current.",
        "",
    ]
    for path in _paths(typer.main.get_command(app), []):
        title = " ".join(["circuitcat", *path])
        lines += [f"{'#' * min(len(path) + 2, 4)} `{title}`", "", "```text", _help(path), "```", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    typer.echo(reference(), nl=False)
