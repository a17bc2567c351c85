"""circuit-tracer's transcoder layouts: per-layer ("model_kind: transcoder_set") and
cross-layer ("model_kind: cross_layer_transcoder").

    config.yaml            model_name, model_kind, feature_input_hook (e.g. "mlp.hook_in",
                           "ln2.hook_normalized"), feature_output_hook ("mlp.hook_out",
                           "hook_mlp_out"), scan, transcoders: [per-layer files, list index =
                           layer]; circuit-tracer writes no activation key
    layer_{i}.safetensors  W_enc [d_transcoder, d_model] (F.linear layout: rows are features),
                           W_dec [d_transcoder, d_model], b_enc [d_transcoder], b_dec [d_model]
                           (the OUTPUT bias), optional activation_function.threshold (JumpReLU,
                           pre * (pre > threshold)) and W_skip [d_model, d_model] (x @ W_skip.T)
    W_enc_{i}.safetensors  cross-layer: W_enc_{i} [d_transcoder, d_model], b_enc_{i}, b_dec_{i}
                           (the output bias of MLP i), optional threshold_{i}
    W_dec_{i}.safetensors  cross-layer: W_dec_{i} [d_transcoder, n_layers - i, d_model], the
                           decoders of layer i's features into layers i .. n_layers - 1
    params.safetensors     Gemma Scope 2 (transcoders for Gemma 3; circuit-tracer's
                           special_load_fn="gemma-scope-2"), in the hub repo's
                           transcoder_all/layer_<i>_width_<w>_l0_<size>_affine/: w_enc
                           [d_model, d_transcoder], w_dec [d_transcoder, d_model], b_enc, b_dec
                           (the output bias), threshold (JumpReLU, pre * (pre > threshold)) and
                           optional affine_skip_connection [d_model, d_model], the skip path
                           x @ affine_skip_connection (so W_skip = affine_skip_connection.T).
                           Told apart from circuit-tracer's own files by the lowercase w_enc.
    params.npz             Gemma Scope (Gemma 2): W_enc [d_model, d_transcoder], W_dec, b_enc,
                           b_dec, threshold.

A TopK set is written exactly like a ReLU one (circuit-tracer's own loader reads it back as
ReLU): declare it with `--activation topk:K` at register (`TranscoderSet.with_activation`).
Thresholds that are all zero load as ReLU (the same function).

`transcoders` entries may be hf:// URIs (circuit-tracer downloads them); here they must already
sit in the folder, found by their path inside the repository or their file name. Without the
list, layer_*.safetensors files in the folder are used. circuit-tracer runs its model
unprocessed (`from_pretrained_no_processing`), so the set records all processing flags False.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from torch import Tensor

from circuitcat.catalog.errors import TranscoderLoadError
from circuitcat.ingest.transcoders.formats import (
    NONE_PROCESSED,
    LayerTensors,
    add_layer,
    make_set,
    orient_encoder,
    read_npz,
    read_safetensors,
    require,
    resolve_hook,
    to_transcoder,
    writes_mlp_module,
)
from circuitcat.ingest.transcoders.transcoder import Transcoder, TranscoderSet

FORMAT = "circuit-tracer"
CONFIG_FILE = "config.yaml"
TRANSCODER_SET, CROSS_LAYER = "transcoder_set", "cross_layer_transcoder"
_LAYER_FILE = re.compile(r"layer_(\d+)\.safetensors")
_ENC_FILE = re.compile(r"W_enc_(\d+)\.safetensors")
_LAYER_KEYS = {"W_enc", "W_dec", "b_enc", "b_dec", "activation_function.threshold", "W_skip"}
GEMMA_SCOPE_2_KEYS = {"w_enc", "w_dec", "b_enc", "b_dec", "threshold", "affine_skip_connection"}


def load_circuit_tracer(path: Path) -> TranscoderSet:
    """Load a circuit-tracer transcoder folder (config.yaml + layer_{i}.safetensors)."""
    folder = path.parent if path.name == CONFIG_FILE else path
    config_file = folder / CONFIG_FILE
    config = _read_config(config_file)
    hooks = {key: _hook_setting(config, key, config_file) for key in _HOOK_KEYS}
    transcoders: dict[int, Transcoder] = {}
    layer_files: dict[int, Path] = {}
    if config.get("model_kind", TRANSCODER_SET) == CROSS_LAYER:
        transcoders, files = _load_clt(folder, config_file, hooks)
        layer_files = {i: f for i, f in enumerate(files)}
    else:
        for layer, file in _layer_files(folder, config, config_file).items():
            add_layer(transcoders, layer_files, _load_layer(file, layer, hooks), file)
    return make_set(
        name=str(config.get("scan") or folder.name),
        model_name=str(config.get("model_name") or ""),
        format=FORMAT,
        root=folder,
        transcoders=transcoders,
        processing=dict(NONE_PROCESSED),
        files=[config_file, *layer_files.values()],
    )


_HOOK_KEYS = ("feature_input_hook", "feature_output_hook")


def _read_config(config_file: Path) -> dict[str, Any]:
    try:
        config = yaml.safe_load(config_file.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise TranscoderLoadError(f"{config_file} is not readable YAML ({e})") from e
    if not isinstance(config, dict):
        raise TranscoderLoadError(f"{config_file}: expected a mapping of circuit-tracer settings")
    kind = config.get("model_kind", TRANSCODER_SET)
    if kind not in (TRANSCODER_SET, CROSS_LAYER):
        raise TranscoderLoadError(
            f"{config_file}: field 'model_kind' is {kind!r}, expected {TRANSCODER_SET!r} or "
            f"{CROSS_LAYER!r}"
        )
    # circuit-tracer writes no `activation` key: the kind shows in the tensors (a JumpReLU
    # threshold, a `W_skip`), read per layer. Some hand-written configs carry one anyway.
    activation = config.get("activation", "relu")
    if activation not in ("relu", "jumprelu"):
        raise TranscoderLoadError(
            f"{config_file}: field 'activation' is {activation!r}; the files carry ReLU or "
            "JumpReLU (a threshold tensor). A TopK set (stored like a ReLU one) is declared at "
            "register: --activation topk:K"
        )
    return config


def _hook_setting(config: dict[str, Any], key: str, config_file: Path) -> str:
    value = config.get(key)
    if not isinstance(value, str) or not value:
        raise TranscoderLoadError(
            f"{config_file}: field {key!r} is missing, expected a hook name such as "
            f"{'mlp.hook_in' if key == 'feature_input_hook' else 'mlp.hook_out'!r}"
        )
    return value


def _layer_files(folder: Path, config: dict[str, Any], config_file: Path) -> dict[int, Path]:
    listed = config.get("transcoders")
    if listed is None:
        found = {
            int(m.group(1)): f
            for f in folder.glob("layer_*.safetensors")
            if (m := _LAYER_FILE.fullmatch(f.name))
        }
        if not found:
            raise TranscoderLoadError(
                f"{config_file} has no 'transcoders' list and {folder} holds no "
                "layer_{i}.safetensors files"
            )
        return dict(sorted(found.items()))
    if not isinstance(listed, list) or not all(isinstance(p, str) for p in listed):
        raise TranscoderLoadError(f"{config_file}: field 'transcoders' must be a list of paths")
    return {i: _local_file(folder, entry, i, config_file) for i, entry in enumerate(listed)}


def _local_file(folder: Path, entry: str, index: int, config_file: Path) -> Path:
    """The local file for a `transcoders` entry: a path, or an hf:// URI already downloaded."""
    if entry.startswith("hf://"):
        in_repo = entry.removeprefix("hf://").split("?")[0].split("/", 2)[-1]
        candidates = [folder / in_repo, folder / Path(in_repo).name]
    else:
        candidates = [folder / entry]  # an absolute entry stays absolute
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise TranscoderLoadError(
        f"{config_file}: transcoders[{index}] is {entry!r} but no file is at "
        f"{candidates[-1]}; download it next to config.yaml"
    )


def _load_layer(file: Path, layer: int, hooks: dict[str, str]) -> Transcoder:
    if file.suffix == ".npz":
        return _load_npz_layer(file, layer, hooks)
    tensors = read_safetensors(file)
    if "w_enc" in tensors:
        return _load_gemma_scope_2_layer(file, tensors, layer, hooks)
    unknown = sorted(set(tensors) - _LAYER_KEYS)
    if unknown:
        raise TranscoderLoadError(
            f"{file}: tensor {unknown[0]!r} is not one circuitcat reads (expected "
            f"{', '.join(sorted(_LAYER_KEYS))}); this variant is not supported yet"
        )
    raw = _layer_tensors(
        tensors, file, layer, hooks, rows_are_features=True,
        threshold_key="activation_function.threshold",
    )  # fmt: skip
    raw.W_skip = tensors.get("W_skip")
    return to_transcoder(raw)


def _load_gemma_scope_2_layer(
    file: Path, tensors: dict[str, Tensor], layer: int, hooks: dict[str, str]
) -> Transcoder:
    """A Gemma Scope 2 `params.safetensors` (module docstring), read as circuit-tracer reads
    it: a JumpReLU transcoder whose skip path is the affine map x @ affine_skip_connection."""
    unknown = sorted(set(tensors) - GEMMA_SCOPE_2_KEYS)
    if unknown:
        raise TranscoderLoadError(
            f"{file}: tensor {unknown[0]!r} is not part of a Gemma Scope 2 transcoder (expected "
            f"{', '.join(sorted(GEMMA_SCOPE_2_KEYS))}); this variant is not supported yet"
        )
    b_enc = require(tensors, "b_enc", file, "encoder bias [d_transcoder]", ndim=1)
    raw = LayerTensors(
        layer=layer,
        file=file,
        W_enc=orient_encoder(
            require(tensors, "w_enc", file, "encoder [d_model, d_transcoder]"),
            int(b_enc.shape[0]),
            file,
            key="w_enc",
            rows_are_features=False,
        ),
        b_enc=b_enc,
        W_dec=require(tensors, "w_dec", file, "decoder [d_transcoder, d_model]"),
        b_dec_out=require(tensors, "b_dec", file, "output bias [d_model]"),
        input_hook=resolve_hook(hooks["feature_input_hook"], layer),
        output_hook=resolve_hook(hooks["feature_output_hook"], layer),
        mlp_module_out=writes_mlp_module(hooks["feature_output_hook"]),
        threshold=_threshold(
            require(tensors, "threshold", file, "JumpReLU threshold [d_transcoder]")
        ),
        keys={"W_enc": "w_enc", "W_dec": "w_dec", "b_dec_out": "b_dec",
              "W_skip": "affine_skip_connection"},
    )  # fmt: skip
    skip = tensors.get("affine_skip_connection")
    if skip is not None:
        if skip.ndim != 2:
            raise TranscoderLoadError(
                f"{file}: tensor 'affine_skip_connection' has shape {list(skip.shape)}, "
                "expected [d_model, d_model]"
            )
        raw.W_skip = skip.T  # x @ affine_skip_connection == x @ W_skip.T
    return to_transcoder(raw)


def _threshold(threshold: Tensor | None) -> Tensor | None:
    """A JumpReLU threshold, or None where it is all zero (pre * (pre > 0) is ReLU)."""
    if threshold is None or not bool((threshold != 0).any()):
        return None
    return threshold.reshape(-1)


def _load_clt(
    folder: Path, config_file: Path, hooks: dict[str, str]
) -> tuple[dict[int, Transcoder], list[Path]]:
    """A cross-layer transcoder: W_enc_{i} / W_dec_{i} files, layer i = 0 .. n_layers - 1."""
    found = {
        int(m.group(1)): f
        for f in folder.glob("W_enc_*.safetensors")
        if (m := _ENC_FILE.fullmatch(f.name))
    }
    n_layers = len(found)
    if sorted(found) != list(range(n_layers)) or not n_layers:
        raise TranscoderLoadError(
            f"{config_file}: a cross-layer transcoder needs W_enc_0.safetensors .. "
            f"W_enc_{{n-1}}.safetensors in {folder}; found layers {sorted(found)}"
        )
    transcoders, files = {}, []
    for i in range(n_layers):
        enc_file, dec_file = found[i], folder / f"W_dec_{i}.safetensors"
        transcoders[i] = _clt_layer(i, n_layers, enc_file, dec_file, hooks)
        files += [enc_file, dec_file]
    return transcoders, files


def _clt_layer(
    i: int, n_layers: int, enc_file: Path, dec_file: Path, hooks: dict[str, str]
) -> Transcoder:
    enc, dec = read_safetensors(enc_file), read_safetensors(dec_file)
    b_enc = require(enc, f"b_enc_{i}", enc_file, "encoder bias [d_transcoder]", ndim=1)
    W_dec = require(dec, f"W_dec_{i}", dec_file, "decoders [d_transcoder, n_layers - i, d_model]")
    if W_dec.ndim != 3 or W_dec.shape[1] != n_layers - i:
        raise TranscoderLoadError(
            f"{dec_file}: tensor 'W_dec_{i}' has shape {list(W_dec.shape)}, expected "
            f"[d_transcoder, {n_layers - i}, d_model] (layer {i} writes to layers {i}.."
            f"{n_layers - 1})"
        )
    raw = LayerTensors(
        layer=i,
        file=enc_file,
        W_enc=orient_encoder(
            require(enc, f"W_enc_{i}", enc_file, "encoder [d_transcoder, d_model]"),
            int(b_enc.shape[0]),
            enc_file,
            rows_are_features=True,
        ),
        b_enc=b_enc,
        W_dec=W_dec[:, 0],
        b_dec_out=require(enc, f"b_dec_{i}", enc_file, "output bias of MLP i [d_model]"),
        input_hook=resolve_hook(hooks["feature_input_hook"], i),
        output_hook=resolve_hook(hooks["feature_output_hook"], i),
        mlp_module_out=writes_mlp_module(hooks["feature_output_hook"]),
        threshold=_threshold(enc.get(f"threshold_{i}")),
        W_dec_after=W_dec[:, 1:].permute(1, 0, 2) if n_layers - i > 1 else None,
        keys={
            "W_enc": f"W_enc_{i}",
            "b_enc": f"b_enc_{i}",
            "b_dec_out": f"b_dec_{i}",
            "threshold": f"threshold_{i}",
            "W_dec": f"W_dec_{i}",
            "W_dec_after": f"W_dec_{i}",
        },
    )
    return to_transcoder(raw)


def _load_npz_layer(file: Path, layer: int, hooks: dict[str, str]) -> Transcoder:
    """A Gemma Scope `params.npz`: W_enc [d_model, d_transcoder], W_dec [d_transcoder,
    d_model], b_enc, b_dec (the output bias) and a JumpReLU `threshold` (read the way
    circuit-tracer reads it: pre * (pre > threshold); Gemma Scope's thresholds are positive,
    where this equals its ReLU(pre) * (pre > threshold))."""
    tensors = read_npz(file)
    # circuit-tracer's view of Gemma Scope: JumpReLU pre * (pre > threshold)
    raw = _layer_tensors(
        tensors, file, layer, hooks, rows_are_features=False, threshold_key="threshold"
    )
    return to_transcoder(raw)


def _layer_tensors(
    tensors: dict[str, Tensor],
    file: Path,
    layer: int,
    hooks: dict[str, str],
    *,
    rows_are_features: bool,
    threshold_key: str,
) -> LayerTensors:
    """One layer's tensors in circuitcat's orientation (`rows_are_features`: W_enc stored as
    [d_transcoder, d_model], as circuit-tracer's own files hold it; Gemma Scope's the other
    way round); `b_dec` is the output bias."""
    b_enc = require(tensors, "b_enc", file, "encoder bias [d_transcoder]", ndim=1)
    layout = "[d_transcoder, d_model]" if rows_are_features else "[d_model, d_transcoder]"
    return LayerTensors(
        layer=layer,
        file=file,
        W_enc=orient_encoder(
            require(tensors, "W_enc", file, f"encoder {layout}"),
            int(b_enc.shape[0]),
            file,
            rows_are_features=rows_are_features,
        ),
        b_enc=b_enc,
        W_dec=require(tensors, "W_dec", file, "decoder [d_transcoder, d_model]"),
        b_dec_out=require(tensors, "b_dec", file, "output bias [d_model]"),
        input_hook=resolve_hook(hooks["feature_input_hook"], layer),
        output_hook=resolve_hook(hooks["feature_output_hook"], layer),
        mlp_module_out=writes_mlp_module(hooks["feature_output_hook"]),
        threshold=_threshold(tensors.get(threshold_key)),
        keys={"b_dec_out": "b_dec", "threshold": threshold_key},
    )
