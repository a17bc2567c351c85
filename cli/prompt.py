"""`circuitcat prompt ...`: the stored per-prompt attribution graphs, listed and exported."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import FormatOption, SetOption, StoreOption, err_console, handle_errors, read_store
from .output import Format, render

app = typer.Typer(
    help="Prompt graphs: list the stored ones, export one for circuit-tracer's viewer.",
    no_args_is_help=True,
)


@app.command("list")
@handle_errors
def list_prompts(
    task: Annotated[str, typer.Option(help="Task whose prompts to list.")] = "greater-than",
    set_uid: SetOption = None,
    limit: Annotated[int, typer.Option(help="At most this many rows.")] = 50,
    format: FormatOption = Format.table,
    store: StoreOption = None,
) -> None:
    """The task's prompts with a fully stored attribution graph: uid, text, answer, metric."""
    from circuitcat.catalog.circuits import pick_set

    with read_store(store) as catalog:
        rows = catalog.query(
            "attributed_prompts", set_uid=pick_set(catalog, task, set_uid), task=task
        )
    columns = ["uid", "text", "answer", "metric_value"]
    typer.echo(render(columns, [[r[c] for c in columns] for r in rows[:limit]], format))
    if len(rows) > limit:
        err_console.print(f"showing {limit} of {len(rows)} prompts; --limit N shows more")


@app.command("export")
@handle_errors
def export(
    prompt: Annotated[
        str, typer.Argument(help="Prompt uid, e.g. greater-than/00ed42e525faf264 (`prompt list`).")
    ],
    out: Annotated[
        Path,
        typer.Option(
            help="A .json file, or a folder: then {slug}.json plus the graph-metadata.json index "
            "that circuit-tracer's local viewer reads."
        ),
    ],
    set_uid: SetOption = None,
    slug: Annotated[str | None, typer.Option(help="Graph slug (default: from the uids).")] = None,
    scan: Annotated[
        str | None,
        typer.Option(
            help="Model id for the viewer (on Neuronpedia: its model id) (default: model)."
        ),
    ] = None,
    store: StoreOption = None,
) -> None:
    """Write one stored prompt graph as circuit-tracer / Neuronpedia graph JSON (metadata,
    nodes, links): features, token embeddings, error and bias terms and the target, with each
    feature's activation and every node's cumulative influence on the target."""
    from circuitcat.catalog.graph_json import prompt_graph_json, write_graph_json

    with read_store(store) as catalog:
        graph = prompt_graph_json(catalog, prompt, set_uid, slug=slug, scan=scan)
    path = write_graph_json(graph, out)
    typer.echo(f"wrote {path}: {len(graph.nodes)} nodes, {len(graph.links)} links")
