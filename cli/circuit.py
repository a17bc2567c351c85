"""`circuitcat circuit ...`: find a circuit in the stored prompt graphs, show it, verify it.

`find` and `show` only talk to the store (no torch); `verify` loads the model and transcoders.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer

from circuitcat.catalog.schema import model_uid, transcoder_set_uid

from .common import (
    DeviceOption,
    FormatOption,
    ModelOption,
    SetOption,
    StoreOption,
    ThreadsOption,
    TranscodersOption,
    err_console,
    existing_store,
    handle_errors,
    pick_device,
    read_store,
)
from .output import Format, render, render_record

app = typer.Typer(
    help="Circuits: aggregate a task's prompt graphs into a circuit, show it, verify it.",
    no_args_is_help=True,
)

FEATURE_COLUMNS = [
    "layer", "index", "score", "prompts_on", "n_prompts", "top_logits", "description"
]  # fmt: skip


@app.command("find")
@handle_errors
def find(
    task: Annotated[str, typer.Option(help="Task whose prompt graphs to aggregate.")],
    name: Annotated[str | None, typer.Option(help="Circuit name (default: the task).")] = None,
    top_n: Annotated[
        int | None, typer.Option(help="Keep this many features (default: 5% of live ones).")
    ] = None,
    threshold: Annotated[
        float | None, typer.Option(help="Keep features scoring at least this instead.")
    ] = None,
    set_uid: SetOption = None,
    store: StoreOption = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Aggregate a task's stored prompt graphs into a circuit.

    Features are ranked by their mean total attribution onto the target; the circuit replaces
    an earlier one of the same name."""
    from circuitcat.catalog.circuits import find_circuit

    with existing_store(store) as catalog:
        r = find_circuit(catalog, task, set_uid, name=name, top_n=top_n, threshold=threshold)
    if fmt is Format.json:
        typer.echo(render_record(asdict(r), fmt))
        return
    if fmt is not Format.table:  # jsonl, csv: the strongest features
        typer.echo(render(["feature", "score"], [list(t) for t in r.top], fmt))
        return
    typer.echo(
        f"circuit {r.name!r} ({r.uid}): {r.n_features} features of {r.n_live} live "
        f"({100 * r.n_features / max(r.n_live, 1):.1f}%; live = {r.live_from}), {r.n_heads} "
        f"heads, {r.n_tokens} tokens, from {r.n_prompts} prompt graphs in {r.seconds:.2f} s; "
        f"error nodes (errors, biases, remainders) carry {100 * r.error_share:.1f}% of the "
        "leaves' attribution"
    )
    typer.echo(render(["feature", "score"], [list(t) for t in r.top], Format.table, "strongest"))


def _show_tables(view: Any) -> str:
    c = view.circuit
    faith = c["faithfulness"]
    lines = [
        f"circuit {c['name']!r}: task {c['task']}, set {c['set_uid']}, {c['n_features']} "
        f"features, from {c['params'].get('n_prompts')} prompts ({view.seconds * 1000:.0f} ms)"
    ]
    if faith:
        lines.append(
            f"verify: circuit {faith['circuit']:.3f} vs transcoders {faith['replaced']:.3f} "
            f"({100 * faith['kept']:.0f}% kept); random {faith['random']:.3f}; "
            f"model {faith['full']:.3f}"
        )
    rows = [[f[k] for k in FEATURE_COLUMNS] for f in view.features]
    lines.append(render(FEATURE_COLUMNS, rows, Format.table, "features"))
    heads = [[h["layer"], h["head"], h["score"]] for h in view.heads]
    lines.append(render(["layer", "head", "score"], heads, Format.table, "heads"))
    prefix = f"{c['set_uid']}/"
    paths = [
        [
            p["depth"],
            p["token"],
            " -> ".join(f.removeprefix(prefix) for f in p["features"]),
            p["score"],
            p["n_prompts"],
        ]
        for p in view.paths
    ]
    cols = ["depth", "token", "features", "score", "n_prompts"]
    lines.append(render(cols, paths, Format.table, "paths token -> features -> target"))
    return "\n".join(lines)


@app.command("show")
@handle_errors
def show(
    name: Annotated[str, typer.Argument(help="Circuit name (see `circuitcat circuit find`).")],
    set_uid: SetOption = None,
    task: Annotated[str | None, typer.Option(help="Task, when names repeat.")] = None,
    limit: Annotated[int, typer.Option(help="Paths shown per depth.")] = 10,
    store: StoreOption = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Print a circuit as stored: features, heads and strongest paths.

    Features with layer, index, score, the prompts they work on (prompts_on: the start years,
    "YY 03..97", for greater-than and less-than, else the answers, "four, six") and top logits;
    heads; token -> feature(catalog) -> target paths. json: everything; jsonl and csv: the
    features."""
    from circuitcat.catalog.circuits import show_circuit

    with read_store(store) as catalog:
        view = show_circuit(catalog, name, set_uid, task, limit)
    if fmt is Format.table:
        typer.echo(_show_tables(view))
    elif fmt is Format.json:
        typer.echo(json.dumps(view.as_dict(), indent=2, default=str))
    else:
        rows = [[f[k] for k in ["uid", *FEATURE_COLUMNS]] for f in view.features]
        typer.echo(render(["uid", *FEATURE_COLUMNS], rows, fmt))


def _verify_table(f: dict[str, Any]) -> str:
    rows = [
        ["original model", f["full"], ""],
        ["all MLPs -> transcoders", f["replaced"], 1.0],
        [f"circuit ({f['n_features']} features)", f["circuit"], f["kept"]],
        [f"random circuits (mean of {len(f['random_draws'])})", f["random"], f["random_kept"]],
        ["no feature (all at their means)", f["empty"], f["empty"] / (f["replaced"] or 1.0)],
    ]
    title = f"{f['metric']} on {f['n_prompts']} prompts; means: {f['means_from']}"
    return render(["model", f["metric"], "kept"], rows, Format.table, title)


@app.command("verify")
@handle_errors
def verify(
    name: Annotated[str, typer.Argument(help="Circuit name.")],
    set_uid: SetOption = None,
    model: ModelOption = None,
    transcoders: TranscodersOption = None,
    set_name: Annotated[str | None, typer.Option(hidden=True)] = None,  # old spelling of --set
    n: Annotated[
        int | None,
        typer.Option(help="Prompts to score (greater-than, less-than 200; counting 70)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed that picks them (find used 0).")] = 1,
    prompts: Annotated[Path | None, typer.Option(help="JSONL prompts (custom tasks).")] = None,
    draws: Annotated[int, typer.Option(help="Random circuits averaged.")] = 5,
    plot: Annotated[
        Path | None, typer.Option(help="Also save the metric-vs-size curve as this PNG.")
    ] = None,
    device: DeviceOption = "auto",
    threads: ThreadsOption = None,
    store: StoreOption = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Measure how much of the task metric the circuit alone keeps.

    Every MLP is replaced by its transcoder, the circuit's features are kept and every other
    feature is set to its mean activation; the metric is compared with the full model, the
    transcoder-replaced model and random circuits of the same size, and stored on the
    Circuit node."""
    from circuitcat.catalog.circuits import get_circuit
    from circuitcat.ingest.faithfulness import circuit_curve, plot_curve, verify_circuit
    from circuitcat.ingest.inputs import set_uid_for_name
    from circuitcat.ingest.tasks import load_task, verify_size

    from .ingest import load_inputs

    dev = pick_device(device)
    with existing_store(store) as catalog:
        set_uid = set_uid or (set_uid_for_name(catalog, set_name) if set_name else None)
        loaded, tset = load_inputs(catalog, set_uid, model, transcoders, dev, threads)
        set_uid = transcoder_set_uid(model_uid(loaded.name), tset.name)
        task_name = get_circuit(catalog, name, set_uid)["task"]
        n = n or verify_size(task_name, prompts)
        task = load_task(task_name, loaded.model.tokenizer, n=n, seed=seed, prompts=prompts)
        what = f"scoring {len(task.prompts)} prompts: model, transcoders, circuit, {draws} random"
        with err_console.status(what):
            result = verify_circuit(catalog, loaded, tset, task, name, n_random=draws)
        curve = None
        if plot:
            with err_console.status(f"metric vs circuit size on {len(task.prompts)} prompts"):
                curve = circuit_curve(catalog, loaded, tset, task, name)
    if curve is not None and plot is not None:
        plot_curve(curve, plot, f"{name}: {task.metric} vs circuit size")
    out = result.as_dict()
    if fmt is Format.table:
        typer.echo(_verify_table(out) + (f"\ncurve: {plot}" if plot else ""))
    else:
        typer.echo(render_record({**out, **({"curve": curve.as_dict()} if curve else {})}, fmt))


@app.command("render")
@handle_errors
def render_command(
    name: Annotated[str, typer.Argument(help="Circuit name (see `circuitcat circuit find`).")],
    out: Annotated[Path, typer.Option(help="Picture file: .png, .svg or .html.")] = Path(
        "circuit.png"
    ),
    set_uid: SetOption = None,
    task: Annotated[str | None, typer.Option(help="Task, when names repeat.")] = None,
    per_layer: Annotated[int, typer.Option(help="Strongest edges drawn into each layer.")] = 15,
    store: StoreOption = None,
) -> None:
    """Draw a stored circuit: tokens at the bottom, layers upwards, the metric on top; nodes
    sized by score, edges by summed attribution (blue positive, red negative)."""
    from circuitcat.catalog.circuits import get_circuit

    from .render import render_circuit

    with read_store(store) as catalog:
        circuit = get_circuit(catalog, name, set_uid, task)
        path = render_circuit(
            catalog, circuit["uid"], out, f"{name} ({circuit['set_uid']})", per_layer
        )
    typer.echo(f"wrote {path}")


@app.command("export")
@handle_errors
def export(
    name: Annotated[str, typer.Argument(help="Circuit name (see `circuitcat circuit find`).")],
    out: Annotated[
        Path,
        typer.Option(
            help="Output file: .graphml, or .json in networkx node-link form, which "
            "`nx.node_link_graph(json.load(f))` reads with its defaults."
        ),
    ],
    set_uid: SetOption = None,
    task: Annotated[str | None, typer.Option(help="Task, when names repeat.")] = None,
    store: StoreOption = None,
) -> None:
    """Write a stored circuit as GraphML or networkx node-link JSON: members with layer, index
    and score, the target, and edges with their attribution summed over the task's prompts."""
    from circuitcat.catalog.circuits import get_circuit
    from circuitcat.catalog.export import circuit_graph, write_graph

    with read_store(store) as catalog:
        graph = circuit_graph(catalog, get_circuit(catalog, name, set_uid, task)["uid"])
    path = write_graph(graph, out)
    typer.echo(f"wrote {path}: {graph.number_of_nodes()} nodes, {graph.number_of_edges()} edges")


# The cross-circuit commands live in cli/compare.py; they are `circuit` commands.
from .compare import compare, transfer  # noqa: E402

app.command("compare")(compare)
app.command("transfer")(transfer)
