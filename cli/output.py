"""One renderer for every --format: table (rich), json, jsonl, csv."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from .common import Format


def _cell(value: Any, exact: bool = False) -> str:
    """A value as table text (floats to 6 significant figures), or `exact` as CSV text (floats
    as Python writes them: every digit needed to read the same float back)."""
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value) if exact else f"{value:.6g}"
    if isinstance(value, dict | list):
        return json.dumps(value, default=str)
    return str(value)


def render(
    columns: Sequence[str], rows: Sequence[Sequence[Any]], fmt: Format, title: str | None = None
) -> str:
    """The rows as text in the chosen format (no trailing newline)."""
    if fmt is Format.json:
        records = [dict(zip(columns, r, strict=True)) for r in rows]
        return json.dumps(records, indent=2, default=str)
    if fmt is Format.jsonl:
        lines = (json.dumps(dict(zip(columns, r, strict=True)), default=str) for r in rows)
        return "\n".join(lines)
    if fmt is Format.csv:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([[_cell(v, exact=True) for v in r] for r in rows])
        return buf.getvalue().rstrip("\n")
    # Text cells: a value is shown as it is, never read as Rich markup ("[x]" would vanish).
    table = Table(title=Text(title) if title else None)
    for col in columns:
        table.add_column(Text(col))
    for r in rows:
        table.add_row(*(Text(_cell(v)) for v in r))
    console = Console(file=io.StringIO(), width=160, force_terminal=False)
    console.print(table)
    out = console.file.getvalue()  # type: ignore[attr-defined]
    return str(out).rstrip("\n")


def render_record(record: dict[str, Any], fmt: Format, title: str | None = None) -> str:
    """One result object: json as is; jsonl one line; csv and table as field/value rows."""
    if fmt is Format.json:
        return json.dumps(record, indent=2, default=str)
    if fmt is Format.jsonl:
        return json.dumps(record, default=str)
    return render(["field", "value"], [[k, v] for k, v in record.items()], fmt, title)
