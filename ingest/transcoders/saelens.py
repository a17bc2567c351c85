"""SAELens folders, transcoder variant.

A folder holds `cfg.json` + `sae_weights.safetensors` (+ optional `sparsity.safetensors`); a set
is one such folder, or a parent folder whose subfolders are such folders (one per layer).

Tensors: W_enc [d_in, d_sae] (some releases store it transposed), b_enc [d_sae],
W_dec [d_sae, d_out], b_dec [d_out], which in a transcoder is the OUTPUT bias (our b_dec_out);
the four transcoder classes (`architecture`): `transcoder` (ReLU), `skip_transcoder` (+ W_skip
[d_out, d_in], applied as x @ W_skip.T), `jumprelu_transcoder` (+ threshold [d_sae]) and
`jumprelu_skip_transcoder` (both). SAELens's JumpReLU is ReLU(pre) * (pre > threshold), which
is circuitcat's pre * (pre > threshold) with the threshold raised to 0 where it is negative: the
loader stores max(threshold, 0), the same function.
cfg.json keys: d_in, d_sae, d_out, architecture, activation_fn_str, apply_b_dec_to_input and
(at top level before SAELens 6, under "metadata" since) model_name, hook_name, hook_name_out,
model_from_pretrained_kwargs. SAELens loads its model with
`HookedTransformer.from_pretrained_no_processing(**model_from_pretrained_kwargs)`, so the set's
processing flags are those kwargs, False by default.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from circuitcat.catalog.errors import TranscoderLoadError
from circuitcat.ingest.transcoders.formats import (
    PROCESSING_FLAGS,
    LayerTensors,
    add_layer,
    layer_from_text,
    make_set,
    orient_encoder,
    read_safetensors,
    require,
    resolve_hook,
    to_transcoder,
    writes_mlp_module,
)
from circuitcat.ingest.transcoders.transcoder import Transcoder, TranscoderSet

FORMAT = "saelens"
CFG_FILE = "cfg.json"
WEIGHTS_FILE = "sae_weights.safetensors"
SPARSITY_FILE = "sparsity.safetensors"
# architecture -> (has a JumpReLU threshold, has W_skip)
ARCHITECTURES = {
    None: (False, False),
    "standard": (False, False),
    "transcoder": (False, False),
    "skip_transcoder": (False, True),
    "jumprelu_transcoder": (True, False),
    "jumprelu_skip_transcoder": (True, True),
}


def saelens_folders(path: Path) -> list[Path]:
    """The SAELens folders making up `path`: itself, or its subfolders holding a cfg.json."""
    if (path / CFG_FILE).is_file():
        return [path]
    if not path.is_dir():
        return []
    return sorted(d for d in path.iterdir() if (d / CFG_FILE).is_file())


def load_saelens(path: Path) -> TranscoderSet:
    """Load one SAELens transcoder folder, or a parent folder of per-layer folders."""
    folders = saelens_folders(path)
    if not folders:
        raise TranscoderLoadError(
            f"{path}: no {CFG_FILE} in it or in its subfolders; a SAELens folder holds "
            f"{CFG_FILE} + {WEIGHTS_FILE}"
        )
    transcoders: dict[int, Transcoder] = {}
    layer_files: dict[int, Path] = {}
    files: list[Path] = []
    configs: list[dict[str, Any]] = []
    for folder in folders:
        cfg = _read_cfg(folder / CFG_FILE)
        add_layer(transcoders, layer_files, _load_layer(folder, cfg), folder / WEIGHTS_FILE)
        files += [folder / name for name in (CFG_FILE, WEIGHTS_FILE, SPARSITY_FILE)]
        configs.append(cfg)
    model_names = {str(_cfg_value(c, "model_name") or "") for c in configs}
    if len(model_names) > 1:
        raise TranscoderLoadError(
            f"{path}: the folders' cfg.json disagree on 'model_name' ({sorted(model_names)}): "
            "a transcoder set belongs to one model"
        )
    return make_set(
        name=path.name,
        model_name=model_names.pop(),
        format=FORMAT,
        root=path,
        transcoders=transcoders,
        processing=_processing(configs[0]),
        files=[f for f in files if f.is_file()],
    )


def _read_cfg(cfg_file: Path) -> dict[str, Any]:
    try:
        cfg = json.loads(cfg_file.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise TranscoderLoadError(f"{cfg_file} is not readable JSON ({e})") from e
    if not isinstance(cfg, dict):
        raise TranscoderLoadError(f"{cfg_file}: expected a JSON object of SAELens settings")
    _check_supported(cfg, cfg_file)
    for key in ("d_in", "d_sae", "d_out", "hook_name", "hook_name_out"):
        if _cfg_value(cfg, key) is None:
            hint = (
                " (no output hook or width: this is an SAE, not a transcoder)"
                if key in ("d_out", "hook_name_out")
                else ""
            )
            raise TranscoderLoadError(f"{cfg_file}: field {key!r} is missing{hint}")
    return cfg


def _cfg_value(cfg: dict[str, Any], key: str) -> Any:
    """SAELens 6 moved model and hook settings under "metadata"; older files keep them on top."""
    if key in cfg:
        return cfg[key]
    metadata = cfg.get("metadata")
    return metadata.get(key) if isinstance(metadata, dict) else None


def _check_supported(cfg: dict[str, Any], cfg_file: Path) -> None:
    architecture = cfg.get("architecture")
    if architecture not in ARCHITECTURES:
        known = ", ".join(repr(a) for a in ARCHITECTURES if a)
        raise TranscoderLoadError(
            f"{cfg_file}: field 'architecture' is {architecture!r}, which is not supported yet; "
            f"circuitcat loads the SAELens transcoder classes ({known})"
        )
    activation = cfg.get("activation_fn_str", cfg.get("activation_fn"))
    if activation not in (None, "relu"):
        raise TranscoderLoadError(
            f"{cfg_file}: field 'activation_fn_str' is {activation!r}, expected 'relu' "
            "(other activations are not supported yet)"
        )
    if cfg.get("apply_b_dec_to_input"):
        raise TranscoderLoadError(
            f"{cfg_file}: field 'apply_b_dec_to_input' is true, expected false: in a transcoder "
            "b_dec is the output bias [d_out] and cannot be subtracted from the input"
        )
    if cfg.get("normalize_activations") not in (None, "none"):
        raise TranscoderLoadError(
            f"{cfg_file}: field 'normalize_activations' is {cfg['normalize_activations']!r}, "
            "expected 'none' (input scaling is not supported yet)"
        )


def _load_layer(folder: Path, cfg: dict[str, Any]) -> Transcoder:
    file = folder / WEIGHTS_FILE
    tensors = read_safetensors(file)
    jumprelu, skip = ARCHITECTURES[cfg.get("architecture")]
    dims = {
        "d_in": int(_cfg_value(cfg, "d_in")),
        "d_transcoder": int(_cfg_value(cfg, "d_sae")),
        "d_out": int(_cfg_value(cfg, "d_out")),
    }
    hook_in, hook_out = str(_cfg_value(cfg, "hook_name")), str(_cfg_value(cfg, "hook_name_out"))
    layer = _cfg_value(cfg, "hook_layer")
    layer = int(layer) if layer is not None else layer_from_text(hook_in)
    if layer is None:
        raise TranscoderLoadError(
            f"{folder / CFG_FILE}: no layer in field 'hook_layer' or in 'hook_name' "
            f"({hook_in!r}); expected a hook like 'blocks.3.ln2.hook_normalized'"
        )
    raw = LayerTensors(
        layer=layer,
        file=file,
        W_enc=orient_encoder(
            require(tensors, "W_enc", file, "encoder [d_in, d_sae]"),
            dims["d_transcoder"],
            file,
            rows_are_features=False,
        ),
        b_enc=require(tensors, "b_enc", file, "encoder bias [d_sae]"),
        W_dec=require(tensors, "W_dec", file, "decoder [d_sae, d_out]"),
        b_dec_out=require(tensors, "b_dec", file, "output bias [d_out]"),
        input_hook=resolve_hook(hook_in, layer),
        output_hook=resolve_hook(hook_out, layer),
        mlp_module_out=writes_mlp_module(hook_out),
        keys={"b_dec_out": "b_dec"},
    )
    if jumprelu:  # SAELens: ReLU(pre) * (pre > t) == pre * (pre > max(t, 0))
        raw.threshold = require(tensors, "threshold", file, "JumpReLU threshold [d_sae]")
        raw.threshold = raw.threshold.clamp(min=0)
    if skip:
        raw.W_skip = require(tensors, "W_skip", file, "skip connection [d_out, d_in]")
    _refuse_unexpected(tensors, file, jumprelu, skip, cfg.get("architecture"))
    return to_transcoder(raw, dims)


def _refuse_unexpected(
    tensors: dict[str, Any], file: Path, jumprelu: bool, skip: bool, architecture: Any
) -> None:
    """A threshold or W_skip that the cfg.json's architecture does not use would be ignored."""
    for key, used in (("threshold", jumprelu), ("W_skip", skip)):
        if key in tensors and not used:
            raise TranscoderLoadError(
                f"{file}: tensor {key!r} is present but cfg.json's 'architecture' is "
                f"{architecture!r}, which does not use it; fix the architecture field"
            )


def _processing(cfg: dict[str, Any]) -> dict[str, bool]:
    kwargs = _cfg_value(cfg, "model_from_pretrained_kwargs")
    kwargs = kwargs if isinstance(kwargs, dict) else {}
    return {flag: bool(kwargs.get(flag, False)) for flag in PROCESSING_FLAGS}
