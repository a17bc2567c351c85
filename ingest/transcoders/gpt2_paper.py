"""The GPT-2 small transcoders of Dunefsky, Chlenski & Nanda (arXiv 2406.11944).

Two layouts, one file per layer (the layer comes from the file's config or its name, e.g.
`final_sparse_autoencoder_gpt2-small_blocks.8.ln2.hook_normalized_24576.pt`, `layer_8...`):

- the original `.pt` files: a pickle of {"cfg": <training config object>, "state_dict":
  {W_enc [d_in, d_sae], b_enc, W_dec [d_sae, d_out], b_dec [d_in] (input side), b_dec_out}}.
  The config object's class comes from the paper's code, so reading it needs full unpickling,
  which can run arbitrary code: only with allow_pickle=True. Classes that are not installed are
  replaced by plain attribute holders, so the paper's code need not be.
- pickle-free safetensors repackagings: W_enc, b_enc, W_dec, b_dec, where the input bias is
  already folded (b_enc' = b_enc - b_dec . W_enc) and b_dec is the OUTPUT bias; a file that also
  has b_dec_out is unfolded (b_dec input side, b_dec_out output), as in the .pt files.

Hooks default to blocks.L.ln2.hook_normalized -> blocks.L.hook_mlp_out. These transcoders were
trained on `HookedTransformer.from_pretrained("gpt2")` with its defaults, so the set records
fold_ln, center_writing_weights and center_unembed all True.
"""

from __future__ import annotations

import pickle
import types
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from circuitcat.catalog.errors import TranscoderLoadError
from circuitcat.ingest.transcoders.formats import (
    ALL_PROCESSED,
    LayerTensors,
    add_layer,
    layer_from_text,
    make_set,
    orient_encoder,
    read_safetensors,
    reject_variants,
    require,
    resolve_hook,
    safetensors_metadata,
    to_transcoder,
    writes_mlp_module,
)
from circuitcat.ingest.transcoders.transcoder import Transcoder, TranscoderSet

FORMAT_SAFETENSORS = "gpt2-paper-safetensors"
FORMAT_PICKLE = "gpt2-paper-pt"
DEFAULT_MODEL = "gpt2"
INPUT_SITE = "ln2.hook_normalized"
OUTPUT_SITE = "hook_mlp_out"
PICKLE_SUFFIXES = (".pt", ".pth")


def load_paper_safetensors(path: Path) -> TranscoderSet:
    """Load the pickle-free repackaging: a folder of per-layer safetensors files (or one file)."""
    root, files = _files(path, (".safetensors",))
    transcoders: dict[int, Transcoder] = {}
    layer_files: dict[int, Path] = {}
    model_name = DEFAULT_MODEL
    for file in files:
        tensors = read_safetensors(file)
        reject_variants(tensors, file)
        meta = safetensors_metadata(file)
        model_name = meta.get("model_name", model_name)
        layer = _layer(meta.get("layer"), meta.get("hook_point", ""), file)
        hooks = (meta.get("hook_point"), meta.get("out_hook_point"))
        add_layer(transcoders, layer_files, _from_tensors(tensors, file, layer, hooks), file)
    return make_set(
        name=root.name,
        model_name=model_name,
        format=FORMAT_SAFETENSORS,
        root=root,
        transcoders=transcoders,
        processing=dict(ALL_PROCESSED),
        files=files,
    )


def load_paper_pickles(path: Path, *, allow_pickle: bool = False) -> TranscoderSet:
    """Load the original .pt files (one file or a folder of them); needs allow_pickle=True."""
    root, files = _files(path, PICKLE_SUFFIXES)
    if not allow_pickle:
        raise TranscoderLoadError(
            f"{files[0]} is a pickle: loading it needs full unpickling, which can run arbitrary "
            "code. Pass --allow-pickle (allow_pickle=True) only for files you trust, or use a "
            "pickle-free safetensors repackaging"
        )
    transcoders: dict[int, Transcoder] = {}
    layer_files: dict[int, Path] = {}
    model_name = DEFAULT_MODEL
    for file in files:
        cfg, state = _read_pickle(file)
        model_name = str(_cfg_get(cfg, "model_name") or model_name)
        hook_point = _cfg_get(cfg, "hook_point")
        layer = _layer(_cfg_get(cfg, "hook_point_layer"), str(hook_point or ""), file)
        hooks = (hook_point, _cfg_get(cfg, "out_hook_point"))
        tensors = {k: v for k, v in state.items() if isinstance(v, Tensor)}
        require(tensors, "b_dec_out", file, "output bias [d_out] (the paper's state dict has it)")
        add_layer(transcoders, layer_files, _from_tensors(tensors, file, layer, hooks), file)
    return make_set(
        name=root.name,
        model_name=model_name,
        format=FORMAT_PICKLE,
        root=root,
        transcoders=transcoders,
        processing=dict(ALL_PROCESSED),
        files=files,
    )


def _files(path: Path, suffixes: tuple[str, ...]) -> tuple[Path, list[Path]]:
    """(root folder, sorted layer files) for a file or a folder of files."""
    if path.is_file():
        return path.parent, [path]
    files = sorted(f for f in path.iterdir() if f.suffix in suffixes and f.is_file())
    if not files:
        raise TranscoderLoadError(f"{path}: no {' or '.join(suffixes)} files in it")
    return path, files


def _layer(value: Any, hook_point: str, file: Path) -> int:
    if value is not None and str(value).isdigit():
        return int(value)
    layer = layer_from_text(hook_point)
    layer = layer if layer is not None else layer_from_text(file.name)
    if layer is None:
        raise TranscoderLoadError(
            f"{file}: cannot tell which layer it is for: name the file layer_<i>.safetensors "
            "(or ...blocks.<i>.ln2.hook_normalized...), or set its 'layer' metadata"
        )
    return layer


def _from_tensors(
    tensors: dict[str, Tensor], file: Path, layer: int, hooks: tuple[Any, Any]
) -> Transcoder:
    b_enc = require(tensors, "b_enc", file, "encoder bias [d_sae]", ndim=1)
    unfolded = "b_dec_out" in tensors  # .pt files and unfolded repackagings keep b_dec on input
    raw = LayerTensors(
        layer=layer,
        file=file,
        W_enc=orient_encoder(
            require(tensors, "W_enc", file, "encoder [d_in, d_sae]"),
            int(b_enc.shape[0]),
            file,
            rows_are_features=False,
        ),
        b_enc=b_enc,
        W_dec=require(tensors, "W_dec", file, "decoder [d_sae, d_out]"),
        b_dec_out=tensors["b_dec_out"] if unfolded else require(tensors, "b_dec", file, "bias"),
        b_dec=require(tensors, "b_dec", file, "input bias [d_in]") if unfolded else None,
        input_hook=resolve_hook(str(hooks[0] or INPUT_SITE), layer),
        output_hook=resolve_hook(str(hooks[1] or OUTPUT_SITE), layer),
        mlp_module_out=writes_mlp_module(str(hooks[1] or OUTPUT_SITE)),
        keys={} if unfolded else {"b_dec_out": "b_dec"},
    )
    return to_transcoder(raw)


class _Unresolved:
    """Stands in for a pickled class whose module is not installed (the paper's config)."""

    origin = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs = args, kwargs

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, dict):
            self.__dict__.update(state)
        else:
            self.__dict__["state"] = state


class _LenientUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return super().find_class(module, name)
        except (ImportError, AttributeError):
            return type(name, (_Unresolved,), {"origin": f"{module}.{name}"})


# torch.load takes a pickle module and subclasses its Unpickler (keeping our find_class)
_lenient_pickle = types.ModuleType("circuitcat_lenient_pickle")
_lenient_pickle.Unpickler = _LenientUnpickler  # type: ignore[attr-defined]
_lenient_pickle.load = lambda f, **kw: _LenientUnpickler(f, **kw).load()  # type: ignore[attr-defined]


def _read_pickle(file: Path) -> tuple[Any, dict[str, Any]]:
    """(config object or None, state dict) of one of the paper's .pt files."""
    try:
        obj = torch.load(
            file, map_location="cpu", weights_only=False, pickle_module=_lenient_pickle
        )
    except (OSError, RuntimeError, pickle.UnpicklingError, EOFError, ValueError) as e:
        raise TranscoderLoadError(f"{file} is not a readable torch pickle ({e})") from e
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        return obj.get("cfg"), obj["state_dict"]
    if isinstance(obj, dict) and "W_enc" in obj:
        return None, obj  # a bare state dict
    raise TranscoderLoadError(
        f"{file}: expected a dict with 'cfg' and 'state_dict' (the paper's save format) or a "
        f"state dict with 'W_enc'; found {type(obj).__name__}"
    )


def _cfg_get(cfg: Any, key: str) -> Any:
    if cfg is None:
        return None
    if isinstance(cfg, dict):
        return cfg.get(key)
    return getattr(cfg, key, None)
