"""transformer_lens configs built from a model folder's own `config.json`.

transformer_lens 3.9 builds Gemma, Gemma-2 and Gemma-3 configs only from official hub names
(hard-coded tables keyed by the name), so a local Gemma folder cannot be converted by name. Here
the same fields come from the folder's Hugging Face config; the weights are then converted by
transformer_lens's own Gemma converter, which reads `cfg.original_architecture`.

To support another family whose config transformer_lens only builds by name, add a builder to
`BUILDERS`; `finish_config` applies the steps `get_pretrained_model_config` runs after its table.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from transformer_lens.config.hooked_transformer_config import HookedTransformerConfig

from circuitcat.catalog.errors import ModelLoadError

GEMMA_ARCHITECTURES = ("GemmaForCausalLM", "Gemma2ForCausalLM", "Gemma3ForCausalLM")


def _rope(hf: dict[str, Any], layer_type: str | None = None) -> dict[str, Any]:
    """Rope settings of one layer type; transformers 5 nests them in `rope_parameters`."""
    params = hf.get("rope_parameters") or {}
    if layer_type is not None and isinstance(params.get(layer_type), dict):
        return dict(params[layer_type])
    if "rope_theta" in params:
        return dict(params)
    legacy = dict(hf.get("rope_scaling") or {})
    legacy.setdefault("rope_theta", hf.get("rope_theta", 10000.0))
    return legacy


def _common(hf: dict[str, Any]) -> dict[str, Any]:
    d_model, n_heads = int(hf["hidden_size"]), int(hf["num_attention_heads"])
    d_head = int(hf.get("head_dim") or d_model // n_heads)
    return {
        "d_model": d_model,
        "d_head": d_head,
        "n_heads": n_heads,
        "d_mlp": int(hf["intermediate_size"]),
        "n_layers": int(hf["num_hidden_layers"]),
        "n_ctx": min(int(hf.get("max_position_embeddings", 8192)), 8192),
        "eps": float(hf.get("rms_norm_eps", 1e-6)),
        "d_vocab": int(hf["vocab_size"]),
        "act_fn": str(hf.get("hidden_activation") or hf.get("hidden_act") or "gelu_pytorch_tanh"),
        "initializer_range": float(hf.get("initializer_range", 0.02)),
        "normalization_type": "RMS",
        "positional_embedding_type": "rotary",
        "rotary_dim": d_head,
        "use_attn_scale": True,
        "n_key_value_heads": int(hf.get("num_key_value_heads") or n_heads),
        "gated_mlp": True,
        "final_rms": True,
    }


def _attn_types(hf: dict[str, Any], n_layers: int) -> list[str]:
    types = hf.get("layer_types")
    if isinstance(types, list) and len(types) == n_layers:
        return ["local" if t == "sliding_attention" else "global" for t in types]
    pattern = int(hf.get("sliding_window_pattern") or hf.get("_sliding_window_pattern") or 2)
    return ["global" if (i + 1) % pattern == 0 else "local" for i in range(n_layers)]


def _gemma(hf: dict[str, Any]) -> dict[str, Any]:
    cfg = _common(hf)
    cfg["rotary_base"] = float(_rope(hf)["rope_theta"])
    return cfg


def _gemma2(hf: dict[str, Any]) -> dict[str, Any]:
    cfg = _common(hf)
    cfg |= {
        "rotary_base": float(_rope(hf)["rope_theta"]),
        "use_normalization_before_and_after": True,
        "attn_scale": math.sqrt(float(hf.get("query_pre_attn_scalar") or cfg["d_head"])),
        "window_size": int(hf.get("sliding_window") or 4096),
        "use_local_attn": True,
        "attn_types": _attn_types(hf, cfg["n_layers"]),
        "attn_scores_soft_cap": float(hf.get("attn_logit_softcapping") or -1.0),
        "output_logits_soft_cap": float(hf.get("final_logit_softcapping") or -1.0),
    }
    return cfg


def _gemma3(hf: dict[str, Any]) -> dict[str, Any]:
    cfg = _common(hf)
    full, local = _rope(hf, "full_attention"), _rope(hf, "sliding_attention")
    cfg |= {
        "rotary_base": float(full["rope_theta"]),
        "rotary_base_local": float(local.get("rope_theta") or hf.get("rope_local_base_freq", 1e4)),
        "use_normalization_before_and_after": True,
        "use_qk_norm": True,
        "attn_scale": math.sqrt(float(hf.get("query_pre_attn_scalar") or cfg["d_head"])),
        "window_size": int(hf.get("sliding_window") or 512),
        "use_local_attn": True,
        "attn_types": _attn_types(hf, cfg["n_layers"]),
    }
    if full.get("rope_type") == "linear" and full.get("factor"):
        cfg["rotary_scaling_factor"] = float(full["factor"])
    if hf.get("attn_logit_softcapping"):
        cfg["attn_scores_soft_cap"] = float(hf["attn_logit_softcapping"])
    if hf.get("final_logit_softcapping"):
        cfg["output_logits_soft_cap"] = float(hf["final_logit_softcapping"])
    return cfg


BUILDERS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "GemmaForCausalLM": _gemma,
    "Gemma2ForCausalLM": _gemma2,
    "Gemma3ForCausalLM": _gemma3,
}


def needs_own_config(architecture: str) -> bool:
    """True where transformer_lens builds this architecture's config only from a hub name."""
    return architecture in BUILDERS


def build_config(
    hf: dict[str, Any], *, name: str, fold_ln: bool, device: str, dtype: torch.dtype
) -> HookedTransformerConfig:
    """The HookedTransformerConfig for a folder whose `config.json` is `hf`."""
    architecture = str(hf["architectures"][0])
    try:
        cfg_dict = BUILDERS[architecture](hf)
    except KeyError as e:
        raise ModelLoadError(
            f"config.json of {name} lacks field {e} that a {architecture} config needs: "
            "re-save the model with save_pretrained"
        ) from e
    return finish_config(cfg_dict, architecture, name, fold_ln=fold_ln, device=device, dtype=dtype)


def finish_config(
    cfg_dict: dict[str, Any],
    architecture: str,
    name: str,
    *,
    fold_ln: bool,
    device: str,
    dtype: torch.dtype,
) -> HookedTransformerConfig:
    """The steps transformer_lens's `get_pretrained_model_config` runs after its name table."""
    cfg_dict = dict(cfg_dict)
    cfg_dict |= {
        "original_architecture": architecture,
        "model_name": name,
        "tokenizer_name": name,
        "init_weights": False,
        "device": device,
        "dtype": dtype,
        "n_devices": 1,
        "from_checkpoint": False,
        "default_prepend_bos": True,
    }
    if fold_ln:
        cfg_dict["normalization_type"] = {"LN": "LNPre", "RMS": "RMSPre"}.get(
            cfg_dict["normalization_type"], cfg_dict["normalization_type"]
        )
    return HookedTransformerConfig.from_dict(cfg_dict)
