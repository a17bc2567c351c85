"""Feature statistics of the corpus pass, as pure accumulators (no model, no store).

`batch_layer_stats` turns one batch of one layer's activations into a `LayerStats`;
`merge_layer_stats` merges two (counts, max and top-k exactly as one pass over everything; sums
up to fp64 rounding). What each statistic means is in ingest/features.py.

Dimension names (beyond ingest/transcoders/transcoder.py):
    k        top contexts kept per feature
    window   tokens kept around a context's max position: before + 1 + after
    n_hist   histogram bins: one underflow bin + n_bins log-spaced bins
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch
from jaxtyping import Float, Int64
from torch import Tensor

# Activation histogram: n_bins log-spaced bins from 10^-3 to 10^2 (plus the underflow bin).
HIST_LOG10_MIN, HIST_LOG10_MAX = -3.0, 2.0
HIST_BINS = 20
CONTEXT_WINDOW = (8, 2)
TOP_K_CONTEXTS = 10
EMPTY_SEQ = torch.iinfo(torch.int64).max  # window index of an empty top-k slot: ranks last


def hist_edges(n_bins: int = HIST_BINS) -> Float[Tensor, " n_hist"]:
    """The n_bins + 1 log-spaced bin edges, 10^HIST_LOG10_MIN .. 10^HIST_LOG10_MAX (fp32)."""
    return torch.logspace(HIST_LOG10_MIN, HIST_LOG10_MAX, n_bins + 1, dtype=torch.float64).float()


# ---- containers ----------------------------------------------------------------------------


@dataclass
class TopContexts:
    """Per feature, the top-k contexts. Empty slots: value -inf, seq EMPTY_SEQ, pos -1."""

    value: Float[Tensor, "d_transcoder k"]
    seq: Int64[Tensor, "d_transcoder k"]  # window index in the token stream
    pos: Int64[Tensor, "d_transcoder k"]  # position of the max within that window
    tokens: Int64[Tensor, "d_transcoder k window"]  # token ids, -1 outside the window
    acts: Float[Tensor, "d_transcoder k window"]  # this feature's activations, 0 outside


@dataclass
class LayerStats:
    """Running sums for one layer's features; `scale_sum` sums ln2 hook_scale over tokens."""

    fires: Int64[Tensor, " d_transcoder"]
    act_sum: Float[Tensor, " d_transcoder"]  # fp64
    act_max: Float[Tensor, " d_transcoder"]
    hist: Int64[Tensor, "d_transcoder n_hist"]
    top: TopContexts
    scale_sum: Float[Tensor, ""]  # fp64


@dataclass
class FeatureStats:
    """What the corpus pass measured, plus its provenance; no model or store reference."""

    set_uid: str
    layers: dict[int, LayerStats]
    tokens: int = 0
    batches: int = 0
    fingerprint: str = ""
    run_uid: str = ""
    seconds: float = 0.0
    resumed_batches: int = 0

    def density(self, layer: int) -> Float[Tensor, " d_transcoder"]:
        return self.layers[layer].fires.double() / max(self.tokens, 1)

    def act_mean(self, layer: int) -> Float[Tensor, " d_transcoder"]:
        """Mean over firing tokens; NaN for features that never fire."""
        st = self.layers[layer]
        return st.act_sum / st.fires.double()

    def ln2_scale_mean(self, layer: int) -> float:
        return float(self.layers[layer].scale_sum) / max(self.tokens, 1)

    def live(self, layer: int) -> int:
        return int((self.layers[layer].fires > 0).sum())


# ---- pure functions over the containers ----------------------------------------------------


def empty_top_contexts(
    d_transcoder: int, k: int, window: int, device: torch.device | str = "cpu"
) -> TopContexts:
    shape = (d_transcoder, k)
    return TopContexts(
        torch.full(shape, -torch.inf, device=device),
        torch.full(shape, EMPTY_SEQ, dtype=torch.int64, device=device),
        torch.full(shape, -1, dtype=torch.int64, device=device),
        torch.full((*shape, window), -1, dtype=torch.int64, device=device),
        torch.zeros((*shape, window), device=device),
    )


def empty_layer_stats(
    d_transcoder: int, k: int, window: int, n_hist: int, device: torch.device | str = "cpu"
) -> LayerStats:
    return LayerStats(
        torch.zeros(d_transcoder, dtype=torch.int64, device=device),
        torch.zeros(d_transcoder, dtype=torch.float64, device=device),
        torch.zeros(d_transcoder, device=device),
        torch.zeros(d_transcoder, n_hist, dtype=torch.int64, device=device),
        empty_top_contexts(d_transcoder, k, window, device),
        torch.zeros((), dtype=torch.float64, device=device),
    )


def histogram(
    acts: Float[Tensor, "n d_transcoder"], edges: Float[Tensor, " n_hist"]
) -> Int64[Tensor, "d_transcoder n_hist"]:
    """Counts of firing activations per bin (see module doc); only firing entries are binned."""
    n_hist = edges.numel()  # n_bins + 1 edges = underflow + n_bins bins
    rows, cols = (acts > 0).nonzero(as_tuple=True)
    bins = torch.bucketize(acts[rows, cols], edges.to(acts), right=True).clamp_(max=n_hist - 1)
    counts = torch.bincount(cols * n_hist + bins, minlength=acts.shape[1] * n_hist)
    return counts.view(acts.shape[1], n_hist)


def _rank(value: Tensor, seq: Tensor) -> Int64[Tensor, "d_transcoder n"]:
    """Column order by (value desc, seq asc): two stable sorts make ties deterministic."""
    by_seq = seq.argsort(dim=1, stable=True)
    by_value = value.gather(1, by_seq).argsort(dim=1, descending=True, stable=True)
    return by_seq.gather(1, by_value)


def _take(top: TopContexts, order: Int64[Tensor, "d_transcoder k"]) -> TopContexts:
    win = order[..., None].expand(-1, -1, top.tokens.shape[2])
    return TopContexts(
        top.value.gather(1, order),
        top.seq.gather(1, order),
        top.pos.gather(1, order),
        top.tokens.gather(1, win),
        top.acts.gather(1, win),
    )


def merge_top_contexts(a: TopContexts, b: TopContexts, k: int) -> TopContexts:
    """The top-k of the union of two top-k sets (same features, same window)."""
    both = TopContexts(
        *(torch.cat([x, y], dim=1) for x, y in zip(_fields(a), _fields(b), strict=True))
    )
    return _take(both, _rank(both.value, both.seq)[:, :k])


def batch_top_contexts(
    acts: Float[Tensor, "batch pos d_transcoder"],
    tokens: Int64[Tensor, "batch pos"],
    first_seq: int,
    k: int,
    context_window: tuple[int, int] = CONTEXT_WINDOW,
) -> TopContexts:
    """Top-k contexts of one batch: windows (rows) ranked by their max activation."""
    n_batch, n_pos, d_tc = acts.shape
    before, after = context_window
    value, pos = acts.max(dim=1)  # torch.max returns the first max position on ties
    value = torch.where(value > 0, value, -torch.inf).T  # [d_transcoder, batch]
    seq = torch.arange(first_seq, first_seq + n_batch, device=acts.device).expand(d_tc, -1)
    order = _rank(value, seq)[:, :k]
    value, pos = value.gather(1, order), pos.T.gather(1, order)
    empty = value == -torch.inf
    offsets = torch.arange(-before, after + 1, device=acts.device)
    at = pos[..., None] + offsets  # [d_transcoder, k', window]
    inside = (at >= 0) & (at < n_pos) & ~empty[..., None]
    at = at.clamp(0, n_pos - 1)
    row = order[..., None].expand_as(at)
    feat = torch.arange(d_tc, device=acts.device)[:, None, None].expand_as(at)
    top = TopContexts(
        value,
        torch.where(empty, EMPTY_SEQ, order + first_seq),
        torch.where(empty, -1, pos),
        torch.where(inside, tokens[row, at], -1),
        torch.where(inside, acts[row, at, feat], 0.0),
    )
    pad = empty_top_contexts(d_tc, k, before + 1 + after, acts.device)
    return merge_top_contexts(top, pad, k) if order.shape[1] < k else top


def batch_layer_stats(
    acts: Float[Tensor, "batch pos d_transcoder"],
    tokens: Int64[Tensor, "batch pos"],
    scale: Float[Tensor, "batch pos 1"] | None,
    first_seq: int,
    *,
    k: int,
    edges: Float[Tensor, " n_hist"],
    context_window: tuple[int, int] = CONTEXT_WINDOW,
) -> LayerStats:
    """One batch's statistics for one layer (`scale` None: the layer has no ln2, scale 1)."""
    flat = acts.reshape(-1, acts.shape[-1])
    scale_sum = (
        scale.sum(dtype=torch.float64)
        if scale is not None
        else torch.tensor(float(flat.shape[0]), dtype=torch.float64, device=acts.device)
    )
    return LayerStats(
        (flat > 0).sum(0),
        flat.sum(0, dtype=torch.float64),
        flat.max(0).values.clamp(min=0),
        histogram(flat, edges),
        batch_top_contexts(acts, tokens, first_seq, k, context_window),
        scale_sum,
    )


def merge_layer_stats(a: LayerStats, b: LayerStats) -> LayerStats:
    return LayerStats(
        a.fires + b.fires,
        a.act_sum + b.act_sum,
        torch.maximum(a.act_max, b.act_max),
        a.hist + b.hist,
        merge_top_contexts(a.top, b.top, a.top.value.shape[1]),
        a.scale_sum + b.scale_sum,
    )


def _fields(obj: Any) -> list[Any]:
    return [getattr(obj, f.name) for f in fields(obj)]


def flat_layer(st: LayerStats) -> dict[str, Tensor]:
    """A layer's tensors by name ("fires", ..., "top.value", ...), as checkpoints hold them."""
    flat = {f.name: getattr(st, f.name) for f in fields(LayerStats) if f.name != "top"}
    return flat | {f"top.{f.name}": getattr(st.top, f.name) for f in fields(TopContexts)}


def unflat_layer(flat: dict[str, Tensor]) -> LayerStats:
    top = TopContexts(**{f.name: flat[f"top.{f.name}"] for f in fields(TopContexts)})
    plain = {f.name: flat[f.name] for f in fields(LayerStats) if f.name != "top"}
    return LayerStats(top=top, **plain)
