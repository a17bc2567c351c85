"""Input-invariant connections: feature -> feature, token -> feature, feature -> logit.

Pure functions over weight tensors; nothing here holds a model or a store. Results are
`WeightEdges` containers (or plain index/weight tensors) that a store writer turns into
`VIRTUAL_WEIGHT`, `DEEMBEDS` and `PROMOTES` relationships.

Dimension names (beyond those in ingest/transcoders/transcoder.py):
    n_src       sources: features of an earlier layer (rows of W_dec), or tokens (rows of W_E)
    n_dst       targets: features of a later layer (columns of W_enc)
    d           the inner width of one product: d_model, or d_head through one head
    k           sources kept per target
    rows        targets of a per-target top-k being flattened into edges
    n           edges of a WeightEdges; heads kept per target (top_heads_per_feature)
    m           the targets that kept one head

Ranking: sources are ranked per target by |w| (both signs kept); among exactly equal |w| the
lower source index comes first. Because that order is total, the result is the same for every
block size and device (torch.topk alone breaks exact ties arbitrarily). rank 0 = largest |w|.

Memory: V = W_dec_src @ W_enc_dst is reduced block by block (source rows x target columns), each
block fused with a top-k and merged into a running [n_dst, k] top-k, so the extra memory is two
block buffers plus the [n_dst, k] result, whatever n_src is (topk.py).

Heads: an MLP feature at layer l1 writes into resid_pre of l1 + 1, so a head at layer a reads
it when l1 < a. In sequential blocks (GPT-2, Llama, Qwen, Gemma) the MLP at l2 reads the
attention output of its own layer, so a head carries l1 -> l2 when l1 < a <= l2; in parallel
blocks (`parallel_attn_mlp`: GPT-NeoX / Pythia, GPT-J) attention and MLP of a layer both read
its resid_pre, so only l1 < a < l2 (and a token reaches a layer-l feature through heads a < l).
`W_V` here is what a head applies to the *normalised* residual (ln1's w folded in) and `W_O`
what it writes (Gemma's ln1_post w folded in); weights_job.py prepares both from the model.

Transcoder kinds (docs/concepts.md has the formulas):
- the activation function (ReLU, JumpReLU, TopK) does not enter input-invariant weights;
- a cross-layer feature at l1 writes W_dec[l1 -> m] into every m >= l1, so what a reader at
  layer r sees of it is the sum of the decoders it writes before r reads: m < l2 for a layer-l2
  feature (both block shapes), m < a for head a, every m for the logits (`decoder_sum`);
- a skip connection (W_skip, S_m = W_skip.T of layer m) is a linear route from MLP m's input to
  its output that no feature owns: VIRTUAL_WEIGHT via "skip:m" is d_i S_m e_j for
  l1 < m < l2 (what l1 writes before m reads, through the skip, into l2's encoder), DEEMBEDS
  via "skip:m" is W_E S_m e_j for m < l2; both x the scales of layers m and l2. Routes through
  two or more skips (or a skip and a head) are not listed, as routes through two heads are
  not. PROMOTES is the feature's own write, d_i W_U, as for heads.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
from einops import einsum
from jaxtyping import Float, Int64
from torch import Tensor

from circuitcat.catalog.errors import IngestError
from circuitcat.catalog.schema import RelKind
from circuitcat.ingest.transcoders.transcoder import TranscoderSet

from .topk import (
    BLOCKS,
    DST_BLOCK,
    LOGIT_BLOCK_ELEMS,
    SRC_BLOCK,
    BlockSizes,
    _check_k,
    _f32,
    _finite,
    _lex_first,
    _top_set,
    topk_virtual_weights,
)

__all__ = [
    "BLOCKS",
    "DST_BLOCK",
    "LOGIT_BLOCK_ELEMS",
    "SRC_BLOCK",
    "BlockSizes",
    "topk_virtual_weights",
]


@dataclass(frozen=True)
class WeightEdges:
    """Edges of one kind between two layers, one row per edge (all tensors on the CPU).

    `src_layer` is None when sources are tokens (DEEMBEDS); `dst_layer` is None when targets
    are tokens (PROMOTES). `via` is "resid", "attn:L.H" or "skip:L". `w` = `w_raw` x the
    layer's scale factor. `rank` counts from 0 within one target (one source feature and
    sign for PROMOTES).

    A per-target budget mixes routes in one container: then `route` gives each row's entry in
    `routes`, a (src_layer, via) pair that overrides `src_layer` and `via` for that row.
    """

    src_layer: int | None
    dst_layer: int | None
    via: str
    src_index: Int64[Tensor, " n"]
    dst_index: Int64[Tensor, " n"]
    w: Float[Tensor, " n"]
    rank: Int64[Tensor, " n"]
    w_raw: Float[Tensor, " n"] | None = None
    rel: RelKind = RelKind.VIRTUAL_WEIGHT
    route: Int64[Tensor, " n"] | None = None
    routes: tuple[tuple[int | None, str], ...] = ()

    def __post_init__(self) -> None:
        cols = [self.src_index, self.dst_index, self.w, self.rank]
        if self.w_raw is not None:
            cols.append(self.w_raw)
        if self.route is not None:
            cols.append(self.route)
        if len({c.shape for c in cols}) != 1 or cols[0].dim() != 1:
            raise IngestError(f"WeightEdges {self.via}: columns must be 1-D and the same length")

    def __len__(self) -> int:
        return int(self.w.shape[0])

    def row_routes(self) -> tuple[list[int | None], list[str]]:
        """(source layer, via) of every row."""
        if self.route is None:
            return [self.src_layer] * len(self), [self.via] * len(self)
        pairs = [self.routes[r] for r in self.route.tolist()]
        return [p[0] for p in pairs], [p[1] for p in pairs]


class SignedTopK(NamedTuple):
    """Top-k columns per row, largest positive and most negative, each sorted from rank 0."""

    pos_index: Int64[Tensor, "rows k"]
    pos_w: Float[Tensor, "rows k"]
    neg_index: Int64[Tensor, "rows k"]
    neg_w: Float[Tensor, "rows k"]


# ---------------------------------------------------------------------------------------------
# through attention heads


@torch.no_grad()
def head_ov_norms(
    W_V_h: Float[Tensor, "d_model d_head"],
    W_O_h: Float[Tensor, "d_head d_model"],
    W_enc: Float[Tensor, "d_model n_dst"],
) -> Float[Tensor, " n_dst"]:
    """||OV e_j|| for every encoder column, OV = W_V @ W_O, without forming OV."""
    u = _f32(W_O_h) @ _f32(W_enc)
    W_V_h = _f32(W_V_h)
    # ||W_V u||^2 = u^T (W_V^T W_V) u: a d_head x d_head Gram matrix instead of d_model x n_dst
    sq = einsum(u, (W_V_h.T @ W_V_h) @ u, "d_head n_dst, d_head n_dst -> n_dst")
    return sq.clamp_min(0).sqrt()


def _check_heads(W_V: Tensor, W_O: Tensor, W_enc: Tensor, max_layer: int) -> None:
    if W_V.dim() != 4 or W_O.dim() != 4:
        raise IngestError("W_V and W_O must be [n_layers, n_heads, ...] as in HookedTransformer")
    n_layers, n_heads, d_model, d_head = W_V.shape
    if W_O.shape != (n_layers, n_heads, d_head, d_model) or W_enc.shape[0] != d_model:
        raise IngestError(
            f"W_V {tuple(W_V.shape)}, W_O {tuple(W_O.shape)} and W_enc {tuple(W_enc.shape)} do "
            "not fit one model: is this transcoder set for this model?"
        )
    if not 0 <= max_layer < n_layers:
        raise IngestError(f"layer {max_layer} is outside the model's {n_layers} layers")


@torch.no_grad()
def top_heads_per_feature(
    W_V: Float[Tensor, "n_layers n_heads d_model d_head"],
    W_O: Float[Tensor, "n_layers n_heads d_head d_model"],
    W_enc: Float[Tensor, "_d_model n_dst"],  # _check_heads says when it does not fit the model
    n: int,
    max_layer: int,
    attn_scales: Mapping[int, float] | None = None,
) -> tuple[Int64[Tensor, "n_dst n"], Float[Tensor, "n_dst n"]]:
    """Top-n heads per target feature by ||OV e_j|| (x the head layer's ln1 factor).

    Candidates are all heads in layers 0..max_layer; a head is returned as its flat index
    layer * n_heads + head; ties go to the lower flat index.
    """
    _check_heads(W_V, W_O, W_enc, max_layer)
    n_heads = W_V.shape[1]
    norms = torch.stack(
        [
            head_ov_norms(W_V[a, h], W_O[a, h], W_enc) * _factor(attn_scales, a)
            for a in range(max_layer + 1)
            for h in range(n_heads)
        ],
        dim=1,
    )
    n = _check_k(n, norms.shape[1])
    cand = _top_set(norms, n, largest=True)
    pos = _lex_first(norms.gather(1, cand), cand, n, descending=True)
    heads = cand.gather(1, pos)
    return heads, norms.gather(1, heads)


def topk_through_head(
    W_dec_src: Float[Tensor, "n_src d_model"],
    W_V_h: Float[Tensor, "d_model d_head"],
    W_O_h: Float[Tensor, "d_head d_model"],
    W_enc_dst: Float[Tensor, "d_model n_dst"],
    k: int,
    blocks: BlockSizes = BLOCKS,
) -> tuple[Int64[Tensor, "n_dst k"], Float[Tensor, "n_dst k"]]:
    """Top-k sources per target of d_i W_V W_O e_j, kept factored: (W_dec W_V) @ (W_O W_enc)."""
    src = _f32(W_dec_src) @ _f32(W_V_h)
    dst = _f32(W_O_h) @ _f32(W_enc_dst)
    return topk_virtual_weights(src, dst, k, blocks.src, blocks.dst)


# ---------------------------------------------------------------------------------------------
# tokens


def topk_deembeds(
    W_E: Float[Tensor, "d_vocab d_model"],
    W_enc: Float[Tensor, "d_model d_transcoder"],
    k: int,
    blocks: BlockSizes = BLOCKS,
) -> tuple[Int64[Tensor, "d_transcoder k"], Float[Tensor, "d_transcoder k"]]:
    """Top-k tokens per feature by |W_E e_j| (both signs): the direct token -> feature path."""
    return topk_virtual_weights(W_E, W_enc, k, blocks.src, blocks.dst)


@torch.no_grad()
def topk_logits(
    W_dec: Float[Tensor, "d_transcoder d_model"],
    W_U: Float[Tensor, "d_model d_vocab"],
    k: int,
    block_elems: int = LOGIT_BLOCK_ELEMS,
) -> SignedTopK:
    """Top-k promoted (largest d_i . W_U) and suppressed (most negative) tokens per feature.

    Blocked over features so at most `block_elems` logits are held; ties go to the lower id.
    """
    dec, unembed = _f32(W_dec), _f32(W_U)
    if dec.shape[1] != unembed.shape[0]:
        raise IngestError(f"W_dec {tuple(dec.shape)} does not fit W_U {tuple(unembed.shape)}")
    k = _check_k(k, unembed.shape[1])
    rows = max(1, block_elems // max(1, unembed.shape[1]))
    parts: list[list[Tensor]] = [[], [], [], []]
    for r0 in range(0, dec.shape[0], rows):
        logits = dec[r0 : r0 + rows] @ unembed
        for j, largest in ((0, True), (2, False)):
            cand = _top_set(logits, k, largest)
            vals = logits.gather(1, cand)
            pos = _lex_first(vals, cand, k, descending=largest)
            parts[j].append(cand.gather(1, pos))
            parts[j + 1].append(vals.gather(1, pos))
    empty = (torch.empty(0, k, dtype=torch.int64), torch.empty(0, k))
    out = [torch.cat(p) if p else empty[i % 2] for i, p in enumerate(parts)]
    _finite(torch.cat([out[1], out[3]]), "the logits W_dec @ W_U")
    return SignedTopK(*out)


# ---------------------------------------------------------------------------------------------
# layer drivers: TranscoderSet -> WeightEdges, one container per (layer pair, path)


def _factor(scales: Mapping[int, float] | None, layer: int) -> float:
    return 1.0 if scales is None else float(scales.get(layer, 1.0))


def _rows_to_edges(
    row_ids: Int64[Tensor, " rows"], idx: Int64[Tensor, "rows k"], w_raw: Float[Tensor, "rows k"]
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Flatten per-row top-k into (row, col, w_raw, rank) columns, dropping exact zeros."""
    idx, w_raw = idx.cpu(), w_raw.cpu()
    rows = row_ids.cpu()[:, None].expand_as(idx)
    rank = torch.arange(idx.shape[1])[None, :].expand_as(idx)
    keep = w_raw != 0
    return rows[keep], idx[keep], w_raw[keep], rank[keep]


def _edges(
    rel: RelKind,
    layers: tuple[int | None, int | None],
    via: str,
    target_ids: Tensor,
    topk: tuple[Tensor, Tensor],
    factor: float,
) -> WeightEdges:
    """WeightEdges from a per-target top-k (rows = targets, values = source indices)."""
    dst, src, w_raw, rank = _rows_to_edges(target_ids, *topk)
    return WeightEdges(layers[0], layers[1], via, src, dst, w_raw * factor, rank, w_raw, rel)


def _encoder(tset: TranscoderSet, layer: int, device: str | None) -> Tensor:
    return tset[layer].W_enc.detach().to(device)


def _writes(
    tset: TranscoderSet, layer: int, below: int | None, device: str | None
) -> Float[Tensor, "d_transcoder d_model"]:
    """What `layer`'s features write before a reader at layer `below` (None: the logits)."""
    return tset.decoder_sum(layer, below).detach().to(device)


def _pairs(tset: TranscoderSet, pairs: Iterable[tuple[int, int]] | None) -> list[tuple[int, int]]:
    layers = tset.layers
    every = [(l1, l2) for l2 in layers for l1 in layers if l1 < l2]
    if pairs is None:
        return every
    chosen = set(pairs)
    if not chosen <= set(every):
        raise IngestError(f"layer pairs {sorted(chosen - set(every))} are not l1 < l2 in the set")
    return [p for p in every if p in chosen]


def residual_edges(
    tset: TranscoderSet,
    k: int = 32,
    scales: Mapping[int, float] | None = None,
    pairs: Iterable[tuple[int, int]] | None = None,
    blocks: BlockSizes = BLOCKS,
    device: str | None = None,
) -> Iterator[WeightEdges]:
    """VIRTUAL_WEIGHT via "resid" for every layer pair l1 < l2 (or the given `pairs`).

    `scales[l]` multiplies weights into layer l: 1 / the mean ln2 scale of layer l measured in
    the corpus pass, so magnitudes compare across layers. One container per pair, in order,
    so a writer can resume after the last pair it stored.
    """
    for l1, l2 in _pairs(tset, pairs):
        W_dec, W_enc = _writes(tset, l1, l2, device), _encoder(tset, l2, device)
        topk = topk_virtual_weights(W_dec, W_enc, k, blocks.src, blocks.dst)
        ids = torch.arange(W_enc.shape[1])
        yield _edges(RelKind.VIRTUAL_WEIGHT, (l1, l2), "resid", ids, topk, _factor(scales, l2))


def _kept_heads(
    heads: Int64[Tensor, "n_dst n"], n_heads: int
) -> Iterator[tuple[int, int, Int64[Tensor, " m"]]]:
    """(layer, head, targets that kept it) for every head some target kept."""
    for flat in torch.unique(heads).tolist():
        targets = (heads == flat).any(dim=1).nonzero().squeeze(1)
        yield flat // n_heads, flat % n_heads, targets


def _ranked(
    ranked: dict[int, Tensor] | None,
    layer: int,
    W_V: Tensor,
    W_O: Tensor,
    W_enc: Tensor,
    n: int,
    last: int,
    attn_scales: Mapping[int, float] | None,
) -> Int64[Tensor, "n_dst n"]:
    """Each target's top heads, from `ranked` (one job's rankings by target layer, filled on
    first use) when given: the per-pair units of one target layer share them."""
    if ranked is not None and layer in ranked:
        return ranked[layer]
    heads, _ = top_heads_per_feature(W_V, W_O, W_enc, n, last, attn_scales)
    if ranked is not None:
        ranked[layer] = heads
    return heads


def last_head_layer(layer: int, parallel: bool) -> int:
    """The last attention layer whose output the MLP at `layer` reads (-1: none)."""
    return layer - 1 if parallel else layer


def attention_edges(
    tset: TranscoderSet,
    W_V: Float[Tensor, "n_layers n_heads d_model d_head"],
    W_O: Float[Tensor, "n_layers n_heads d_head d_model"],
    k: int = 32,
    n_heads_per_feature: int = 4,
    scales: Mapping[int, float] | None = None,
    attn_scales: Mapping[int, float] | None = None,
    pairs: Iterable[tuple[int, int]] | None = None,
    blocks: BlockSizes = BLOCKS,
    device: str | None = None,
    *,
    parallel: bool = False,
    ranked: dict[int, Tensor] | None = None,
) -> Iterator[WeightEdges]:
    """VIRTUAL_WEIGHT via "attn:a.h": per target feature its top heads by ||OV e_j|| among
    layers up to `last_head_layer(l2, parallel)`, then top-k sources through each kept head
    from every layer l1 < a (see the module docstring).

    w = raw x scales[l2] x attn_scales[a] (ln1 factor of the head's layer).
    """
    chosen = _pairs(tset, pairs)
    W_V, W_O = W_V.detach().to(device), W_O.detach().to(device)
    for l2 in sorted({p[1] for p in chosen}):
        last = last_head_layer(l2, parallel)
        if last < 0:
            continue
        W_enc = _encoder(tset, l2, device)
        heads = _ranked(ranked, l2, W_V, W_O, W_enc, n_heads_per_feature, last, attn_scales)
        for a, h, targets in _kept_heads(heads.cpu(), W_V.shape[1]):
            factor = _factor(scales, l2) * _factor(attn_scales, a)
            for l1 in (p[0] for p in chosen if p[1] == l2 and p[0] < a):
                W_dec = _writes(tset, l1, a, device)
                topk = topk_through_head(W_dec, W_V[a, h], W_O[a, h], W_enc[:, targets], k, blocks)
                yield _edges(
                    RelKind.VIRTUAL_WEIGHT, (l1, l2), f"attn:{a}.{h}", targets, topk, factor
                )


def deembed_edges(
    tset: TranscoderSet,
    W_E: Float[Tensor, "d_vocab d_model"],
    k: int = 32,
    scales: Mapping[int, float] | None = None,
    heads: tuple[Tensor, Tensor] | None = None,
    n_heads_per_feature: int = 4,
    attn_scales: Mapping[int, float] | None = None,
    blocks: BlockSizes = BLOCKS,
    device: str | None = None,
    *,
    parallel: bool = False,
    ranked: dict[int, Tensor] | None = None,
) -> Iterator[WeightEdges]:
    """DEEMBEDS token -> feature per layer: direct ("resid"), and through each feature's top
    heads ("attn:a.h", a <= layer; a < layer for `parallel` blocks) when `heads` = (W_V, W_O)
    is given."""
    W_E = W_E.detach().to(device)
    if heads is not None:
        W_V, W_O = (x.detach().to(device) for x in heads)
    for layer in tset.layers:
        W_enc = _encoder(tset, layer, device)
        ids = torch.arange(W_enc.shape[1])
        factor = _factor(scales, layer)
        direct = topk_deembeds(W_E, W_enc, k, blocks)
        yield _edges(RelKind.DEEMBEDS, (None, layer), "resid", ids, direct, factor)
        last = last_head_layer(layer, parallel)
        if heads is None or last < 0:
            continue
        top = _ranked(ranked, layer, W_V, W_O, W_enc, n_heads_per_feature, last, attn_scales)
        for a, h, targets in _kept_heads(top.cpu(), W_V.shape[1]):
            topk = topk_through_head(W_E, W_V[a, h], W_O[a, h], W_enc[:, targets], k, blocks)
            f = factor * _factor(attn_scales, a)
            yield _edges(RelKind.DEEMBEDS, (None, layer), f"attn:{a}.{h}", targets, topk, f)


def logit_edges(
    tset: TranscoderSet,
    W_U: Float[Tensor, "d_model d_vocab"],
    k: int = 32,
    scale: float = 1.0,
    layers: Sequence[int] | None = None,
    device: str | None = None,
) -> Iterator[WeightEdges]:
    """PROMOTES feature -> token per layer: top-k positive and top-k negative logits.

    `scale` is the final LayerNorm's factor (1 / its mean scale). Ranks count per sign;
    a positive-list entry <= 0 or a negative-list entry >= 0 is dropped.
    """
    W_U = W_U.detach().to(device)
    for layer in tset.layers if layers is None else layers:
        W_dec = _writes(tset, layer, None, device)
        top = topk_logits(W_dec, W_U, k)
        ids = torch.arange(W_dec.shape[0])
        # a small vocabulary can put one token in both lists; keep each on its own sign
        pos = _rows_to_edges(ids, top.pos_index, top.pos_w.clamp_min(0))
        neg = _rows_to_edges(ids, top.neg_index, top.neg_w.clamp_max(0))
        cols = [pos, neg]
        src, dst, w_raw, rank = (torch.cat(c) for c in zip(*cols, strict=True))
        yield WeightEdges(
            layer, None, "resid", src, dst, w_raw * scale, rank, w_raw, RelKind.PROMOTES
        )


# ---------------------------------------------------------------------------------------------
# through skip connections


def skip_layers(tset: TranscoderSet, above: int, below: int) -> list[int]:
    """Layers m with above < m < below whose transcoder has a skip connection."""
    return [m for m in tset.layers if above < m < below and tset[m].W_skip is not None]


def _through_skip(
    tset: TranscoderSet, m: int, src: Float[Tensor, "n_src d_model"]
) -> Float[Tensor, "n_src d_model"]:
    """What rows `src` written into MLP m's input become in the residual stream through its
    skip (x @ W_skip.T, times m's post-MLP norm weight where the set writes before it; W_skip
    as the set holds it, e.g. centred by weights_job for LayerNorm)."""
    W_skip = tset[m].W_skip
    if W_skip is None:
        raise IngestError(f"layer {m} has no skip connection")
    return tset.resid_gain(m, _f32(src) @ _f32(W_skip).to(src.device).T)


def skip_edges(
    tset: TranscoderSet,
    k: int = 32,
    scales: Mapping[int, float] | None = None,
    pairs: Iterable[tuple[int, int]] | None = None,
    blocks: BlockSizes = BLOCKS,
    device: str | None = None,
) -> Iterator[WeightEdges]:
    """VIRTUAL_WEIGHT via "skip:m" for every layer pair l1 < m < l2 and skip layer m: what
    l1 writes before m reads, through m's skip, into l2's encoders; w = raw x scales[l2] x
    scales[m] (the skip reads m's normalised input)."""
    for l1, l2 in _pairs(tset, pairs):
        W_enc = _encoder(tset, l2, device)
        ids = torch.arange(W_enc.shape[1])
        for m in skip_layers(tset, l1, l2):
            src = _through_skip(tset, m, _writes(tset, l1, m, device))
            topk = topk_virtual_weights(src, W_enc, k, blocks.src, blocks.dst)
            factor = _factor(scales, l2) * _factor(scales, m)
            yield _edges(RelKind.VIRTUAL_WEIGHT, (l1, l2), f"skip:{m}", ids, topk, factor)


def skip_deembed_edges(
    tset: TranscoderSet,
    W_E: Float[Tensor, "d_vocab d_model"],
    k: int = 32,
    scales: Mapping[int, float] | None = None,
    blocks: BlockSizes = BLOCKS,
    device: str | None = None,
) -> Iterator[WeightEdges]:
    """DEEMBEDS via "skip:m": tokens through the skip of each layer m < the feature's layer."""
    W_E = W_E.detach().to(device)
    for layer in tset.layers:
        W_enc = _encoder(tset, layer, device)
        ids = torch.arange(W_enc.shape[1])
        for m in skip_layers(tset, -1, layer):
            topk = topk_deembeds(_through_skip(tset, m, W_E), W_enc, k, blocks)
            factor = _factor(scales, layer) * _factor(scales, m)
            yield _edges(RelKind.DEEMBEDS, (None, layer), f"skip:{m}", ids, topk, factor)
