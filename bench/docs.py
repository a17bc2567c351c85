"""docs/benchmarks.md is shared by the benchmarks: each owns one "## " section and rewrites
only that one."""

from __future__ import annotations

import re
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def _parts(path: Path) -> list[str]:
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    return [p.rstrip("\n") for p in re.split(r"(?m)^(?=## )", old)]


def current_section(title: str, path: Path = DOCS) -> str | None:
    """The section whose first line is `title`, as it stands now."""
    return next((p for p in _parts(path) if p.split("\n", 1)[0].strip() == title), None)


def replace_section(title: str, text: str, path: Path = DOCS) -> None:
    """Put `text` in place of the section `title` (appended if missing), keeping the others."""
    parts = _parts(path)
    ours = [p.split("\n", 1)[0].strip() == title for p in parts]
    if any(ours):
        parts = [text.rstrip("\n") if mine else p for p, mine in zip(parts, ours, strict=True)]
    else:
        parts.append(text.rstrip("\n"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n\n".join(p for p in parts if p) + "\n")
