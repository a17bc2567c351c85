"""Cost of an intervention (issue: at most three forward passes per prompt batch; 40 prompts
as one batch): counts the model's forward passes and times one intervention on 1 prompt, on
40 prompts as one batch, and on 40 prompts one at a time, against a plain forward pass of the
same batch measured in the same run. `python -m bench.interventions [--write-docs]`."""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable
from typing import Any

import torch

from circuitcat.ingest.interventions import Intervention, intervene
from circuitcat.ingest.tasks import greater_than
from circuitcat.ingest.toy import load_toy_model, load_toy_transcoders

from .docs import replace_section


def _best(fn: Callable[[], Any], repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, tset = load_toy_model(), load_toy_transcoders()
    prompts = greater_than(model.tokenizer, n=40, seed=0, split="eval").prompts
    iv = Intervention("zero", ((1, 20), (2, 9)), positions=(-1,))
    passes = 0

    def count(module: Any, inputs: Any) -> None:
        nonlocal passes
        passes += 1

    handle = model.embed.register_forward_pre_hook(count)
    intervene(model, tset, prompts[:1], "prob_diff", iv)
    one = passes
    passes = 0
    intervene(model, tset, prompts, "prob_diff", iv)
    batch = passes
    handle.remove()
    tokens = torch.tensor([list(p.tokens) for p in prompts])
    with torch.no_grad():
        forward = _best(lambda: model(tokens))
    t_one = _best(lambda: intervene(model, tset, prompts[:1], "prob_diff", iv))
    t_batch = _best(lambda: intervene(model, tset, prompts, "prob_diff", iv))
    t_each = _best(lambda: [intervene(model, tset, [p], "prob_diff", iv) for p in prompts], 2)
    lines = [
        "## Interventions",
        "",
        f"Machine: {platform.machine()}, {torch.get_num_threads()} torch thread, CPU; the toy "
        "model (4 layers, d_model 128), 256 features a layer; `python -m bench.interventions`.",
        "",
        "| measure | value |",
        "| --- | --- |",
        f"| forward passes, 1 prompt | {one} |",
        f"| forward passes, 40 prompts | {batch} (one batch) |",
        f"| plain forward pass, 40 prompts | {forward * 1e3:.1f} ms |",
        f"| intervention, 1 prompt | {t_one * 1e3:.1f} ms |",
        f"| intervention, 40 prompts as one batch | {t_batch * 1e3:.1f} ms "
        f"({t_batch / forward:.1f} x the plain forward pass) |",
        f"| intervention, 40 prompts one at a time | {t_each * 1e3:.1f} ms "
        f"({t_each / t_batch:.1f} x the batch) |",
    ]
    text = "\n".join(lines)
    print(text)
    if args.write_docs:
        replace_section("## Interventions", text)


if __name__ == "__main__":
    main()
