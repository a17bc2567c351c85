"""`circuitcat store ...`: create and inspect a catalog."""

from __future__ import annotations

import typer

from circuitcat.catalog import open_store

from .common import FormatOption, StoreOption, handle_errors
from .output import Format, render

app = typer.Typer(
    help="Create and inspect a catalog store (embedded or Neo4j).", no_args_is_help=True
)


@app.command("init")
@handle_errors
def init(store: StoreOption = None) -> None:
    """Create the catalog's schema (tables or constraints and indexes); safe to run again."""
    with open_store(store) as s:
        typer.echo(f"catalog ready: {s.uri} ({s.backend})")


@app.command("info")
@handle_errors
def info(store: StoreOption = None, fmt: FormatOption = Format.table) -> None:
    """Show the store's URI and version and the count of each node and relationship kind."""
    with open_store(store) as s:
        i = s.info()
    rows = [["node", k, n] for k, n in i.nodes.items()]
    rows += [["relationship", k, n] for k, n in i.relationships.items()]
    if fmt is Format.table:
        typer.echo(f"store:   {i.uri}\nbackend: {i.backend}\nversion: {i.version}")
    typer.echo(render(["element", "kind", "count"], rows, fmt))
