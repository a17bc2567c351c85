"""`circuitcat store ...`: create and inspect a catalog."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from circuitcat.catalog import open_store

from .common import FormatOption, StoreOption, err_console, handle_errors
from .output import Format, render

app = typer.Typer(
    help="Create and inspect a catalog store (embedded or Neo4j).", no_args_is_help=True
)


@app.command("init")
@handle_errors
def init(store: StoreOption = None) -> None:
    """Create the catalog's schema (tables or constraints and indexes); safe to run again."""
    with open_store(store) as catalog:
        typer.echo(f"catalog ready: {catalog.uri} ({catalog.backend})")


@app.command("info")
@handle_errors
def info(store: StoreOption = None, fmt: FormatOption = Format.table) -> None:
    """Show the store's URI and version and the count of each node and relationship kind."""
    with open_store(store) as catalog:
        i = catalog.info()
    rows = [["node", k, n] for k, n in i.nodes.items()]
    rows += [["relationship", k, n] for k, n in i.relationships.items()]
    if fmt is Format.table:
        typer.echo(f"store:   {i.uri}\nbackend: {i.backend}\nversion: {i.version}")
    typer.echo(render(["element", "kind", "count"], rows, fmt))


@app.command("copy")
@handle_errors
def copy(
    source: Annotated[
        str, typer.Option("--from", help="Store to copy from (path or bolt:// URI).")
    ],
    target: Annotated[str, typer.Option("--to", help="Store to copy into (path or bolt:// URI).")],
) -> None:
    """Copy a whole catalog into another store, e.g. a local one to the team's Neo4j. Writes
    MERGE, so copying again adds nothing. Neo4j credentials: CIRCUITCAT_NEO4J_USER/_PASSWORD."""
    from circuitcat.catalog.copy import copy_catalog

    with open_store(source) as a, open_store(target) as b, err_console.status("copying") as st:
        copied = copy_catalog(a, b, lambda kind, n: st.update(f"copied {n:,} {kind}"))
    rows = [[kind, n] for kind, n in copied.items() if n]
    typer.echo(f"copied {source} -> {target}\n" + render(["kind", "rows"], rows, Format.table))


@app.command("load")
@handle_errors
def load(
    parts: Annotated[
        Path, typer.Argument(help="Folder of parts written by jobs run with --parts.")
    ],
    store: StoreOption = None,
) -> None:
    """Bulk-load the Parquet parts sharded jobs wrote (`--shard i/N --parts DIR`) into the
    catalog: nodes first, then edges, through the store's writer (its bulk path for new edges).
    Loading the same parts again changes nothing."""
    from circuitcat.catalog.parts import load_parts

    with open_store(store) as catalog, err_console.status("loading parts"):
        report = load_parts(catalog, parts)
    typer.echo(
        f"loaded {report.parts} parts from {parts}: {report.nodes:,} node rows, "
        f"{report.edges:,} edge rows into {catalog.uri}"
    )
