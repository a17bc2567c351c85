"""circuit-tracer's per-layer transcoder layout ("model_kind: transcoder_set").

    config.yaml            model_name, model_kind, feature_input_hook (e.g. "mlp.hook_in",
                           "ln2.hook_normalized"), feature_output_hook ("mlp.hook_out",
                           "hook_mlp_out"), activation ("relu"; "topk"/JumpReLU unsupported),
                           scan, transcoders: [per-layer files, list index = layer]
    layer_{i}.safetensors  W_enc [d_transcoder, d_model] (F.linear layout: rows are features),
                           W_dec [d_transcoder, d_model], b_enc [d_transcoder], b_dec [d_model]
                           (the OUTPUT bias), optional activation_function.threshold / W_skip

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

from circuitcat.catalog.errors import TranscoderLoadError
from circuitcat.ingest.transcoders.formats import (
    NONE_PROCESSED,
    LayerTensors,
    add_layer,
    make_set,
    orient_encoder,
    read_npz,
    read_safetensors,
    reject_variants,
    require,
    resolve_hook,
    to_transcoder,
)
from circuitcat.ingest.transcoders.transcoder import Transcoder, TranscoderSet

FORMAT = "circuit-tracer"
CONFIG_FILE = "config.yaml"
_LAYER_FILE = re.compile(r"layer_(\d+)\.safetensors")


def load_circuit_tracer(path: Path) -> TranscoderSet:
    """Load a circuit-tracer transcoder folder (config.yaml + layer_{i}.safetensors)."""
    folder = path.parent if path.name == CONFIG_FILE else path
    config_file = folder / CONFIG_FILE
    config = _read_config(config_file)
    hooks = {key: _hook_setting(config, key, config_file) for key in _HOOK_KEYS}
    transcoders: dict[int, Transcoder] = {}
    layer_files: dict[int, Path] = {}
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
    kind = config.get("model_kind", "transcoder_set")
    if kind != "transcoder_set":
        raise TranscoderLoadError(
            f"{config_file}: field 'model_kind' is {kind!r}, expected 'transcoder_set' "
            "(cross-layer transcoders are not supported yet)"
        )
    # circuit-tracer writes no `activation` key: the kind shows in the tensors (a JumpReLU
    # `activation_function.threshold`, a `W_skip`), checked per layer. Some hand-written
    # configs carry one anyway; only "relu" (or "jumprelu" with zero thresholds) loads.
    activation = config.get("activation", "relu")
    if activation not in ("relu", "jumprelu"):
        raise TranscoderLoadError(
            f"{config_file}: field 'activation' is {activation!r}; circuitcat loads ReLU "
            "transcoders (TopK and JumpReLU with thresholds are not supported yet)"
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
    reject_variants(tensors, file)
    b_enc = require(tensors, "b_enc", file, "encoder bias [d_transcoder]", ndim=1)
    d_transcoder = int(b_enc.shape[0])
    raw = LayerTensors(
        layer=layer,
        file=file,
        W_enc=orient_encoder(
            require(tensors, "W_enc", file, "encoder [d_transcoder, d_model]"),
            d_transcoder,
            file,
            rows_are_features=True,
        ),
        b_enc=b_enc,
        W_dec=require(tensors, "W_dec", file, "decoder [d_transcoder, d_model]"),
        b_dec_out=require(tensors, "b_dec", file, "output bias [d_model]"),
        input_hook=resolve_hook(hooks["feature_input_hook"], layer),
        output_hook=resolve_hook(hooks["feature_output_hook"], layer),
        keys={"b_dec_out": "b_dec"},
    )
    return to_transcoder(raw)


def _load_npz_layer(file: Path, layer: int, hooks: dict[str, str]) -> Transcoder:
    """A Gemma Scope `params.npz`: W_enc [d_model, d_transcoder], W_dec [d_transcoder,
    d_model], b_enc, b_dec (the output bias) and a JumpReLU `threshold`."""
    tensors = read_npz(file)
    threshold = tensors.pop("threshold", None)
    if threshold is not None and bool((threshold != 0).any()):
        raise TranscoderLoadError(
            f"{file}: tensor 'threshold' is non-zero, which means a JumpReLU transcoder; "
            "JumpReLU is not supported yet (circuitcat loads ReLU transcoders, i.e. all-zero "
            "thresholds)"
        )
    b_enc = require(tensors, "b_enc", file, "encoder bias [d_transcoder]", ndim=1)
    raw = LayerTensors(
        layer=layer,
        file=file,
        W_enc=orient_encoder(
            require(tensors, "W_enc", file, "encoder [d_model, d_transcoder]"),
            int(b_enc.shape[0]),
            file,
            rows_are_features=False,
        ),
        b_enc=b_enc,
        W_dec=require(tensors, "W_dec", file, "decoder [d_transcoder, d_model]"),
        b_dec_out=require(tensors, "b_dec", file, "output bias [d_model]"),
        input_hook=resolve_hook(hooks["feature_input_hook"], layer),
        output_hook=resolve_hook(hooks["feature_output_hook"], layer),
        keys={"b_dec_out": "b_dec"},
    )
    return to_transcoder(raw)
