"""`circuitcat feature show UID`: one feature's dashboard, read from the catalog."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.text import Text

from circuitcat.catalog import open_store
from circuitcat.catalog.errors import QueryError

from .common import FormatOption, StoreOption, handle_errors
from .output import Format

app = typer.Typer(help="Look at single features.", no_args_is_help=True)

BARS = " ▁▂▃▄▅▆▇█"


@app.command("show")
@handle_errors
def show(
    uid: Annotated[str, typer.Argument(help="Feature uid, e.g. toy-years/tc-v1/L0/156.")],
    limit: Annotated[int, typer.Option(help="Contexts, logits and inputs shown.")] = 8,
    store: StoreOption = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Print a feature's statistics, activation histogram, top activating contexts (activating
    tokens highlighted), the logits it promotes and the features it reads from."""
    with open_store(store) as catalog:
        rows = catalog.query("feature", uid=uid)
        if not rows:
            raise QueryError(
                f"no feature {uid!r} in the catalog; list some with `circuitcat "
                "query named features_in_layer -p set_uid=SET -p layer=0 -p limit=10`"
            )
        sources = catalog.query("feature_sources", uid=uid, limit=limit)
    f = rows[0]
    if fmt is not Format.table:
        typer.echo(json.dumps({**f, "sources": sources}, indent=2, default=str))
        return
    _dashboard(Console(), f, sources, limit)


def _dashboard(console: Console, f: dict[str, Any], sources: list[dict[str, Any]], k: int) -> None:
    def num(v: Any) -> str:
        return "n/a" if v is None else f"{v:.4g}"

    console.print(f"[bold]{f['uid']}[/bold]  layer {f['layer']}  index {f['feature_index']}")
    console.print(
        f"density {num(f['density'])}   mean act {num(f['act_mean'])}   "
        f"max act {num(f['act_max'])}   label {f['label'] or '-'}"
    )
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
        console.print(f"[bold]promotes[/bold] {' '.join(ups)}")
        console.print(f"[bold]suppresses[/bold] {' '.join(downs)}")
    if sources:
        reads = [
            f"{r['source'].rsplit('/', 2)[-2]}/{r['source'].rsplit('/', 1)[-1]} "
            f"{r['via']} ({r['w']:+.3f})"
            for r in sources
        ]
        console.print(f"[bold]reads from[/bold] {', '.join(reads)}")
