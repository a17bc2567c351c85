"""Per-prompt attribution on every block shape researchers use, as transformer_lens 3.9 builds it.

Tiny random HookedTransformers, built in-process from HookedTransformerConfig, stand in for
GPT-2 (sequential LayerNorm), GPT-NeoX / Pythia (parallel attention and MLP, rotary), Llama
(RMSNorm, rotary, grouped-query attention), Qwen2 (plus q/k/v biases), Qwen3 (plus q/k norms),
Gemma-2 (post-attention and post-MLP norms, attention and logit soft-capping, local windows) and
Gemma-3 (post norms, q/k norms, one key-value head, local/global rotary bases); each unprocessed
and with fold_ln. On each: the frozen model reproduces the real residual stream, every graph
row adds up, and edges match ablations, in the frozen model and in the real one with patterns,
scales and MLP outputs frozen by hooks.

`pytest -s tests/test_attribution_families.py` prints the measured errors per family.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
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
    Target,
    attribute,
    check_supported,
    freeze,
    frozen_forward,
    metric_direction,
    split_by_head,
)
from circuitcat.ingest.attribution.frozen import readout
from circuitcat.ingest.attribution.graph import destination_rows
from circuitcat.ingest.transcoders.transcoder import TranscoderSet

from .test_attribution import (
    TOL,
    assert_complete,
    destinations,
    frozen_ablation_error,
    pick_edges,
    random_transcoders,
    real_ablation_error,
    write_of,
)
from .test_attribution import (
    frozen_hooks as attribution_frozen_hooks,
)

N_POS, D_VOCAB = 8, 50
BASE: dict[str, Any] = dict(
    n_layers=3, d_model=32, n_heads=4, d_head=8, d_mlp=64, n_ctx=16, d_vocab=D_VOCAB
)
ROTARY: dict[str, Any] = dict(positional_embedding_type="rotary", rotary_dim=8)
LLAMA: dict[str, Any] = dict(
    normalization_type="RMS", n_key_value_heads=2, gated_mlp=True, final_rms=True, act_fn="silu"
)
GEMMA: dict[str, Any] = dict(
    LLAMA,
    act_fn="gelu_pytorch_tanh",
    use_normalization_before_and_after=True,
    use_local_attn=True,
    window_size=3,
)
GPT2_BIASES = ("b_O", "b_V", "b_Q", "b_K", "b_U", "b_in", "b_out")

# name -> (config fields, parameters given random values besides the norms' w and b)
FAMILIES: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {
    "gpt2": ({"normalization_type": "LN", "act_fn": "gelu"}, GPT2_BIASES),
    "neox": (
        {
            "normalization_type": "LN",
            "act_fn": "gelu",
            "parallel_attn_mlp": True,
            **ROTARY,
            "rotary_dim": 4,  # Pythia rotates a quarter of each head
            "original_architecture": "GPTNeoXForCausalLM",
        },
        GPT2_BIASES,
    ),
    "llama": ({**LLAMA, **ROTARY, "original_architecture": "LlamaForCausalLM"}, ()),
    "qwen2": (
        {**LLAMA, **ROTARY, "original_architecture": "Qwen2ForCausalLM"},
        ("b_Q", "_b_K", "_b_V"),
    ),
    "qwen3": (
        {**LLAMA, **ROTARY, "use_qk_norm": True, "original_architecture": "Qwen3ForCausalLM"},
        (),
    ),
    "gemma2": (
        {
            **GEMMA,
            **ROTARY,
            "attn_types": ["local", "global", "local"],
            "attn_scores_soft_cap": 1.0,  # small caps, so they change these tiny models
            "output_logits_soft_cap": 2.0,
            "original_architecture": "Gemma2ForCausalLM",
        },
        (),
    ),
    "gemma3": (
        {
            **GEMMA,
            **ROTARY,
            "n_key_value_heads": 1,
            "use_qk_norm": True,
            "attn_types": ["local", "local", "global"],
            "rotary_base": 1_000_000,
            "rotary_base_local": 10_000,
            "original_architecture": "Gemma3ForCausalLM",
        },
        (),
    ),
}
CASES = [(name, processed) for name in FAMILIES for processed in (False, True)]


# --------------------------------------------------------------------------------------------
# fixtures


def family_model(
    name: str, processed: bool = False, seed: int = 0, **extra: Any
) -> HookedTransformer:
    """A tiny random model of one family (config fields `extra` on top); norms (and the
    family's biases) randomised."""
    fields, biases = FAMILIES[name]
    cfg = HookedTransformerConfig(**{**BASE, **fields, **extra}, seed=seed, device="cpu")
    model = HookedTransformer(cfg)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # transformer_lens zeroes biases and sets norms to identity
        for pname, p in model.named_parameters():
            leaf = pname.rsplit(".", 1)[-1]
            is_norm = any(part.startswith(("ln", "q_norm", "k_norm")) for part in pname.split("."))
            if is_norm or leaf in biases:
                base = 1.0 if is_norm and leaf == "w" else 0.0
                p.copy_(base + 0.2 * torch.randn(p.shape, generator=gen))
    if processed:
        softcap = cfg.output_logits_soft_cap > 0
        model.process_weights_(fold_ln=True, center_unembed=not softcap)
    return model.eval()


@dataclass
class Case:
    name: str
    model: HookedTransformer
    tset: TranscoderSet
    tokens: Tensor
    fp: FrozenPrompt
    graph: PromptGraph


@pytest.fixture(
    scope="module", params=CASES, ids=[f"{n}-{'fold' if p else 'raw'}" for n, p in CASES]
)
def case(request: pytest.FixtureRequest) -> Case:
    name, processed = request.param
    model = family_model(name, processed)
    targets = [
        LogitTarget(7),
        metric_direction(model, [1, 2, 3], [4, 5], pos=-2),
        FeatureTarget(2, N_POS - 1, 11),
    ]
    label = f"{name}-{'fold' if processed else 'raw'}"
    return make_case(label, model, random_transcoders([0, 1, 2]), targets)


def make_case(
    name: str, model: HookedTransformer, tset: TranscoderSet, targets: list[Target]
) -> Case:
    """One case: fixed random tokens, their frozen prompt, and the graph into `targets`."""
    tokens = torch.randint(0, D_VOCAB, (N_POS,), generator=torch.Generator().manual_seed(3))
    graph = attribute(model, tset, tokens, targets, batch_size=32)
    return Case(name, model, tset, tokens, freeze(model, tset, tokens), graph)


def report(case: Case, what: str, value: float) -> None:
    print(f"\n{case.name:12s} {what:28s} {value:.2e}")


# --------------------------------------------------------------------------------------------
# the frozen model is the real model


def final_affine(model: HookedTransformer, normalized: Tensor) -> Tensor:
    """ln_final's w and b applied to ln_final.hook_normalized."""
    w, b = getattr(model.ln_final, "w", None), getattr(model.ln_final, "b", None)
    return normalized * (1.0 if w is None else w) + (0.0 if b is None else b)


def test_frozen_forward_reproduces_model(case: Case) -> None:
    model, fp = case.model, case.fp
    run = frozen_forward(fp)
    names = "hook_resid_pre" if fp.parallel else "hook_resid_mid"
    with torch.no_grad():
        logits, cache = model.run_with_cache(case.tokens[None])
    real = torch.stack([cache[f"blocks.{a}.{names}"][0] for a in range(fp.n_layers)])
    final = cache[f"blocks.{fp.n_layers - 1}.hook_resid_post"][0]
    diff = max((run.mlp_resid - real).abs().max().item(), (run.resid_final - final).abs().max())
    report(case, "reproduction max abs diff", float(diff))
    assert diff < TOL * max(1.0, final.abs().max().item())
    # logits: the frozen final residual through ln_final, W_U and the model's soft cap
    x = (
        run.resid_final - run.resid_final.mean(-1, keepdim=True)
        if fp.final_center
        else run.resid_final
    )
    pre = final_affine(model, x / fp.final_scale) @ model.W_U + model.b_U
    cap = model.cfg.output_logits_soft_cap
    got = cap * torch.tanh(pre / cap) if cap > 0 else pre
    assert (got - logits[0]).abs().max() < TOL * max(1.0, logits.abs().max().item())
    if model.cfg.positional_embedding_type == "rotary":  # the token node is the W_E row
        assert torch.equal(fp.emb, model.W_E[case.tokens].float())


def test_targets_read_the_logits_before_the_soft_cap(case: Case) -> None:
    model, graph = case.model, case.graph
    with torch.no_grad():
        logits, cache = model.run_with_cache(case.tokens[None])
        pre = final_affine(model, cache["ln_final.hook_normalized"][0]) @ model.W_U + model.b_U
    value = graph.in_total[graph.target_nodes[0]].item()
    assert value == pytest.approx(pre[-1, 7].item(), abs=1e-5)
    if model.cfg.output_logits_soft_cap > 0:
        assert abs(value - logits[0, -1, 7].item()) > 1e-3  # the cap really changes it


# --------------------------------------------------------------------------------------------
# completeness and interventions


def test_completeness(case: Case) -> None:
    rel = assert_complete(case.graph)
    report(case, "completeness max rel residual", rel)
    kinds = set(case.graph.kind[case.graph.src].tolist())
    assert kinds == {NodeKind.FEATURE, NodeKind.TOKEN, NodeKind.ERROR, NodeKind.BIAS}


def test_edges_match_ablation_in_frozen_model(case: Case) -> None:
    edges = pick_edges(case.graph)
    assert len(edges) >= 20
    worst = frozen_ablation_error(case.fp, case.graph, edges)
    report(case, "frozen ablation max rel err", worst)
    assert worst < TOL


def frozen_hooks(case: Case, mlp_out: Tensor) -> list[tuple[str, Callable[..., Any]]]:
    """Hooks that freeze the real model: patterns, every norm scale, MLP outputs."""
    post_norm = bool(case.model.cfg.use_normalization_before_and_after)
    return attribution_frozen_hooks(case.fp, mlp_out, post_norm=post_norm)


def real_readout(case: Case, hooks: list[tuple[str, Callable[..., Any]]]) -> Tensor:
    """Every destination's value on the real model run with `hooks` (targets before any cap)."""
    model, graph = case.model, case.graph
    with torch.no_grad(), model.hooks(fwd_hooks=hooks):
        _, cache = model.run_with_cache(case.tokens[None])
    final = final_affine(model, cache["ln_final.hook_normalized"][0])
    values, n_targets = [], 0
    for node in destinations(graph).tolist():
        layer, pos, index = (int(getattr(graph, c)[node]) for c in ("layer", "pos", "index"))
        if graph.kind[node] != NodeKind.TARGET:
            x = cache[f"blocks.{layer}.ln2.hook_normalized"][0, pos]
            values.append(case.tset[layer].pre_acts(x)[index])
            continue
        t = graph.targets[n_targets]
        n_targets += 1
        if isinstance(t, FeatureTarget):
            x = cache[f"blocks.{t.layer}.ln2.hook_normalized"][0, t.pos]
            values.append(case.tset[t.layer].pre_acts(x)[t.index])
        elif isinstance(t, LogitTarget):
            values.append(final[t.pos] @ model.W_U[:, t.token] + model.b_U[t.token])
        else:
            assert isinstance(t, DirectionTarget)
            values.append(final[t.pos] @ t.vector + t.offset)
    return torch.stack(values)


def test_edges_match_ablation_in_real_model(case: Case) -> None:
    """Remove a feature's (or error's) write from the real hook_mlp_out, with patterns, every
    norm scale and the other MLP outputs frozen: destinations move by the edge weights."""
    fp, graph = case.fp, case.graph

    def changed_without(src: int) -> Tensor:
        mlp_out = fp.mlp_out.clone()
        mlp_out[int(graph.layer[src]), int(graph.pos[src])] -= write_of(fp, graph, src)
        return real_readout(case, frozen_hooks(case, mlp_out))

    base = real_readout(case, frozen_hooks(case, fp.mlp_out))
    worst = real_ablation_error(graph, base, changed_without, per_kind=4)
    report(case, "real ablation max rel err", worst)
    assert worst < TOL


def test_split_by_head_respects_the_block_shape(case: Case) -> None:
    """Parts add up to each edge; a head at layer a carries a layer-l1 source only if l1 < a,
    and into a layer-l2 feature only if a <= l2 (sequential) or a < l2 (parallel blocks)."""
    graph = case.graph
    heads = split_by_head(case.model, case.tset, case.tokens, graph, batch_size=32)
    sums = torch.zeros(graph.n_edges).index_add_(0, heads.edge, heads.w)
    splittable = graph.kind[graph.src] != NodeKind.BIAS
    assert (sums - graph.w)[splittable].abs().max() < TOL * max(1.0, graph.w.abs().max().item())
    via = heads.via[heads.via != RESID]
    src, dst = heads.src[heads.via != RESID], heads.dst[heads.via != RESID]
    a = via // case.fp.n_heads
    below = torch.where(graph.kind[src] == NodeKind.TOKEN, -1, graph.layer[src])
    assert bool((a > below).all())
    into_feature = graph.kind[dst] == NodeKind.FEATURE
    limit = graph.layer[dst] - (1 if case.fp.parallel else 0)
    assert bool((a[into_feature] <= limit[into_feature]).all())
    if not case.fp.parallel:  # the destination's own layer carries too
        assert bool((a[into_feature] == graph.layer[dst][into_feature]).any())


def test_layernorm_blocks_with_an_rms_final_norm() -> None:
    """`final_rms` with LayerNorm blocks: the blocks' norms centre, ln_final does not."""
    model, tset = family_model("gpt2", final_rms=True), random_transcoders([0, 1, 2])
    tokens = torch.randint(0, D_VOCAB, (N_POS,), generator=torch.Generator().manual_seed(4))
    fp = freeze(model, tset, tokens)
    assert fp.center and not fp.final_center
    graph = attribute(model, tset, tokens, [LogitTarget(7), FeatureTarget(2, N_POS - 1, 11)])
    assert_complete(graph)
    with torch.no_grad():
        logits = model(tokens[None])[0]
    assert graph.in_total[graph.target_nodes[0]].item() == pytest.approx(
        logits[-1, 7].item(), abs=1e-5
    )
    rows = destination_rows(fp, graph.targets)
    run = frozen_forward(fp)
    assert torch.allclose(readout(fp, rows, run), graph.in_total[destinations(graph)], atol=TOL)


# --------------------------------------------------------------------------------------------
# what is still refused


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"attn_only": True}, "attn_only"),
        ({"original_architecture": "Olmo2ForCausalLM", "normalization_type": "RMS"}, "Olmo2"),
        ({"clip_qkv": 8.0}, "clip_qkv"),
        ({"normalization_type": None}, "normalization_type"),
    ],
)
def test_unsupported_configs_are_refused_naming_the_field(
    fields: dict[str, Any], named: str
) -> None:
    cfg = HookedTransformerConfig(**{**BASE, "act_fn": "gelu", **fields}, device="cpu")
    model = HookedTransformer(cfg)
    with pytest.raises(IngestError, match=named) as err:
        check_supported(model, random_transcoders([0]))
    assert "\n" not in str(err.value)
