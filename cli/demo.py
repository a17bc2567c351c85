"""`circuitcat demo`: the whole job on the shipped toy model and the embedded store."""

from __future__ import annotations

import shlex
import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from circuitcat.catalog import open_store

from .common import StoreOption, err_console, handle_errors
from .render import render_circuit

if TYPE_CHECKING:
    from circuitcat.ingest.demo import DemoReport

STAGES = {
    "load": "loading the toy model and its transcoders",
    "register": "registering model, vocabulary, heads and features",
    "features": "corpus pass: feature statistics and top contexts",
    "weights": "input-invariant weights: virtual weights, de-embeddings, logits",
    "prompts": "prompts of {task}: attribution graphs",
    "circuit": "aggregating the {task} prompt graphs into a circuit",
    "verify": "faithfulness of the {task} circuit: circuit only vs random circuits",
    "show": "reading the greater-than circuit back",
}


def stage_text(name: str) -> str:
    """What a demo stage does, in words ("prompts less-than" names its task)."""
    stage, _, task = name.partition(" ")
    return STAGES[stage].format(task=task)


TRY_NEXT = [
    (
        "the circuit's features",
        "MATCH (c:Circuit {name: 'greater-than'})-[k:CONTAINS]->(f:Feature) "
        "RETURN f.uid, k.score ORDER BY k.score DESC LIMIT 10",
    ),
    (
        "year tokens that most excite layer-0 features",
        "MATCH (t:Token)-[r:DEEMBEDS]->(f:Feature {layer: 0}) WHERE t.text = '45' "
        "RETURN f.uid, r.w ORDER BY r.w DESC LIMIT 5",
    ),
    (
        "every prompt graph where one feature feeds another",
        "MATCH (a:Feature)-[r:ATTRIBUTES]->(b:Feature) WHERE a.layer = 0 AND b.layer = 3 "
        "RETURN a.uid, b.uid, count(DISTINCT r.prompt) AS prompts ORDER BY prompts DESC LIMIT 5",
    ),
]


@handle_errors
def demo(
    store: StoreOption = None,
    out: Annotated[Path, typer.Option(help="Where to write the circuit picture.")] = Path(
        "circuit.png"
    ),
    n_prompts: Annotated[int, typer.Option(help="Greater-than prompts to attribute.")] = 40,
    threads: Annotated[int, typer.Option(help="torch CPU threads.")] = 1,
) -> None:
    """Run the whole job on the shipped toy model: a circuit for every built-in task.

    Registers toy-years, runs the corpus pass and the weights job, then for greater-than,
    less-than and counting the prompt graphs, finds and verifies the circuit, and prints one line
    per circuit; prints the greater-than circuit and writes its picture. Re-running reuses what
    the catalog already holds.
    """
    import torch

    from circuitcat.ingest.demo import run_demo

    torch.set_num_threads(threads)  # one thread is fastest on small models and busy cores
    with open_store(store) as catalog, err_console.status("starting") as status:
        report = run_demo(catalog, n_prompts=n_prompts, step=lambda n: status.update(stage_text(n)))
        picture = render_circuit(
            catalog, report.circuit.uid, out, "greater-than circuit, toy-years"
        )
    _summary(Console(), report, picture)


def _summary(console: Console, r: DemoReport, picture: Path) -> None:
    f = r.faithfulness
    console.print(
        f"[bold]greater-than circuit[/bold] on toy-years: {r.circuit.n_features} of "
        f"{r.circuit.n_live} live features, from {r.prompts.n_prompts} prompts"
    )
    table = Table("feature", "score", "works on (start years)", "promotes")
    for row in r.view.features[:12]:
        table.add_row(
            f"L{row['layer']}/{row['index']}",
            f"{row['score']:.3f}",
            Text(str(row.get("prompts_on") or "")),
            Text(str(row.get("top_logits") or "")),
        )
    console.print(table)
    for p in r.view.paths[:5]:
        feats = [uid.split("/", 2)[-1] for uid in p["features"]]  # "L0/156"
        chain = " -> ".join([f"'{p['token']}'", *feats, p["target"]])
        console.print(
            f"  path {chain}  (score {p['score']:.3f}, {p['n_prompts']} prompts)", markup=False
        )
    console.print(
        f"probability difference (softmax over year tokens, {f.n_prompts} prompts):\n"
        f"  full model          {f.full:.3f}\n"
        f"  transcoders         {f.replaced:.3f}\n"
        f"  circuit only        {f.circuit:.3f}  ({f.kept:.0%} of transcoders)\n"
        f"  random, same size   {f.random:.3f}  ({f.random_kept:.0%} of transcoders)",
        soft_wrap=True,
    )
    console.print("[bold]circuits[/bold] (circuit only vs random circuits of its size):")
    for line in circuit_lines(r):
        console.print(f"  {line}", markup=False, highlight=False, soft_wrap=True)
    timing = ", ".join(f"{k} {v:.1f}s" for k, v in r.seconds.items())
    console.print(f"catalog: {r.store_uri}\npicture: {picture}\ntimings: {timing}", soft_wrap=True)
    console.print('\n[bold]Try next[/bold] (circuitcat query cypher "..."):')
    for what, query in TRY_NEXT:
        console.print(f"  # {what}\n  {query}", markup=False, highlight=False, soft_wrap=True)
    console.print(
        "\n[bold]Browse it[/bold] (feature pages, the circuit as a graph, prompt graphs, search):"
    )
    console.print(
        f"  {serve_command(r.store_uri)}\n  then open http://127.0.0.1:8000/",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )


def circuit_lines(r: DemoReport) -> list[str]:
    """One line per built-in task's circuit: size, heads, prompts, faithfulness against random."""
    lines = []
    for c in r.circuits:
        f = c.faithfulness
        draws = f.random_draws
        spread = statistics.stdev(draws) if len(draws) > 1 else 0.0
        lines.append(
            f"{c.task}: {c.circuit.n_features} features, {c.circuit.n_heads} heads, from "
            f"{c.prompts.n_prompts} prompts; {f.metric} circuit {f.circuit:.3f} "
            f"({f.kept:.0%} of transcoders {f.replaced:.3f}), random {f.random:.3f} "
            f"+- {spread:.3f} ({len(draws)} draws)"
        )
    return lines


def serve_command(store_uri: str) -> str:
    """The command that serves the catalog the demo built."""
    return f"circuitcat serve --store {shlex.quote(store_uri)}"
