"""`circuitcat query ...`: Cypher against the catalog, ad hoc or by name."""

from __future__ import annotations

from typing import Annotated

import typer

from circuitcat.catalog import open_store
from circuitcat.catalog.queries import load_queries

from .common import FormatOption, StoreOption, handle_errors, parse_params
from .output import Format, render

app = typer.Typer(help="Query the catalog with Cypher.", no_args_is_help=True)

ParamOption = Annotated[
    list[str] | None,
    typer.Option("--param", "-p", help="Query parameter as key=value (value parsed as JSON)."),
]


@app.command("cypher")
@handle_errors
def cypher(
    query: Annotated[str, typer.Argument(help="Cypher text; use $name for parameters.")],
    param: ParamOption = None,
    write: Annotated[
        bool, typer.Option("--write/--read-only", help="Allow queries that change the catalog.")
    ] = False,
    store: StoreOption = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Run a Cypher query. Without --write it is read-only: it cannot change the catalog, read
    or write files, fetch URLs or act on the server (docs/neo4j.md, "Read-only")."""
    params = parse_params(param)
    with open_store(store, read_only=not write) as catalog:
        result = catalog.run_cypher(query, params, write=write)
    typer.echo(render(result.columns, result.rows, fmt))


@app.command("named")
@handle_errors
def named(
    name: Annotated[str, typer.Argument(help="A query name from `circuitcat query list`.")],
    param: ParamOption = None,
    store: StoreOption = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Run one of circuitcat's named queries with parameters (read-only)."""
    params = parse_params(param)
    with open_store(store, read_only=True) as catalog:
        records = catalog.query(name, **params)
    columns = list(records[0]) if records else []
    typer.echo(render(columns, [list(r.values()) for r in records], fmt))


@app.command("list")
def list_queries(
    backend: Annotated[str, typer.Option(help="Show the text for this backend.")] = "neo4j",
) -> None:
    """List the named queries with their Cypher text."""
    for name, text in sorted(load_queries(backend).items()):
        typer.echo(f"// name: {name}\n{text}\n")
