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


# ---- help texts survive Rich; every relative link resolves ----------------------------------

# What Rich reads as a markup tag and drops from `--help`, e.g. "[default: the only one]".
RICH_TAG = re.compile(r"(?<!\\)\[[a-zA-Z#/@][^\[\]]*\]")


def test_help_texts_have_no_rich_markup() -> None:
    root = typer.main.get_command(app)
    swallowed = []
    for path in [[], *_paths(root, [])]:
        command = root
        for name in path:
            command = command.commands[name]  # type: ignore[attr-defined]
        texts = [command.help or ""] + [getattr(p, "help", None) or "" for p in command.params]
        swallowed += [f"circuitcat {' '.join(path)}: {t}" for t in texts if RICH_TAG.search(t)]
    assert not swallowed, "Rich drops these [...] parts from --help:\n" + "\n".join(swallowed)


def test_threads_default_shows_in_help() -> None:
    from typer.testing import CliRunner

    out = CliRunner().invoke(app, ["circuit", "verify", "--help"], env={"COLUMNS": "200"}).stdout
    assert "(default: half the cores" in " ".join(out.split())


LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_every_relative_link_resolves() -> None:
    broken = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in LINK.findall(doc.read_text()):
            if "://" in target or target.startswith(("#", "mailto:")):
                continue
            path = target.split("#", 1)[0]
            if path and not (doc.parent / path).exists():
                broken.append(f"{doc.relative_to(ROOT)}: {target}")
    assert not broken, "links to nothing:\n" + "\n".join(broken)
