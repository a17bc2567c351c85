"""Shared pieces of the foreign-format transcoder loaders (SAELens, circuit-tracer, the paper's).

Each loader reads its files into `LayerTensors` (our orientation and meaning: W_enc
[d_in, d_transcoder], b_dec_out the output bias, b_dec the optional input-side bias, and for the
other kinds a JumpReLU `threshold` [d_transcoder], a `W_skip` [d_out, d_in] and cross-layer
decoders `W_dec_after` [n_after, d_transcoder, d_out]) and `to_transcoder` checks every shape
and builds a fp32 `Transcoder`, folding an input-side b_dec into b_enc
(b_enc' = b_enc - b_dec @ W_enc) so b_dec is zero, as transcoder.py expects.

Errors name the file, the field (tensor key or config key) and the expected value.
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from torch import Tensor

from circuitcat.catalog.errors import TranscoderLoadError
from circuitcat.ingest.models import PROCESSING_FLAGS
from circuitcat.ingest.transcoders.native import folder_sha256
from circuitcat.ingest.transcoders.transcoder import Transcoder, TranscoderConfig, TranscoderSet

ALL_PROCESSED = dict.fromkeys(PROCESSING_FLAGS, True)
NONE_PROCESSED = dict.fromkeys(PROCESSING_FLAGS, False)

# circuit-tracer wraps each MLP with hook_in/hook_out; a plain HookedTransformer carries the
# same tensors at these hooks, the input only up to the LayerNorm affine (see load.py), the
# output only on blocks without a post-MLP norm: Gemma-2/3's ln2_post sits between the MLP's
# output and hook_mlp_out, so a set writing mlp.hook_out is marked `mlp_module_out` and its
# output goes through ln2_post (transcoder.py's PostNorm).
MLP_MODULE_OUT = "mlp.hook_out"
HOOK_ALIASES = {"mlp.hook_in": "ln2.hook_normalized", MLP_MODULE_OUT: "hook_mlp_out"}
_BLOCK_HOOK = re.compile(r"blocks\.(\d+)\.(.+)")
_LAYER_IN_NAME = re.compile(r"(?:blocks\.|layer_?|layers\.|(?<![A-Za-z])L)(\d+)(?:\D|$)")


@dataclass
class LayerTensors:
    """One layer's tensors as read from a file, already in circuitcat's orientation."""

    layer: int
    file: Path
    W_enc: Tensor  # [d_in, d_transcoder]
    b_enc: Tensor  # [d_transcoder]
    W_dec: Tensor  # [d_transcoder, d_out]
    b_dec_out: Tensor  # [d_out]
    input_hook: str
    output_hook: str
    b_dec: Tensor | None = None  # [d_in], subtracted from the input before encoding
    threshold: Tensor | None = None  # [d_transcoder]: JumpReLU, pre * (pre > threshold)
    W_skip: Tensor | None = None  # [d_out, d_in], applied as x @ W_skip.T
    W_dec_after: Tensor | None = None  # [n_after, d_transcoder, d_out]: later layers' decoders
    mlp_module_out: bool = False  # declared output hook mlp.hook_out (see HOOK_ALIASES)
    # our tensor name -> the file's key for the same tensor, so messages use the file's words
    keys: dict[str, str] = field(default_factory=dict)


def read_safetensors(file: Path) -> dict[str, Tensor]:
    """All tensors of a safetensors file, on the CPU."""
    if not file.is_file():
        raise TranscoderLoadError(f"{file} is missing: expected a safetensors file there")
    try:
        return load_file(str(file), device="cpu")
    except (SafetensorError, OSError) as e:
        raise TranscoderLoadError(f"{file} is not a readable safetensors file ({e})") from e


def read_npz(file: Path) -> dict[str, Tensor]:
    """All arrays of a numpy .npz file (Gemma Scope's `params.npz`), as CPU tensors."""
    if not file.is_file():
        raise TranscoderLoadError(f"{file} is missing: expected a numpy .npz file there")
    try:
        with np.load(file, allow_pickle=False) as arrays:
            return {key: torch.from_numpy(np.array(arrays[key])) for key in arrays.files}
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise TranscoderLoadError(f"{file} is not a readable numpy .npz file ({e})") from e


def safetensors_keys(file: Path) -> list[str]:
    """Tensor names of a safetensors file without reading the tensors (for sniffing)."""
    try:
        with safe_open(str(file), framework="pt") as f:
            return list(f.keys())
    except (SafetensorError, OSError):
        return []


def safetensors_metadata(file: Path) -> dict[str, str]:
    try:
        with safe_open(str(file), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError):
        return {}


def require(
    tensors: dict[str, Tensor], key: str, file: Path, expected: str, ndim: int | None = None
) -> Tensor:
    """tensors[key], or an error naming the file, the key and what it should hold."""
    if key not in tensors:
        found = ", ".join(sorted(tensors)) or "none"
        raise TranscoderLoadError(
            f"{file}: tensor {key!r} is missing (expected {expected}); keys found: {found}"
        )
    tensor = tensors[key]
    if ndim is not None and tensor.ndim != ndim:
        raise TranscoderLoadError(
            f"{file}: tensor {key!r} has shape {list(tensor.shape)}, expected {expected}"
        )
    return tensor


def reject_variants(tensors: dict[str, Tensor], file: Path) -> None:
    """For formats without variants (the paper's): a threshold or skip means another format."""
    for key in tensors:
        if key.endswith("threshold") or key in ("W_skip", "affine_skip_connection"):
            raise TranscoderLoadError(
                f"{file}: tensor {key!r} is not part of this format (ReLU transcoders: W_enc, "
                "b_enc, W_dec and biases); a JumpReLU or skip transcoder is read from its "
                "SAELens or circuit-tracer folder"
            )


def orient_encoder(
    W_enc: Tensor, d_transcoder: int, file: Path, key: str = "W_enc", *, rows_are_features: bool
) -> Tensor:
    """W_enc as [d_in, d_transcoder]; formats (and releases) store it either way round.

    `rows_are_features` is the format's convention, used only when the matrix is square.
    """
    if W_enc.ndim != 2:
        raise TranscoderLoadError(
            f"{file}: tensor {key!r} has shape {list(W_enc.shape)}, expected a matrix "
            f"[d_in, {d_transcoder}]"
        )
    rows, cols = W_enc.shape
    if rows == cols == d_transcoder:
        return W_enc.T if rows_are_features else W_enc
    if cols == d_transcoder:
        return W_enc
    if rows == d_transcoder:
        return W_enc.T
    raise TranscoderLoadError(
        f"{file}: tensor {key!r} has shape {list(W_enc.shape)}, expected [d_in, {d_transcoder}] "
        f"(or [{d_transcoder}, d_in]) where d_transcoder = {d_transcoder} is b_enc's length"
    )


def to_transcoder(t: LayerTensors, dims: dict[str, int] | None = None) -> Transcoder:
    """Check every shape (against `dims` from a config when given) and build the Transcoder."""
    dims = dims or {}
    d_tc = dims.get("d_transcoder", _length(t, "b_enc", t.b_enc))
    d_in = dims.get("d_in", t.W_enc.shape[0] if t.W_enc.ndim == 2 else -1)
    d_out = dims.get("d_out", _length(t, "b_dec_out", t.b_dec_out))
    _check_shape(t, "b_enc", t.b_enc, (d_tc,), "[d_transcoder]")
    _check_shape(t, "W_enc", t.W_enc, (d_in, d_tc), "[d_in, d_transcoder]")
    _check_shape(t, "W_dec", t.W_dec, (d_tc, d_out), "[d_transcoder, d_out]")
    _check_shape(t, "b_dec_out", t.b_dec_out, (d_out,), "[d_out]")
    W_enc, b_enc = t.W_enc.double(), t.b_enc.double()
    if t.b_dec is not None:
        _check_shape(t, "b_dec", t.b_dec, (d_in,), "[d_in]")
        b_enc = b_enc - t.b_dec.double() @ W_enc  # fold: (x - b_dec) W + b = x W + (b - b_dec W)
    optional = {"threshold": t.threshold, "W_skip": t.W_skip, "W_dec_after": t.W_dec_after}
    _check_finite(t, {"W_enc": t.W_enc, "b_enc": t.b_enc, "W_dec": t.W_dec,
                      "b_dec_out": t.b_dec_out, "b_dec": t.b_dec, **optional})  # fmt: skip
    if t.threshold is not None:
        _check_shape(t, "threshold", t.threshold, (d_tc,), "[d_transcoder]")
    if t.W_skip is not None:
        _check_shape(t, "W_skip", t.W_skip, (d_out, d_in), "[d_out, d_in]")
    n_after = 0 if t.W_dec_after is None else int(t.W_dec_after.shape[0])
    if t.W_dec_after is not None:
        _check_shape(
            t,
            "W_dec_after",
            t.W_dec_after,
            (n_after, d_tc, d_out),
            "[n_after, d_transcoder, d_out]",
        )
    cfg = TranscoderConfig(
        d_in=d_in,
        d_out=d_out,
        d_transcoder=d_tc,
        layer=t.layer,
        input_hook=t.input_hook,
        output_hook=t.output_hook,
        activation="jumprelu" if t.threshold is not None else "relu",
        skip=t.W_skip is not None,
        n_outputs=1 + n_after,
        mlp_module_out=t.mlp_module_out,
    )
    tc = Transcoder(cfg)
    with torch.no_grad():
        tc.W_enc.copy_(W_enc.float())
        tc.b_enc.copy_(b_enc.float())
        tc.W_dec.copy_(t.W_dec.float())
        tc.b_dec_out.copy_(t.b_dec_out.float())
        for name, value in optional.items():
            if value is not None:
                getattr(tc, name).copy_(value.float())
    return tc


def _check_finite(t: LayerTensors, tensors: dict[str, Tensor | None]) -> None:
    """NaN or infinite weights poison every statistic and edge computed from them: refuse."""
    for name, tensor in tensors.items():
        if tensor is None or not tensor.is_floating_point():
            continue
        bad = ~torch.isfinite(tensor)
        if bool(bad.any()):
            first = [int(i) for i in bad.nonzero()[0].tolist()]
            raise TranscoderLoadError(
                f"{t.file}: tensor {t.keys.get(name, name)!r} has {int(bad.sum())} NaN or "
                f"infinite values (the first at index {first}); these weights are corrupt"
            )


def _length(t: LayerTensors, name: str, tensor: Tensor) -> int:
    if tensor.ndim != 1:
        key = t.keys.get(name, name)
        raise TranscoderLoadError(
            f"{t.file}: tensor {key!r} has shape {list(tensor.shape)}, expected a vector"
        )
    return int(tensor.shape[0])


def _check_shape(
    t: LayerTensors, name: str, tensor: Tensor, expected: tuple[int, ...], meaning: str
) -> None:
    if tuple(tensor.shape) != expected:
        key = t.keys.get(name, name)
        raise TranscoderLoadError(
            f"{t.file}: tensor {key!r} has shape {list(tensor.shape)}, expected "
            f"{list(expected)} ({meaning})"
        )


def resolve_hook(hook: str, layer: int) -> str:
    """The full HookedTransformer hook name: 'blocks.{layer}.<site>', aliases mapped."""
    match = _BLOCK_HOOK.fullmatch(hook)
    if match:
        return f"blocks.{match.group(1)}.{HOOK_ALIASES.get(match.group(2), match.group(2))}"
    return f"blocks.{layer}.{HOOK_ALIASES.get(hook, hook)}"


def writes_mlp_module(hook: str) -> bool:
    """Whether a declared output hook is the MLP module's own output (`mlp.hook_out`, with or
    without a 'blocks.L.' prefix)."""
    match = _BLOCK_HOOK.fullmatch(hook)
    return (match.group(2) if match else hook) == MLP_MODULE_OUT


def layer_from_text(text: str) -> int | None:
    """A layer number written in a hook or file name ('blocks.8.', 'layer_8', 'L8')."""
    match = _LAYER_IN_NAME.search(text)
    return int(match.group(1)) if match else None


def add_layer(
    transcoders: dict[int, Transcoder], files: dict[int, Path], tc: Transcoder, file: Path
) -> None:
    """Insert one layer, refusing two files for the same layer."""
    layer = tc.cfg.layer
    if layer in transcoders:
        raise TranscoderLoadError(
            f"{file} and {files[layer]} both hold layer {layer}: keep one transcoder per layer"
        )
    transcoders[layer] = tc
    files[layer] = file


def make_set(
    *,
    name: str,
    model_name: str,
    format: str,
    root: Path,
    transcoders: dict[int, Transcoder],
    processing: dict[str, bool],
    files: list[Path],
) -> TranscoderSet:
    """A TranscoderSet whose sha256 covers `files` (paths relative to `root`, sorted)."""
    if not transcoders:
        raise TranscoderLoadError(f"{root}: no transcoder layers found")
    names = [f.relative_to(root).as_posix() for f in files]
    return TranscoderSet(
        name=name,
        model_name=model_name,
        format=format,
        source=str(root),
        transcoders=dict(sorted(transcoders.items())),
        processing=processing,
        sha256=folder_sha256(root, names),
    )
