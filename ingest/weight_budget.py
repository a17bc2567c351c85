"""The default edge budget: per target feature, its top-k sources over every earlier layer and
every route (resid, attn:a.h, skip:m; a cross-layer source's decoder sums), route on the edge.

The catalog then grows as O(features x k), not O(layer pairs x heads x features x k). One unit
of work is one target layer: each route's per-target top-k (weights.py's blocked products) is
merged into a running [n_dst, k] top-k (topk.RunningTopK), which is exact because the global
top-k is a subset of the union of the per-route lists; the merged list is written once. Head
rankings are computed once per target layer (shared by VIRTUAL_WEIGHT and DEEMBEDS), and the
per-head source products (W_dec W_V, W_E W_V) once per job, kept in a bounded cache.

Dimension names as in weights.py.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial

import torch
from jaxtyping import Float
from torch import Tensor

from circuitcat.catalog.schema import RelKind
from circuitcat.ingest.transcoders.transcoder import TranscoderSet

from . import weights as wts
from .topk import BlockSizes, RunningTopK, topk_virtual_weights

CACHE_BYTES = 2 << 30  # per-head source products kept between target layers


class ProductCache:
    """Tensors computed once and reused, first-in first-out past `budget` bytes."""

    def __init__(self, budget: int = CACHE_BYTES) -> None:
        self.budget, self.used = budget, 0
        self.items: OrderedDict[tuple[object, ...], Tensor] = OrderedDict()
        self.hits = self.misses = 0

    def get(self, key: tuple[object, ...], make: Callable[[], Tensor]) -> Tensor:
        if key in self.items:
            self.hits += 1
            return self.items[key]
        self.misses += 1
        value = make()
        size = value.numel() * value.element_size()
        while self.items and self.used + size > self.budget:
            self.used -= _nbytes(self.items.popitem(last=False)[1])
        if size <= self.budget:
            self.items[key], self.used = value, self.used + size
        return value


def cache_budget(device: torch.device) -> int:
    """Bytes for cached per-head products: CACHE_BYTES on the CPU; on a GPU a quarter of its
    free memory (GPT-2 small's W_E W_V and W_dec W_V for every head are ~7 GB)."""
    if device.type != "cuda":
        return CACHE_BYTES
    free, _ = torch.cuda.mem_get_info(device)
    return max(CACHE_BYTES, free // 4)


def _nbytes(t: Tensor) -> int:
    return t.numel() * t.element_size()


@dataclass
class BudgetInputs:
    """What every target layer's unit reads: the model's matrices (weights_job.ModelWeights)
    as tensors on `device`, scales, and the shared cache."""

    W_E: Float[Tensor, "d_vocab d_model"]
    W_V: Float[Tensor, "n_layers n_heads d_model d_head"]
    W_O: Float[Tensor, "n_layers n_heads d_head d_model"]
    heads_per_feature: int = 4
    scales: Mapping[int, float] | None = None
    attn_scales: Mapping[int, float] | None = None
    parallel: bool = False
    blocks: BlockSizes = field(default_factory=BlockSizes)
    device: str | None = None
    cache: ProductCache = field(default_factory=ProductCache)


class _Routes:
    """Route codes in first-seen order: (source layer or None for tokens, via)."""

    def __init__(self) -> None:
        self.codes: dict[tuple[int | None, str], int] = {}

    def __call__(self, layer: int | None, via: str) -> int:
        return self.codes.setdefault((layer, via), len(self.codes))

    def table(self) -> tuple[tuple[int | None, str], ...]:
        return tuple(self.codes)


def target_layer_edges(
    tset: TranscoderSet, layer: int, k: int, k_tokens: int, inp: BudgetInputs
) -> Iterator[wts.WeightEdges]:
    """VIRTUAL_WEIGHT into `layer` (top-k sources per target over every route) and DEEMBEDS
    (top-k_tokens tokens per target over every route): at most two containers."""
    W_enc = wts._encoder(tset, layer, inp.device)
    heads = _kept_heads(tset, layer, W_enc, inp)
    earlier = [l1 for l1 in tset.layers if l1 < layer]
    if earlier:
        into = _Merge(tset, layer, W_enc, heads, inp, k, tset.d_transcoder)
        _feature_routes(into, earlier)
        yield into.edges(RelKind.VIRTUAL_WEIGHT)
    into = _Merge(tset, layer, W_enc, heads, inp, k_tokens, inp.W_E.shape[0])
    _token_routes(into)
    yield into.edges(RelKind.DEEMBEDS)


HeadTargets = list[tuple[int, int, Tensor]]


def _kept_heads(tset: TranscoderSet, layer: int, W_enc: Tensor, inp: BudgetInputs) -> HeadTargets:
    """(a, h, targets that kept head (a, h)) from each target's top heads, computed once."""
    last = wts.last_head_layer(layer, inp.parallel)
    if last < 0 or inp.heads_per_feature < 1:
        return []
    top, _ = wts.top_heads_per_feature(
        inp.W_V, inp.W_O, W_enc, inp.heads_per_feature, last, inp.attn_scales
    )
    return list(wts._kept_heads(top.cpu(), inp.W_V.shape[1]))


@dataclass
class _Merge:
    """One relation's routes into target layer `layer`, merged into one running top-k of `k`
    over `n_src` sources per route: the layer's encoder and kept heads, the inputs."""

    tset: TranscoderSet
    layer: int
    W_enc: Tensor
    heads: HeadTargets
    inp: BudgetInputs
    k: int
    n_src: int
    routes: _Routes = field(default_factory=_Routes)
    run: RunningTopK = field(init=False)

    def __post_init__(self) -> None:
        self.run = RunningTopK(self.W_enc.shape[1], self.k, self.n_src, self.W_enc.device)

    def topk(self, src: Tensor, dst: Tensor) -> tuple[Tensor, Tensor]:
        """(idx, w): each target's top-k of `src @ dst`, block by block."""
        return topk_virtual_weights(src, dst, self.k, self.inp.blocks.src, self.inp.blocks.dst)

    def head_dst(self, a: int, h: int, targets: Tensor) -> Tensor:
        """Head (a, h)'s W_O into the encoders of the targets that kept it."""
        return self.inp.W_O[a, h] @ self.W_enc[:, targets.to(self.W_enc.device)]

    def edges(self, rel: RelKind) -> wts.WeightEdges:
        m = self.run.result()
        route_table = self.routes.table()
        return wts.WeightEdges(
            None, self.layer, "", m.src, m.row, m.w, m.rank, m.w_raw, rel, m.route, route_table
        )


def _feature_routes(into: _Merge, earlier: list[int]) -> None:
    tset, inp, run, routes = into.tset, into.inp, into.run, into.routes
    f_dst = wts._factor(inp.scales, into.layer)
    for l1 in earlier:
        idx, w = into.topk(wts._writes(tset, l1, into.layer, inp.device), into.W_enc)
        run.add(None, routes(l1, "resid"), idx, w, f_dst)
    for a, h, targets in into.heads:
        sources = [l1 for l1 in earlier if l1 < a]
        if not sources:
            continue
        src = inp.cache.get(("dec", a, h), partial(_dec_through, tset, sources, a, h, inp))
        idx, w = into.topk(src, into.head_dst(a, h, targets))
        codes = torch.tensor([routes(l1, f"attn:{a}.{h}") for l1 in sources])
        F = tset.d_transcoder
        run.add(
            targets, codes[(idx // F).cpu()], idx % F, w, f_dst * wts._factor(inp.attn_scales, a)
        )
    for l1 in earlier:
        for m in wts.skip_layers(tset, l1, into.layer):
            src = wts._through_skip(tset, m, wts._writes(tset, l1, m, inp.device))
            idx, w = into.topk(src, into.W_enc)
            run.add(None, routes(l1, f"skip:{m}"), idx, w, f_dst * wts._factor(inp.scales, m))


def _dec_through(
    tset: TranscoderSet, sources: list[int], a: int, h: int, inp: BudgetInputs
) -> Float[Tensor, "n_src d_head"]:
    """What every source layer l1 < a writes before head a reads, through W_V of (a, h),
    stacked layer after layer: one product per head for every target layer that keeps it."""
    dec = torch.cat([wts._writes(tset, l1, a, inp.device) for l1 in sources])
    return wts._f32(dec) @ wts._f32(inp.W_V[a, h])


def _emb_through(inp: BudgetInputs, a: int, h: int) -> Float[Tensor, "d_vocab d_head"]:
    return wts._f32(inp.W_E) @ wts._f32(inp.W_V[a, h])


def _token_routes(into: _Merge) -> None:
    tset, inp, run, routes = into.tset, into.inp, into.run, into.routes
    f_dst = wts._factor(inp.scales, into.layer)
    idx, w = into.topk(inp.W_E, into.W_enc)
    run.add(None, routes(None, "resid"), idx, w, f_dst)
    for a, h, targets in into.heads:
        src = inp.cache.get(("emb", a, h), partial(_emb_through, inp, a, h))
        idx, w = into.topk(src, into.head_dst(a, h, targets))
        run.add(
            targets, routes(None, f"attn:{a}.{h}"), idx, w, f_dst * wts._factor(inp.attn_scales, a)
        )
    for m in wts.skip_layers(tset, -1, into.layer):
        src = inp.cache.get(("skip", m), partial(wts._through_skip, tset, m, inp.W_E))
        idx, w = into.topk(src, into.W_enc)
        run.add(None, routes(None, f"skip:{m}"), idx, w, f_dst * wts._factor(inp.scales, m))
