"""`circuitcat toy ...`: train and evaluate the shipped toy model `toy-years`."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from circuitcat.catalog.errors import CircuitcatError

from .common import progress_bar

app = typer.Typer(
    help="The shipped toy model toy-years (a small GPT-2-style model with a greater-than "
    "circuit) and its transcoders: reproduce them from a seed, or evaluate them.",
    no_args_is_help=True,
)


class EvalFormat(StrEnum):
    table = "table"
    json = "json"


def _fail(error: CircuitcatError) -> NoReturn:
    Console(stderr=True).print(f"[red]error:[/red] {error}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def _render(report: dict, fmt: EvalFormat) -> None:
    if fmt is EvalFormat.json:
        typer.echo(json.dumps(report, indent=2))
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
def train(
    seed: Annotated[int, typer.Option(help="Seed of the corpus, init and batches.")] = 0,
    steps: Annotated[int, typer.Option(help="Model training steps.")] = 2000,
    out: Annotated[Path | None, typer.Option(help="Weights folder [default: shipped one].")] = None,
    threads: Annotated[
        int, typer.Option(help="torch CPU threads (1 is fastest on a busy machine).")
    ] = 1,
    format: Annotated[EvalFormat, typer.Option(help="Output format.")] = EvalFormat.table,
) -> None:
    """Train the toy model and its transcoders from a seed (CPU, minutes) and write them."""
    import torch

    from circuitcat.ingest.toy.model import WEIGHTS_DIR
    from circuitcat.ingest.toy.train import ToyTrainConfig, train_toy

    torch.set_num_threads(threads)
    columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    try:
        with progress_bar(*columns) as bar:
            tasks: dict[str, TaskID] = {}

            def advance(stage: str, done: int, total: int) -> None:
                if stage not in tasks:
                    tasks[stage] = bar.add_task(stage, total=total)
                bar.update(tasks[stage], completed=done)

            cfg = ToyTrainConfig(seed=seed, steps=steps)
            result = train_toy(out or WEIGHTS_DIR, cfg, progress=advance)
    except CircuitcatError as e:
        _fail(e)
    _render(result.report.as_dict(), format)


@app.command("eval")
def eval_(
    format: Annotated[EvalFormat, typer.Option(help="Output format.")] = EvalFormat.table,
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
    try:
        report = evaluate_toy(n=n, seed=seed)
    except CircuitcatError as e:
        _fail(e)
    _render(report.as_dict(), format)
