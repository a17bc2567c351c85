"""The shipped toy model `toy-years`: a small GPT-2-style HookedTransformer with a greater-than
circuit, and its transcoders.

Weights live in `ingest/toy/weights/` (written by `circuitcat toy train`):

    config.json                 architecture + training record (seed, steps, metrics)
    model.safetensors           HookedTransformer parameters (fp32)
    tokenizer/tokenizer.json    word-level tokenizer (+ tokenizer_config.json)
    transcoders/                one transcoder per MLP layer, circuitcat's native format

The model is used as trained: no fold_ln, centering or other weight processing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from transformer_lens import HookedTransformer, HookedTransformerConfig

from circuitcat.catalog.errors import ModelLoadError
from circuitcat.ingest.toy.tokenizer import load_tokenizer
from circuitcat.ingest.transcoders.native import load_transcoder_set
from circuitcat.ingest.transcoders.transcoder import TranscoderSet

TOY_MODEL_NAME = "toy-years"
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
TOKENIZER_DIR = "tokenizer"
TRANSCODER_DIR = "transcoders"
PROCESSING = {"fold_ln": False, "center_writing_weights": False, "center_unembed": False}

TOY_ARCHITECTURE: dict[str, Any] = {
    "n_layers": 4,
    "d_model": 128,
    "n_heads": 4,
    "d_head": 32,
    "d_mlp": 512,
    "n_ctx": 32,
    "act_fn": "gelu_new",
    "normalization_type": "LN",
    "positional_embedding_type": "standard",
}


def toy_config(d_vocab: int, seed: int = 0, **overrides: Any) -> HookedTransformerConfig:
    """The toy architecture (GPT-2 style: LayerNorm, GELU, learned positions)."""
    arch = {**TOY_ARCHITECTURE, **overrides}
    return HookedTransformerConfig(
        **arch, d_vocab=d_vocab, model_name=TOY_MODEL_NAME, seed=seed, device="cpu"
    )


def build_toy_model(tokenizer: Any, seed: int = 0, **overrides: Any) -> HookedTransformer:
    """A freshly initialised toy model (HookedTransformer seeds its init from cfg.seed)."""
    cfg = toy_config(len(tokenizer), seed=seed, **overrides)
    return HookedTransformer(cfg, tokenizer=tokenizer, move_to_device=False)


def save_toy_model(model: HookedTransformer, folder: Path, record: dict[str, Any]) -> None:
    """Write model.safetensors and config.json (architecture + `record`) into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    params = {k: v.detach().cpu().contiguous() for k, v in model.named_parameters()}
    save_file(params, str(folder / MODEL_FILE), metadata={"model_name": TOY_MODEL_NAME})
    arch = {k: getattr(model.cfg, k) for k in TOY_ARCHITECTURE}
    config = {
        "model_name": TOY_MODEL_NAME,
        "architecture": {**arch, "d_vocab": model.cfg.d_vocab},
        "processing": PROCESSING,
        **record,
    }
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")


def read_toy_config(weights_dir: Path = WEIGHTS_DIR) -> dict[str, Any]:
    """The toy's config.json (architecture, training record, measured metrics)."""
    path = weights_dir / CONFIG_FILE
    if not path.is_file():
        raise ModelLoadError(
            f"toy model config {path} is missing; re-create the weights with `circuitcat toy train`"
        )
    try:
        config: dict[str, Any] = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ModelLoadError(
            f"{path} is not valid JSON ({e.msg}); re-run `circuitcat toy train`"
        ) from e
    if "architecture" not in config:
        raise ModelLoadError(f"{path}: field 'architecture' is missing")
    return config


def load_toy_model(device: str = "cpu", weights_dir: Path = WEIGHTS_DIR) -> HookedTransformer:
    """The trained toy model with its tokenizer, in eval mode."""
    arch = dict(read_toy_config(weights_dir)["architecture"])
    tokenizer = load_tokenizer(weights_dir / TOKENIZER_DIR)
    d_vocab = arch.pop("d_vocab")
    if d_vocab != len(tokenizer):
        raise ModelLoadError(
            f"{weights_dir / CONFIG_FILE}: d_vocab is {d_vocab} but the tokenizer has "
            f"{len(tokenizer)} tokens; re-create the weights with `circuitcat toy train`"
        )
    model = HookedTransformer(
        toy_config(d_vocab, **arch), tokenizer=tokenizer, move_to_device=False
    )
    path = weights_dir / MODEL_FILE
    if not path.is_file():
        raise ModelLoadError(f"toy weights {path} are missing; run `circuitcat toy train`")
    state = load_file(str(path))
    missing, unexpected = model.load_state_dict(state, strict=False)
    expected = {k for k, _ in model.named_parameters()}
    if unexpected or expected & set(missing):
        raise ModelLoadError(
            f"{path} does not fit the toy architecture: missing {sorted(expected & set(missing))}"
            f", unexpected {sorted(unexpected)}; re-run `circuitcat toy train`"
        )
    model.to(torch.device(device), print_details=False)
    model.eval()
    return model


def load_toy_transcoders(device: str = "cpu", weights_dir: Path = WEIGHTS_DIR) -> TranscoderSet:
    """The toy model's committed transcoders (one per MLP layer)."""
    return load_transcoder_set(weights_dir / TRANSCODER_DIR, device=device)
