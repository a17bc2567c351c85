"""`circuitcat store ...`: create and inspect a catalog."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Annotated

import typer

from circuitcat.catalog import open_store

from .common import FormatOption, StoreOption, err_console, handle_errors, read_store
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
    """Show the store's URI and version, the count of each node and relationship kind, and the
    runs of each job by status (done, failed, running, or stale: left running by a dead job).
    Opens the store read-only."""
    with read_store(store) as catalog:
        i = catalog.info()
    rows = [["node", k, n] for k, n in i.nodes.items()]
    rows += [["relationship", k, n] for k, n in i.relationships.items()]
    rows += [["run", f"{kind}/{status}", n] for (kind, status), n in i.runs.items()]
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
    """Make a store equal another, e.g. the team's Neo4j equal a local catalog: adds what is
    new, rewrites what changed, removes what the source no longer has (a replaced circuit's old
    members, deleted edges), and reports each. Copying again changes nothing. Neo4j
    credentials: CIRCUITCAT_NEO4J_USER/_PASSWORD."""
    from circuitcat.catalog.copy import copy_catalog

    with (
        read_store(source) as a,
        open_store(target) as b,
        err_console.status("copying") as st,
    ):
        changes = copy_catalog(a, b, lambda kind, n: st.update(f"compared {n:,} {kind}"))
    rows = [[k, c.rows, c.added, c.changed, c.removed] for k, c in changes.items()]
    rows = [r for r in rows if any(r[1:])]
    if not any(sum(r[2:]) for r in rows):
        typer.echo(f"{b.uri} already equals {a.uri}: nothing changed")
        return
    typer.echo(
        f"copied {a.uri} -> {b.uri}\n"
        + render(["kind", "rows", "added", "changed", "removed"], rows, Format.table)
    )


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


@app.command("import-files")
@handle_errors
def import_files(
    out: Annotated[Path, typer.Argument(help="New or empty folder for the CSVs and import.sh.")],
    source: Annotated[
        str | None, typer.Option("--from", help="Store to export (path or bolt:// URI).")
    ] = None,
    parts: Annotated[
        Path | None,
        typer.Option(help="Folder of parts written by jobs run with --parts (after --from)."),
    ] = None,
    database: Annotated[
        str, typer.Option(help="Neo4j database the import creates or REPLACES.")
    ] = "neo4j",
) -> None:
    """Write CSVs for `neo4j-admin database import full`, the fast first load of a NEW Neo4j
    database (hundreds of millions of edges), from a store, a parts folder or both, merged as
    loading would merge them; print the command and write it as OUT/import.sh. Run it with the
    server stopped, then start it and run `circuitcat store init` for the constraints."""
    from circuitcat.catalog.neo4j_import import write_import_files

    with (
        read_store(source) if source is not None else nullcontext() as store,
        err_console.status("writing import files") as st,
    ):
        files = write_import_files(
            out,
            store,
            parts,
            database=database,
            progress=lambda what, n: st.update(f"{what}: {n:,}"),
        )
    n_nodes = sum(f.rows for f in files.nodes)
    n_edges = sum(f.rows for f in files.relationships)
    typer.echo(
        f"wrote {n_nodes:,} nodes and {n_edges:,} relationships in "
        f"{len(files.nodes) + len(files.relationships)} CSV files to {out}\n"
        f"With the Neo4j server stopped (this REPLACES database {database!r}), run "
        f"{files.script} or:\n\n  {files.command()}\n\n"
        "then start the server and create the constraints and indexes:\n\n"
        "  circuitcat store init --store neo4j://HOST:7687"
    )
