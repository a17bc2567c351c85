"""`circuitcat query ...`: Cypher against the catalog, ad hoc or by name."""

from __future__ import annotations

from typing import Annotated

import typer

from circuitcat.catalog.queries import get_query, load_queries
from circuitcat.catalog.readonly import check_parameter_types

from .common import (
    FormatOption,
    StoreOption,
    err_console,
    existing_store,
    handle_errors,
    parse_params,
    read_store,
)
from .output import Format, render

app = typer.Typer(help="Query the catalog with Cypher.", no_args_is_help=True)

ParamOption = Annotated[
    list[str] | None,
    typer.Option(
        "--param",
        "-p",
        help="Query parameter as key=value. The value is read as JSON where it parses (45 is "
        "an integer, 0.5 a number, [1,2] a list, true, null), else as text; for text that "
        "looks like a number, quote it: -p 'token=\"45\"'.",
    ),
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
    check_parameter_types(query, params)
    with existing_store(store) if write else read_store(store) as catalog:
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
    with read_store(store) as catalog:
        check_parameter_types(get_query(catalog.backend, name), params)
        records = catalog.query(name, **params)
    if not records:  # a note, not data: stdout stays parseable in json/jsonl/csv
        if fmt is Format.table:
            typer.echo("0 rows")
            return
        err_console.print("0 rows", highlight=False)
    columns = list(records[0]) if records else []
    typer.echo(render(columns, [list(r.values()) for r in records], fmt))


@app.command("list")
def list_queries(
    backend: Annotated[str, typer.Option(help="Show the text for this backend.")] = "neo4j",
) -> None:
    """List the named queries with their Cypher text."""
    for name, text in sorted(load_queries(backend).items()):
        typer.echo(f"// name: {name}\n{text}\n")
