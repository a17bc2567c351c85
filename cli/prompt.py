"""`circuitcat prompt ...`: the stored per-prompt attribution graphs, listed, shown (by
position), compared and exported."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from .common import FormatOption, SetOption, StoreOption, err_console, handle_errors, read_store
from .output import Format, render, render_record

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
    """The task's prompts with a fully stored attribution graph.

    Columns: uid, text, answer (the correct tokens: "24..99" for a greater-than prompt whose start
    year is 23, "four" for counting), start_year (greater-than and less-than only) and the
    model's metric_value."""
    from circuitcat.catalog.circuits import pick_set

    with read_store(store) as catalog:
        rows = catalog.query(
            "attributed_prompts", set_uid=pick_set(catalog, task, set_uid), task=task
        )
    columns = ["uid", "text", "answer", "start_year", "metric_value"]
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
            help="Model id for the viewer (on Neuronpedia: its model id) (default: the model; "
            "into a folder with feature files: ./data/features/SET, where the local viewer "
            "finds them)."
        ),
    ] = None,
    features: Annotated[
        bool,
        typer.Option(
            help="Into a folder: also write each feature's dashboard JSON under "
            "OUT/features/SET/ for circuit-tracer's local viewer."
        ),
    ] = True,
    store: StoreOption = None,
) -> None:
    """Write one stored prompt graph as circuit-tracer / Neuronpedia graph JSON (metadata,
    nodes, links): features, token embeddings, error and bias terms and the target, with each
    feature's activation, best description and cumulative influence on the target.

    Into a folder, also one dashboard file per feature (top contexts, logits, histogram,
    quantiles, density): `circuit_tracer.frontend.local_server.serve(data_dir=OUT)` then opens
    the graph with every feature's dashboard."""
    from circuitcat.catalog.graph_json import export_prompt

    with read_store(store) as catalog:
        graph, path, n = export_prompt(
            catalog, prompt, out, set_uid, slug=slug, scan=scan, features=features
        )
    extra = f", {n} feature files under {out / 'features'}" if n else ""
    typer.echo(f"wrote {path}: {len(graph.nodes)} nodes, {len(graph.links)} links{extra}")


def _node_name(r: dict[str, Any]) -> str:
    """A metric input as a reader names it: a feature's short uid, a token, an error term."""
    if r.get("feature_index") is not None:
        return f"L{r['layer']}/{r['feature_index']}"
    if r.get("token") is not None:
        return f"token {r['token']!r}"
    return f"{r.get('error_kind') or 'node'} (L{r.get('layer')})"


@app.command("show")
@handle_errors
def show(
    prompt: Annotated[str, typer.Argument(help="Prompt uid (`prompt list`).")],
    position: Annotated[
        int | None,
        typer.Option(help="Also list the features active at this position (-1: the last)."),
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many rows per list.")] = 20,
    set_uid: SetOption = None,
    format: FormatOption = Format.table,
    store: StoreOption = None,
) -> None:
    """A stored prompt graph: the prompt's tokens by position, what drives its metric directly
    (every node's edge into the metric, strongest first) and, with --position N, the features
    active at position N with their activations and descriptions."""
    from circuitcat.catalog.research import prompt_position

    with read_store(store) as catalog:
        found = prompt_position(catalog, prompt, position, set_uid, limit)
    if format is not Format.table:
        typer.echo(render_record(found, format))
        return
    year = f", start year {found['start_year']}" if found.get("start_year") else ""
    metric = found["metric_value"]
    typer.echo(f"{found['text']}  (answer {found['answer']}{year}, metric {metric:.3f})")
    typer.echo(" ".join(f"{i}:{t}" for i, t in enumerate(found["tokens"])))
    if position is not None:
        rows = [[r["uid"], r["activation"], r["description"]] for r in found["features"]]
        title = (
            f"{found['n_features']} features at position {found['position']} ({found['token']!r})"
        )
        typer.echo(render(["feature", "activation", "description"], rows, format, title))
    rows = [[_node_name(r), r["pos"], r["w"], r["description"]] for r in found["metric_inputs"]]
    title = "what drives the metric directly (edges into it)"
    typer.echo(render(["node", "position", "w", "description"], rows, format, title))


@app.command("compare")
@handle_errors
def compare(
    a: Annotated[str, typer.Argument(help="One prompt uid.")],
    b: Annotated[str, typer.Argument(help="The other prompt uid.")],
    limit: Annotated[int, typer.Option(help="At most this many shared features.")] = 50,
    set_uid: SetOption = None,
    format: FormatOption = Format.table,
    store: StoreOption = None,
) -> None:
    """The features two prompts' stored graphs share, with each prompt's activation (summed
    over the positions where the feature is active), strongest first."""
    from circuitcat.catalog.research import compare_prompts

    with read_store(store) as catalog:
        found = compare_prompts(catalog, a, b, set_uid, limit)
    if format is not Format.table:
        typer.echo(render_record(found, format))
        return
    columns = ["uid", "activation_a", "activation_b", "n_positions_a", "n_positions_b"]
    rows = [[r[c] for c in columns] + [r["description"]] for r in found["shared"]]
    title = (
        f"{found['n_shared']} shared features (a has {found['n_features_a']}, "
        f"b {found['n_features_b']})"
    )
    typer.echo(render([*columns, "description"], rows, format, title))
