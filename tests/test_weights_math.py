"""The weight-connection math against dense computations on small shapes."""

from __future__ import annotations

import weakref
from typing import Any

import pytest
import torch
from torch import Tensor
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode
from transformer_lens import HookedTransformer

from circuitcat.catalog.errors import IngestError
from circuitcat.ingest.models import LoadedModel
from circuitcat.ingest.transcoders.transcoder import Transcoder, TranscoderConfig, TranscoderSet
from circuitcat.ingest.weights import (
    BlockSizes,
    WeightEdges,
    attention_edges,
    deembed_edges,
    head_ov_norms,
    logit_edges,
    residual_edges,
    top_heads_per_feature,
    topk_deembeds,
    topk_logits,
    topk_through_head,
    topk_virtual_weights,
)
from circuitcat.ingest.weights_job import WeightsParams, _units, centered_writers

from .test_attribution import random_transcoders
from .test_attribution_families import FAMILIES, family_model

# --------------------------------------------------------------------------------------------
# dense references: full product, then a stable sort (ties -> lower index, like the library)


def dense_topk(V: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Top-k rows per column of V by |V|, ties to the lower row."""
    k = min(k, V.shape[0])
    order = torch.sort(V.T.abs(), dim=1, descending=True, stable=True).indices[:, :k]
    return order, V.T.gather(1, order)


def dense_signed(L: Tensor, k: int, largest: bool) -> tuple[Tensor, Tensor]:
    k = min(k, L.shape[1])
    order = torch.sort(L, dim=1, descending=largest, stable=True).indices[:, :k]
    return order, L.gather(1, order)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def randn(*shape: int, seed: int) -> Tensor:
    return torch.randn(*shape, generator=gen(seed))


def assert_same(got: tuple[Tensor, Tensor], want: tuple[Tensor, Tensor]) -> None:
    assert torch.equal(got[0], want[0])
    torch.testing.assert_close(got[1], want[1], atol=1e-5, rtol=1e-5)


# --------------------------------------------------------------------------------------------
# blocked top-k


@pytest.mark.parametrize(
    ("src_block", "dst_block"), [(1, 1), (3, 5), (7, 29), (16, 8), (37, 29), (100, 100)]
)
@pytest.mark.parametrize("k", [1, 5, 37])
def test_blocked_topk_equals_dense(src_block: int, dst_block: int, k: int) -> None:
    W_dec, W_enc = randn(37, 16, seed=0), randn(16, 29, seed=1)
    got = topk_virtual_weights(W_dec, W_enc, k, src_block, dst_block)
    assert_same(got, dense_topk(W_dec @ W_enc, k))


def test_k_larger_than_sources_is_clamped() -> None:
    W_dec, W_enc = randn(4, 8, seed=2), randn(8, 6, seed=3)
    idx, w = topk_virtual_weights(W_dec, W_enc, 10, block_size=3)
    assert idx.shape == w.shape == (6, 4)
    assert torch.equal(idx.sort(dim=1).values, torch.arange(4).expand(6, 4))
    assert_same((idx, w), dense_topk(W_dec @ W_enc, 10))


def test_negative_dominant_columns_keep_their_sign() -> None:
    # every source shares a direction that the targets read negatively: the largest |V| are
    # negative, so a signed (not absolute) top-k would pick different sources
    base = torch.zeros(16)
    base[0] = 1.0
    W_dec = randn(64, 16, seed=4) * 0.3 + base * torch.rand(64, 1, generator=gen(5)) * 3
    W_enc = randn(16, 20, seed=6) * 0.1 - base[:, None] * 2
    idx, w = topk_virtual_weights(W_dec, W_enc, 8, block_size=10, target_block_size=7)
    V = W_dec @ W_enc
    assert_same((idx, w), dense_topk(V, 8))
    assert (w[:, 0] < 0).all()
    signed = torch.topk(V, 8, dim=0).indices.T
    assert not torch.equal(idx.sort(1).values, signed.sort(1).values)


@pytest.mark.parametrize(("src_block", "dst_block"), [(1, 2), (4, 3), (6, 11), (64, 64)])
def test_exact_ties_go_to_the_lower_index_for_any_block_size(
    src_block: int, dst_block: int
) -> None:
    # small integers multiply exactly in fp32, so many |V| values tie exactly
    W_dec = torch.randint(-2, 3, (23, 3), generator=gen(7)).float()
    W_dec[15] = W_dec[2]  # an exact duplicate source
    W_enc = torch.randint(-2, 3, (3, 11), generator=gen(8)).float()
    got = topk_virtual_weights(W_dec, W_enc, 6, src_block, dst_block)
    assert_same(got, dense_topk(W_dec @ W_enc, 6))


def test_scale_multiplies_weights_only() -> None:
    W_dec, W_enc = randn(20, 8, seed=9), randn(8, 5, seed=10)
    idx, w = topk_virtual_weights(W_dec, W_enc, 4)
    idx2, w2 = topk_virtual_weights(W_dec, W_enc, 4, scale=0.5)
    assert torch.equal(idx, idx2)
    torch.testing.assert_close(w2, w * 0.5)


def test_bad_inputs_raise_ingest_error() -> None:
    with pytest.raises(IngestError, match="multiply"):
        topk_virtual_weights(randn(5, 4, seed=0), randn(3, 6, seed=0), 2)
    with pytest.raises(IngestError, match="at least 1"):
        topk_virtual_weights(randn(5, 4, seed=0), randn(4, 6, seed=0), 0)
    with pytest.raises(IngestError, match="at least 1"):
        topk_virtual_weights(randn(5, 4, seed=0), randn(4, 6, seed=0), -3)
    bad = randn(5, 4, seed=0)
    bad[1, 2] = float("nan")
    with pytest.raises(IngestError, match="NaN"):
        topk_virtual_weights(bad, randn(4, 6, seed=0), 2, block_size=2)
    bad_enc = randn(4, 6, seed=0)
    bad_enc[3, 5] = float("inf")
    with pytest.raises(IngestError, match="NaN or infinite"):
        topk_virtual_weights(randn(5, 4, seed=0), bad_enc, 2, target_block_size=4)
    with pytest.raises(IngestError, match="NaN or infinite"):
        topk_logits(bad, randn(4, 6, seed=0), 2)


# --------------------------------------------------------------------------------------------
# attention


def attn_weights(n_layers: int, n_heads: int, d_model: int, d_head: int) -> tuple[Tensor, Tensor]:
    W_V = randn(n_layers, n_heads, d_model, d_head, seed=20) / d_model**0.5
    W_O = randn(n_layers, n_heads, d_head, d_model, seed=21) / d_head**0.5
    return W_V, W_O


def test_through_head_equals_dense_ov_product() -> None:
    W_V, W_O = attn_weights(1, 1, 12, 4)
    W_dec, W_enc = randn(30, 12, seed=11), randn(12, 9, seed=12)
    got = topk_through_head(W_dec, W_V[0, 0], W_O[0, 0], W_enc, 6, BlockSizes(src=7, dst=4))
    V = torch.stack(
        [W_dec[i] @ W_V[0, 0] @ W_O[0, 0] @ W_enc[:, j] for i in range(30) for j in range(9)]
    )
    assert_same(got, dense_topk(V.view(30, 9), 6))


def test_head_norms_and_ranking_equal_dense() -> None:
    W_V, W_O = attn_weights(3, 4, 12, 4)
    W_enc = randn(12, 10, seed=13)
    OV = W_V @ W_O  # [layer, head, d_model, d_model], dense only in the test
    dense = torch.linalg.vector_norm(OV @ W_enc, dim=2)  # [layer, head, n_dst]
    torch.testing.assert_close(head_ov_norms(W_V[1, 2], W_O[1, 2], W_enc), dense[1, 2])
    scales = {0: 1.0, 1: 2.0, 2: 0.5}
    heads, norms = top_heads_per_feature(W_V, W_O, W_enc, 3, max_layer=1, attn_scales=scales)
    flat = (dense[:2] * torch.tensor([1.0, 2.0])[:, None, None]).reshape(8, 10).T
    want = dense_signed(flat, 3, largest=True)
    assert_same((heads, norms), want)


def test_heads_that_do_not_fit_the_transcoder_raise() -> None:
    W_V, W_O = attn_weights(2, 2, 12, 4)
    with pytest.raises(IngestError, match="fit one model"):
        top_heads_per_feature(W_V, W_O, randn(10, 5, seed=0), 1, max_layer=1)
    with pytest.raises(IngestError, match="outside"):
        top_heads_per_feature(W_V, W_O, randn(12, 5, seed=0), 1, max_layer=2)


def tiny_set(n_layers: int, d_model: int, d_tc: int) -> TranscoderSet:
    tcs = {}
    for layer in range(n_layers):
        cfg = TranscoderConfig(d_model, d_model, d_tc, layer, "in", "out")
        tc = Transcoder(cfg)
        tc.W_enc.data = randn(d_model, d_tc, seed=100 + layer)
        tc.W_dec.data = randn(d_tc, d_model, seed=200 + layer)
        tcs[layer] = tc
    return TranscoderSet("tiny", "toy", "test", "mem", tcs)


def test_residual_edges_match_dense_with_scales() -> None:
    tset = tiny_set(3, 10, 14)
    scales = {0: 3.0, 1: 0.5, 2: 2.0}
    edges = list(residual_edges(tset, k=4, scales=scales, blocks=BlockSizes(5, 6)))
    assert [(e.src_layer, e.dst_layer) for e in edges] == [(0, 1), (0, 2), (1, 2)]
    for e in edges:
        assert e.via == "resid" and e.rel == "VIRTUAL_WEIGHT" and len(e) == 14 * 4
        V = tset[e.src_layer].W_dec.data @ tset[e.dst_layer].W_enc.data
        idx, w = dense_topk(V, 4)
        assert torch.equal(e.src_index, idx.flatten())
        assert torch.equal(e.dst_index, torch.arange(14).repeat_interleave(4))
        assert torch.equal(e.rank, torch.arange(4).repeat(14))
        assert e.w_raw is not None
        torch.testing.assert_close(e.w_raw, w.flatten())
        torch.testing.assert_close(e.w, w.flatten() * scales[e.dst_layer])
    only = list(residual_edges(tset, k=4, pairs=[(1, 2)]))
    assert [(e.src_layer, e.dst_layer) for e in only] == [(1, 2)]
    with pytest.raises(IngestError, match="pairs"):
        list(residual_edges(tset, pairs=[(2, 1)]))


def test_attention_edges_use_heads_between_the_layers() -> None:
    tset = tiny_set(3, 12, 8)
    W_V, W_O = attn_weights(3, 2, 12, 4)
    edges = list(attention_edges(tset, W_V, W_O, k=3, n_heads_per_feature=2))
    assert edges
    for e in edges:
        a, h = map(int, e.via.removeprefix("attn:").split("."))
        assert e.src_layer is not None and e.dst_layer is not None
        assert e.src_layer < a <= e.dst_layer
        OV = W_V[a, h] @ W_O[a, h]
        V = tset[e.src_layer].W_dec.data @ OV @ tset[e.dst_layer].W_enc.data
        want = V[e.src_index, e.dst_index]
        torch.testing.assert_close(e.w, want, atol=1e-5, rtol=1e-5)
        # each target kept at most n_heads_per_feature heads: check this head is among them
        heads, _ = top_heads_per_feature(W_V, W_O, tset[e.dst_layer].W_enc.data, 2, e.dst_layer)
        assert (heads[e.dst_index] == a * 2 + h).any(dim=1).all()


# --------------------------------------------------------------------------------------------
# tokens


def test_deembeds_equal_dense() -> None:
    W_E, W_enc = randn(50, 12, seed=14), randn(12, 9, seed=15)
    got = topk_deembeds(W_E, W_enc, 5, BlockSizes(src=8, dst=4))
    assert_same(got, dense_topk(W_E @ W_enc, 5))


def test_deembed_edges_direct_and_through_heads() -> None:
    tset = tiny_set(2, 12, 6)
    W_V, W_O = attn_weights(2, 2, 12, 4)
    W_E = randn(40, 12, seed=16)
    edges = list(deembed_edges(tset, W_E, k=3, heads=(W_V, W_O), n_heads_per_feature=1))
    direct = [e for e in edges if e.via == "resid"]
    assert [e.dst_layer for e in direct] == [0, 1]
    for e in edges:
        assert e.rel == "DEEMBEDS" and e.src_layer is None and e.dst_layer is not None
        W_enc = tset[e.dst_layer].W_enc.data
        if e.via == "resid":
            M = W_E @ W_enc
        else:
            a, h = map(int, e.via.removeprefix("attn:").split("."))
            assert a <= e.dst_layer
            M = W_E @ W_V[a, h] @ W_O[a, h] @ W_enc
        torch.testing.assert_close(e.w, M[e.src_index, e.dst_index], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("block_elems", [1, 70, 10_000])
def test_logits_equal_dense(block_elems: int) -> None:
    W_dec, W_U = randn(13, 8, seed=17), randn(8, 30, seed=18)
    top = topk_logits(W_dec, W_U, 4, block_elems=block_elems)
    L = W_dec @ W_U
    assert_same((top.pos_index, top.pos_w), dense_signed(L, 4, largest=True))
    assert_same((top.neg_index, top.neg_w), dense_signed(L, 4, largest=False))


def test_logit_edges_keep_each_sign_once() -> None:
    tset = tiny_set(1, 8, 5)
    W_U = randn(8, 6, seed=19)  # k = 6 = d_vocab: both lists hold every token
    (e,) = list(logit_edges(tset, W_U, k=6, scale=2.0))
    assert e.rel == "PROMOTES" and e.src_layer == 0 and e.dst_layer is None
    L = tset[0].W_dec.data @ W_U
    pairs = set(zip(e.src_index.tolist(), e.dst_index.tolist(), strict=True))
    assert len(pairs) == len(e) == int((L != 0).sum())
    torch.testing.assert_close(e.w, 2.0 * L[e.src_index, e.dst_index])


# --------------------------------------------------------------------------------------------
# memory: peak live bytes of tensors allocated inside the call, traced at the dispatcher


class LiveBytes(TorchDispatchMode):
    """Tracks the peak of live bytes in storages created by ops run under the mode."""

    def __init__(self, ignore: list[Tensor]) -> None:
        super().__init__()
        self.ignore = {t.untyped_storage().data_ptr() for t in ignore}
        self.refs: dict[int, list[int]] = {}  # storage pointer -> [bytes, live tensors]
        self.live = 0
        self.peak = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for t in pytree.tree_leaves(out):
            if isinstance(t, Tensor):
                self._track(t)
        return out

    def _track(self, t: Tensor) -> None:
        key = t.untyped_storage().data_ptr()
        if key == 0 or key in self.ignore:
            return
        if key not in self.refs:
            self.refs[key] = [t.untyped_storage().nbytes(), 0]
            self.live += self.refs[key][0]
            self.peak = max(self.peak, self.live)
        self.refs[key][1] += 1
        weakref.finalize(t, self._drop, key)

    def _drop(self, key: int) -> None:
        ref = self.refs[key]
        ref[1] -= 1
        if ref[1] == 0:
            del self.refs[key]
            self.live -= ref[0]


def peak_bytes(fn: Any, W_dec: Tensor, W_enc: Tensor) -> int:
    with LiveBytes(ignore=[W_dec, W_enc]) as mode:
        result = fn(W_dec, W_enc)
    del result
    return mode.peak


def test_blocked_peak_memory_does_not_grow_with_sources() -> None:
    d, n_dst, k = 16, 256, 8

    def blocked(a: Tensor, b: Tensor) -> Any:
        return topk_virtual_weights(a, b, k, block_size=256, target_block_size=128)

    def dense(a: Tensor, b: Tensor) -> Any:
        return torch.topk((a @ b).abs(), k, dim=0)

    W_enc = randn(d, n_dst, seed=30)
    peaks = {}
    for n_src in (512, 8192):
        W_dec = randn(n_src, d, seed=31)
        peaks[n_src] = (peak_bytes(blocked, W_dec, W_enc), peak_bytes(dense, W_dec, W_enc))
    # the tracer sees the dense product, so it would see a blocked version that grew
    assert peaks[8192][1] >= 8192 * n_dst * 4
    assert peaks[8192][0] == peaks[512][0]
    assert peaks[8192][0] < 8192 * n_dst * 4 / 8


# --------------------------------------------------------------------------------------------
# every model family: the weights job against maps measured on the model's own modules


def one(t: Tensor, hook: Any) -> Tensor:
    return torch.ones_like(t)


def ln2_reads(model: HookedTransformer, x: Tensor) -> Tensor:
    """What ln2.hook_normalized (times its scale) reads of a write x into the residual."""
    return x - x.mean(-1, keepdim=True) if model.cfg.normalization_type in ("LN", "LNPre") else x


def head_map(model: HookedTransformer, a: int, h: int, x: Tensor) -> Tensor:
    """What head (a, h) adds to the residual (hook_attn_out) for residual inputs x, measured by
    running block a on them (one position each) with the ln1 and ln1_post scales set to 1 and
    every other head's pattern zeroed, minus the same for zero inputs (the biases)."""
    mask = (torch.arange(model.cfg.n_heads) == h).float()[None, :, None, None]
    out: dict[str, Tensor] = {}

    def keep(t: Tensor, hook: Any) -> None:
        out["attn"] = t[:, 0]

    hooks = [
        (f"blocks.{a}.ln1.hook_scale", one),
        (f"blocks.{a}.attn.hook_pattern", lambda t, hook: t * mask),
        (f"blocks.{a}.hook_attn_out", keep),
    ]
    if model.cfg.use_normalization_before_and_after:
        hooks.append((f"blocks.{a}.ln1_post.hook_scale", one))
    written = []
    with torch.no_grad(), model.hooks(fwd_hooks=hooks):
        for inputs in (x, torch.zeros_like(x)):
            model.blocks[a](inputs[:, None, :])
            written.append(out["attn"])
    return written[0] - written[1]


def logit_map(model: HookedTransformer, x: Tensor) -> Tensor:
    """The logits (before any soft cap) a write x into the final residual adds, ln_final's
    scale set to 1."""
    with torch.no_grad(), model.hooks(fwd_hooks=[("ln_final.hook_scale", one)]):
        logits = [model.unembed(model.ln_final(v[:, None, :]))[:, 0] for v in (x, 0 * x)]
    return logits[0] - logits[1]


def reader(e: WeightEdges) -> int | None:
    """The layer that first reads what the source writes on `e`'s route (None: the logits)."""
    if e.rel == "PROMOTES":
        return None
    kind, _, where = e.via.partition(":")
    return e.dst_layer if kind == "resid" else int(where.split(".")[0])


def direct_weights(model: HookedTransformer, tset: TranscoderSet, e: WeightEdges) -> Tensor:
    """The dense [sources, targets] matrix edge container `e` takes its top-k from: a
    cross-layer source writes its decoders into every layer before the route's first reader;
    a skip route passes through W_skip.T between two of ln2's reads."""
    W_E = model.W_E.detach()
    if e.src_layer is None:
        src = W_E
    else:  # sum of W_dec[l1 -> m] over m < reader (all m for the logits)
        tc, first = tset[e.src_layer], reader(e)
        src = sum(tc.decoder(m).detach() for m in tc.out_layers if first is None or m < first)
    if e.rel == "PROMOTES":
        return logit_map(model, src)
    if e.via.startswith("attn:"):
        a, h = map(int, e.via.removeprefix("attn:").split("."))
        src = head_map(model, a, h, src)
    elif e.via.startswith("skip:"):
        W_skip = tset[int(e.via.removeprefix("skip:"))].W_skip
        assert W_skip is not None
        src = ln2_reads(model, src) @ W_skip.detach().T
    assert e.dst_layer is not None
    return ln2_reads(model, src) @ tset[e.dst_layer].W_enc.detach()


@pytest.mark.parametrize("processed", [False, True], ids=["raw", "fold"])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_weights_job_matches_the_model_on_every_family(family: str, processed: bool) -> None:
    """Every stored weight (VIRTUAL_WEIGHT resid and through heads, DEEMBEDS, PROMOTES) equals
    the map measured on the model, each target keeps its top-k sources by |w|, and heads sit
    between the layers: l1 < a <= l2, or a < l2 with parallel attention and MLP."""
    model, tset = family_model(family, processed), random_transcoders([0, 1, 2])
    loaded = LoadedModel(model, family, "test", {})
    centred = centered_writers(tset, model.cfg.normalization_type)
    params = WeightsParams(5, 2, 5, 5, budget="per-pair")
    parallel, head_layers = model.cfg.parallel_attn_mlp, set()
    for _, unit in _units(loaded, centred, params, {}):
        for e in unit():
            D = direct_weights(model, tset, e)
            assert e.w_raw is not None and torch.equal(e.w, e.w_raw)
            torch.testing.assert_close(e.w, D[e.src_index, e.dst_index], atol=1e-5, rtol=1e-4)
            if e.rel == "PROMOTES":
                continue
            for j in e.dst_index.unique().tolist():
                got = e.src_index[e.dst_index == j]
                assert torch.equal(got, D[:, j].abs().argsort(descending=True)[: len(got)])
            if e.via != "resid":
                a = int(e.via.removeprefix("attn:").split(".")[0])
                assert e.dst_layer is not None and (e.src_layer is None or e.src_layer < a)
                assert a < e.dst_layer if parallel else a <= e.dst_layer
                head_layers.add(a == e.dst_layer)
    assert head_layers == ({False} if parallel else {False, True})


@pytest.mark.parametrize("kind", ["skip", "clt", "clt+skip"])
@pytest.mark.parametrize("family", ["gpt2", "neox", "llama"])
def test_weights_job_for_skip_and_cross_layer_sets(family: str, kind: str) -> None:
    """Cross-layer sources write the sum of their decoders before each reader; skip routes
    l1 -> skip m -> l2 (l1 < m < l2) and token -> skip m -> layer (m < layer) are stored with
    via "skip:m"; every weight equals the dense map, top-k by |w|."""
    from .test_attribution_kinds import kind_set

    model, tset = family_model(family), kind_set(kind)
    loaded = LoadedModel(model, family, "test", {})
    centred = centered_writers(tset, model.cfg.normalization_type)
    params = WeightsParams(5, 2, 5, 5, budget="per-pair")
    seen: set[tuple[str, str, int | None]] = set()
    for _, unit in _units(loaded, centred, params, {}):
        for e in unit():
            D = direct_weights(model, tset, e)
            torch.testing.assert_close(e.w, D[e.src_index, e.dst_index], atol=1e-5, rtol=1e-4)
            if e.rel != "PROMOTES":
                for j in e.dst_index.unique().tolist():
                    got = e.src_index[e.dst_index == j]
                    assert torch.equal(got, D[:, j].abs().argsort(descending=True)[: len(got)])
            seen.add(
                (e.rel, e.via.split(".")[0] if e.via.startswith("attn") else e.via, e.src_layer)
            )
    skips = {(rel, via, src) for rel, via, src in seen if via.startswith("skip")}
    if "skip" in kind:
        assert skips == {
            ("VIRTUAL_WEIGHT", "skip:1", 0),
            ("DEEMBEDS", "skip:0", None),
            ("DEEMBEDS", "skip:1", None),
        }
    else:
        assert not skips


# --------------------------------------------------------------------------------------------
# the per-target budget (the default): the top-k of every route, merged exactly

Key = tuple[str, int | None, int]  # rel, target layer, target index
Entry = tuple[int | None, int, str, float]  # source layer, source index, via, w


def by_target(units: Any) -> dict[Key, list[Entry]]:
    out: dict[Key, list[Entry]] = {}
    for _, unit in units:
        for e in unit():
            if e.rel == "PROMOTES":
                continue
            layers, vias = e.row_routes()
            cols = (layers, e.src_index.tolist(), vias, e.w.tolist(), e.dst_index.tolist())
            for src_layer, src, via, w, dst in zip(*cols, strict=True):
                out.setdefault((e.rel, e.dst_layer, dst), []).append((src_layer, src, via, w))
    return {key: sorted(entries, key=lambda e: -abs(e[3])) for key, entries in out.items()}


@pytest.mark.parametrize(
    ("family", "kind"), [("gpt2", None), ("neox", None), ("llama", "clt+skip"), ("gpt2", "skip")]
)
def test_per_target_budget_equals_brute_force(family: str, kind: str | None) -> None:
    """Per target: the default keeps exactly the k entries of largest |w| among every entry
    of every route (the per-pair lists with k = all sources: the brute force), ranked."""
    from .test_attribution_kinds import kind_set

    model = family_model(family)
    tset = random_transcoders([0, 1, 2]) if kind is None else kind_set(kind)
    loaded = LoadedModel(model, family, "test", {})
    centred = centered_writers(tset, model.cfg.normalization_type)
    scales = {0: 0.5, 1: 2.0, 2: 1.5}  # routes are ranked by the scaled w
    budget = WeightsParams(top_k=5, heads_per_feature=2, top_k_tokens=4, top_k_logits=2)
    everything = WeightsParams(10**6, 2, 10**6, 2, budget="per-pair")
    got = by_target(_units(loaded, centred, budget, scales))
    full = by_target(_units(loaded, centred, everything, scales))
    assert got.keys() == full.keys() and any(k[0] == "VIRTUAL_WEIGHT" for k in got)
    vias = set()
    for key, entries in full.items():
        k = budget.top_k if key[0] == "VIRTUAL_WEIGHT" else budget.top_k_tokens
        want, have = entries[:k], got[key]
        assert [e[:3] for e in have] == [e[:3] for e in want], key
        torch.testing.assert_close(
            torch.tensor([e[3] for e in have]), torch.tensor([e[3] for e in want])
        )
        vias |= {e[2].split(".")[0] for e in have}
    assert "resid" in vias
    if kind and "skip" in kind:
        assert any(v.startswith("skip:") for v in vias)


def test_running_topk_merge_is_order_free_and_keeps_ties_to_the_lower_id() -> None:
    """Merging route lists in any order gives the dense top-k of their concatenation."""
    from circuitcat.ingest.topk import RunningTopK

    w = randn(6, 3 * 10, seed=3).round(decimals=1)  # many exact ties in |w|
    dense_idx, _ = dense_topk(w.T, 4)
    for order in ([0, 1, 2], [2, 0, 1]):
        run = RunningTopK(6, 4, 10)
        for route in order:
            idx, vals = dense_topk(w[:, route * 10 : (route + 1) * 10].T, 4)
            run.add(None, route, idx, vals)
        m = run.result()
        got = (m.route * 10 + m.src).view(6, 4)
        assert torch.equal(got, dense_idx) and torch.equal(m.rank.view(6, 4)[0], torch.arange(4))


def test_product_cache_reuses_and_stays_within_its_budget() -> None:
    from circuitcat.ingest.weight_budget import ProductCache

    cache, made = ProductCache(budget=3 * 4 * 10), []

    def make(i: int) -> Tensor:
        made.append(i)
        return torch.zeros(10)  # 40 bytes

    for i in (0, 1, 0, 2, 3, 0):
        cache.get(("x", i), lambda i=i: make(i))
    assert made == [0, 1, 2, 3, 0] and cache.used <= cache.budget  # 0 evicted first, remade
    assert (cache.hits, cache.misses) == (1, 5)
