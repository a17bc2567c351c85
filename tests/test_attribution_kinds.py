"""Per-prompt attribution for every transcoder kind: JumpReLU (thresholds of both signs), TopK,
skip connections, JumpReLU + skip, cross-layer transcoders (CLT) and a CLT with skips, on
sequential LayerNorm (GPT-2), parallel (GPT-NeoX) and RMSNorm (Llama) blocks.

On each: the frozen model reproduces the real one; every row adds up; edges match ablations in
the frozen model, and in the real model with patterns, norm scales and the MLP outputs frozen
except the skip connections, which stay live on the real MLP input (so an edge through a skip
is measured, not assumed); a CLT feature is removed from every layer it writes to. Head splits
add up, with skip routes among them.

`pytest -s tests/test_attribution_kinds.py` prints the measured errors per case.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import Tensor

from circuitcat.ingest.attribution import (
    RESID,
    FeatureTarget,
    LogitTarget,
    NodeKind,
    frozen_forward,
    metric_direction,
    split_by_head,
)
from circuitcat.ingest.transcoders.transcoder import Transcoder, TranscoderConfig, TranscoderSet

from .test_attribution import (
    TOL,
    assert_complete,
    frozen_ablation_error,
    pick_edges,
    real_ablation_error,
)
from .test_attribution_families import (
    N_POS,
    Case,
    family_model,
    make_case,
    real_readout,
)

D_MODEL, D_TC, N_LAYERS = 32, 48, 3
KINDS = ("jumprelu", "topk", "skip", "jumprelu+skip", "clt", "clt+skip")
CASES = [(f, k) for f in ("gpt2", "neox", "llama") for k in KINDS]


def kind_set(kind: str, seed: int = 1) -> TranscoderSet:
    """Random sparse transcoders of one kind on layers 0..2 (a CLT's layer l writes to l..2)."""
    gen = torch.Generator().manual_seed(seed)

    def randn(*shape: int) -> Tensor:
        return torch.randn(*shape, generator=gen)

    activation = "jumprelu" if "jumprelu" in kind else "topk:6" if kind == "topk" else "relu"
    tcs = {}
    for layer in range(N_LAYERS):
        cfg = TranscoderConfig(
            D_MODEL, D_MODEL, D_TC, layer, f"blocks.{layer}.ln2.hook_normalized",
            f"blocks.{layer}.hook_mlp_out", activation, skip="skip" in kind,
            n_outputs=N_LAYERS - layer if "clt" in kind else 1,
        )  # fmt: skip
        tc = Transcoder(cfg)
        with torch.no_grad():
            tc.W_enc.copy_(randn(D_MODEL, D_TC) / D_MODEL**0.5)
            tc.b_enc.copy_(-1.0 + 0.2 * randn(D_TC))
            if kind == "topk":  # TopK keeps negative pre-activations too: let some be picked
                tc.b_enc.sub_(1.5)
            tc.b_dec.copy_(0.1 * randn(D_MODEL))
            tc.W_dec.copy_(0.5 * randn(D_TC, D_MODEL) / D_MODEL**0.5)
            tc.b_dec_out.copy_(0.1 * randn(D_MODEL))
            if tc.threshold is not None:  # both signs: a negative one keeps pre in (t, 0)
                tc.b_enc.add_(0.8)
                tc.threshold.copy_(-0.3 + 0.9 * torch.rand(D_TC, generator=gen))
            if tc.W_skip is not None:
                tc.W_skip.copy_(0.3 * randn(D_MODEL, D_MODEL) / D_MODEL**0.5)
            if tc.W_dec_after is not None:
                tc.W_dec_after.copy_(0.5 * randn(*tc.W_dec_after.shape) / D_MODEL**0.5)
        tcs[layer] = tc
    return TranscoderSet(f"random-{kind}", "tiny", "circuitcat-transcoders", "test", tcs)


@pytest.fixture(scope="module", params=CASES, ids=[f"{f}-{k}" for f, k in CASES])
def case(request: pytest.FixtureRequest) -> Case:
    family, kind = request.param
    model = family_model(family)
    targets = [LogitTarget(7), metric_direction(model, [1, 2], [4, 5]), FeatureTarget(2, 6, 11)]
    return make_case(f"{family}-{kind}", model, kind_set(kind), targets)


def report(case: Case, what: str, value: float) -> None:
    print(f"\n{case.name:20s} {what:30s} {value:.2e}")


def test_the_kind_shows_in_the_frozen_prompt(case: Case) -> None:
    fp, kind = case.fp, case.name.split("-", 1)[1]
    assert bool(fp.skip) == ("skip" in kind)
    n_feat = int(fp.feat_act.numel())
    assert n_feat > 0
    if "clt" in kind:  # a layer-l feature writes to l..2
        assert int(fp.write_feat.numel()) == int((N_LAYERS - fp.feat_layer).sum())
    else:
        assert int(fp.write_feat.numel()) == n_feat
    if kind in ("topk", "jumprelu"):  # negative activations are kept as features
        assert bool((fp.feat_act < 0).any())
    if kind == "topk":
        per_cell = torch.bincount(fp.feat_layer * N_POS + fp.feat_pos)
        assert int(per_cell.max()) == 6


def test_frozen_forward_reproduces_model(case: Case) -> None:
    model, fp = case.model, case.fp
    run = frozen_forward(fp)
    with torch.no_grad():
        _, cache = model.run_with_cache(case.tokens[None])
    final = cache[f"blocks.{fp.n_layers - 1}.hook_resid_post"][0]
    diff = (run.resid_final - final).abs().max().item()
    report(case, "reproduction max abs diff", diff)
    assert diff < TOL * max(1.0, final.abs().max().item())


def test_completeness(case: Case) -> None:
    report(case, "completeness max rel residual", assert_complete(case.graph))


def test_edges_match_ablation_in_frozen_model(case: Case) -> None:
    worst = frozen_ablation_error(case.fp, case.graph, pick_edges(case.graph))
    report(case, "frozen ablation max rel err", worst)
    assert worst < TOL


# --------------------------------------------------------------------------------------------
# the real model, frozen but for the skip connections


def live_skip_hooks(case: Case, const: Tensor) -> list[tuple[str, Callable[..., Any]]]:
    """Patterns and norm scales frozen; hook_mlp_out = `const` + the skip of the live input."""
    fp, stash = case.fp, {}

    def scale(value: Tensor) -> Callable[..., Tensor]:
        return lambda t, hook: value.reshape(1, -1, 1)

    def keep(t: Tensor, hook: Any, a: int) -> None:
        stash[a] = t[0]

    def out(t: Tensor, hook: Any, a: int) -> Tensor:
        skip = stash[a] @ fp.skip[a] if a in fp.skip else 0.0
        return (const[a] + skip)[None]

    hooks: list[tuple[str, Callable[..., Any]]] = [("ln_final.hook_scale", scale(fp.final_scale))]
    for a in range(fp.n_layers):
        hooks += [
            (f"blocks.{a}.attn.hook_pattern", lambda t, hook, a=a: fp.pattern[a][None]),
            (f"blocks.{a}.ln1.hook_scale", scale(fp.attn_scale[a])),
            (f"blocks.{a}.ln2.hook_scale", scale(fp.mlp_scale[a])),
            (f"blocks.{a}.ln2.hook_normalized", lambda t, hook, a=a: keep(t, hook, a)),
            (f"blocks.{a}.hook_mlp_out", lambda t, hook, a=a: out(t, hook, a)),
        ]
    return hooks


def without(case: Case, const: Tensor, node: int) -> Tensor:
    """`const` with source `node`'s writes removed (every layer a CLT feature writes to)."""
    fp, graph = case.fp, case.graph
    const = const.clone()
    if graph.kind[node] == NodeKind.ERROR:
        const[int(graph.layer[node]), int(graph.pos[node])] -= fp.errors[graph.layer[node]][
            graph.pos[node]
        ]
        return const
    i = int((graph.kind[:node] == NodeKind.FEATURE).sum())
    for w in torch.nonzero(fp.write_feat == i).flatten().tolist():
        const[int(fp.write_layer[w]), int(fp.feat_pos[i])] -= fp.feat_act[i] * fp.write_dec[w]
    return const


def test_edges_match_ablation_in_real_model(case: Case) -> None:
    fp, graph = case.fp, case.graph
    const = fp.mlp_out.clone()
    for a, skip in fp.skip.items():
        const[a] -= fp.mlp_in[a] @ skip
    base = real_readout(case, live_skip_hooks(case, const))
    worst = real_ablation_error(
        graph,
        base,
        lambda src: real_readout(case, live_skip_hooks(case, without(case, const, src))),
        per_kind=5,
    )
    report(case, "real ablation max rel err", worst)
    assert worst < TOL


def test_split_by_route_adds_up(case: Case) -> None:
    graph = case.graph
    heads = split_by_head(case.model, case.tset, case.tokens, graph, batch_size=32)
    sums = torch.zeros(graph.n_edges).index_add_(0, heads.edge, heads.w)
    splittable = graph.kind[graph.src] != NodeKind.BIAS
    err = (sums - graph.w)[splittable].abs().max().item()
    report(case, "route split max abs err", err)
    assert err < TOL * max(1.0, graph.w.abs().max().item())
    pairs = torch.stack([heads.edge, heads.via], 1)
    assert len(torch.unique(pairs, dim=0)) == len(pairs)  # one row per (edge, route)
    names = set(heads.via_names())
    assert ("skip:0" in names) == bool(case.fp.skip)
    # the skip of layer m reads what is written below it and feeds layers above it
    skip_rows = heads.via < RESID
    m = -2 - heads.via[skip_rows]
    src, dst = heads.src[skip_rows], heads.dst[skip_rows]
    below = torch.where(graph.kind[src] == NodeKind.TOKEN, -1, graph.layer[src])
    assert bool((below < m).all())
    into_feature = graph.kind[dst] == NodeKind.FEATURE
    assert bool((m[into_feature] < graph.layer[dst][into_feature]).all())
