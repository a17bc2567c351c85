"""The local replacement model of one prompt, its forward pass and its batched adjoint.

On one prompt, attention patterns and normalisation scales are frozen at their values on that
prompt; each MLP is replaced by its transcoder's active features, whose activations are frozen
constants, plus an error term (the real `hook_mlp_out` minus what the kept features and
`b_dec_out` write), also a constant. What is left is affine in the sources: token embeddings,
feature writes, errors and the constant terms (biases). Attribution is then exact: a source's
effect on a readout is (d readout / d source) . source, and the effects add up to the readout.

A normalisation with its scale s frozen is affine: LN(r) = (r - mean(r)) / s * w + b (RMSNorm
drops the centring and b). Transcoders read `blocks.L.ln2.hook_normalized`, which transformer_lens
3.x records before the affine (w, b), so a feature's pre-activation is
center(resid_mid) / s . W_enc[:, j] + b_enc[j] - b_dec . W_enc[:, j].

Residual levels: level k is `blocks.k.hook_resid_pre` (level n_layers is the final residual).
A layer-l MLP writes at level l + 1; the layer-l transcoder reads `blocks.l.hook_resid_mid`,
after attention l. Row `site` is where a readout reads: l for a layer-l feature, n_layers for
the final residual (logits and directions).

Dimension names (beyond those in ingest/transcoders/transcoder.py):
    n_layers, n_heads, d_head   as in HookedTransformer
    dst_pos, src_pos    query and key positions of an attention pattern
    n_feat      kept active features of the prompt, all layers, ordered by (layer, pos, index)
    rows        readouts of one batched adjoint pass (features' pre-activations or targets)
    n_nodes, n_src, n_edges     nodes, source nodes and edges of a PromptGraph
    n_bias      bias nodes: one per layer, plus one for the final constants (n_layers + 1)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from einops import einsum
from jaxtyping import Float, Int64
from torch import Tensor
from transformer_lens import HookedTransformer
from transformer_lens.utilities.architectures import POST_NORM_ARCHITECTURES

from circuitcat.catalog.errors import IngestError
from circuitcat.ingest.models import LoadedModel
from circuitcat.ingest.transcoders.load import validate_against_model
from circuitcat.ingest.transcoders.transcoder import TranscoderSet

NORMS = ("LN", "LNPre", "RMS", "RMSPre")
INPUT_HOOK = "ln2.hook_normalized"
OUTPUT_HOOK = "hook_mlp_out"


@dataclass
class FrozenPrompt:
    """Everything the local replacement model of one prompt needs, fp32 on one device.

    Run values (`emb`, `pattern`, scales, `mlp_in`, `mlp_out`, `final_in`, `logits`) were
    recorded from the real model; weights were copied from it. `errors` = `mlp_out` minus the
    kept features' writes minus `b_dec_out` (the whole `mlp_out` where a layer has no
    transcoder; with `max_features` the dropped features' writes land here too).
    """

    tokens: Int64[Tensor, " pos"]
    emb: Float[Tensor, "pos d_model"]  # blocks.0.hook_resid_pre: token + positional embedding
    pattern: Float[Tensor, "n_layers n_heads dst_pos src_pos"]
    attn_scale: Float[Tensor, "n_layers pos 1"]  # blocks.L.ln1.hook_scale
    mlp_scale: Float[Tensor, "n_layers pos 1"]  # blocks.L.ln2.hook_scale
    final_scale: Float[Tensor, "pos 1"]  # ln_final.hook_scale
    center: bool  # LayerNorm (True) or RMSNorm (False)
    mlp_in: Float[Tensor, "n_layers pos d_model"]  # blocks.L.ln2.hook_normalized
    mlp_out: Float[Tensor, "n_layers pos d_model"]  # blocks.L.hook_mlp_out
    final_in: Float[Tensor, "pos d_model"]  # ln_final.hook_normalized
    logits: Float[Tensor, "pos d_vocab"]
    ln1_w: Float[Tensor, "n_layers d_model"]
    ln1_b: Float[Tensor, "n_layers d_model"]
    lnf_w: Float[Tensor, " d_model"]
    lnf_b: Float[Tensor, " d_model"]
    W_V: Float[Tensor, "n_layers n_heads d_model d_head"]
    b_V: Float[Tensor, "n_layers n_heads d_head"]
    W_O: Float[Tensor, "n_layers n_heads d_head d_model"]
    b_O: Float[Tensor, "n_layers d_model"]
    W_U: Float[Tensor, "d_model d_vocab"]
    b_U: Float[Tensor, " d_vocab"]
    W_enc: dict[int, Float[Tensor, "d_model d_transcoder"]]
    enc_bias: dict[int, Float[Tensor, " d_transcoder"]]  # b_enc - b_dec @ W_enc
    b_dec_out: Float[Tensor, "n_layers d_model"]  # zeros where a layer has no transcoder
    feat_layer: Int64[Tensor, " n_feat"]
    feat_pos: Int64[Tensor, " n_feat"]
    feat_index: Int64[Tensor, " n_feat"]
    feat_act: Float[Tensor, " n_feat"]
    feat_dec: Float[Tensor, "n_feat d_model"]  # the features' W_dec rows
    errors: Float[Tensor, "n_layers pos d_model"]
    n_active: int  # active features before max_features

    @property
    def n_layers(self) -> int:
        return int(self.pattern.shape[0])

    @property
    def n_heads(self) -> int:
        return int(self.pattern.shape[1])

    @property
    def n_pos(self) -> int:
        return int(self.emb.shape[0])

    @property
    def device(self) -> torch.device:
        return self.emb.device

    def scale_at(self, site: int) -> Float[Tensor, "pos 1"]:
        """The frozen normalisation scale read by a row at `site`."""
        return self.final_scale if site == self.n_layers else self.mlp_scale[site]


@dataclass(frozen=True)
class Rows:
    """Readouts, each value = center(resid at `site`)[pos] / scale[pos] . read + const.

    The whole const belongs to bias node `site` (a feature's encoder bias; for final rows the
    ln_final bias, b_U and any offset).
    """

    site: Int64[Tensor, " rows"]
    pos: Int64[Tensor, " rows"]
    read: Float[Tensor, "rows d_model"]
    const: Float[Tensor, " rows"]

    def __len__(self) -> int:
        return int(self.site.shape[0])

    def take(self, idx: Int64[Tensor, " k"]) -> Rows:
        return Rows(self.site[idx], self.pos[idx], self.read[idx], self.const[idx])


@dataclass(frozen=True)
class FrozenRun:
    """One forward pass of the local replacement model."""

    resid_mid: Float[Tensor, "n_layers pos d_model"]
    resid_final: Float[Tensor, "pos d_model"]
    bias: Float[Tensor, " n_bias"]  # the scale each layer's constant terms were run with


@dataclass(frozen=True)
class AdjointStep:
    """The gradient of a batch of rows at one residual level.

    `grad` is d row / d resid_pre[level]; `bias` is d row / d (scale of the constant terms of
    attention layer `level`: ln1 b, b_V, b_O), zero at level n_layers; `heads[:, h]` is the part
    of `grad` that flows through head (level, h) (first attention hop), when asked for.
    """

    level: int
    grad: Float[Tensor, "rows pos d_model"]
    bias: Float[Tensor, " rows"]
    heads: Float[Tensor, "rows n_heads pos d_model"] | None


# --------------------------------------------------------------------------------------------
# capture


def hooked(model: HookedTransformer | LoadedModel) -> HookedTransformer:
    return model.model if isinstance(model, LoadedModel) else model


def freeze(
    model: HookedTransformer | LoadedModel,
    tset: TranscoderSet,
    tokens: Sequence[int] | Int64[Tensor, " pos"],
    *,
    max_features: int | None = None,
    device: str | torch.device | None = None,
) -> FrozenPrompt:
    """Run `model` once on `tokens` and freeze its local replacement model (fp32, `device`).

    `max_features` keeps the strongest active features by activation x ||W_dec row|| and folds
    the others' writes into the error terms. Raises IngestError for architectures this
    linearisation does not cover.
    """
    ht = hooked(model)
    check_supported(ht, tset)
    validate_against_model(tset, ht)  # e.g. ln2 affine folded into encoders that expect it
    dev = torch.device(device) if device is not None else next(ht.parameters()).device
    toks = torch.as_tensor(tokens, dtype=torch.long).reshape(-1)
    if toks.numel() == 0:
        raise IngestError("attribution needs a prompt of at least one token")
    run = _run_model(ht, toks, dev)
    weights = _copy_weights(ht, tset, dev)
    feats = _active_features(tset, run["mlp_in"], max_features, dev)
    errors = run["mlp_out"] - weights["b_dec_out"][:, None, :]
    errors = errors.index_put(
        (feats["feat_layer"], feats["feat_pos"]),
        -feats["feat_act"][:, None] * feats["feat_dec"],
        accumulate=True,
    )
    return FrozenPrompt(tokens=toks.to(dev), errors=errors, **run, **weights, **feats)


def check_supported(model: HookedTransformer, tset: TranscoderSet) -> None:
    """Raise IngestError unless the model and set fit the local replacement model here."""
    cfg = model.cfg
    if cfg.normalization_type not in NORMS:
        raise IngestError(
            f"attribution supports normalization_type {', '.join(NORMS)}; model "
            f"'{cfg.model_name}' has {cfg.normalization_type!r}"
        )
    post_norm = cfg.original_architecture in POST_NORM_ARCHITECTURES
    if (
        cfg.attn_only
        or cfg.parallel_attn_mlp
        or cfg.use_normalization_before_and_after
        or post_norm
    ):
        raise IngestError(
            f"model '{cfg.model_name}': attribution supports sequential pre-norm blocks with an "
            "MLP (not attn_only, parallel_attn_mlp, post-norm or norm before-and-after)"
        )
    for layer, tc in sorted(tset.transcoders.items()):
        hooks_ok = tc.cfg.input_hook == f"blocks.{layer}.{INPUT_HOOK}" and (
            tc.cfg.output_hook == f"blocks.{layer}.{OUTPUT_HOOK}"
        )
        if not hooks_ok or not 0 <= layer < cfg.n_layers:
            raise IngestError(
                f"transcoder set '{tset.name}' layer {layer} reads '{tc.cfg.input_hook}' and "
                f"writes '{tc.cfg.output_hook}'; attribution needs blocks.{layer}.{INPUT_HOOK} -> "
                f"blocks.{layer}.{OUTPUT_HOOK} within the model's {cfg.n_layers} layers"
            )
        if tc.cfg.activation != "relu":
            raise IngestError(f"layer {layer}: attribution needs ReLU transcoders")


def _run_model(model: HookedTransformer, toks: Tensor, dev: torch.device) -> dict[str, Any]:
    n = model.cfg.n_layers
    names = {"blocks.0.hook_resid_pre", "ln_final.hook_scale", "ln_final.hook_normalized"}
    for layer in range(n):
        names |= {f"blocks.{layer}.attn.hook_pattern", f"blocks.{layer}.hook_mlp_out"}
        names |= {f"blocks.{layer}.ln1.hook_scale", f"blocks.{layer}.ln2.hook_scale"}
        names.add(f"blocks.{layer}.{INPUT_HOOK}")
    model_dev = next(model.parameters()).device
    with torch.no_grad():
        logits, cache = model.run_with_cache(
            toks[None].to(model_dev), names_filter=lambda name: name in names
        )

    def get(name: str) -> Tensor:
        return cache[name][0].to(dev, torch.float32)

    def stack(site: str) -> Tensor:
        return torch.stack([get(f"blocks.{layer}.{site}") for layer in range(n)])

    attn_scale = stack("ln1.hook_scale")
    if attn_scale.ndim == 4:  # use_split_qkv_input: one (equal) scale per head
        attn_scale = attn_scale[:, :, 0]
    return {
        "emb": get("blocks.0.hook_resid_pre"),
        "pattern": stack("attn.hook_pattern"),
        "attn_scale": attn_scale,
        "mlp_scale": stack("ln2.hook_scale"),
        "final_scale": get("ln_final.hook_scale"),
        "center": model.cfg.normalization_type in ("LN", "LNPre"),
        "mlp_in": stack(INPUT_HOOK),
        "mlp_out": stack(OUTPUT_HOOK),
        "final_in": get("ln_final.hook_normalized"),
        "logits": logits[0].to(dev, torch.float32),
    }


def _copy_weights(
    model: HookedTransformer, tset: TranscoderSet, dev: torch.device
) -> dict[str, Any]:
    cfg = model.cfg

    def f32(t: Tensor) -> Tensor:
        return t.detach().to(dev, torch.float32)

    def norm_param(module: torch.nn.Module, name: str, fill: float) -> Tensor:
        value = getattr(module, name, None)
        if isinstance(value, Tensor):
            return f32(value)
        return torch.full((cfg.d_model,), fill, device=dev)

    blocks = list(model.blocks)
    b_dec_out = torch.zeros(cfg.n_layers, cfg.d_model, device=dev)
    W_enc, enc_bias = {}, {}
    for layer, tc in tset.transcoders.items():
        W_enc[layer] = f32(tc.W_enc)
        enc_bias[layer] = f32(tc.b_enc) - f32(tc.b_dec) @ W_enc[layer]
        b_dec_out[layer] = f32(tc.b_dec_out)
    return {
        "ln1_w": torch.stack([norm_param(b.ln1, "w", 1.0) for b in blocks]),
        "ln1_b": torch.stack([norm_param(b.ln1, "b", 0.0) for b in blocks]),
        "lnf_w": norm_param(model.ln_final, "w", 1.0),
        "lnf_b": norm_param(model.ln_final, "b", 0.0),
        "W_V": torch.stack([f32(b.attn.W_V) for b in blocks]),
        "b_V": torch.stack([f32(b.attn.b_V) for b in blocks]),
        "W_O": torch.stack([f32(b.attn.W_O) for b in blocks]),
        "b_O": torch.stack([f32(b.attn.b_O) for b in blocks]),
        "W_U": f32(model.W_U),
        "b_U": f32(model.b_U),
        "W_enc": W_enc,
        "enc_bias": enc_bias,
        "b_dec_out": b_dec_out,
    }


def _active_features(
    tset: TranscoderSet, mlp_in: Tensor, max_features: int | None, dev: torch.device
) -> dict[str, Any]:
    long = torch.zeros(0, dtype=torch.long, device=dev)
    cols: dict[str, list[Tensor]] = {
        "feat_layer": [long],
        "feat_pos": [long],
        "feat_index": [long],
        "feat_act": [torch.zeros(0, device=dev)],
        "feat_dec": [torch.zeros(0, mlp_in.shape[-1], device=dev)],
    }
    with torch.no_grad():
        for layer, tc in sorted(tset.transcoders.items()):
            z = tc.encode(mlp_in[layer].to(tc.W_enc)).to(dev, torch.float32)
            pos, idx = torch.nonzero(z > 0, as_tuple=True)
            cols["feat_layer"].append(torch.full_like(pos, layer))
            cols["feat_pos"].append(pos)
            cols["feat_index"].append(idx)
            cols["feat_act"].append(z[pos, idx])
            dec = tc.W_dec.detach()[idx.to(tc.W_dec.device)]
            cols["feat_dec"].append(dec.to(dev, torch.float32))
    feats = {name: torch.cat(parts) for name, parts in cols.items()}
    n_active = int(feats["feat_act"].numel())
    if max_features is not None and n_active > max_features:
        strength = feats["feat_act"] * feats["feat_dec"].norm(dim=-1)
        keep = torch.topk(strength, max_features).indices.sort().values  # keeps the order
        feats = {name: t[keep] for name, t in feats.items()}
    return {**feats, "n_active": n_active}


# --------------------------------------------------------------------------------------------
# forward


def normalize(x: Tensor, scale: Tensor, center: bool) -> Tensor:
    """x centred (LayerNorm; not RMSNorm) and divided by the frozen scale, without w and b.

    Centring is a symmetric projection and the scale a constant, so this map is its own
    transpose: the adjoint uses it on gradients too.
    """
    return ((x - x.mean(-1, keepdim=True)) if center else x) / scale


def frozen_forward(
    fp: FrozenPrompt,
    *,
    acts: Float[Tensor, " n_feat"] | None = None,
    errors: Float[Tensor, "n_layers pos d_model"] | None = None,
    emb: Float[Tensor, "pos d_model"] | None = None,
    bias: Float[Tensor, " n_bias"] | None = None,
) -> FrozenRun:
    """Run the local replacement model, optionally with sources changed.

    `acts` replaces the frozen feature activations, `errors` the error terms, `emb` the token
    embeddings, and `bias[l]` scales the constant terms of layer l (ln1 b, b_V, b_O, b_dec_out,
    and in `readout` the encoder bias of layer-l features; `bias[n_layers]` the final ones).
    With nothing changed it reproduces the real model's residual stream.
    """
    acts = fp.feat_act if acts is None else acts
    errors = fp.errors if errors is None else errors
    bias = torch.ones(fp.n_layers + 1, device=fp.device) if bias is None else bias
    writes = torch.zeros_like(fp.mlp_out).index_put(
        (fp.feat_layer, fp.feat_pos), acts[:, None] * fp.feat_dec, accumulate=True
    )
    r = fp.emb if emb is None else emb
    mids = []
    for a in range(fp.n_layers):
        ln = normalize(r, fp.attn_scale[a], fp.center) * fp.ln1_w[a] + bias[a] * fp.ln1_b[a]
        v = einsum(ln, fp.W_V[a], "pos d_model, n_heads d_model d_head -> n_heads pos d_head")
        v = v + bias[a] * fp.b_V[a][:, None, :]
        z = einsum(fp.pattern[a], v, "n_heads dst src, n_heads src d_head -> n_heads dst d_head")
        attn = einsum(z, fp.W_O[a], "n_heads pos d_head, n_heads d_head d_model -> pos d_model")
        r = r + attn + bias[a] * fp.b_O[a]
        mids.append(r)
        r = r + writes[a] + bias[a] * fp.b_dec_out[a] + errors[a]
    return FrozenRun(resid_mid=torch.stack(mids), resid_final=r, bias=bias)


def readout(fp: FrozenPrompt, rows: Rows, run: FrozenRun) -> Float[Tensor, " rows"]:
    """The rows' values on a frozen run (the whole const scaled by `run.bias[site]`)."""
    resid = torch.cat([run.resid_mid, run.resid_final[None]])  # indexed by site
    scale = torch.cat([fp.mlp_scale, fp.final_scale[None]])
    x = normalize(resid[rows.site, rows.pos], scale[rows.site, rows.pos], fp.center)
    return (x * rows.read).sum(-1) + run.bias[rows.site] * rows.const


def real_values(fp: FrozenPrompt, rows: Rows) -> Float[Tensor, " rows"]:
    """The rows' values from the real model's recorded normalised residuals."""
    normalized = torch.cat([fp.mlp_in, fp.final_in[None]])
    return (normalized[rows.site, rows.pos] * rows.read).sum(-1) + rows.const


# --------------------------------------------------------------------------------------------
# adjoint


def adjoint(fp: FrozenPrompt, rows: Rows, *, heads: bool = False) -> Iterator[AdjointStep]:
    """Backpropagate a batch of rows, all at one site, down the frozen model.

    Yields one AdjointStep per residual level, from the rows' site (level n_layers for final
    rows, level l after attention l for layer-l rows) down to level 0. Explicit transposed
    products, batched over rows: no autograd, no Python loop over rows.
    """
    site = int(rows.site[0])
    if bool((rows.site != site).any()):
        raise IngestError("adjoint: all rows of one batch must read at the same site")
    n_rows, n_pos = len(rows), fp.n_pos
    seed = torch.zeros(n_rows, n_pos, fp.emb.shape[1], device=fp.device)
    scale = fp.scale_at(site)[rows.pos]
    seed[torch.arange(n_rows, device=fp.device), rows.pos] = normalize(rows.read, scale, fp.center)
    g = seed
    if site == fp.n_layers:
        yield AdjointStep(site, g, torch.zeros(n_rows, device=fp.device), None)
    for a in range(min(site, fp.n_layers - 1), -1, -1):
        g, step = _attention_adjoint(fp, a, g, heads)
        yield step


def _attention_adjoint(
    fp: FrozenPrompt, a: int, g_mid: Tensor, heads: bool
) -> tuple[Tensor, AdjointStep]:
    g_z = einsum(
        g_mid, fp.W_O[a], "rows dst d_model, n_heads d_head d_model -> rows n_heads dst d_head"
    )
    g_v = einsum(
        fp.pattern[a], g_z, "n_heads dst src, rows n_heads dst d_head -> rows n_heads src d_head"
    )
    bias = einsum(g_mid, fp.b_O[a], "rows pos d_model, d_model -> rows")
    bias = bias + einsum(g_v, fp.b_V[a], "rows n_heads pos d_head, n_heads d_head -> rows")
    scale = fp.attn_scale[a]
    if heads:
        g_ln_h = einsum(
            g_v,
            fp.W_V[a],
            "rows n_heads pos d_head, n_heads d_model d_head -> rows n_heads pos d_model",
        )
        g_ln = g_ln_h.sum(1)
        per_head = normalize(g_ln_h * fp.ln1_w[a], scale, fp.center)
    else:
        g_ln = einsum(
            g_v, fp.W_V[a], "rows n_heads pos d_head, n_heads d_model d_head -> rows pos d_model"
        )
        per_head = None
    bias = bias + einsum(g_ln, fp.ln1_b[a], "rows pos d_model, d_model -> rows")
    g_pre = g_mid + normalize(g_ln * fp.ln1_w[a], scale, fp.center)
    return g_pre, AdjointStep(a, g_pre, bias, per_head)
