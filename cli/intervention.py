"""`circuitcat intervention ...`: ablate, clamp, scale, steer or patch transcoder features on a
prompt, a stored prompt or a task's prompts; the model's answer beside the attribution graph's
prediction; saved for the team on request."""

from __future__ import annotations

import json
import math
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
    help="Interventions: ablate, clamp, scale, steer or patch features and compare the model's "
    "answer with what the attribution graph predicts; save them for the team.",
    no_args_is_help=True,
)

OP_HELP = (
    "zero | mean (ablate to 0 or to the corpus mean), clamp (to --value, or --value 3xmax: a "
    "multiple of each feature's max activation), scale (multiply by --value), steer (add "
    "--value x the decoder direction), patch (take the values on --source)."
)


def parse_value(text: str | None) -> tuple[float | None, bool]:
    """'5', '-2.5' or '3xmax' -> (value, in multiples of max)."""
    from circuitcat.catalog.errors import InterventionError

    if text is None:
        return None, False
    of_max = text.lower().endswith("xmax")
    raw = text[:-4] if of_max else text
    try:
        value = float(raw)
    except ValueError:
        raise InterventionError(
            f"--value {text!r} is not a number: give e.g. 5, -2.5 or 3xmax"
        ) from None
    if not math.isfinite(value):
        raise InterventionError(f"--value {text!r} is not a finite number; give one")
    return value, of_max


def _result_table(r: dict[str, Any]) -> str:
    ch = r["change"]
    rows = [
        ["clean run", r["before"], 0.0],
        ["intervened (actual: attention, norms, errors live)", r["after"], ch["actual"]],
        ["intervened, attention + norms + errors frozen", r["frozen"], ch["frozen"]],
        ["predicted by the attribution graph", r["predicted"], ch["predicted"]],
    ]
    spec = r["spec"]
    feats = spec["features"]
    what = f"{spec['op']} {'all but ' if spec['complement'] else ''}{len(feats)} feature(s)"
    title = f"{what} on {r['n_prompts']} prompt(s); metric {r['metric']}"
    out = [render(["run", r["metric"], "change"], rows, Format.table, title)]
    flag = "FLAGGED: the graph's paths do not carry most of this change" if r["flagged"] else "ok"
    tol = r["tolerance"]
    out.append(f"illusion check: {flag} (tolerance: miss > {tol['fraction']:g} x |actual| "
               f"and > {tol['floor']:g}; see docs/concepts.md)")  # fmt: skip
    tops = [
        [b["token"], b["prob"], a["token"], a["prob"]]
        for b, a in zip(r["top_before"], r["top_after"], strict=True)
    ]
    out.append(render(["before", "p", "after", "p"], tops, Format.table, "top next tokens"))
    if r.get("generated_before") is not None:
        out.append(
            f"greedy before: {r['generated_before']!r}\ngreedy after:  {r['generated_after']!r}"
        )
    if r.get("saved"):
        out.append(f"saved as {r['saved']}")
    return "\n".join(out)


@app.command("run")
@handle_errors
def run(  # over 60 lines: one typer option a line; the body is ~25
    op: Annotated[str, typer.Argument(help=OP_HELP)],
    features: Annotated[
        list[str] | None,
        typer.Argument(help="Features: L3/17 (layer/index) or full uids; several at once."),
    ] = None,
    value: Annotated[
        str | None, typer.Option(help="clamp value (or Nxmax), scale factor, steer coefficient.")
    ] = None,
    pos: Annotated[
        list[int] | None,
        typer.Option(help="Positions to edit (0 = BOS, -1 = last token) (default: every one)."),
    ] = None,
    circuit: Annotated[
        str | None, typer.Option(help="Also edit every feature of this stored circuit.")
    ] = None,
    complement: Annotated[
        bool, typer.Option(help="Edit every feature except the ones named (and the circuit's).")
    ] = False,
    prompt: Annotated[str | None, typer.Option(help="A text prompt.")] = None,
    prompt_uid: Annotated[str | None, typer.Option(help="A stored prompt's uid.")] = None,
    task: Annotated[str | None, typer.Option(help="A task's prompts, run as one batch.")] = None,
    n: Annotated[int, typer.Option(help="How many of the task's prompts.")] = 40,
    seed: Annotated[int, typer.Option(help="Seed that picks the task's prompts.")] = 0,
    source: Annotated[str | None, typer.Option(help="patch: the source prompt's text.")] = None,
    source_uid: Annotated[str | None, typer.Option(help="patch: a stored source prompt.")] = None,
    correct: Annotated[
        list[str] | None, typer.Option(help="Text prompt: correct answer tokens.")
    ] = None,
    incorrect: Annotated[
        list[str] | None, typer.Option(help="Text prompt: incorrect answer tokens.")
    ] = None,
    keep_error: Annotated[
        bool,
        typer.Option(help="Keep each MLP's transcoder error (--no-keep-error: as circuit verify)."),
    ] = True,
    generate: Annotated[int, typer.Option(help="Greedy tokens to generate before and after.")] = 0,
    save: Annotated[bool, typer.Option(help="Save the result in the catalog.")] = False,
    author: Annotated[
        str | None,
        typer.Option(
            envvar="CIRCUITCAT_AUTHOR", help="Who ran it (with --save) (default: login name)."
        ),
    ] = None,
    set_uid: SetOption = None,
    model: ModelOption = None,
    transcoders: TranscodersOption = None,
    device: DeviceOption = "auto",
    threads: ThreadsOption = None,
    store: StoreOption = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Edit transcoder features and report the task metric before and after: live, with
    attention and normalisation frozen, and as the prompt's attribution graph predicts it,
    flagging a change the graph's paths do not carry (docs/concepts.md). Also the top next
    tokens, and with --generate a greedy continuation before and after.

    Examples: `intervention run zero L1/17 --task greater-than`;
    `intervention run clamp L3/5 --value 2xmax --pos -1 --prompt "..."`;
    `intervention run mean --circuit greater-than --complement --task greater-than`."""
    from circuitcat.ingest.interventions.request import RunRequest, run_request

    request = RunRequest(
        op=op, features=list(features or []), value=parse_value(value), positions=pos,
        circuit=circuit, complement=complement, prompt=prompt, prompt_uid=prompt_uid,
        task=task, n=n, seed=seed, source=source, source_uid=source_uid,
        correct=list(correct or []), incorrect=list(incorrect or []), keep_error=keep_error,
        generate=generate, author=author,
    )  # fmt: skip
    from .ingest import load_inputs

    dev = pick_device(device)
    with existing_store(store) if save else read_store(store) as catalog:
        loaded, tset = load_inputs(catalog, set_uid, model, transcoders, dev, threads)
        set_uid = transcoder_set_uid(model_uid(loaded.name), tset.name)
        with err_console.status(f"intervention: {op}"):
            out = run_request(catalog, loaded, tset, set_uid, request, save=save)
    typer.echo(_result_table(out) if fmt is Format.table else render_record(out, fmt))


@app.command("list")
@handle_errors
def list_command(
    feature: Annotated[
        str | None, typer.Option(help="Only interventions that edited this feature (full uid).")
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
    store: StoreOption = None,
    fmt: FormatOption = Format.table,
) -> None:
    """The saved interventions, newest first: op, task or prompt, metric before and after,
    the graph's prediction and the illusion flag."""
    from circuitcat.catalog.interventions import list_interventions

    with read_store(store) as catalog:
        rows = list_interventions(catalog, feature, limit)
    cols = ["uid", "op", "task", "before", "after", "predicted", "flagged", "author"]
    if not rows and fmt is Format.table:
        typer.echo("0 interventions saved (save one with `circuitcat intervention run ... --save`)")
        return
    typer.echo(render(cols, [[r.get(c) for c in cols] for r in rows], fmt))


@app.command("show")
@handle_errors
def show(
    uid: Annotated[str, typer.Argument(help="Intervention uid (see `intervention list`).")],
    store: StoreOption = None,
    fmt: FormatOption = Format.table,
) -> None:
    """One saved intervention: what was done, on what, the result and the features edited."""
    from circuitcat.catalog.interventions import get_intervention

    with read_store(store) as catalog:
        rec = get_intervention(catalog, uid)
    if fmt is not Format.table:
        typer.echo(render_record(rec, fmt))
        return
    feats = rec.pop("features")
    rec["spec"] = json.dumps(rec["spec"])
    typer.echo(render_record(rec, fmt, f"intervention {uid}"))
    cols = ["feature", "value", "positions", "label"]
    typer.echo(render(cols, [[f.get(c) for c in cols] for f in feats], fmt, "features edited"))
