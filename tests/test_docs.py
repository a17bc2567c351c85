"""The docs are tested: the CLI reference matches `--help`, and every command has help text."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

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


# ---- every Cypher block in the README and docs/ runs on the toy catalog, on both stores -------

CYPHER_BLOCK = re.compile(r"```cypher\n(.*?)```", re.S)


def doc_queries() -> list[tuple[str, str]]:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    return [
        (f"{path.name}#{i}", q)
        for path in files
        for i, q in enumerate(CYPHER_BLOCK.findall(path.read_text()))
    ]


def _scalars(rows: list[list[Any]]) -> list[list[Any]]:
    # Whole nodes differ in shape between engines; compare the plain values.
    return [
        [round(v, 6) if isinstance(v, float) else v for v in row if not isinstance(v, dict | list)]
        for row in rows
    ]


def test_docs_have_cypher() -> None:
    assert len(doc_queries()) >= 10
