"""`freeze`: run the real model once on a prompt and record its local replacement model.

What transformer_lens 3.9 records, and where (blocks.L. prefix omitted):
    hook_resid_pre (L = 0)  every embedding term: token (Gemma's sqrt(d_model) is multiplied
                            into `W_E` when its weights are converted), positional where added
    ln1.hook_scale          the attention input's scale (one per head with split qkv inputs)
    attn.hook_pattern       after rotary, q/k norms, soft-capping, masks and local windows
    ln1_post.hook_scale     Gemma's post-attention RMSNorm, inside hook_attn_out
    ln2.hook_scale, ln2.hook_normalized   the MLP input, before ln2's w and b
    hook_mlp_in             the residual ln2 reads (filled only with `use_hook_mlp_in`)
    hook_mlp_out            after Gemma's ln2_post: what the MLP adds to the residual stream
    ln2_post.hook_scale, ln2_post.hook_normalized   Gemma's post-MLP RMSNorm: their product is
                            the MLP module's output, which sets writing `mlp.hook_out` replace
    ln_final.hook_scale, ln_final.hook_normalized   before ln_final's w and b
The glossary of dimension names is in frozen.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from jaxtyping import Int64
from torch import Tensor
from transformer_lens import HookedTransformer
from transformer_lens.components import LayerNorm, LayerNormPre
from transformer_lens.utilities.architectures import POST_NORM_ARCHITECTURES

from circuitcat.catalog.errors import IngestError
from circuitcat.ingest.attribution.frozen import FrozenPrompt
from circuitcat.ingest.models import LoadedModel
from circuitcat.ingest.transcoders.load import validate_against_model
from circuitcat.ingest.transcoders.transcoder import TranscoderSet

NORMS = ("LN", "LNPre", "RMS", "RMSPre")
INPUT_HOOK = "ln2.hook_normalized"
RAW_INPUT_HOOK = "hook_mlp_in"  # the residual before ln2 (Gemma Scope 2 transcoders)
OUTPUT_HOOK = "hook_mlp_out"
POST_HOOKS = ("ln2_post.hook_scale", "ln2_post.hook_normalized")  # Gemma's post-MLP norm


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

    `max_features` keeps the strongest active features by |activation| x the norm of all
    their decoder rows and folds the others' writes into the error terms. Raises IngestError
    for architectures this linearisation does not cover.
    """
    ht = hooked(model)
    check_supported(ht, tset)
    validate_against_model(tset, ht)  # e.g. ln2 affine folded into encoders that expect it
    dev = torch.device(device) if device is not None else next(ht.parameters()).device
    toks = torch.as_tensor(tokens, dtype=torch.long).reshape(-1)
    if toks.numel() == 0:
        raise IngestError("attribution needs a prompt of at least one token")
    run = _run_model(ht, toks, dev, _raw_input_layers(tset), tset)
    weights = _copy_weights(ht, tset, dev)
    feats = _active_features(tset, run["mlp_in"], max_features, dev)
    errors = run["mlp_out"] - weights["b_dec_out"][:, None, :]
    for layer, skip in weights["skip"].items():
        errors[layer] -= run["mlp_in"][layer] @ skip
    fp = FrozenPrompt(tokens=toks.to(dev), errors=errors, **run, **weights, **feats)
    fp.errors = errors - fp.writes_into(fp.feat_act)
    return fp


def _unsupported(model: HookedTransformer) -> str | None:
    """The config field this linearisation cannot cover, as one line, or None."""
    cfg = model.cfg
    if cfg.normalization_type not in NORMS:
        return f"normalization_type {cfg.normalization_type!r} (supported: {', '.join(NORMS)})"
    if cfg.attn_only:
        return "attn_only=True: no MLP layers for transcoders to replace"
    if cfg.original_architecture in POST_NORM_ARCHITECTURES:
        return (
            f"original_architecture {cfg.original_architecture!r}: post-norm blocks (ln1/ln2 "
            "after each sublayer, so ln2.hook_normalized is not the MLP input)"
        )
    if cfg.clip_qkv is not None:
        return f"clip_qkv={cfg.clip_qkv}: values are clamped, which is not linear"
    if cfg.load_in_4bit:
        return "load_in_4bit=True: W_O is quantised; load the model in float32 or bfloat16"
    return None


def check_supported(model: HookedTransformer, tset: TranscoderSet) -> None:
    """Raise IngestError unless the model and set fit the local replacement model here."""
    cfg = model.cfg
    reason = _unsupported(model)
    if reason is not None:
        raise IngestError(f"attribution does not support model '{cfg.model_name}': {reason}")
    for layer, tc in sorted(tset.transcoders.items()):
        inputs = (f"blocks.{layer}.{INPUT_HOOK}", f"blocks.{layer}.{RAW_INPUT_HOOK}")
        hooks_ok = tc.cfg.input_hook in inputs and (
            tc.cfg.output_hook == f"blocks.{layer}.{OUTPUT_HOOK}"
        )
        if not hooks_ok or not 0 <= layer < cfg.n_layers:
            raise IngestError(
                f"transcoder set '{tset.name}' layer {layer} reads '{tc.cfg.input_hook}' and "
                f"writes '{tc.cfg.output_hook}'; attribution needs blocks.{layer}.{INPUT_HOOK} "
                f"(or {RAW_INPUT_HOOK}) -> blocks.{layer}.{OUTPUT_HOOK} within the model's "
                f"{cfg.n_layers} layers"
            )


def _raw_input_layers(tset: TranscoderSet) -> set[int]:
    """Layers whose transcoder reads the raw residual (`hook_mlp_in`), not ln2's output."""
    return {
        layer
        for layer, tc in tset.transcoders.items()
        if tc.cfg.input_hook.endswith(RAW_INPUT_HOOK)
    }


def _hook_names(model: HookedTransformer) -> set[str]:
    names = {"blocks.0.hook_resid_pre", "ln_final.hook_scale", "ln_final.hook_normalized"}
    post = model.cfg.use_normalization_before_and_after
    for layer in range(model.cfg.n_layers):
        names |= {f"blocks.{layer}.attn.hook_pattern", f"blocks.{layer}.{OUTPUT_HOOK}"}
        names |= {f"blocks.{layer}.ln1.hook_scale", f"blocks.{layer}.ln2.hook_scale"}
        names.add(f"blocks.{layer}.{INPUT_HOOK}")
        if post:
            names.add(f"blocks.{layer}.ln1_post.hook_scale")
    return names


def _run_model(
    model: HookedTransformer, toks: Tensor, dev: torch.device, raw: set[int], tset: TranscoderSet
) -> dict[str, Any]:
    n, names = (
        model.cfg.n_layers,
        _hook_names(model) | {f"blocks.{layer}.{RAW_INPUT_HOOK}" for layer in raw},
    )
    names |= {f"blocks.{layer}.{hook}" for layer in tset.post_norm for hook in POST_HOOKS}
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
    mlp_in, mlp_scale = stack(INPUT_HOOK), stack("ln2.hook_scale")
    for layer in raw:  # hook_mlp_in readers: the residual itself, scale 1
        mlp_in[layer] = get(f"blocks.{layer}.{RAW_INPUT_HOOK}")
        mlp_scale[layer] = 1.0
    post_scale = torch.ones_like(attn_scale)
    if model.cfg.use_normalization_before_and_after:
        post_scale = stack("ln1_post.hook_scale")
    mlp_out, out_gain = stack(OUTPUT_HOOK), {}
    for layer, norm in tset.post_norm.items():  # the set writes before ln2_post
        scale = get(f"blocks.{layer}.{POST_HOOKS[0]}")
        mlp_out[layer] = get(f"blocks.{layer}.{POST_HOOKS[1]}") * scale
        out_gain[layer] = norm.w.to(dev, torch.float32) / scale
    return {
        "emb": get("blocks.0.hook_resid_pre"),
        "pattern": stack("attn.hook_pattern"),
        "attn_scale": attn_scale,
        "post_scale": post_scale,
        "mlp_scale": mlp_scale,
        "final_scale": get("ln_final.hook_scale"),
        "center": model.cfg.normalization_type in ("LN", "LNPre"),
        "final_center": isinstance(model.ln_final, LayerNorm | LayerNormPre),
        "parallel": bool(model.cfg.parallel_attn_mlp),
        "mlp_normalized": torch.tensor([layer not in raw for layer in range(n)], device=dev),
        "mlp_in": mlp_in,
        "mlp_out": mlp_out,
        "out_gain": out_gain,
        "final_in": get("ln_final.hook_normalized"),
        "logits": logits[0].to(dev, torch.float32),
    }


def _copy_weights(
    model: HookedTransformer, tset: TranscoderSet, dev: torch.device
) -> dict[str, Any]:
    cfg = model.cfg

    def f32(t: Tensor) -> Tensor:
        return t.detach().to(dev, torch.float32)

    def norm_param(module: torch.nn.Module | None, name: str, fill: float) -> Tensor:
        value = getattr(module, name, None)
        if isinstance(value, Tensor):
            return f32(value)
        return torch.full((cfg.d_model,), fill, device=dev)

    blocks = list(model.blocks)
    b_dec_out = torch.zeros(cfg.n_layers, cfg.d_model, device=dev)
    W_enc, enc_bias, skip = {}, {}, {}
    for layer, tc in tset.transcoders.items():
        W_enc[layer] = f32(tc.W_enc)
        enc_bias[layer] = f32(tc.b_enc) - f32(tc.b_dec) @ W_enc[layer]
        b_dec_out[layer] = f32(tc.b_dec_out)
        if tc.W_skip is not None:
            skip[layer] = f32(tc.W_skip).T
    return {
        "ln1_w": torch.stack([norm_param(b.ln1, "w", 1.0) for b in blocks]),
        "ln1_b": torch.stack([norm_param(b.ln1, "b", 0.0) for b in blocks]),
        "ln1_post_w": torch.stack(
            [norm_param(getattr(b, "ln1_post", None), "w", 1.0) for b in blocks]
        ),
        "lnf_w": norm_param(model.ln_final, "w", 1.0),
        "lnf_b": norm_param(model.ln_final, "b", 0.0),
        # attn.W_V / b_V: with grouped-query attention, each key-value head repeated for its
        # query heads (the property transformer_lens uses for hook_v), so per-head is per query
        "W_V": torch.stack([f32(b.attn.W_V) for b in blocks]),
        "b_V": torch.stack([f32(b.attn.b_V) for b in blocks]),
        "W_O": torch.stack([f32(b.attn.W_O) for b in blocks]),
        "b_O": torch.stack([f32(b.attn.b_O) for b in blocks]),
        "W_U": f32(model.W_U),
        "b_U": f32(model.b_U),
        "W_enc": W_enc,
        "enc_bias": enc_bias,
        "b_dec_out": b_dec_out,
        "skip": skip,
    }


def _active_features(
    tset: TranscoderSet, mlp_in: Tensor, max_features: int | None, dev: torch.device
) -> dict[str, Any]:
    """Active features (z != 0: TopK and JumpReLU can keep negative pre-activations), ordered
    by (layer, pos, index), the strongest `max_features` of them, and their writes."""
    cols: dict[str, list[Tensor]] = {name: [] for name in ("layer", "pos", "index", "act", "norm")}
    with torch.no_grad():
        for layer, tc in sorted(tset.transcoders.items()):
            z = tc.encode(mlp_in[layer].to(tc.W_enc)).to(dev, torch.float32)
            pos, idx = torch.nonzero(z != 0, as_tuple=True)
            cols["layer"].append(torch.full_like(pos, layer))
            cols["pos"].append(pos)
            cols["index"].append(idx)
            cols["act"].append(z[pos, idx])
            cols["norm"].append(tc.decoder_norms().detach().to(dev, torch.float32)[idx])
    feats = {name: torch.cat(parts) for name, parts in cols.items()}
    n_active = int(feats["act"].numel())
    if max_features is not None and n_active > max_features:
        strength = feats["act"].abs() * feats["norm"]
        keep = torch.topk(strength, max_features).indices.sort().values  # keeps the order
        feats = {name: t[keep] for name, t in feats.items()}
    return {
        "feat_layer": feats["layer"],
        "feat_pos": feats["pos"],
        "feat_index": feats["index"],
        "feat_act": feats["act"],
        **_writes(tset, feats["layer"], feats["pos"], feats["index"], dev),
        "n_active": n_active,
    }


def _writes(
    tset: TranscoderSet, layer: Tensor, pos: Tensor, index: Tensor, dev: torch.device
) -> dict[str, Tensor]:
    """One write per feature and layer it decodes to, ordered by (layer written, pos, feature)."""
    d_out = tset[tset.layers[0]].cfg.d_out
    feat = [torch.zeros(0, dtype=torch.long, device=dev)]
    out = [torch.zeros(0, dtype=torch.long, device=dev)]
    dec = [torch.zeros(0, d_out, device=dev)]
    for src in tset.layers:
        rows = torch.nonzero(layer == src).flatten()
        tc = tset[src]
        for m in tc.out_layers:
            W = tc.decoder(m).detach()
            feat.append(rows)
            out.append(torch.full_like(rows, m))
            dec.append(W[index[rows].to(W.device)].to(dev, torch.float32))
    write_feat, write_layer, write_dec = torch.cat(feat), torch.cat(out), torch.cat(dec)
    n_pos, n_feat = int(pos.max()) + 1 if len(pos) else 1, max(len(layer), 1)
    order = torch.argsort((write_layer * n_pos + pos[write_feat]) * n_feat + write_feat)
    return {
        "write_feat": write_feat[order],
        "write_layer": write_layer[order],
        "write_dec": write_dec[order],
    }
