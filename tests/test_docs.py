"""The docs are tested: the CLI reference matches `--help`, and every command has help text."""

from __future__ import annotations

from pathlib import Path

import typer

from circuitcat.cli.main import app
from circuitcat.cli.reference import _paths, reference

ROOT = Path(__file__).resolve().parents[1]


def test_cli_reference_is_current() -> None:
    on_disk = (ROOT / "docs" / "cli.md").read_text()
    assert on_disk == reference(), (
        "docs/cli.md is stale: run `.venv/bin/python -m circuitcat.cli.reference > docs/cli.md`"
    )


def test_every_command_has_help_text() -> None:
    root = typer.main.get_command(app)
    for path in _paths(root, []):
        command = root
        for name in path:
            command = command.commands[name]  # type: ignore[attr-defined]
        assert (command.help or "").strip(), f"`circuitcat {' '.join(path)}` has no help text"
