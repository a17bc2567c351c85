"""Per-prompt attribution: the frozen model against the real one, completeness, interventions,
head splits, pruning and the beam search.

A tiny random HookedTransformer (LayerNorm with random affine, random biases) and random
sparse transcoders keep these tests fast and independent of the toy model; one test runs the
toy when its weights exist.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from torch import Tensor
from transformer_lens import HookedTransformer, HookedTransformerConfig

from circuitcat.catalog.errors import IngestError
from circuitcat.ingest.attribution import (
    RESID,
    DirectionTarget,
    FeatureTarget,
    FrozenPrompt,
    LogitTarget,
    NodeKind,
    PromptGraph,
    attribute,
    freeze,
    frozen_forward,
    influence,
    metric_direction,
    prune,
    split_by_head,
    top_paths,
)
from circuitcat.ingest.attribution.frozen import readout
from circuitcat.ingest.attribution.graph import destination_rows
from circuitcat.ingest.attribution.prune import normalized_weights
from circuitcat.ingest.transcoders.transcoder import Transcoder, TranscoderConfig, TranscoderSet

D_MODEL, N_POS, D_TC = 32, 8, 48
TOL = 1e-4  # relative, fp32


# --------------------------------------------------------------------------------------------
# fixtures


def tiny_model(norm: str = "LN", seed: int = 0) -> HookedTransformer:
    cfg = HookedTransformerConfig(
        n_layers=3,
        d_model=D_MODEL,
        n_heads=4,
        d_head=8,
        d_mlp=64,
        n_ctx=16,
        d_vocab=50,
        act_fn="gelu",
        normalization_type=norm,
        seed=seed,
        device="cpu",
    )
    model = HookedTransformer(cfg)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # transformer_lens zeroes biases and sets LN to identity: randomise
        for name, p in model.named_parameters():
            if name.endswith(("b_O", "b_V", "b_U", "b_in", "b_out")) or "ln" in name:
                base = 1.0 if name.endswith(".w") else 0.0
                p.copy_(base + 0.2 * torch.randn(p.shape, generator=gen))
    return model.eval()


def random_transcoders(layers: list[int], seed: int = 1) -> TranscoderSet:
    gen = torch.Generator().manual_seed(seed)

    def randn(*shape: int) -> Tensor:
        return torch.randn(*shape, generator=gen)

    tcs = {}
    for layer in layers:
        cfg = TranscoderConfig(
            D_MODEL,
            D_MODEL,
            D_TC,
            layer,
            f"blocks.{layer}.ln2.hook_normalized",
            f"blocks.{layer}.hook_mlp_out",
        )
        tc = Transcoder(cfg)
        with torch.no_grad():
            tc.W_enc.copy_(randn(D_MODEL, D_TC) / D_MODEL**0.5)
            tc.b_enc.copy_(-1.0 + 0.2 * randn(D_TC))  # sparse: ~15% of features fire
            tc.b_dec.copy_(0.1 * randn(D_MODEL))
            tc.W_dec.copy_(0.5 * randn(D_TC, D_MODEL) / D_MODEL**0.5)
            tc.b_dec_out.copy_(0.1 * randn(D_MODEL))
        tcs[layer] = tc
    return TranscoderSet("random", "tiny", "circuitcat-transcoders", "test", tcs)


@pytest.fixture(scope="module")
def model() -> HookedTransformer:
    return tiny_model()


@pytest.fixture(scope="module")
def tset() -> TranscoderSet:
    return random_transcoders([0, 1, 2])


@pytest.fixture(scope="module")
def tokens() -> Tensor:
    return torch.randint(0, 50, (N_POS,), generator=torch.Generator().manual_seed(3))


@pytest.fixture(scope="module")
def logit_graph(model: HookedTransformer, tset: TranscoderSet, tokens: Tensor) -> PromptGraph:
    return attribute(model, tset, tokens, 7, batch_size=16)


@pytest.fixture(scope="module")
def fp(model: HookedTransformer, tset: TranscoderSet, tokens: Tensor) -> FrozenPrompt:
    return freeze(model, tset, tokens)


def destinations(graph: PromptGraph) -> Tensor:
    is_dst = (graph.kind == NodeKind.FEATURE) | (graph.kind == NodeKind.TARGET)
    return torch.nonzero(is_dst).flatten()


def assert_complete(graph: PromptGraph) -> float:
    """Incoming edges add up to each destination's value; returns the worst relative error."""
    dst = destinations(graph)
    total, value = graph.incoming_totals()[dst], graph.in_total[dst]
    rel = ((total - value).abs() / value.abs().clamp(min=1.0)).max().item()
    assert rel < TOL
    return rel


# --------------------------------------------------------------------------------------------
# the frozen model is the real model


def final_logits(fp: FrozenPrompt, resid: Tensor) -> Tensor:
    x = resid - resid.mean(-1, keepdim=True) if fp.center else resid
    return (x / fp.final_scale * fp.lnf_w + fp.lnf_b) @ fp.W_U + fp.b_U


@pytest.mark.parametrize("norm", ["LN", "RMS"])
@pytest.mark.parametrize("layers", [[0, 1, 2], [0, 2]])
def test_frozen_forward_reproduces_model(norm: str, layers: list[int], tokens: Tensor) -> None:
    model, tset = tiny_model(norm), random_transcoders(layers)
    fp = freeze(model, tset, tokens)
    run = frozen_forward(fp)
    with torch.no_grad():
        logits = model(tokens[None])[0]
    scale = logits.abs().max()
    assert (final_logits(fp, run.resid_final) - logits).abs().max() < TOL * scale
    x = run.mlp_resid - run.mlp_resid.mean(-1, keepdim=True) if fp.center else run.mlp_resid
    assert torch.allclose(x / fp.mlp_scale, fp.mlp_in, atol=TOL)
    active = sum(int((tset[layer].encode(fp.mlp_in[layer]) > 0).sum()) for layer in layers)
    assert fp.feat_act.numel() == active > 0


# --------------------------------------------------------------------------------------------
# completeness


def test_completeness_logit(logit_graph: PromptGraph, fp: FrozenPrompt) -> None:
    assert_complete(logit_graph)
    target = logit_graph.target_nodes
    assert logit_graph.in_total[target].item() == pytest.approx(fp.logits[-1, 7].item(), abs=1e-5)
    feats = logit_graph.kind == NodeKind.FEATURE
    assert torch.allclose(logit_graph.in_total[feats], logit_graph.activation[feats], atol=1e-5)
    kinds = set(logit_graph.kind[logit_graph.src].tolist())
    assert kinds == {NodeKind.FEATURE, NodeKind.TOKEN, NodeKind.ERROR, NodeKind.BIAS}


@pytest.mark.parametrize("norm", ["LN", "RMS"])
def test_completeness_direction_and_feature_targets(norm: str, tokens: Tensor) -> None:
    model, tset = tiny_model(norm), random_transcoders([0, 1, 2])
    direction = metric_direction(model, [1, 2, 3], [4, 5])
    graph = attribute(model, tset, tokens, [direction, FeatureTarget(2, 5, 11)], batch_size=32)
    assert_complete(graph)
    with torch.no_grad():
        logits, cache = model.run_with_cache(tokens[None])
    mean_diff = logits[0, -1, [1, 2, 3]].mean() - logits[0, -1, [4, 5]].mean()
    pre = tset[2].pre_acts(cache["blocks.2.ln2.hook_normalized"][0, 5])[11]
    values = graph.in_total[graph.target_nodes]
    assert values.tolist() == pytest.approx([mean_diff.item(), pre.item()], abs=1e-5)


def test_max_features_folds_dropped_features_into_errors(
    model: HookedTransformer, tset: TranscoderSet, tokens: Tensor, logit_graph: PromptGraph
) -> None:
    graph = attribute(model, tset, tokens, 7, max_features=20)
    assert int((graph.kind == NodeKind.FEATURE).sum()) == 20
    assert graph.n_active == logit_graph.n_active > 20
    assert_complete(graph)
    assert graph.in_total[graph.target_nodes].item() == pytest.approx(
        logit_graph.in_total[logit_graph.target_nodes].item(), abs=1e-6
    )


# --------------------------------------------------------------------------------------------
# interventions


def pick_edges(graph: PromptGraph, per_pair: int = 3) -> list[int]:
    """The strongest edges of each (source kind, destination kind) pair."""
    picked: list[int] = []
    dst_kind = graph.kind[graph.dst]
    for sk in NodeKind:
        for dk in (NodeKind.FEATURE, NodeKind.TARGET):
            sel = torch.nonzero((graph.kind[graph.src] == sk) & (dst_kind == dk)).flatten()
            order = graph.w[sel].abs().argsort(descending=True)
            picked += sel[order[:per_pair]].tolist()
    return picked


def frozen_ablation_error(fp: FrozenPrompt, graph: PromptGraph, edges: list[int]) -> float:
    """The worst relative gap between an edge's w and the measured change of its destination
    when its source is removed from the frozen model, over `edges`."""
    rows = destination_rows(fp, graph.targets)
    row_of = {int(n): i for i, n in enumerate(destinations(graph))}
    base = readout(fp, rows, frozen_forward(fp))
    worst = 0.0
    for e in edges:
        src, dst = int(graph.src[e]), int(graph.dst[e])
        changed = readout(fp, rows, frozen_forward(fp, **ablate(fp, graph, src)))
        delta = (base - changed)[row_of[dst]].item()
        worst = max(worst, abs(delta - graph.w[e].item()) / max(1.0, abs(delta)))
    return worst


def ablate(fp: FrozenPrompt, graph: PromptGraph, node: int) -> dict[str, Tensor]:
    """frozen_forward arguments with source `node` removed."""
    kind, layer, pos = int(graph.kind[node]), int(graph.layer[node]), int(graph.pos[node])
    if kind == NodeKind.FEATURE:
        acts = fp.feat_act.clone()
        acts[int((graph.kind[:node] == NodeKind.FEATURE).sum())] = 0.0
        return {"acts": acts}
    if kind == NodeKind.TOKEN:
        emb = fp.emb.clone()
        emb[pos] = 0.0
        return {"emb": emb}
    if kind == NodeKind.ERROR:
        errors = fp.errors.clone()
        errors[layer, pos] = 0.0
        return {"errors": errors}
    bias = torch.ones(fp.n_layers + 1)
    bias[layer] = 0.0
    return {"bias": bias}


def test_edges_match_ablation_in_frozen_model(fp: FrozenPrompt, logit_graph: PromptGraph) -> None:
    graph = logit_graph
    rows = destination_rows(fp, graph.targets)
    row_of = {int(n): i for i, n in enumerate(destinations(graph))}
    base = readout(fp, rows, frozen_forward(fp))
    edges = pick_edges(graph)
    assert len(edges) >= 20
    for e in edges:
        src, dst = int(graph.src[e]), int(graph.dst[e])
        changed = readout(fp, rows, frozen_forward(fp, **ablate(fp, graph, src)))
        delta = (base - changed)[row_of[dst]].item()
        assert delta == pytest.approx(graph.w[e].item(), abs=TOL * max(1.0, abs(delta)))


def frozen_hooks(
    fp: FrozenPrompt,
    mlp_out: Tensor,
    extra: list[tuple[str, Callable[..., Any]]] | None = None,
    *,
    post_norm: bool = False,
) -> list[tuple[str, Callable[..., Any]]]:
    """Hooks that freeze the real model: patterns, normalisation scales (with `post_norm`
    Gemma's post-attention norm too), MLP outputs."""

    def const(value: Tensor) -> Callable[..., Tensor]:
        return lambda t, hook: value.reshape(1, *value.shape[:1], *([1] * (t.ndim - 3)), 1)

    hooks: list[tuple[str, Callable[..., Any]]] = [("ln_final.hook_scale", const(fp.final_scale))]
    for a in range(fp.n_layers):
        hooks += [
            (f"blocks.{a}.attn.hook_pattern", lambda t, hook, a=a: fp.pattern[a][None]),
            (f"blocks.{a}.ln1.hook_scale", const(fp.attn_scale[a])),
            (f"blocks.{a}.ln2.hook_scale", const(fp.mlp_scale[a])),
            (f"blocks.{a}.hook_mlp_out", lambda t, hook, a=a: mlp_out[a][None]),
        ]
        if post_norm:
            hooks.append((f"blocks.{a}.ln1_post.hook_scale", const(fp.post_scale[a])))
    return hooks + (extra or [])


def real_readout(
    model: HookedTransformer, tset: TranscoderSet, tokens: Tensor, graph: PromptGraph, hooks: list
) -> Tensor:
    """Every destination's value on the real model run with `hooks`."""
    with torch.no_grad(), model.hooks(fwd_hooks=hooks):
        logits, cache = model.run_with_cache(tokens[None])
    values = []
    for node in destinations(graph).tolist():
        layer, pos, index = (int(getattr(graph, c)[node]) for c in ("layer", "pos", "index"))
        if graph.kind[node] == NodeKind.TARGET:
            values.append(logits[0, pos, index])
        else:
            x = cache[f"blocks.{layer}.ln2.hook_normalized"][0, pos]
            values.append(tset[layer].pre_acts(x)[index])
    return torch.stack(values)


def write_of(fp: FrozenPrompt, graph: PromptGraph, node: int) -> Tensor:
    """What a feature or error node writes into hook_mlp_out at its layer and position (a
    per-layer feature's only write)."""
    layer, pos = int(graph.layer[node]), int(graph.pos[node])
    if graph.kind[node] == NodeKind.ERROR:
        return fp.errors[layer, pos]
    i = int((graph.kind[:node] == NodeKind.FEATURE).sum())
    (w,) = torch.nonzero(fp.write_feat == i).flatten().tolist()
    return fp.feat_act[i] * fp.write_dec[w]


def real_ablation_error(
    graph: PromptGraph, base: Tensor, changed_without: Callable[[int], Tensor], per_kind: int
) -> float:
    """The worst relative gap between an edge's w and the measured change of its destination
    when its source is removed from the real model, over the `per_kind` strongest edges from
    features and from errors. `base`: every destination's value on the real model (checked
    against the graph first); `changed_without(src)`: the same with source `src` removed."""
    assert torch.allclose(base, graph.in_total[destinations(graph)], atol=TOL)
    row_of = {int(n): i for i, n in enumerate(destinations(graph))}
    kinds, worst = graph.kind[graph.src], 0.0
    for sk in (NodeKind.FEATURE, NodeKind.ERROR):
        sel = torch.nonzero(kinds == sk).flatten()
        for e in sel[graph.w[sel].abs().argsort(descending=True)[:per_kind]].tolist():
            src, dst = int(graph.src[e]), int(graph.dst[e])
            delta = (base - changed_without(src))[row_of[dst]].item()
            worst = max(worst, abs(delta - graph.w[e].item()) / max(1.0, abs(delta)))
    return worst


def test_edges_match_ablation_in_real_model(
    model: HookedTransformer,
    tset: TranscoderSet,
    tokens: Tensor,
    fp: FrozenPrompt,
    logit_graph: PromptGraph,
) -> None:
    """Remove a feature's (or error's) write from the real model's hook_mlp_out, with patterns,
    scales and the other MLP outputs frozen: the destinations move by the edge weights."""
    graph = logit_graph
    base = real_readout(model, tset, tokens, graph, frozen_hooks(fp, fp.mlp_out))

    def changed_without(src: int) -> Tensor:
        mlp_out = fp.mlp_out.clone()
        mlp_out[int(graph.layer[src]), int(graph.pos[src])] -= write_of(fp, graph, src)
        return real_readout(model, tset, tokens, graph, frozen_hooks(fp, mlp_out))

    assert real_ablation_error(graph, base, changed_without, per_kind=4) < TOL


# --------------------------------------------------------------------------------------------
# head splits


@pytest.fixture
def split_qkv(model: HookedTransformer) -> Iterator[HookedTransformer]:
    model.set_use_split_qkv_input(True)
    try:
        yield model
    finally:
        model.set_use_split_qkv_input(False)


def test_split_by_head_parts_add_up(
    model: HookedTransformer, tset: TranscoderSet, tokens: Tensor, logit_graph: PromptGraph
) -> None:
    graph = logit_graph
    heads = split_by_head(model, tset, tokens, graph, batch_size=16)
    sums = torch.zeros(graph.n_edges).index_add_(0, heads.edge, heads.w)
    splittable = graph.kind[graph.src] != NodeKind.BIAS
    err = (sums - graph.w)[splittable].abs().max().item()
    assert err < TOL * max(1.0, graph.w.abs().max().item())
    assert bool((heads.src_pos[heads.via == RESID] == heads.dst_pos[heads.via == RESID]).all())
    names = set(heads.via_names())
    assert "resid" in names and any(n.startswith("attn:") for n in names)
    layer_of_via = torch.where(heads.via == RESID, -1, heads.via // 4)
    below = torch.where(graph.kind[heads.src] == NodeKind.TOKEN, -1, graph.layer[heads.src])
    assert bool((layer_of_via[heads.via != RESID] > below[heads.via != RESID]).all())
    with pytest.raises(IngestError):
        bias_edge = torch.nonzero(graph.kind[graph.src] == NodeKind.BIAS)[0]
        split_by_head(model, tset, tokens, graph, bias_edge)


def test_head_part_matches_removing_source_from_head_input(
    split_qkv: HookedTransformer,
    tset: TranscoderSet,
    tokens: Tensor,
    fp: FrozenPrompt,
    logit_graph: PromptGraph,
) -> None:
    """Remove a source's write from one head's value input (hook_v_input, per head) on the real
    frozen model: the destination moves by that head's part of the edge."""
    model, graph = split_qkv, logit_graph
    to_target = torch.nonzero(graph.kind[graph.dst] == NodeKind.TARGET).flatten()
    from_feature = to_target[graph.kind[graph.src[to_target]] == NodeKind.FEATURE]
    edges = from_feature[graph.w[from_feature].abs().argsort(descending=True)[:3]]
    heads = split_by_head(model, tset, tokens, graph, edges)
    base = real_readout(model, tset, tokens, graph, frozen_hooks(fp, fp.mlp_out))
    row = {int(n): i for i, n in enumerate(destinations(graph))}
    parts = torch.nonzero(heads.via != RESID).flatten()
    for i in parts[heads.w[parts].abs().argsort(descending=True)[:4]].tolist():
        a, h = divmod(int(heads.via[i]), fp.n_heads)
        src, s = int(heads.src[i]), int(heads.src_pos[i])
        x = write_of(fp, graph, src)

        def remove(t: Tensor, hook: Any, s: int = s, h: int = h, x: Tensor = x) -> Tensor:
            t = t.clone()
            t[0, s, h] -= x
            return t

        hooks = frozen_hooks(fp, fp.mlp_out, [(f"blocks.{a}.hook_v_input", remove)])
        changed = real_readout(model, tset, tokens, graph, hooks)
        delta = (base - changed)[row[int(heads.dst[i])]].item()
        assert delta == pytest.approx(heads.w[i].item(), abs=TOL * max(1.0, abs(delta)))


# --------------------------------------------------------------------------------------------
# pruning and the beam search on a hand-built graph


def hand_graph() -> PromptGraph:
    """12 nodes: features f0..f6 (0..6), tokens t0, t1 (7, 8), error e0 (9), bias b0 (10),
    target T (11). T <- f2 6, f3 -3, e0 0.6, b0 0.4; f2 <- f0 5, t0 3; f3 <- f1 1, t1 3;
    f0 <- t0 1; f1 <- t1 2; f4 <- t0 1, f6 0.5; f5 <- f4 1; f6 <- t1 1 (f4..f6 miss T)."""
    F, T, E, B, TG = (int(k) for k in list(NodeKind)[:5])  # HEAD occurs in stored graphs only
    edges = [
        (2, 11, 6.0), (3, 11, -3.0), (9, 11, 0.6), (10, 11, 0.4),
        (0, 2, 5.0), (7, 2, 3.0), (1, 3, 1.0), (8, 3, 3.0),
        (7, 0, 1.0), (8, 1, 2.0), (7, 4, 1.0), (6, 4, 0.5), (4, 5, 1.0), (8, 6, 1.0),
    ]  # fmt: skip
    src, dst, w = (torch.tensor(c) for c in zip(*edges, strict=True))
    kind = torch.tensor([F] * 7 + [T, T, E, B, TG])
    graph = PromptGraph(
        tokens=torch.tensor([5, 6]),
        n_layers=3,
        kind=kind,
        layer=torch.tensor([0, 0, 1, 1, 1, 2, 0, -1, -1, 0, 0, 3]),
        pos=torch.tensor([0, 1, 1, 1, 1, 1, 1, 0, 1, 1, -1, 1]),
        index=torch.arange(12),
        activation=torch.tensor([1.0, 2, 8, 4, 1.5, 1, 1, 1, 1, 1, 1, 4]),
        in_total=torch.zeros(12),
        src=src,
        dst=dst,
        w=w.float(),
        targets=(LogitTarget(3, 1),),
    )
    graph.in_total = graph.incoming_totals()
    return graph


def test_influence_matches_dense_inverse() -> None:
    graph = hand_graph()
    weights = torch.zeros(12)
    weights[11] = 1.0
    A = torch.zeros(12, 12, dtype=torch.float64)
    A[graph.dst, graph.src] = normalized_weights(graph).double()
    expected = weights.double() @ torch.linalg.inv(torch.eye(12, dtype=torch.float64) - A) - weights
    got = influence(graph, weights, normalized_weights(graph))
    assert torch.allclose(got.double(), expected, atol=1e-6)
    by_hand = {2: 0.6, 0: 0.375, 3: 0.3, 1: 0.075, 9: 0.06, 10: 0.04, 7: 0.6, 8: 0.3, 4: 0.0}
    assert {k: round(got[k].item(), 6) for k in by_hand} == by_hand


def keys(graph: PromptGraph) -> set[int]:
    """The hand graph's node ids (stored in `index`) left in `graph`."""
    return set(graph.index.tolist())


def test_prune_hand_built() -> None:
    graph = hand_graph()
    # node influence: f2 .6, f0 .375, f3 .3 hold > 80% of 1.45; f1, e0, b0, f4..f6 go
    pruned = prune(graph, node_threshold=0.8, edge_threshold=0.98)
    assert keys(pruned) == {0, 2, 3, 7, 8, 11}
    assert pruned.n_edges == 6
    assert pruned.meta["node_threshold"] == 0.8
    assert pruned.influence is not None and pruned.influence[-1] == 0.0
    # edge scores .667 (T<-f2), .417 (f2<-f0, f0<-t0), .333 (T<-f3, f3<-t1), .25 (f2<-t0):
    # 60% keeps the first three; f3 and t1 are left dangling and dropped
    pruned = prune(graph, node_threshold=0.8, edge_threshold=0.6)
    assert keys(pruned) == {0, 2, 7, 11}
    edge_keys = {
        (int(pruned.index[s]), int(pruned.index[d]))
        for s, d in zip(pruned.src, pruned.dst, strict=True)
    }
    assert edge_keys == {(2, 11), (0, 2), (7, 0)}
    assert torch.equal(pruned.w, torch.tensor([6.0, 5.0, 1.0]))


def test_top_paths_hand_built() -> None:
    graph = hand_graph()
    (best, *_) = top_paths(graph, depth=3, branches=1)
    assert list(best.nodes) == [7, 0, 2, 11]  # t0 -> f0 -> f2 -> T
    assert best.score == pytest.approx(1.0 * 5.0 / 1.0 * 6.0 / 8.0)  # w x (w / act) x ...
    paths = top_paths(graph, depth=2, branches=2)
    got = [(p.nodes, round(p.score, 6)) for p in paths]
    assert got == [
        ((0, 2, 11), 3.75),
        ((7, 2, 11), 2.25),
        ((8, 3, 11), -2.25),
        ((1, 3, 11), -0.75),
    ]
    with pytest.raises(IngestError):
        top_paths(graph, depth=0, branches=1)


def test_top_path_is_in_pruned_graph(logit_graph: PromptGraph) -> None:
    pruned = prune(logit_graph)
    assert 0 < pruned.n_nodes < logit_graph.n_nodes
    assert int((pruned.kind == NodeKind.TARGET).sum()) == 1
    kept = {
        (pruned.node_key(int(s)), pruned.node_key(int(d)))
        for s, d in zip(pruned.src, pruned.dst, strict=True)
    }
    best = top_paths(logit_graph, depth=3, branches=3)[0]
    for e in best.edges:
        s, d = int(logit_graph.src[e]), int(logit_graph.dst[e])
        assert (logit_graph.node_key(s), logit_graph.node_key(d)) in kept


# --------------------------------------------------------------------------------------------
# errors, and the toy model


def test_bad_targets_raise(model: HookedTransformer, tokens: Tensor) -> None:
    partial = random_transcoders([0, 2])
    with pytest.raises(IngestError, match="no transcoder"):
        attribute(model, partial, tokens, FeatureTarget(1, 0, 0))
    with pytest.raises(IngestError, match="outside the prompt"):
        attribute(model, partial, tokens, LogitTarget(3, pos=N_POS))
    with pytest.raises(IngestError, match="d_model"):
        attribute(model, partial, tokens, DirectionTarget(torch.ones(5)))


def test_toy_model_greater_than() -> None:
    toy = pytest.importorskip("circuitcat.ingest.toy.model")
    if not (toy.WEIGHTS_DIR / toy.MODEL_FILE).is_file():
        pytest.skip("toy weights not trained yet (circuitcat toy train)")
    from circuitcat.ingest.tasks import greater_than

    model, tset = toy.load_toy_model(), toy.load_toy_transcoders()
    prompt = greater_than(model.tokenizer, n=1).prompts[0]
    target = metric_direction(model, prompt.correct, prompt.incorrect)
    start = time.perf_counter()
    graph = attribute(model, tset, torch.tensor(prompt.tokens), target)
    seconds = time.perf_counter() - start
    assert_complete(graph)
    with torch.no_grad():
        logits = model(torch.tensor(prompt.tokens)[None])[0, -1]
    diff = logits[list(prompt.correct)].mean() - logits[list(prompt.incorrect)].mean()
    assert graph.in_total[graph.target_nodes].item() == pytest.approx(diff.item(), abs=1e-4)
    assert prune(graph).n_nodes > 1
    n_feat = int((graph.kind == NodeKind.FEATURE).sum())
    print(f"toy: {len(prompt.tokens)} tokens, {n_feat} features, {seconds:.2f} s per prompt")
