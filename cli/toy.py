"""`circuitcat toy ...`: train and evaluate the shipped toy model `toy-years`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from .common import FormatOption, handle_errors, progress_bar
from .output import Format, render, render_record

app = typer.Typer(
    help="The shipped toy model toy-years (a small GPT-2-style model with a greater-than "
    "circuit) and its transcoders: reproduce them from a seed, or evaluate them.",
    no_args_is_help=True,
)


def _render(report: dict, fmt: Format) -> None:
    if fmt is Format.json:
        typer.echo(render_record(report, fmt))
        return
    if fmt is not Format.table:  # jsonl, csv: one row per layer, the headline results on each
        headline = {k: v for k, v in report.items() if k != "layers"}
        rows = [{**headline, **layer} for layer in report["layers"]] or [headline]
        typer.echo(render(list(rows[0]), [list(r.values()) for r in rows], fmt))
        return
    console = Console()
    console.print(
        f"{report['model_name']} / {report['set_name']}: {report['task']} "
        f"{report['metric_name']} on {report['n_prompts']} held-out prompts\n"
        f"  model {report['metric']:.3f}   all MLPs -> transcoders "
        f"{report['metric_all_replaced']:.3f} ({100 * report['kept_fraction']:.1f}% kept)"
    )
    table = Table("layer", "FVU", "L0", "dead", "metric, this MLP replaced")
    for row in report["layers"]:
        table.add_row(
            str(row["layer"]),
            f"{row['fvu']:.4f}",
            f"{row['l0']:.1f}",
            f"{100 * row['dead_fraction']:.1f}%",
            f"{row['metric_replaced']:.3f}",
        )
    console.print(table)


@app.command()
@handle_errors
def train(
    seed: Annotated[int, typer.Option(help="Seed of the corpus, init and batches.")] = 0,
    steps: Annotated[int, typer.Option(help="Model training steps.")] = 2000,
    out: Annotated[Path | None, typer.Option(help="Weights folder (default: shipped one).")] = None,
    threads: Annotated[
        int, typer.Option(help="torch CPU threads (1 is fastest on a busy machine).")
    ] = 1,
    fmt: FormatOption = Format.table,
) -> None:
    """Train the toy model and its transcoders from a seed (CPU, minutes) and write them."""
    import torch

    from circuitcat.ingest.toy.model import WEIGHTS_DIR
    from circuitcat.ingest.toy.train import ToyTrainConfig, train_toy

    torch.set_num_threads(threads)
    columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    with progress_bar(*columns) as bar:
        tasks: dict[str, TaskID] = {}

        def advance(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done)

        cfg = ToyTrainConfig(seed=seed, steps=steps)
        result = train_toy(out or WEIGHTS_DIR, cfg, progress=advance)
    _render(result.report.as_dict(), fmt)


@app.command("eval")
@handle_errors
def eval_(
    fmt: FormatOption = Format.table,
    n: Annotated[int, typer.Option(help="Held-out greater-than prompts.")] = 200,
    seed: Annotated[int, typer.Option(help="Seed that picks the prompts.")] = 0,
    threads: Annotated[
        int, typer.Option(help="torch CPU threads (1 is fastest on a busy machine).")
    ] = 1,
) -> None:
    """Evaluate the shipped toy: greater-than metric, transcoder FVU/L0/dead, replacement."""
    import torch

    from circuitcat.ingest.toy.evaluation import evaluate_toy

    torch.set_num_threads(threads)
    report = evaluate_toy(n=n, seed=seed)
    _render(report.as_dict(), fmt)
