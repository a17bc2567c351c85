"""Load a transcoder set from any layout circuitcat understands, and check it fits a model.

`load_transcoders` sniffs the layout (see LAYOUTS), loads it, and with a model given checks
layers, widths, hook names and processing flags, then adapts the encoders to transformer_lens
3.x (below). `validate_against_model` runs the same checks on a set loaded earlier.

transformer_lens 3.x puts `ln2.hook_normalized` BEFORE the LayerNorm's scale and bias (2.x put
it after). SAELens, circuit-tracer (`mlp.hook_in`) and the paper's transcoders were trained on
the MLP input after them. On a folded model (fold_ln) the two coincide; on an unprocessed model
with LayerNorm/RMSNorm weights, the scale w and bias b are folded into the encoder:
W_enc' = diag(w) W_enc, b_enc' = b_enc + b W_enc, and into a skip connection, which reads the
same input: W_skip' = W_skip diag(w), b_dec_out' = b_dec_out + b W_skip^T. The set then records
`ln2_affine_folded`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TypeAlias

import torch
from torch.nn import Module
from transformer_lens import HookedTransformer
from transformer_lens.components import RMSNorm

from circuitcat.catalog.errors import TranscoderLoadError
from circuitcat.ingest.models import LoadedModel, applied_processing
from circuitcat.ingest.transcoders import circuit_tracer, gpt2_paper, saelens
from circuitcat.ingest.transcoders.formats import PROCESSING_FLAGS, safetensors_keys
from circuitcat.ingest.transcoders.transcoder import PostNorm, Transcoder, TranscoderSet

TOY_NAMES = ("toy", "toy-years")
TOY_SOURCE = "builtin:toy-years"
MLP_IN_HOOK = "hook_mlp_in"
NATIVE_FORMAT = "circuitcat-transcoders"
LN_AFFINE_FOLDED = "ln2_affine_folded"
# `processing["<flag>_applied"]`: what transformer_lens applied to the model the set was
# checked against (the flag itself is what the set asks for; see _check_processing)
APPLIED_SUFFIX = "_applied"
# formats whose encoders read the MLP input after the LayerNorm affine (see module docstring)
POST_AFFINE_FORMATS = frozenset(
    {
        saelens.FORMAT,
        circuit_tracer.FORMAT,
        gpt2_paper.FORMAT_SAFETENSORS,
        gpt2_paper.FORMAT_PICKLE,
    }
)
LAYOUTS = (
    f'circuitcat folder (config.json with "format": "{NATIVE_FORMAT}" + layer_<i>.safetensors)',
    "SAELens folder (cfg.json + sae_weights.safetensors), or a folder of such per-layer folders",
    "circuit-tracer folder (config.yaml + layer_<i>.safetensors, or a cross-layer transcoder's "
    "W_enc_<i>.safetensors + W_dec_<i>.safetensors)",
    "GPT-2 paper .pt pickles, a file or a folder of them (needs --allow-pickle)",
    "GPT-2 paper safetensors repackaging (per-layer .safetensors with W_enc, b_enc, W_dec, b_dec)",
    "'toy-years' (the built-in toy model's transcoders)",
)

ModelLike: TypeAlias = HookedTransformer | LoadedModel
Loader: TypeAlias = Callable[[Path, bool, str], TranscoderSet]


def load_transcoders(
    path: str | Path,
    model: ModelLike | None = None,
    *,
    allow_pickle: bool = False,
    device: str = "cpu",
    activation: str | None = None,
) -> TranscoderSet:
    """Load a transcoder set from `path` (or 'toy-years'); with `model`, check and adapt to it.

    `activation` declares what the files cannot carry ('topk:K' for circuit-tracer TopK sets,
    written like ReLU ones); None or the files' own activation changes nothing."""
    tset = _load_any(path, allow_pickle, device)
    if activation:
        tset.with_activation(activation)
    tset.name = set_name(tset.name)
    if tset.source != TOY_SOURCE:  # registered means reloadable from any working directory
        tset.source = str(Path(tset.source).expanduser().resolve())
    for tc in tset.transcoders.values():
        tc.to(torch.device(device))
    if model is not None:
        adapt_to_model(tset, model)
    return tset


def adapt_to_model(tset: TranscoderSet, model: ModelLike) -> None:
    """Check `tset` fits `model`, fold ln2's affine into encoders that expect it, attach the
    post-MLP norm to layers that write before it, and switch on the hooks the set reads
    (`hook_mlp_in` is only filled with `use_hook_mlp_in`)."""
    hooked = _hooked(model)
    if any(tc.cfg.input_hook.endswith(MLP_IN_HOOK) for tc in tset.transcoders.values()):
        hooked.set_use_hook_mlp_in(True)
    _check_structure(tset, model)
    fold_ln2_affine(tset, hooked)
    attach_post_norms(tset, hooked)


def set_name(name: str) -> str:
    """A set name usable inside feature uids: circuit-tracer's cache layout names a set by its
    hub repository (`org/repo`), written `org--repo` here as the Hugging Face cache does."""
    cleaned = name.strip().replace("/", "--")
    if not cleaned:
        raise TranscoderLoadError("a transcoder set needs a non-empty name: pass --name NAME")
    return cleaned


def validate_against_model(tset: TranscoderSet, model: ModelLike) -> None:
    """Raise TranscoderLoadError unless every transcoder of `tset` fits `model`.

    Checks layers within n_layers, d_in/d_out against the hooks' widths, hook names in
    `model.hook_dict`, processing flags, and that LayerNorm weights were folded where needed.
    """
    _check_structure(tset, model)
    unfolded = [layer for layer in tset.layers if _needs_ln_fold(tset, _hooked(model), layer)]
    if unfolded:
        raise TranscoderLoadError(
            f"transcoder set '{tset.name}' ({tset.source}) reads the MLP input after LayerNorm's "
            f"scale and bias ({tset.format} convention), but transformer_lens 3.x hooks "
            f"'blocks.{unfolded[0]}.ln2.hook_normalized' before them: load the set with the "
            "model, load_transcoders(path, model), so ln2.w and ln2.b fold into the encoders"
        )
    unattached = [
        layer
        for layer in tset.layers
        if _post_norm_of(tset, _hooked(model), layer) is not None and layer not in tset.post_norm
    ]
    if unattached:
        raise TranscoderLoadError(
            f"transcoder set '{tset.name}' ({tset.source}) writes the MLP's output before the "
            f"post-MLP norm (mlp.hook_out), which model blocks apply before "
            f"'blocks.{unattached[0]}.hook_mlp_out': load the set with the model, "
            "load_transcoders(path, model), so its output goes through ln2_post"
        )


def attach_post_norms(tset: TranscoderSet, model: HookedTransformer) -> None:
    """Record each block's post-MLP norm (`ln2_post`) for layers whose transcoder writes the MLP
    module's output, before that norm (`mlp_module_out`); transformer_lens 3.9 builds it as an
    RMSNorm for Gemma-2/3, the only norm supported here."""
    for layer in tset.layers:
        norm = _post_norm_of(tset, model, layer)
        if norm is None:
            continue
        if not isinstance(norm, RMSNorm):
            raise TranscoderLoadError(
                f"transcoder set '{tset.name}' layer {layer} writes before the model's post-MLP "
                f"norm, a {type(norm).__name__}: only an RMSNorm (Gemma-2/3) is supported there"
            )
        w = norm.w.detach().to(tset[layer].W_dec.device, torch.float32)
        tset.post_norm[layer] = PostNorm(w=w, eps=float(norm.eps))


def _post_norm_of(tset: TranscoderSet, model: HookedTransformer, layer: int) -> Module | None:
    """The post-MLP norm of `layer`'s block where its transcoder writes before it, else None."""
    if not tset[layer].cfg.mlp_module_out or not 0 <= layer < model.cfg.n_layers:
        return None
    norm = getattr(model.blocks[layer], "ln2_post", None)
    return norm if isinstance(norm, Module) else None


def fold_ln2_affine(tset: TranscoderSet, model: HookedTransformer) -> None:
    """Fold each block's ln2 scale and bias into encoders that expect them (in place)."""
    layers = [layer for layer in tset.layers if _needs_ln_fold(tset, model, layer)]
    for layer in layers:
        ln2 = model.blocks[layer].ln2
        tc = tset[layer]
        with torch.no_grad():
            W_enc = tc.W_enc.double()
            w = ln2.w.detach().to(W_enc)
            b = getattr(ln2, "b", None)
            if b is not None:
                tc.b_enc.add_((b.detach().to(W_enc) @ W_enc).to(tc.b_enc))
            tc.W_enc.copy_((w[:, None] * W_enc).to(tc.W_enc))
            if tc.W_skip is not None:  # x_post @ W_skip.T = x (w * W_skip).T + b @ W_skip.T
                W_skip = tc.W_skip.double()
                if b is not None:
                    tc.b_dec_out.add_((b.detach().to(W_skip) @ W_skip.T).to(tc.b_dec_out))
                tc.W_skip.copy_((W_skip * w[None, :]).to(tc.W_skip))
    if layers:
        tset.processing[LN_AFFINE_FOLDED] = True


def _needs_ln_fold(tset: TranscoderSet, model: HookedTransformer, layer: int) -> bool:
    if tset.format not in POST_AFFINE_FORMATS or tset.processing.get(LN_AFFINE_FOLDED):
        return False
    if not tset[layer].cfg.input_hook.endswith("ln2.hook_normalized"):
        return False
    return isinstance(getattr(model.blocks[layer].ln2, "w", None), torch.Tensor)


def _hooked(model: ModelLike) -> HookedTransformer:
    return model.model if isinstance(model, LoadedModel) else model


def _check_structure(tset: TranscoderSet, model: ModelLike) -> None:
    hooked = _hooked(model)
    label = model.name if isinstance(model, LoadedModel) else hooked.cfg.model_name
    n_layers = hooked.cfg.n_layers
    for layer, tc in sorted(tset.transcoders.items()):
        where = f"transcoder set '{tset.name}' ({tset.source}), layer {layer}"
        if not 0 <= layer < n_layers:
            raise TranscoderLoadError(
                f"{where}: layer {layer} does not exist in model '{label}' (layers 0.."
                f"{n_layers - 1}); load the model the set was made for ('{tset.model_name}')"
            )
        _check_hook_and_width(where, "input_hook", tc.cfg.input_hook, "d_in", tc, hooked, label)
        _check_hook_and_width(where, "output_hook", tc.cfg.output_hook, "d_out", tc, hooked, label)
        missing = [m for m in tc.out_layers if m not in tset.transcoders]
        if missing:
            raise TranscoderLoadError(
                f"{where}: its features write to layer {missing[0]}, which has no transcoder "
                f"in the set (a cross-layer transcoder needs every layer it writes to)"
            )
    _check_processing(tset, model)


def _check_hook_and_width(
    where: str,
    hook_field: str,
    hook: str,
    width_field: str,
    tc: Transcoder,
    model: HookedTransformer,
    label: str,
) -> None:
    if hook not in model.hook_dict:
        example = "ln2.hook_normalized" if hook_field == "input_hook" else "hook_mlp_out"
        raise TranscoderLoadError(
            f"{where}: {hook_field} '{hook}' is not a hook of model '{label}'; expected a "
            f"name from model.hook_dict such as 'blocks.{tc.cfg.layer}.{example}'"
        )
    mlp_site = hook.endswith(("mlp.hook_pre", "mlp.hook_post"))
    expected = model.cfg.d_mlp if mlp_site else model.cfg.d_model
    width = tc.cfg.d_in if width_field == "d_in" else tc.cfg.d_out
    if width != expected:
        dim = "d_mlp" if mlp_site else "d_model"
        raise TranscoderLoadError(
            f"{where}: {width_field} is {width}, expected {expected} (model '{label}' {dim} "
            f"at '{hook}'); load the model the set was trained on"
        )


def _check_processing(tset: TranscoderSet, model: ModelLike) -> None:
    """The set's recorded flags are a request, as its library passes them to transformer_lens
    (SAELens: `model_from_pretrained_kwargs`), which drops some for some architectures (see
    `applied_processing`): what it would apply to this model on that request must be what it
    applied. A Gemma-2 set that asks for center_unembed fits a Gemma-2 model loaded without it,
    as SAELens loads it. With a LoadedModel, the flags applied are recorded on the set as
    `<flag>_applied`, next to the request."""
    expected = {k: v for k, v in tset.processing.items() if k in PROCESSING_FLAGS}
    if not expected:
        return
    hooked = _hooked(model)
    request = dict.fromkeys(PROCESSING_FLAGS, False) | expected
    would_apply = {k: applied_processing(hooked.cfg, request)[k] for k in expected}
    if isinstance(model, LoadedModel):
        actual = {k: model.processing.get(k) for k in expected}
        mismatch = actual != would_apply
    else:  # a bare HookedTransformer only shows fold_ln, through its normalization type
        norm = hooked.cfg.normalization_type
        folded = norm in ("LNPre", "RMSPre")
        actual = {"fold_ln": folded}
        mismatch = norm is not None and "fold_ln" in expected and would_apply["fold_ln"] != folded
    if mismatch:
        wanted = ", ".join(f"{k}={v}" for k, v in expected.items())
        found = ", ".join(f"{k}={v}" for k, v in actual.items())
        dropped = [k for k in expected if expected[k] != would_apply[k]]
        applies = (
            f" (on this architecture transformer_lens applies "
            f"{', '.join(f'{k}={would_apply[k]}' for k in dropped)} for that request)"
            if dropped
            else ""
        )
        raise TranscoderLoadError(
            f"transcoder set '{tset.name}' ({tset.source}) field 'processing' expects a model "
            f"loaded with {wanted}{applies}, but the model was loaded with {found}: reload it "
            f"with load_model(..., {wanted})"
        )
    if isinstance(model, LoadedModel):
        for k in PROCESSING_FLAGS:
            tset.processing[f"{k}{APPLIED_SUFFIX}"] = bool(model.processing.get(k, False))


def _load_any(path: str | Path, allow_pickle: bool, device: str) -> TranscoderSet:
    p = Path(path).expanduser()
    if str(path) in (*TOY_NAMES, TOY_SOURCE):  # reserved names, as in load_model
        from circuitcat.ingest.toy.model import load_toy_transcoders  # lazy: reads toy weights

        tset = load_toy_transcoders(device=device)
        tset.source = TOY_SOURCE
        return tset
    if not p.exists():
        raise TranscoderLoadError(
            f"no file or folder at {p}: pass transcoders in one of these layouts: "
            + "; ".join(LAYOUTS)
        )
    loader = _sniff(p)
    if loader is None:
        raise TranscoderLoadError(
            f"{p}: not a transcoder layout circuitcat understands. Understood: "
            + "; ".join(LAYOUTS)
        )
    return loader(p, allow_pickle, device)


def _sniff(p: Path) -> Loader | None:
    """The loader for the layout at `p` (a folder, or one file of a layout)."""
    if p.is_file():
        return _sniff_file(p)
    if _is_native(p / "config.json"):
        return _native
    if saelens.saelens_folders(p):
        return lambda q, _a, _d: saelens.load_saelens(q)
    if (p / circuit_tracer.CONFIG_FILE).is_file():
        return lambda q, _a, _d: circuit_tracer.load_circuit_tracer(q)
    children = sorted(p.iterdir())
    if any(c.suffix in gpt2_paper.PICKLE_SUFFIXES for c in children):
        return lambda q, allow, _d: gpt2_paper.load_paper_pickles(q, allow_pickle=allow)
    if any(c.suffix == ".safetensors" and "W_enc" in safetensors_keys(c) for c in children):
        return lambda q, _a, _d: gpt2_paper.load_paper_safetensors(q)
    return None


def _sniff_file(p: Path) -> Loader | None:
    if p.name == "config.json" and _is_native(p):
        return lambda q, _a, device: _native(q.parent, False, device)
    if p.name == saelens.CFG_FILE:
        return lambda q, _a, _d: saelens.load_saelens(q.parent)
    if p.name == circuit_tracer.CONFIG_FILE:
        return lambda q, _a, _d: circuit_tracer.load_circuit_tracer(q)
    if p.suffix in gpt2_paper.PICKLE_SUFFIXES:
        return lambda q, allow, _d: gpt2_paper.load_paper_pickles(q, allow_pickle=allow)
    if p.suffix == ".safetensors" and "W_enc" in safetensors_keys(p):
        return lambda q, _a, _d: gpt2_paper.load_paper_safetensors(q)
    return None


def _is_native(config_file: Path) -> bool:
    if not config_file.is_file():
        return False
    try:
        config = json.loads(config_file.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return isinstance(config, dict) and config.get("format") == NATIVE_FORMAT


def _native(folder: Path, _allow_pickle: bool, device: str) -> TranscoderSet:
    from circuitcat.ingest.transcoders.native import load_transcoder_set

    return load_transcoder_set(folder, device=device)
