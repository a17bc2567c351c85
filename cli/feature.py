"""`circuitcat feature show UID`: one feature's dashboard, read from the catalog; `feature label`
labels it."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.text import Text

from circuitcat.catalog.descriptions import best_description
from circuitcat.catalog.errors import QueryError

from .common import FormatOption, SetOption, StoreOption, existing_store, handle_errors, read_store
from .output import Format, render, render_record

app = typer.Typer(help="Look at single features.", no_args_is_help=True)

BARS = " ▁▂▃▄▅▆▇█"


SHORT_UID = re.compile(r"L(\d+)/(\d+)")


def _resolve_uid(catalog: Any, uid: str, set_uid: str | None) -> str:
    """A full feature uid; the short form `L0/156` (as `circuit show` prints) is completed with
    --set or the catalog's only transcoder set."""
    if not SHORT_UID.fullmatch(uid):
        return uid
    sets = [str(r["uid"]) for r in catalog.query("transcoder_sets")]
    if set_uid is None and len(sets) != 1:
        raise QueryError(
            f"{uid!r} is a short feature uid and the catalog has {len(sets)} transcoder sets "
            f"({', '.join(sets) or 'none'}): pass --set SET or the full uid SET/{uid}"
        )
    return f"{set_uid or sets[0]}/{uid}"


def _missing(catalog: Any, uid: str) -> QueryError:
    """Why the feature is not there, with a command that lists ones that are."""
    match = re.search(r"^(.*)/L(\d+)/(\d+)$", uid)
    set_uid, layer = (match.group(1), int(match.group(2))) if match else ("SET", 0)
    found = [r for r in catalog.query("transcoder_sets") if r["uid"] == set_uid]
    if match and found:
        model = catalog.query("model", uid=found[0]["model"])
        n_layers = model[0]["n_layers"] if model else None
        if n_layers is not None and layer >= n_layers:
            return QueryError(
                f"no feature {uid!r}: model {model[0]['name']} has {n_layers} layers "
                f"(L0 to L{n_layers - 1}); list some with `circuitcat query named "
                f"features_in_layer -p set_uid={set_uid} -p layer=0 -p limit=10`"
            )
        if found[0]["d_transcoder"] is not None and int(match.group(3)) >= found[0]["d_transcoder"]:
            return QueryError(
                f"no feature {uid!r}: each layer of {set_uid} has {found[0]['d_transcoder']} "
                f"features (0 to {found[0]['d_transcoder'] - 1})"
            )
    return QueryError(
        f"no feature {uid!r} in the catalog; list some with `circuitcat query named "
        f"features_in_layer -p set_uid={set_uid} -p layer={layer} -p limit=10`"
    )


def _as_record(f: dict[str, Any], sources: list[dict[str, Any]], k: int) -> dict[str, Any]:
    """The feature with its JSON-string fields parsed and lists cut to k entries."""
    contexts = json.loads(f["top_contexts"] or "[]")[:k]
    logits = json.loads(f["top_logits"] or "[]")
    ups = [x for x in logits if x["w"] > 0][:k]
    downs = [x for x in logits if x["w"] < 0][:k]
    return {
        **f,
        "description": best_description(f),
        "top_contexts": contexts,
        "top_logits": ups + downs,
        "sources": sources[:k],
    }


@app.command("show")
@handle_errors
def show(
    uid: Annotated[
        str, typer.Argument(help="Feature uid, e.g. toy-years/tc-v1/L0/156, or L0/156 with --set.")
    ],
    limit: Annotated[int, typer.Option(help="Contexts, logits and inputs shown.")] = 8,
    set_uid: SetOption = None,
    store: StoreOption = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Print a feature's statistics, activation histogram, top activating contexts (activating
    tokens highlighted), the logits it promotes and the features it reads from.

    json/jsonl: the whole feature with parsed contexts and logits; csv: field/value rows."""
    with read_store(store) as catalog:
        uid = _resolve_uid(catalog, uid, set_uid)
        rows = catalog.query("feature", uid=uid)
        if not rows:
            raise _missing(catalog, uid)
        sources = catalog.query("feature_sources", uid=uid, limit=limit)
    f = rows[0]
    if fmt is not Format.table:
        typer.echo(render_record(_as_record(f, sources, limit), fmt))
        return
    _dashboard(Console(), f, sources, limit)


def _dashboard(console: Console, f: dict[str, Any], sources: list[dict[str, Any]], k: int) -> None:
    def num(v: Any) -> str:
        return "n/a" if v is None else f"{v:.4g}"

    console.print(
        f"[bold]{escape(f['uid'])}[/bold]  layer {f['layer']}  index {f['feature_index']}"
    )
    console.print(
        f"density {num(f['density'])}   mean act {num(f['act_mean'])}   max act {num(f['act_max'])}"
    )
    source = "label" if f["label"] else "explanation" if f.get("explanation") else "automatic"
    console.print(Text(f"{source}: {best_description(f) or '-'}"))
    if f.get("explanation") and f["label"]:
        console.print(Text(f"explanation: {f['explanation']}"), style="dim")
    if f.get("explanation_score") is not None:
        meta = json.loads(f.get("explanation_meta") or "{}")
        console.print(
            Text(
                f"explanation detection score {f['explanation_score']:.2f} (0.5 is chance; "
                f"{meta.get('model', '?')}, {meta.get('created_at', '?')})"
            ),
            style="dim",
        )
    if (f["label"] or f.get("explanation")) and f.get("auto_description"):
        console.print(Text(f"automatic description: {f['auto_description']}"), style="dim")
    hist = f["act_hist"] or []
    if hist and max(hist) > 0:
        top = max(hist)
        bars = "".join(BARS[round(8 * h / top)] for h in hist)
        console.print(f"activation histogram (log bins, low to high): |{bars}|")
    contexts = json.loads(f["top_contexts"] or "[]")
    if contexts:
        console.print("[bold]top contexts[/bold]")
    for ctx in contexts[:k]:
        line, peak = Text(f"  {ctx['value']:7.3f}  "), max(ctx["acts"]) or 1.0
        for token, act in zip(ctx["tokens"], ctx["acts"], strict=True):
            style = (
                f"bold on rgb({255},{int(255 - 155 * act / peak)},{int(255 - 255 * act / peak)})"
            )
            line.append(token + " ", style=style if act > 0 else "")
        console.print(line)
    logits = json.loads(f["top_logits"] or "[]")
    if logits:
        ups = [f"{x['token']}({x['w']:+.2f})" for x in logits if x["w"] > 0][:k]
        downs = [f"{x['token']}({x['w']:+.2f})" for x in logits if x["w"] < 0][:k]
        console.print(f"[bold]promotes[/bold] {escape(' '.join(ups))}")
        console.print(f"[bold]suppresses[/bold] {escape(' '.join(downs))}")
    if sources:
        reads = [
            f"{r['source'].rsplit('/', 2)[-2]}/{r['source'].rsplit('/', 1)[-1]} "
            f"{r['via']} ({r['w']:+.3f})"
            for r in sources
        ]
        console.print(f"[bold]reads from[/bold] {escape(', '.join(reads))}")


@app.command("label")
@handle_errors
def label(
    uid: Annotated[
        str, typer.Argument(help="Feature uid, e.g. toy-years/tc-v1/L0/156, or L0/156 with --set.")
    ],
    text: Annotated[str, typer.Argument(help="The label, e.g. 'start year in the 90s'.")],
    author: Annotated[
        str | None,
        typer.Option(envvar="CIRCUITCAT_AUTHOR", help="Who gives the label (default: login name)."),
    ] = None,
    set_uid: SetOption = None,
    store: StoreOption = None,
) -> None:
    """Label a feature. Each label keeps its author and time; earlier ones stay as its history
    (shown on the feature page of `circuitcat serve`) and the newest is the feature's label.
    Labels survive re-ingest and travel with `store copy`."""
    from circuitcat.catalog.labels import add_label, login_name

    with existing_store(store) as catalog:
        uid = _resolve_uid(catalog, uid, set_uid)
        stored = add_label(catalog, uid, text, author or login_name())
    typer.echo(
        f"labelled {uid}: {stored['text']!r} by {stored['author']} at {stored['created_at']}"
    )


@app.command("describe")
@handle_errors
def describe(
    set_uid: SetOption = None,
    store: StoreOption = None,
) -> None:
    """Write every measured feature's automatic description (layer, density, the tokens it
    fires on in context, the logits it promotes and suppresses), built from the catalog alone.

    `ingest features` writes them too; run this for a catalog measured before it did. Labels
    are never touched: a label stays what `feature show`, search, pages and exports show."""
    from circuitcat.catalog.descriptions import describe_set

    with existing_store(store) as catalog:
        done = describe_set(catalog, set_uid)
    for uid, n in done.items():
        typer.echo(f"described {n:,} features of {uid}")


@app.command("find")
@handle_errors
def find(
    reads_token: Annotated[
        str | None,
        typer.Option(help="Tokens its encoder reads (de-embedding): 45, or 45,46, or 40..49."),
    ] = None,
    promotes: Annotated[
        str | None,
        typer.Option(help="Logits it promotes (top logits): 46..99, or ' Paris, Rome'."),
    ] = None,
    layer: Annotated[int | None, typer.Option(help="Only this layer (default: all).")] = None,
    limit: Annotated[int, typer.Option(help="At most this many features.")] = 20,
    set_uid: SetOption = None,
    store: StoreOption = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Features by what they read and what they promote, from the input-invariant weights:
    e.g. `feature find --reads-token 45 --promotes 46..99 --layer 0`. A range A..B names the
    numbers A to B, zero-padded like A."""
    from circuitcat.catalog.research import find_features

    with read_store(store) as catalog:
        rows = find_features(catalog, reads_token, promotes, layer, set_uid, limit)
    shown = ("uid", "layer", "read_w", "n_read", "n_promoted", "promote_w", "description")
    columns = [c for c in shown if not rows or c in rows[0]]
    typer.echo(render(columns, [[r.get(c) for c in columns] for r in rows], fmt))


# `feature reuse` lives in cli/compare.py with the other cross-circuit commands.
from .compare import reuse  # noqa: E402

app.command("reuse")(reuse)


@app.command("explain")
@handle_errors
def explain(
    uids: Annotated[list[str], typer.Argument(help="Feature uids (or L0/156 with --set).")],
    url: Annotated[
        str,
        typer.Option(
            envvar="CIRCUITCAT_EXPLAINER_URL",
            help="An OpenAI-compatible endpoint up to /v1, e.g. http://127.0.0.1:8080/v1.",
        ),
    ],
    model: Annotated[
        str, typer.Option(envvar="CIRCUITCAT_EXPLAINER_MODEL", help="The model it serves.")
    ],
    set_uid: SetOption = None,
    store: StoreOption = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Explain features with a language model you run (off unless called): it reads each
    feature's top contexts and writes an explanation, which is then scored by detection on
    held-out contexts (balanced accuracy; 0.5 is chance). The explanation, its score, prompts,
    model and time are stored on the feature; a label still wins where features are shown.
    An API key, if the endpoint needs one, is read from CIRCUITCAT_EXPLAINER_KEY."""
    import os

    from circuitcat.ingest.explain import Explainer, explain_feature
    from circuitcat.ingest.inputs import load_registered

    explainer = Explainer(url, model, os.environ.get("CIRCUITCAT_EXPLAINER_KEY") or None)
    rows = []
    with existing_store(store) as catalog:
        full = [_resolve_uid(catalog, uid, set_uid) for uid in uids]
        set_of = {u.rsplit("/", 2)[0] for u in full}
        if len(set_of) != 1:
            raise QueryError("explain features of one transcoder set at a time")
        loaded, tset = load_registered(catalog, set_of.pop())
        for uid in full:
            done = explain_feature(catalog, loaded, tset, uid, explainer)
            rows.append([uid, done["explanation"], round(done["score"], 3)])
    typer.echo(render(["uid", "explanation", "detection_score"], rows, fmt))
