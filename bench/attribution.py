"""Benchmark: per-prompt attribution graphs (ingest/attribution) as `ingest prompts` runs them.

    .venv/bin/python -m bench.attribution [--quick] [--write-docs] [--device cpu|cuda]

For each case one prompt is attributed to a logit-difference direction at the last position:
`attribute` alone, then the whole per-prompt pipeline of `ingest prompts` without the store
(attribute, prune at 0.8 / 0.98, split the kept edges by head, build the catalog rows). Cases
vary the prompt length and the number of active features (capped with `max_features`; the
others fold into the error nodes) on the toy model when its weights exist, and on a synthetic
larger model (random HookedTransformer, random sparse transcoders). Peak memory is the rise of
the resident set on the CPU, of max_memory_allocated on a GPU (see bench/weights.py); each
timing is the best of a few runs after a warm-up. Writes the "## Attribution" section of
docs/benchmarks.md with --write-docs (other sections are left as they are).
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from bench.docs import DOCS, replace_section
from bench.weights import machine, measure
from circuitcat.catalog.records import PromptRecord
from circuitcat.ingest.attribution import attribute, metric_direction
from circuitcat.ingest.models import LoadedModel
from circuitcat.ingest.prompt_rows import prompt_graph_batches
from circuitcat.ingest.prompts import PromptParams, prompt_graph
from circuitcat.ingest.tasks import TaskPrompt
from circuitcat.ingest.transcoders.transcoder import Transcoder, TranscoderConfig, TranscoderSet

SECTION = "## Attribution"
MiB = 1 << 20


@dataclass
class Row:
    model: str
    n_pos: int
    active: int
    kept: int
    attribute_s: float
    pipeline_s: float
    peak: int
    edges: int
    stored: int


# --------------------------------------------------------------------------------------------
# models


def synthetic(device: str, n_layers: int = 6, d_model: int = 256, F: int = 4096) -> tuple:
    """A random GPT-2-style model and random sparse ReLU transcoders on every layer."""
    cfg = HookedTransformerConfig(
        n_layers=n_layers, d_model=d_model, n_heads=8, d_head=d_model // 8, d_mlp=4 * d_model,
        n_ctx=256, d_vocab=2000, act_fn="gelu", normalization_type="LN", seed=0, device=device,
    )  # fmt: skip
    model = HookedTransformer(cfg).eval()
    gen = torch.Generator(device=device).manual_seed(1)
    tcs = {}
    for layer in range(n_layers):
        tc_cfg = TranscoderConfig(
            d_model, d_model, F, layer, f"blocks.{layer}.ln2.hook_normalized",
            f"blocks.{layer}.hook_mlp_out",
        )  # fmt: skip
        with torch.device(device):
            tc = Transcoder(tc_cfg)
        with torch.no_grad():
            tc.W_enc.normal_(std=d_model**-0.5, generator=gen)
            tc.b_enc.fill_(-1.6)  # a few percent of the features fire
            tc.W_dec.normal_(std=0.5 * d_model**-0.5, generator=gen)
        tcs[layer] = tc
    tset = TranscoderSet("bench", "synthetic", "circuitcat-transcoders", "memory", tcs)
    loaded = LoadedModel(model, f"synthetic-{n_layers}x{d_model}-F{F}", "bench", {})
    return loaded, tset


def toy(device: str) -> tuple | None:
    from circuitcat.ingest.toy.model import (
        CONFIG_FILE,
        TOY_MODEL_NAME,
        WEIGHTS_DIR,
        load_toy_model,
        load_toy_transcoders,
    )

    if not (WEIGHTS_DIR / CONFIG_FILE).is_file():
        return None
    model = load_toy_model(device=device)
    return LoadedModel(model, TOY_MODEL_NAME, "builtin", {}), load_toy_transcoders(device=device)


def prompt_of(loaded: LoadedModel, n_pos: int, seed: int = 0) -> TaskPrompt:
    """n_pos random tokens; correct/incorrect: two disjoint random token sets."""
    gen = torch.Generator().manual_seed(seed)
    d_vocab = loaded.model.cfg.d_vocab
    ids = torch.randperm(d_vocab, generator=gen)
    toks = torch.randint(0, d_vocab, (n_pos,), generator=gen).tolist()
    correct, incorrect = ids[:10].tolist(), ids[10:40].tolist()
    return TaskPrompt(" ".join(map(str, toks)), tuple(toks), "", tuple(correct), tuple(incorrect))


def greater_than_prompt(loaded: LoadedModel) -> TaskPrompt:
    from circuitcat.ingest.tasks import greater_than

    return greater_than(loaded.model.tokenizer, n=1).prompts[0]


# --------------------------------------------------------------------------------------------
# one case


def case(
    name: str, loaded: LoadedModel, tset: TranscoderSet, prompt: TaskPrompt, cap: int | None
) -> Row:
    device = str(loaded.model.cfg.device)
    device = "cuda" if device.startswith("cuda") else "cpu"
    target = metric_direction(loaded, prompt.correct, prompt.incorrect)
    params = PromptParams(max_features=cap)
    record = PromptRecord(task="bench", text=prompt.text, tokens=[], answer="")
    holder: list = []
    warm, _ = measure(lambda: holder.append(attribute(loaded, tset, prompt.tokens, target,
                                                       max_features=cap)), device)  # fmt: skip
    graph = holder.pop()
    reps = 3 if warm < 2.0 else 1
    attr = min(
        measure(lambda: attribute(loaded, tset, prompt.tokens, target, max_features=cap), device)[0]
        for _ in range(reps)
    )

    def pipeline() -> None:
        pruned, heads = prompt_graph(loaded, tset, prompt, params)
        holder[:] = [prompt_graph_batches(pruned, "s", "m", record, "run", heads)]

    runs = [measure(pipeline, device) for _ in range(reps)]
    stored = sum(len(e) for e in holder[0][1] if e.kind == "ATTRIBUTES")
    kept = int((graph.kind == 0).sum())
    return Row(
        name, len(prompt.tokens), graph.n_active, kept, attr, min(r[0] for r in runs),
        max(r[1] for r in runs), graph.n_edges, stored,
    )  # fmt: skip


def cases(quick: bool, device: str) -> list[tuple[str, tuple, int, int | None]]:
    """(model name, (loaded, tset), prompt length, max_features) to run; -1 length: the
    greater-than prompt."""
    out: list[tuple[str, tuple, int, int | None]] = []
    toy_pair = toy(device)
    if toy_pair is not None:
        out += [("toy-years", toy_pair, -1, None)]
        out += [("toy-years", toy_pair, n, None) for n in ((16, 32) if quick else (8, 16, 32))]
    synth = synthetic(device) if not quick else synthetic(device, 4, 128, 1024)
    name = synth[0].name
    lengths = (16, 32) if quick else (16, 32, 64, 128)
    caps = (250, 1000) if quick else (250, 500, 1000, 2000, 4000)
    out += [(name, synth, n, 1000 if not quick else 250) for n in lengths]
    out += [(name, synth, 64 if not quick else 32, c) for c in caps]
    unique = {(name, n, cap): (name, pair, n, cap) for name, pair, n, cap in out}
    return list(unique.values())


# --------------------------------------------------------------------------------------------
# report


def table(rows: list[Row]) -> str:
    head = (
        "| model | tokens | active features | kept features | edges (full graph) | "
        "rows stored | attribute s | pipeline s | prompts/s | peak MiB |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    lines = [
        f"| {r.model} | {r.n_pos} | {r.active:,} | {r.kept:,} | {r.edges:,} | {r.stored:,} | "
        f"{r.attribute_s:.3f} | {r.pipeline_s:.3f} | {1 / r.pipeline_s:.2f} | "
        f"{max(r.peak, 0) / MiB:,.0f} |"
        for r in rows
    ]
    return head + "\n".join(lines) + "\n"


def section(body: str, args: argparse.Namespace, load: float) -> str:
    command = "python -m bench.attribution" + (" --quick" if args.quick else "")
    return (
        f"{SECTION}\n\n"
        f"Command: `{command}` on {args.device}. Machine: {machine(args.device, load)}.\n\n"
        "One prompt per row, target = a logit-difference direction at the last position, fp32. "
        "`attribute s`: the full graph (every kept active feature at every position, errors, "
        "biases, tokens). `pipeline s`: what `ingest prompts` does per prompt before writing: "
        "attribute, prune (0.8 / 0.98), split the kept edges by head (for the Head edges), "
        "build the rows (`rows stored`). The toy rows with 8-32 tokens use random token ids. "
        "The synthetic model's random transcoders fire on ~5% of their features per token, "
        "denser than trained ones, so `max_features` caps them. "
        "prompts/s = 1 / pipeline s. `kept features` = active features after `max_features` "
        "(the rest fold into the error nodes). Peak = rise of resident memory (CPU) or of "
        "max_memory_allocated (GPU) during one pipeline run. Timings: best of 3 after a "
        "warm-up; on a shared CPU (see the load average) they vary by 30-50 %.\n\n"
        f"{body}\n"
        "Reading: the cost grows with kept features x positions (one adjoint row per kept "
        "feature, each as long as the prompt), so `max_features` bounds it; writing to the "
        "store is not included (see `ingest prompts` output for it). circuit-tracer is not "
        "installed here, so no side-by-side timing.\n"
    )


def write_docs(text: str, path: Path = DOCS) -> None:
    replace_section(SECTION, text, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small cases only")
    parser.add_argument("--write-docs", action="store_true", help="replace the docs section")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    load = os.getloadavg()[0]
    rows = []
    for name, (loaded, tset), n_pos, cap in cases(args.quick, args.device):
        prompt = greater_than_prompt(loaded) if n_pos < 0 else prompt_of(loaded, n_pos)
        rows.append(case(name, loaded, tset, prompt, cap))
        print(table(rows[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
    text = section(table(rows), args, load)
    print(text)
    if args.write_docs:
        write_docs(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
