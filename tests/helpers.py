"""Small helpers more than one test module uses."""

from __future__ import annotations

from typer.testing import CliRunner

from circuitcat.cli.main import app


def invoke(*args: str) -> str:
    """Run `circuitcat ARGS...` in-process; its output, after asserting it exited 0."""
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, f"{' '.join(args)}\n{result.output}"
    return result.output
