"""circuitcat's own transcoder format: a folder holding

    config.json           {"format": "circuitcat-transcoders", "version": 1, "name", "model_name",
                           "input_hook": "blocks.{layer}.ln2.hook_normalized",
                           "output_hook": "blocks.{layer}.hook_mlp_out", "d_in", "d_out",
                           "d_transcoder", "activation": "relu", "layers": [...],
                           "processing": {fold_ln, center_writing_weights, center_unembed},
                           "metrics": {"<layer>": {"fvu", "l0", "dead_fraction"}}}
    layer_{i}.safetensors W_enc [d_in, d_transcoder], b_enc [d_transcoder],
                          W_dec [d_transcoder, d_out], b_dec [d_in] (input side),
                          b_dec_out [d_out]; float32

`TranscoderSet.sha256` is the sha256 over the folder's files in sorted order (name, then bytes).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from circuitcat.catalog.errors import TranscoderLoadError
from circuitcat.ingest.transcoders.transcoder import Transcoder, TranscoderConfig, TranscoderSet

FORMAT = "circuitcat-transcoders"
VERSION = 1
CONFIG_FILE = "config.json"
INPUT_HOOK = "blocks.{layer}.ln2.hook_normalized"
OUTPUT_HOOK = "blocks.{layer}.hook_mlp_out"
PARAMS = ("W_enc", "b_enc", "W_dec", "b_dec", "b_dec_out")
_REQUIRED = ("name", "model_name", "input_hook", "output_hook", "d_in", "d_out", "d_transcoder")


def layer_file(layer: int) -> str:
    return f"layer_{layer}.safetensors"


def folder_sha256(folder: Path, names: list[str]) -> str:
    """sha256 over the named files of `folder`, in sorted order."""
    digest = hashlib.sha256()
    for name in sorted(names):
        digest.update(name.encode())
        digest.update((folder / name).read_bytes())
    return digest.hexdigest()


def save_transcoder_set(tset: TranscoderSet, folder: Path) -> str:
    """Write `tset` in circuitcat's format; returns (and stores on `tset`) the folder's sha256.

    The format holds per-layer ReLU transcoders; other kinds stay in their library's layout."""
    if tset.kind != "relu":
        raise TranscoderLoadError(
            f"transcoder set '{tset.name}' is {tset.kind!r}; circuitcat's own format holds ReLU "
            "transcoders only: keep it in its SAELens or circuit-tracer folder"
        )
    folder.mkdir(parents=True, exist_ok=True)
    first = tset[tset.layers[0]].cfg
    config: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "name": tset.name,
        "model_name": tset.model_name,
        "input_hook": first.input_hook.replace(f".{first.layer}.", ".{layer}.", 1),
        "output_hook": first.output_hook.replace(f".{first.layer}.", ".{layer}.", 1),
        "d_in": first.d_in,
        "d_out": first.d_out,
        "d_transcoder": first.d_transcoder,
        "activation": first.activation,
        "layers": tset.layers,
        "processing": dict(tset.processing),
        "metrics": {str(layer): dict(tset[layer].cfg.metrics) for layer in tset.layers},
    }
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    for layer in tset.layers:
        tc = tset[layer]
        tensors = {k: getattr(tc, k).detach().float().cpu().contiguous() for k in PARAMS}
        save_file(tensors, str(folder / layer_file(layer)), metadata={"format": FORMAT})
    tset.sha256 = folder_sha256(folder, [CONFIG_FILE] + [layer_file(i) for i in tset.layers])
    return tset.sha256


def read_config(folder: Path) -> dict[str, Any]:
    """The validated config.json of a circuitcat transcoder folder."""
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise TranscoderLoadError(
            f"{path} is missing; a circuitcat transcoder folder needs config.json with "
            f'"format": "{FORMAT}"'
        )
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise TranscoderLoadError(f"{path} is not valid JSON ({e.msg})") from e
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        found = config.get("format") if isinstance(config, dict) else None
        raise TranscoderLoadError(f"{path}: field 'format' is {found!r}, expected {FORMAT!r}")
    if config.get("version") != VERSION:
        raise TranscoderLoadError(
            f"{path}: field 'version' is {config.get('version')!r}, expected {VERSION}"
        )
    for key in _REQUIRED:
        if key not in config:
            raise TranscoderLoadError(f"{path}: field {key!r} is missing")
    layers = config.get("layers")
    if not isinstance(layers, list) or not layers or not all(isinstance(i, int) for i in layers):
        raise TranscoderLoadError(f"{path}: field 'layers' must be a non-empty list of integers")
    return config


def _expected_shapes(config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    d_in, d_out, d_tc = config["d_in"], config["d_out"], config["d_transcoder"]
    return {
        "W_enc": (d_in, d_tc),
        "b_enc": (d_tc,),
        "W_dec": (d_tc, d_out),
        "b_dec": (d_in,),
        "b_dec_out": (d_out,),
    }


def _load_layer(folder: Path, layer: int, config: dict[str, Any], device: str) -> Transcoder:
    path = folder / layer_file(layer)
    if not path.is_file():
        raise TranscoderLoadError(f"{path} is missing; config.json lists layer {layer}")
    try:
        tensors = load_file(str(path), device="cpu")
    except (SafetensorError, OSError) as e:
        raise TranscoderLoadError(f"{path} is not a readable safetensors file ({e})") from e
    for key, shape in _expected_shapes(config).items():
        if key not in tensors:
            raise TranscoderLoadError(f"{path}: tensor {key!r} is missing")
        if tuple(tensors[key].shape) != shape:
            raise TranscoderLoadError(
                f"{path}: tensor {key!r} has shape {tuple(tensors[key].shape)}, expected {shape}"
            )
        if not bool(torch.isfinite(tensors[key]).all()):
            n_bad = int((~torch.isfinite(tensors[key])).sum())
            raise TranscoderLoadError(
                f"{path}: tensor {key!r} has {n_bad} NaN or infinite values; these weights are "
                "corrupt"
            )
    metrics = config.get("metrics", {}).get(str(layer), {})
    cfg = TranscoderConfig(
        d_in=config["d_in"],
        d_out=config["d_out"],
        d_transcoder=config["d_transcoder"],
        layer=layer,
        input_hook=config["input_hook"].format(layer=layer),
        output_hook=config["output_hook"].format(layer=layer),
        activation=config.get("activation", "relu"),
        metrics={k: float(v) for k, v in metrics.items()},
    )
    tc = Transcoder(cfg)
    with torch.no_grad():
        for key in PARAMS:
            getattr(tc, key).copy_(tensors[key].float())
    return tc.to(torch.device(device))


def load_transcoder_set(folder: Path, device: str = "cpu") -> TranscoderSet:
    """Load a circuitcat transcoder folder; a TranscoderLoadError names file, field and the
    expected value."""
    folder = Path(folder)
    config = read_config(folder)
    if config.get("activation", "relu") != "relu":
        raise TranscoderLoadError(
            f"{folder / CONFIG_FILE}: field 'activation' is {config['activation']!r}, "
            "expected 'relu'"
        )
    layers: list[int] = config["layers"]
    transcoders = {layer: _load_layer(folder, layer, config, device) for layer in layers}
    return TranscoderSet(
        name=config["name"],
        model_name=config["model_name"],
        format="circuitcat",
        source=str(folder),
        transcoders=transcoders,
        processing={k: bool(v) for k, v in config.get("processing", {}).items()},
        sha256=folder_sha256(folder, [CONFIG_FILE] + [layer_file(i) for i in layers]),
    )
