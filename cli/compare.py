"""The catalog's cross-circuit questions: `circuit compare`, `circuit transfer`, `feature reuse`.

compare and reuse only read the catalog (named queries, no torch) unless the two circuits are on
two transcoder sets of one model, when both sets' decoders are loaded to match their features;
transfer loads the model and runs it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .common import (
    DeviceOption,
    FormatOption,
    SetOption,
    StoreOption,
    ThreadsOption,
    err_console,
    handle_errors,
    pick_device,
    read_store,
)
from .output import Format, render, render_record

if TYPE_CHECKING:
    from circuitcat.catalog.compare import Comparison

CircuitArg = Annotated[str, typer.Argument(help="Circuit name, or its uid when names repeat.")]


def _pm(stat: Any, digits: int = 3) -> str:
    return f"{stat[0]:.{digits}f} +- {stat[1]:.{digits}f}"


def _compare_tables(c: Comparison, limit: int) -> str:
    a, b = c.a, c.b
    lines = [
        f"A = {a['name']} ({a['uid']}), B = {b['name']} ({b['uid']}); matching: {c.matching}; "
        f"null: {c.draws} pairs of random circuits of the same sizes per layer (seed {c.seed})"
    ]
    cols = ["members", "A", "B", "shared", "null shared", "Jaccard", "null Jaccard", "weighted",
            "null weighted"]  # fmt: skip
    rows = [
        [o.kind, o.n_a, o.n_b, o.shared, _pm(o.null_shared, 2), round(o.jaccard, 3),
         _pm(o.null_jaccard), round(o.weighted, 3), _pm(o.null_weighted)]
        for o in (c.features, c.heads)
    ]  # fmt: skip
    lines.append(render(cols, rows, Format.table, "overlap (null: mean +- sd)"))
    shared = [
        [o.kind, m["uid"], m["layer"], m["score_a"], m["score_b"]]
        for o in (c.features, c.heads)
        for m in o.members[:limit]
    ]
    lines.append(render(["kind", "uid", "layer", "score in A", "score in B"], shared,
                        Format.table, "shared members"))  # fmt: skip
    return "\n".join(lines)


@handle_errors
def compare(
    a: CircuitArg,
    b: CircuitArg,
    threshold: Annotated[
        float, typer.Option(help="Across two sets of one model: decoder cosine to match.")
    ] = 0.7,
    draws: Annotated[int, typer.Option(help="Random circuit pairs in the null (>= 100).")] = 200,
    seed: Annotated[int, typer.Option(help="Seed of the null's draws.")] = 0,
    limit: Annotated[int, typer.Option(help="Shared members listed per kind.")] = 20,
    store: StoreOption = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Compare two circuits: shared features and heads (count, Jaccard, score-weighted overlap)
    beside what random circuits of the same sizes per layer share (mean and sd over the draws).

    Two circuits on different transcoder sets of one model are compared after matching their
    features by decoder cosine similarity >= --threshold. json: everything; jsonl/csv: the
    overlap rows."""
    from circuitcat.catalog.compare import check_comparable, compare_circuits, resolve_circuit

    with read_store(store) as catalog:
        ca, cb = resolve_circuit(catalog, a), resolve_circuit(catalog, b)
        matching = None
        if check_comparable(ca, cb, catalog):
            matching = _match(catalog, ca["set_uid"], cb["set_uid"], threshold)
        result = compare_circuits(
            catalog,
            ca["uid"],
            cb["uid"],
            matching=matching.pairs if matching else None,
            matching_name=matching.describe() if matching else "",
            draws=draws,
            seed=seed,
        )
    if fmt is Format.table:
        typer.echo(_compare_tables(result, limit))
    elif fmt is Format.json:
        typer.echo(render_record(result.as_dict(), fmt))
    else:
        cols = ["kind", "n_a", "n_b", "shared", "jaccard", "weighted", "null_shared_mean",
                "null_shared_sd", "null_jaccard_mean", "null_jaccard_sd", "null_weighted_mean",
                "null_weighted_sd"]  # fmt: skip
        rows = [
            [o.kind, o.n_a, o.n_b, o.shared, o.jaccard, o.weighted, *o.null_shared,
             *o.null_jaccard, *o.null_weighted]
            for o in (result.features, result.heads)
        ]  # fmt: skip
        typer.echo(render(cols, rows, fmt))


def _match(catalog: Any, set_a: str, set_b: str, threshold: float) -> Any:
    """Both sets' transcoders loaded from the catalog, B's features matched onto A's."""
    from circuitcat.ingest.inputs import load_registered
    from circuitcat.ingest.matching import match_features

    with err_console.status(f"matching the features of {set_b} onto {set_a} by decoder"):
        _, tset_a = load_registered(catalog, set_a)
        _, tset_b = load_registered(catalog, set_b)
        return match_features(tset_a, set_a, tset_b, set_b, threshold)


@handle_errors
def transfer(
    circuit: CircuitArg,
    task: Annotated[str, typer.Option(help="Task whose prompts to score circuit A on.")],
    n: Annotated[int | None, typer.Option(help="Prompts (the task's verify size).")] = None,
    seed: Annotated[int, typer.Option(help="Seed that picks them.")] = 1,
    prompts: Annotated[Path | None, typer.Option(help="JSONL prompts (custom tasks).")] = None,
    draws: Annotated[int, typer.Option(help="Random circuits of A's size.")] = 20,
    set_uid: SetOption = None,
    device: DeviceOption = "auto",
    threads: ThreadsOption = None,
    store: StoreOption = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Faithfulness of circuit A's features on task B's prompts, against random circuits of A's
    size: A's features are kept, every other feature is set to its mean.

    Beside it, B's own circuit on the same prompts when the catalog holds one. Nothing is
    stored."""
    from circuitcat.catalog.compare import resolve_circuit
    from circuitcat.ingest.faithfulness import transfer_circuit
    from circuitcat.ingest.tasks import load_task, verify_size

    from .ingest import load_inputs

    dev = pick_device(device)
    with read_store(store) as catalog:
        set_uid = set_uid or resolve_circuit(catalog, circuit)["set_uid"]
        loaded, tset = load_inputs(catalog, set_uid, None, None, dev, threads)
        spec = load_task(task, loaded.model.tokenizer, n=n or verify_size(task, prompts),
                         seed=seed, prompts=prompts)  # fmt: skip
        with err_console.status(f"scoring {len(spec.prompts)} {task} prompts, {draws} random"):
            result = transfer_circuit(catalog, loaded, tset, circuit, spec, n_random=draws)
    out = result.as_dict()
    if fmt is not Format.table:
        typer.echo(render_record(out, fmt))
        return
    f = result.faithfulness
    spread = _sd(f.random_draws)
    short = result.circuit.rsplit("/", 1)[-1]
    rows = [
        ["original model", f.full, ""],
        ["all MLPs -> transcoders", f.replaced, 1.0],
        [f"circuit {short} ({f.n_features} features)", f.circuit, f.kept],
        [f"random, same size (mean of {len(f.random_draws)}, sd {spread:.3f})", f.random,
         f.random_kept],
    ]  # fmt: skip
    if result.own is not None:
        rows.append([f"{task}'s own circuit ({result.own_n_features} features)", result.own,
                     result.own / (f.replaced or 1.0)])  # fmt: skip
    rows.append(["no feature (all at their means)", f.empty, f.empty / (f.replaced or 1.0)])
    title = f"{f.metric} on {f.n_prompts} {task} prompts; means: {f.means_from}"
    typer.echo(render(["model", f.metric, "kept"], rows, Format.table, title))


def _sd(xs: list[float]) -> float:
    import statistics

    return statistics.stdev(xs) if len(xs) > 1 else 0.0


@handle_errors
def reuse(
    min_circuits: Annotated[
        int, typer.Option(help="List members of at least this many circuits.")
    ] = 2,
    store: StoreOption = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Features and heads that two or more circuits contain, with their score in each circuit
    (named queries feature_reuse and head_reuse), most reused first."""
    from circuitcat.catalog.compare import reused_members

    with read_store(store) as catalog:
        rows = reused_members(catalog, min_circuits)
    circuits = sorted({c for r in rows for c in r.scores})
    names = [c.rsplit("/", 1)[-1] for c in circuits]
    if len(set(names)) < len(names):
        names = circuits
    cols = ["kind", "uid", "layer", "n_circuits", *names]
    table = [
        [r.kind, r.uid, r.layer, r.n_circuits, *(r.scores.get(c) for c in circuits)] for r in rows
    ]
    if fmt is Format.table and not table:
        typer.echo(f"no feature or head is in {min_circuits} or more circuits")
        return
    typer.echo(render(cols, table, fmt, f"members of {min_circuits}+ circuits: score in each"))
