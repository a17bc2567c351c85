"""Benchmark: `ingest weights` end to end for a GPT-2-small-shaped model into the embedded store.

    .venv/bin/python -m bench.gpt2_weights [--features 2048] [--device cpu|cuda] [--write-docs]

A random HookedTransformer shaped like GPT-2 small (12 layers, d_model 768, 12 heads of 64,
d_vocab 50257, LayerNorm) and random transcoders of `--features` features a layer are
registered into a fresh Ladybug catalog, then the weights job (default per-target budget) runs
into it. Reported: edges per kind, wall time split into compute and writing (the store's
write_edges calls, timed), write throughput, and the process's peak resident memory (VmHWM)
or, on a GPU, peak allocated GPU memory. On the CPU the default is the reduced width 2,048;
bench/gpu.sh runs the full 24,576 on a CUDA machine.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from bench.docs import replace_section
from bench.weights import _status_kib, machine
from circuitcat.catalog import open_store
from circuitcat.ingest.models import LoadedModel
from circuitcat.ingest.register import register
from circuitcat.ingest.transcoders.transcoder import Transcoder, TranscoderConfig, TranscoderSet
from circuitcat.ingest.weights_job import WeightsParams, run_weights

MiB = 1 << 20


def gpt2_shaped(features: int, device: str, seed: int = 0) -> tuple[LoadedModel, TranscoderSet]:
    cfg = HookedTransformerConfig(
        n_layers=12, d_model=768, n_heads=12, d_head=64, d_mlp=3072, d_vocab=50257, n_ctx=1024,
        act_fn="gelu_new", normalization_type="LN", seed=seed, device=device,
    )  # fmt: skip
    model = HookedTransformer(cfg)
    gen = torch.Generator(device=device).manual_seed(seed)
    tcs = {}
    for layer in range(12):
        tc_cfg = TranscoderConfig(
            768, 768, features, layer, f"blocks.{layer}.ln2.hook_normalized",
            f"blocks.{layer}.hook_mlp_out",
        )  # fmt: skip
        with torch.device(device):
            tc = Transcoder(tc_cfg)
        tc.W_enc.data.normal_(std=768**-0.5, generator=gen)
        tc.W_dec.data.normal_(std=768**-0.5, generator=gen)
        tcs[layer] = tc
    tset = TranscoderSet("tc", "gpt2-shaped", "circuitcat", "memory", tcs, {}, "b" * 64)
    return LoadedModel(model, "gpt2-shaped", "bench", {}), tset


class TimedStore:
    """The store, with its edge writes timed and counted."""

    def __init__(self, store: Any) -> None:
        self.store, self.write_s, self.written, self.copy_s = store, 0.0, 0, 0.0
        bulk = getattr(store, "_bulk_edges", None)
        if bulk is not None:  # the engine's plain bulk load (COPY) inside each write

            def timed_bulk(batch: Any) -> None:
                t0 = time.perf_counter()
                bulk(batch)
                self.copy_s += time.perf_counter() - t0

            store._bulk_edges = timed_bulk

    def write_edges(self, batch: Any) -> int:
        t0 = time.perf_counter()
        n = int(self.store.write_edges(batch))
        self.write_s += time.perf_counter() - t0
        self.written += n
        return n

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def run(features: int, device: str, folder: Path) -> dict[str, Any]:
    loaded, tset = gpt2_shaped(features, device)
    with open_store(str(folder / "catalog.lbug")) as store:
        register(store, loaded, tset)
        timed = TimedStore(store)
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        base = _status_kib("VmRSS") * 1024
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM
        t0 = time.perf_counter()
        report = run_weights(timed, loaded, tset, WeightsParams())  # type: ignore[arg-type]
        total = time.perf_counter() - t0
        peak = _status_kib("VmHWM") * 1024
        gpu = torch.cuda.max_memory_allocated() if device == "cuda" else None
        stored = store.info().relationships
    return {
        "features": features, "edges": report.edges, "stored": stored, "total_s": total,
        "write_s": timed.write_s, "written": timed.written, "peak_rss": peak,
        "copy_s": timed.copy_s,
        "rss_base": base, "gpu_peak": gpu,
    }  # fmt: skip


def section(r: dict[str, Any], device: str) -> str:
    title = f"## GPT-2-shaped weights job ({'GPU' if device == 'cuda' else 'CPU'})"
    compute = r["total_s"] - r["write_s"]
    edges = ", ".join(f"{n:,} {rel}" for rel, n in sorted(r["edges"].items()))
    gpu = "" if r["gpu_peak"] is None else f"; peak GPU memory {r['gpu_peak'] / MiB:,.0f} MiB"
    return "\n".join([
        title,
        "",
        f"`python -m bench.gpt2_weights --features {r['features']} --device {device} "
        "--write-docs`: random GPT-2-small-shaped model (12 layers, d_model 768, 12 x 64 heads, "
        f"d_vocab 50257) and 12 x {r['features']:,} random transcoders, `ingest weights` with "
        "the default per-target budget (k 32 / 16 tokens / 16 logits a sign, 4 heads a "
        "feature) into a fresh embedded (Ladybug) catalog.",
        "",
        f"Machine: {machine(device, 0.0)}.",
        "",
        "| edges written | total s | compute s | write s | write edges/s | of which COPY s "
        "| writes / plain COPY | peak RSS MiB |",
        "|---|---|---|---|---|---|---|---|",
        f"| {r['written']:,} | {r['total_s']:.1f} | {compute:.1f} | {r['write_s']:.1f} | "
        f"{r['written'] / max(r['write_s'], 1e-9):,.0f} | {r['copy_s']:.1f} | "
        f"{r['copy_s'] / max(r['write_s'], 1e-9):.2f} | {r['peak_rss'] / MiB:,.0f} |",
        "",
        f"By kind: {edges}{gpu}.",
        "",
        "\"writes / plain COPY\" is the time spent in the engine's own COPY calls (the store's",
        "bulk path, timed inside the job's writes) over the writes' whole time, which adds the",
        "endpoint and repeat checks and the Arrow conversion: the write rate as a share of a",
        "plain COPY of the same batches into the same store (goal >= 0.8). Peak RSS is the",
        "whole process (model, transcoders, the cached per-head products W_E W_V and W_dec W_V,",
        "the store); "
        f"{r['rss_base'] / MiB:,.0f} MiB were resident before the job started.",
    ]) + "\n"  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=int, default=2048)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--write-docs", action="store_true", help="replace the docs section")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        result = run(args.features, args.device, Path(tmp))
    text = section(result, args.device)
    if args.write_docs:
        replace_section(text.split("\n", 1)[0], text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
