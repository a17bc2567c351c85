"""`ingest features`: the corpus pass. Streams a tokenised corpus through the model and its
transcoders and records, per feature, what it responds to.

Per feature, over every token of the corpus (a feature fires where its activation is > 0):
    density       firing tokens / all tokens
    act_mean      mean activation over the tokens where it fires (null when it never fires)
    act_max       largest activation (0 when it never fires)
    act_hist      firing-activation counts over `edges = hist_edges(n_bins)` (log-spaced,
                  10^HIST_LOG10_MIN .. 10^HIST_LOG10_MAX): [0] underflow 0 < a < edges[0];
                  [1 + i] edges[i] <= a < edges[i + 1]; the last bin also counts
                  a >= edges[-1]. n_bins + 1 floats, summing to the firing count.
    top_contexts  the k corpus windows (model contexts) whose max activation is largest, ranked
                  by (value desc, window index asc); each keeps the tokens around its max
                  position (`context_window` = 8 before, 2 after, clipped to the window), this
                  feature's activation on each, `pos` (the max position within the window) and
                  `value`. Kept with a streaming top-k: activations are never stored.
    top_logits    top positive and negative d_i . W_U tokens (weights.topk_logits)
    auto_description  one line built from the fields above (catalog/descriptions.py)
and per layer the mean of `blocks.L.ln2.hook_scale` over tokens (TranscoderSet.ln2_scale_mean).

The accumulators are pure and live in ingest/feature_stats.py.
Resumable: every `checkpoint_every` batches the accumulators are saved with a fingerprint of
tokens, model, set and parameters; a re-run with equal inputs resumes bit-for-bit.

Dimension names (beyond ingest/transcoders/transcoder.py):
    k        top contexts kept per feature
    window   tokens kept around a context's max position: before + 1 + after
    n_hist   histogram bins: one underflow bin + n_bins log-spaced bins
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from importlib.metadata import version
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Int64
from torch import Tensor

from circuitcat.catalog import CatalogStore, NodeBatch, NodeKind
from circuitcat.catalog import schema as s
from circuitcat.catalog.descriptions import auto_description
from circuitcat.catalog.errors import IngestError
from circuitcat.catalog.parts import WHOLE, Shard
from circuitcat.catalog.records import RunRecord, now_iso
from circuitcat.catalog.runs import finish_run, start_run

from .corpus import Corpus, TokenStream, tokenize
from .feature_shards import load_shards, save_shard
from .feature_stats import (
    CONTEXT_WINDOW,
    HIST_BINS,
    TOP_K_CONTEXTS,
    FeatureStats,
    TopContexts,
    batch_layer_stats,
    empty_layer_stats,
    flat_layer,
    hist_edges,
    merge_layer_stats,
    unflat_layer,
)
from .models import LoadedModel
from .register import require_registered
from .transcoders.transcoder import TranscoderSet
from .weights import topk_logits

TOP_K_LOGITS = 10
CHECKPOINT_EVERY = 50
CHECKPOINT_VERSION = 1

Progress = Callable[[int, int | None], None]


# ---- the pass ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PassSettings:
    """Everything besides the inputs that shapes the result (all of it is fingerprinted)."""

    batch_size: int
    k: int
    context_window: tuple[int, int]
    hist_bins: int
    n_ctx: int
    checkpoint_every: int = CHECKPOINT_EVERY

    @property
    def window(self) -> int:
        return self.context_window[0] + 1 + self.context_window[1]


def _hook_names(loaded: LoadedModel, tset: TranscoderSet) -> dict[int, tuple[str, str | None]]:
    """Per layer: the transcoder's input hook and the ln2 scale hook (None where the input is
    not ln2's output, e.g. `hook_mlp_in`, or the model has no ln2)."""
    hooks = loaded.model.hook_dict
    names = {}
    for layer in tset.layers:
        input_hook, scale = tset[layer].cfg.input_hook, f"blocks.{layer}.ln2.hook_scale"
        reads_ln2 = input_hook.endswith("ln2.hook_normalized") and scale in hooks
        names[layer] = (input_hook, scale if reads_ln2 else None)
    return names


@torch.no_grad()
def _run_batch(
    loaded: LoadedModel,
    tset: TranscoderSet,
    stats: FeatureStats,
    tokens: Int64[Tensor, "batch pos"],
    first_seq: int,
    settings: PassSettings,
) -> None:
    """Add one batch to `stats`: one layer's activations are held at a time."""
    hooks = _hook_names(loaded, tset)
    names = {n for pair in hooks.values() for n in pair if n is not None}
    _, cache = loaded.model.run_with_cache(
        tokens, names_filter=lambda n: n in names, stop_at_layer=max(tset.layers) + 1
    )
    edges = hist_edges(settings.hist_bins).to(tokens.device)
    for layer, (input_hook, scale_hook) in hooks.items():
        tc = tset[layer]
        acts = tc.encode(cache[input_hook].to(tc.W_enc.dtype)).float()
        scale = cache[scale_hook] if scale_hook is not None else None
        batch = batch_layer_stats(
            acts,
            tokens,
            scale,
            first_seq,
            k=settings.k,
            edges=edges,
            context_window=settings.context_window,
        )
        stats.layers[layer] = merge_layer_stats(stats.layers[layer], batch)
    stats.batches += 1
    stats.tokens += tokens.numel()


def _fingerprint(
    stream: TokenStream,
    loaded: LoadedModel,
    tset: TranscoderSet,
    settings: PassSettings,
    shard: Shard = WHOLE,
) -> str:
    cfg = loaded.model.cfg
    parts: dict[str, object] = {
        "version": CHECKPOINT_VERSION,
        "tokens": stream.fingerprint(),
        "model": [loaded.name, loaded.source, loaded.processing, cfg.n_layers, cfg.d_model],
        "set": [tset.name, tset.source, tset.sha256, tset.layers, tset.d_transcoder],
        "settings": asdict(settings) | {"checkpoint_every": None},
    }
    if shard.count > 1:
        parts["shard"] = [shard.index, shard.count]
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _new_stats(
    set_uid: str, tset: TranscoderSet, settings: PassSettings, device: str
) -> FeatureStats:
    n_hist = settings.hist_bins + 1
    layers = {
        layer: empty_layer_stats(tset.d_transcoder, settings.k, settings.window, n_hist, device)
        for layer in tset.layers
    }
    return FeatureStats(set_uid, layers)


# ---- checkpoints ---------------------------------------------------------------------------


def default_checkpoint_dir() -> Path:
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("circuitcat")) / "features"


def checkpoint_path(checkpoint_dir: Path, set_uid: str, fingerprint: str) -> Path:
    """One file per (set, fingerprint): a changed input never finds an old checkpoint."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", set_uid)
    return checkpoint_dir / f"{slug}-{fingerprint[:16]}.pt"


def save_checkpoint(path: Path, stats: FeatureStats) -> None:
    """Write atomically (temp file + rename), so a kill mid-write leaves the last good one."""
    layers = {
        layer: {k: v.cpu() for k, v in flat_layer(st).items()} for layer, st in stats.layers.items()
    }
    state = {"fingerprint": stats.fingerprint, "tokens": stats.tokens, "batches": stats.batches}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(state | {"layers": layers}, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, fresh: FeatureStats) -> FeatureStats | None:
    """The saved accumulators if `path` holds a readable checkpoint with the fingerprint and
    tensor shapes of `fresh`; None otherwise (then the pass starts over)."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        saved = {layer: dict(state["layers"][layer]) for layer in fresh.layers}
        tokens, batches = int(state["tokens"]), int(state["batches"])
    except (OSError, RuntimeError, EOFError, KeyError, TypeError, pickle.UnpicklingError):
        return None  # unreadable, or written by another version
    if state.get("fingerprint") != fresh.fingerprint:
        return None
    for layer, st in fresh.layers.items():
        want = flat_layer(st)
        if saved[layer].keys() != want.keys() or any(
            saved[layer][k].shape != v.shape or saved[layer][k].dtype != v.dtype
            for k, v in want.items()
        ):
            return None
    device = next(iter(fresh.layers.values())).fires.device
    layers = {
        layer: unflat_layer({k: v.to(device) for k, v in flat.items()})
        for layer, flat in saved.items()
    }
    return replace(fresh, layers=layers, tokens=tokens, batches=batches, resumed_batches=batches)


# ---- the job -------------------------------------------------------------------------------


def _check_args(
    loaded: LoadedModel, tset: TranscoderSet, settings: PassSettings, max_tokens: int | None
) -> None:
    positive = {
        "--batch-size": settings.batch_size,
        "--ctx": settings.n_ctx,
        "top_k_contexts": settings.k,
        "hist_bins": settings.hist_bins,
        "checkpoint_every": settings.checkpoint_every,
        "--max-tokens": 1 if max_tokens is None else max_tokens,
    }
    for name, value in positive.items():
        if value < 1:
            raise IngestError(f"{name} must be at least 1 (got {value})")
    if min(settings.context_window) < 0:
        raise IngestError(f"context_window {settings.context_window} must not be negative")
    if settings.n_ctx > loaded.model.cfg.n_ctx:
        raise IngestError(
            f"--ctx {settings.n_ctx} is longer than the model's context "
            f"({loaded.model.cfg.n_ctx} tokens); pass a smaller --ctx"
        )
    for layer in tset.layers:
        if tset[layer].cfg.d_in != loaded.model.cfg.d_model:
            raise IngestError(
                f"transcoder layer {layer} reads d_in={tset[layer].cfg.d_in} but the model has "
                f"d_model={loaded.model.cfg.d_model}: load the model the set was trained on"
            )


def _resume_or_start(
    stream: TokenStream,
    loaded: LoadedModel,
    tset: TranscoderSet,
    settings: PassSettings,
    checkpoint_dir: Path,
    device: str,
    shard: Shard = WHOLE,
) -> tuple[FeatureStats, Path]:
    set_uid = s.transcoder_set_uid(s.model_uid(loaded.name), tset.name)
    fresh = _new_stats(set_uid, tset, settings, device)
    fresh.fingerprint = _fingerprint(stream, loaded, tset, settings, shard)
    path = checkpoint_path(checkpoint_dir, set_uid, fresh.fingerprint)
    return load_checkpoint(path, fresh) or fresh, path


def _corpus_pass(
    loaded: LoadedModel,
    tset: TranscoderSet,
    stream: TokenStream,
    stats: FeatureStats,
    settings: PassSettings,
    path: Path,
    device: str,
    progress: Progress | None,
    shard: Shard = WHOLE,
) -> None:
    """Every batch not yet in `stats`, checkpointed every `checkpoint_every` and at the end;
    a shard i/N runs batches b with b % N == i and steps over the others."""
    if progress is not None:
        progress(stats.tokens, stream.n_tokens)
    batches = stream.batches(settings.batch_size, start=stats.batches)
    for b, (first_seq, tokens) in enumerate(batches, start=stats.batches):
        if not shard.takes(b):
            stats.batches += 1
            continue
        _run_batch(loaded, tset, stats, tokens.to(device), first_seq, settings)
        if stats.batches % settings.checkpoint_every == 0:
            save_checkpoint(path, stats)
        if progress is not None:
            progress(stats.tokens, stream.n_tokens)
    save_checkpoint(path, stats)


def run_features(  # over 60 lines for its documented keyword options; the body is ~35
    store: CatalogStore,
    loaded: LoadedModel,
    tset: TranscoderSet,
    corpus: Corpus,
    *,
    batch_size: int = 32,
    max_tokens: int | None = None,
    top_k_contexts: int = TOP_K_CONTEXTS,
    context_window: tuple[int, int] = CONTEXT_WINDOW,
    hist_bins: int = HIST_BINS,
    checkpoint_dir: Path | None = None,
    device: str = "cpu",
    ctx: int | None = None,
    checkpoint_every: int = CHECKPOINT_EVERY,
    top_k_logits: int = TOP_K_LOGITS,
    progress: Progress | None = None,
    shard: Shard = WHOLE,
    parts: Path | None = None,
) -> FeatureStats:
    """Run the corpus pass (see module doc) and write the Feature statistics, the set's
    ln2_scale_mean and a Run node; `progress(tokens_done, tokens_total)` after each batch.

    With `parts`, the accumulators go to a file in that folder instead of the catalog
    (feature_shards.py); a `shard` i/N (which needs `parts`) runs batches b % N == i only.

    Resumes from a matching checkpoint under `checkpoint_dir` (default: a per-user cache
    folder) and removes it once everything is written. Windows are `ctx` tokens (default:
    the model's n_ctx). Raises IngestError, having written nothing, for an empty or
    undecodable corpus or a set that `ingest register` has not written."""
    started, t0 = now_iso(), time.perf_counter()
    settings = PassSettings(
        batch_size,
        top_k_contexts,
        context_window,
        hist_bins,
        ctx or loaded.model.cfg.n_ctx,
        checkpoint_every,
    )
    _check_args(loaded, tset, settings, max_tokens)
    tokenizer = loaded.model.tokenizer
    stream = tokenize(corpus, tokenizer, n_ctx=settings.n_ctx, max_tokens=max_tokens)
    if shard.count > 1 and parts is None:
        raise IngestError("--shard needs --parts: a shard's statistics are only a part")
    folder = checkpoint_dir or default_checkpoint_dir()
    stats, path = _resume_or_start(stream, loaded, tset, settings, folder, device, shard)
    require_registered(store, stats.set_uid, tset)
    _corpus_pass(loaded, tset, stream, stats, settings, path, device, progress, shard)
    stats.seconds = time.perf_counter() - t0
    params = {
        "model": loaded.name,
        "set": stats.set_uid,
        "corpus": corpus.describe(),
        "tokens": stats.tokens,
        "documents": stream.n_docs,
        "max_tokens": max_tokens,
        **asdict(settings),
    }
    if parts is not None:
        whole = _fingerprint(stream, loaded, tset, settings)
        save_shard(parts, shard, stats, whole, params)
    else:
        run = RunRecord(
            kind="features", started_at=started, params=params, code_version=version("circuitcat")
        )
        write_features(store, stats, loaded, tset, run, top_k_logits)
    path.unlink(missing_ok=True)
    return stats


# ---- writing -------------------------------------------------------------------------------


def _g(x: float) -> float:
    return float(f"{x:.6g}")  # 6 significant digits keep the JSON short


def token_texts(tokenizer: Any, ids: Tensor) -> dict[int, str]:
    """Each distinct id decoded on its own (as it reads in a context), -1 excluded."""
    unique = [int(i) for i in ids.unique().tolist() if i >= 0]
    if tokenizer is None:
        return {i: str(i) for i in unique}
    return {i: tokenizer.decode([i]) for i in unique}


def contexts_json(top: TopContexts, texts: dict[int, str]) -> list[str]:
    """One JSON list per feature of {tokens, acts, pos, value}, best first, empty slots left out."""
    out = []
    columns = (top.value.tolist(), top.pos.tolist(), top.tokens.tolist(), top.acts.tolist())
    for values, poss, windows, actss in zip(*columns, strict=True):
        entries = [
            {
                "tokens": [texts[t] for t in toks if t >= 0],
                "acts": [_g(a) for t, a in zip(toks, acts, strict=True) if t >= 0],
                "pos": pos,
                "value": _g(v),
            }
            for v, pos, toks, acts in zip(values, poss, windows, actss, strict=True)
            if v != -float("inf")
        ]
        out.append(json.dumps(entries))
    return out


def logits_json(loaded: LoadedModel, tset: TranscoderSet, layer: int, k: int) -> list[str]:
    """Per feature: [{token, token_id, w}] for the top-k positive, then top-k negative logits
    (of everything it writes: the sum of a cross-layer feature's decoders)."""
    W_U = loaded.model.W_U.detach()
    W_dec = tset.decoder_sum(layer).detach().to(W_U)
    top = topk_logits(W_dec, W_U, min(k, W_U.shape[1]))
    ids = torch.cat([top.pos_index, top.neg_index], dim=1).cpu()
    ws = torch.cat([top.pos_w, top.neg_w], dim=1).cpu().tolist()
    texts = token_texts(loaded.model.tokenizer, ids)
    return [
        json.dumps(
            [{"token": texts[t], "token_id": t, "w": _g(w)} for t, w in zip(row, wrow, strict=True)]
        )
        for row, wrow in zip(ids.tolist(), ws, strict=True)
    ]


def feature_batch(
    stats: FeatureStats, layer: int, tokenizer: Any, top_logits: list[str], run: str
) -> NodeBatch:
    """One layer's Feature statistics as a partial NodeBatch (other properties untouched)."""
    st = stats.layers[layer]
    d_tc = st.fires.shape[0]
    mean = stats.act_mean(layer).cpu().tolist()
    density = stats.density(layer).cpu().numpy()
    contexts = contexts_json(st.top, token_texts(tokenizer, st.top.tokens.cpu()))
    described = zip(density.tolist(), contexts, top_logits, strict=True)
    return NodeBatch(
        NodeKind.FEATURE,
        {
            "uid": [s.feature_uid(stats.set_uid, layer, i) for i in range(d_tc)],
            "density": density,
            "act_mean": [
                None if f == 0 else m for f, m in zip(st.fires.tolist(), mean, strict=True)
            ],
            "act_max": st.act_max.double().cpu().numpy(),
            "act_hist": st.hist.double().cpu().tolist(),
            "top_logits": top_logits,
            "top_contexts": contexts,
            # Written with the statistics it is built from; a human label is never touched.
            "auto_description": [auto_description(layer, d, c, g) for d, c, g in described],
            "run": [run] * d_tc,
        },
    )


def write_features(
    store: CatalogStore,
    stats: FeatureStats,
    loaded: LoadedModel,
    tset: TranscoderSet,
    run: RunRecord,
    top_k_logits: int = TOP_K_LOGITS,
) -> None:
    """Run (running) -> one Feature batch per layer -> the set's ln2_scale_mean -> Run (done).
    Nodes MERGE by uid, so writing again rewrites the same values."""
    stats.run_uid = run.uid
    start_run(store, run)
    for layer in tset.layers:
        logits = logits_json(loaded, tset, layer, top_k_logits)
        store.write_nodes(feature_batch(stats, layer, loaded.model.tokenizer, logits, run.uid))
    scales = [stats.ln2_scale_mean(layer) for layer in tset.layers]
    store.write_nodes(
        NodeBatch(
            NodeKind.TRANSCODER_SET,
            {"uid": [stats.set_uid], "ln2_scale_mean": [scales], "run": [run.uid]},
        )
    )
    finish_run(store, run)


def merge_features(
    store: CatalogStore,
    loaded: LoadedModel,
    tset: TranscoderSet,
    parts: Path,
    top_k_logits: int = TOP_K_LOGITS,
) -> FeatureStats:
    """Merge every shard's accumulators in `parts` (all N shards of one pass) and write the
    Feature statistics as `run_features` does. Counts, maxima, histograms and top contexts
    merge exactly; the fp64 sums behind act_mean and ln2_scale_mean up to float rounding."""
    set_uid = s.transcoder_set_uid(s.model_uid(loaded.name), tset.name)
    require_registered(store, set_uid, tset)
    stats, params = load_shards(parts, set_uid, tset.layers)
    run = RunRecord(kind="features", params=params, code_version=version("circuitcat"))
    write_features(store, stats, loaded, tset, run, top_k_logits)
    return stats
