"""Load a HookedTransformer: the built-in toy, a local Hugging Face folder, or a hub name.

Published transcoders only match a model processed the way they were trained, so every
`LoadedModel` records the processing flags (fold_ln, center_writing_weights, center_unembed)
that were actually applied, next to those that were asked for: transformer_lens drops some flags
for some architectures (`applied_processing`), e.g. center_unembed for a model with logit
soft-capping (Gemma-2), fold_ln and center_writing_weights for post-norm ones.

transformer_lens 3.x `HookedTransformer.from_pretrained` only accepts official model names:
a folder path fails in `get_official_model_name`, and an official name plus `hf_model=` still
fetches the official config from the hub. So local folders go through the same steps that
`from_pretrained` runs (`get_pretrained_model_config`, `get_pretrained_state_dict`,
`load_and_process_state_dict`), which accept a path and never touch the network.
"""

from __future__ import annotations

import contextlib
import io
import json
import socket
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from transformer_lens import HookedTransformer
from transformer_lens import loading_from_pretrained as loading
from transformer_lens.config.hooked_transformer_config import HookedTransformerConfig
from transformer_lens.utilities import softcap_enabled
from transformer_lens.utilities.architectures import POST_NORM_ARCHITECTURES

from circuitcat.catalog.errors import ModelLoadError
from circuitcat.ingest.model_configs import build_config, needs_own_config

TOY_NAMES = ("toy-years", "toy")
PROCESSING_FLAGS = ("fold_ln", "center_writing_weights", "center_unembed")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "spiece.model")


@dataclass
class LoadedModel:
    """A model plus what it is and how its weights were processed."""

    model: HookedTransformer
    name: str
    source: str
    processing: dict[str, bool]  # the flags transformer_lens applied
    requested: dict[str, bool] = field(default_factory=dict)  # the flags asked for; {}: these


def load_model(
    name_or_path: str,
    device: str = "cpu",
    *,
    fold_ln: bool = True,
    center_writing_weights: bool = True,
    center_unembed: bool = True,
    dtype: torch.dtype = torch.float32,
    model_name: str | None = None,
) -> LoadedModel:
    """Load `toy-years`, a local Hugging Face folder, or a hub model name.

    `model_name` names a local model in the catalog (and for matching transcoder sets); by
    default it is the official name the folder name resolves to, else the folder name.
    The toy ignores the processing flags: it and its transcoders are used unprocessed.
    """
    requested = {
        "fold_ln": fold_ln,
        "center_writing_weights": center_writing_weights,
        "center_unembed": center_unembed,
    }
    if name_or_path in TOY_NAMES:
        return _load_toy(device, dtype)
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return _load_local(path, device, requested, dtype, model_name)
    if _looks_like_path(name_or_path):
        raise ModelLoadError(
            f"no model folder at {path}: pass a folder holding a Hugging Face model "
            "(config.json, weights, tokenizer files), a hub name such as 'gpt2', or 'toy-years'"
        )
    return _load_hub(name_or_path, device, requested, dtype)


def _looks_like_path(text: str) -> bool:
    return text.startswith((".", "~", "/")) or "\\" in text or text.count("/") > 1


def _load_toy(device: str, dtype: torch.dtype) -> LoadedModel:
    from circuitcat.ingest.toy.model import (
        TOY_MODEL_NAME,
        load_toy_model,
    )  # lazy: the toy loads its weights

    model = load_toy_model(device=device)
    if dtype != torch.float32:
        model = model.to(dtype, print_details=False)
    processing = dict.fromkeys(PROCESSING_FLAGS, False)
    return LoadedModel(model, TOY_MODEL_NAME, f"builtin:{TOY_MODEL_NAME}", processing)


def _load_hub(
    name: str, device: str, requested: dict[str, bool], dtype: torch.dtype
) -> LoadedModel:
    try:
        official = loading.get_official_model_name(name)
    except ValueError as e:
        raise ModelLoadError(
            f"'{name}' is neither a local folder nor a model name transformer_lens knows: pass "
            "a folder holding a Hugging Face model (--model /path/to/folder), an official "
            "name such as 'gpt2' or 'EleutherAI/pythia-70m', or 'toy-years'"
        ) from e
    if not _hub_usable(official):
        raise ModelLoadError(_hub_failure_message(name, "the hub cannot be reached"))
    try:
        with _quiet():
            model = HookedTransformer.from_pretrained(
                official,
                fold_ln=requested["fold_ln"],
                center_writing_weights=requested["center_writing_weights"],
                center_unembed=requested["center_unembed"],
                device=device,
                dtype=dtype,
            )
    except Exception as e:  # the hub fails as OSError, httpx or HfHubHTTPError: all mean "not here"
        raise ModelLoadError(_hub_failure_message(name, _first_line(e))) from e
    processing = applied_processing(model.cfg, requested)
    return LoadedModel(model, official, f"hub:{official}", processing, dict(requested))


def _hub_usable(repo_id: str) -> bool:
    """False when the hub's host does not answer within a few seconds and the model is not in
    the local cache: the loaders would otherwise retry for about a minute before failing."""
    from huggingface_hub import constants, try_to_load_from_cache

    if constants.is_offline_mode():
        return True  # the loaders then fail at once, or load from the cache
    with contextlib.suppress(Exception):  # a malformed repo id: let the loaders say so
        if isinstance(try_to_load_from_cache(repo_id, "config.json"), str):
            return True
    url = urlparse(constants.ENDPOINT)
    try:
        with socket.create_connection((url.hostname or "", url.port or 443), timeout=3.0):
            return True
    except OSError:
        return False


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _hub_failure_message(name: str, reason: str) -> str:
    from huggingface_hub import constants

    offline = (
        "HF_HUB_OFFLINE is set and it is not in the local cache"
        if constants.is_offline_mode()
        else reason
    )
    folder = f"/path/to/{name.split('/')[-1]}"
    return (
        f"could not load model '{name}' from the Hugging Face hub ({offline}). Download it "
        f"where a network exists (hf download {name} --local-dir {folder}) and pass that "
        f"folder in place of the name, e.g. circuitcat ingest register {folder} --transcoders ..."
    )


def _load_local(
    path: Path,
    device: str,
    requested: dict[str, bool],
    dtype: torch.dtype,
    model_name: str | None,
) -> LoadedModel:
    hf_config = _read_hf_config(path)
    hf_model = _load_hf_model(path, dtype)
    tokenizer = _load_tokenizer(path)
    cfg, state_dict = _convert_local(path, hf_config, hf_model, requested["fold_ln"], device, dtype)
    processing = applied_processing(cfg, requested)
    with _quiet():
        model = HookedTransformer(cfg, tokenizer, move_to_device=False)
        model.load_and_process_state_dict(state_dict, fold_value_biases=True, **processing)
        model.move_model_modules_to_device()
    name = model_name or _official_or_none(path.name) or path.name
    model.cfg.model_name = name
    model.cfg.tokenizer_name = str(path)
    return LoadedModel(model, name, f"local:{path.resolve()}", processing, dict(requested))


def _read_hf_config(path: Path) -> dict[str, Any]:
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ModelLoadError(
            f"{path} has no config.json: a local model folder must be a Hugging Face model saved "
            "with save_pretrained (config.json, model.safetensors, tokenizer files)"
        )
    try:
        hf_config: dict[str, Any] = json.loads(config_file.read_text())
    except json.JSONDecodeError as e:
        raise ModelLoadError(f"{config_file} is not valid JSON ({e}): re-save the model") from e
    if not hf_config.get("architectures"):
        raise ModelLoadError(
            f"{config_file} has no 'architectures' field, which transformer_lens needs to pick a "
            'converter: add it, e.g. "architectures": ["GPT2LMHeadModel"]'
        )
    return hf_config


def _load_hf_model(path: Path, dtype: torch.dtype) -> Any:
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # its "Loading weights" bar is not the user's progress
    try:
        with _quiet():
            return AutoModelForCausalLM.from_pretrained(path, dtype=dtype, local_files_only=True)
    except (OSError, ValueError) as e:
        raise ModelLoadError(
            f"transformers could not load the weights in {path} ({e}): the folder needs "
            "config.json plus model.safetensors (or pytorch_model.bin), as save_pretrained writes"
        ) from e


def _load_tokenizer(path: Path) -> Any:
    from transformers import AutoTokenizer

    # without tokenizer files AutoTokenizer silently builds an empty tokenizer from config.json
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise ModelLoadError(
            f"no tokenizer files in {path} (looked for {', '.join(TOKENIZER_FILES)}): save the "
            "tokenizer next to the weights with tokenizer.save_pretrained(folder)"
        )
    try:
        with _quiet():
            return AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, TypeError) as e:
        raise ModelLoadError(
            f"no usable tokenizer in {path} ({e}): save one next to the weights with "
            "tokenizer.save_pretrained(folder) (tokenizer.json + tokenizer_config.json)"
        ) from e


def _convert_local(
    path: Path,
    hf_config: dict[str, Any],
    hf_model: Any,
    fold_ln: bool,
    device: str,
    dtype: torch.dtype,
) -> tuple[HookedTransformerConfig, dict[str, torch.Tensor]]:
    # transformer_lens picks Llama/Gemma converters by substring of the name it is given, so a
    # folder called /models/llama-3 would take a name-only branch and crash: give it a neutral
    # folder holding just config.json (hf_model and tokenizer are passed in, nothing else is read).
    with tempfile.TemporaryDirectory() as tmp:
        shim = Path(tmp) / "local-model"
        shim.mkdir()
        (shim / "config.json").write_text(json.dumps(_tl_readable_config(hf_config)))
        arch = str(hf_config["architectures"][0])
        try:
            with _quiet():
                if needs_own_config(arch):  # transformer_lens knows these only by hub name
                    cfg = build_config(
                        hf_model.config.to_dict() | {"architectures": [arch]},
                        name=path.name,
                        fold_ln=fold_ln,
                        device=device,
                        dtype=dtype,
                    )
                else:
                    cfg = loading.get_pretrained_model_config(
                        str(shim),
                        hf_cfg=hf_model.config.to_dict(),
                        fold_ln=fold_ln,
                        device=device,
                        dtype=dtype,
                    )
                state_dict = loading.get_pretrained_state_dict(
                    str(shim), cfg, hf_model, dtype=dtype
                )
        except NotImplementedError as e:
            raise ModelLoadError(
                f"transformer_lens cannot convert architecture '{arch}' ({path}/config.json field "
                "'architectures'): use a model family it supports (GPT-2, GPT-NeoX/Pythia, Llama, "
                "Gemma, Qwen, Mistral, ...; see transformer_lens OFFICIAL_MODEL_NAMES)"
            ) from e
        except AttributeError as e:
            raise ModelLoadError(
                f"{path}/config.json lacks a field transformer_lens reads ({e}): add it to "
                "config.json (compare with the official model's config.json)"
            ) from e
    return cfg, state_dict


def _tl_readable_config(hf_config: dict[str, Any]) -> dict[str, Any]:
    # transformer_lens reads GPT-2's context length as `n_ctx`, which transformers 5 no longer
    # writes for new configs (hub gpt2/config.json still has it); n_positions is the same number.
    config = dict(hf_config)
    if config.get("model_type") == "gpt2" and "n_ctx" not in config and "n_positions" in config:
        config["n_ctx"] = config["n_positions"]
    return config


def applied_processing(cfg: HookedTransformerConfig, requested: dict[str, bool]) -> dict[str, bool]:
    """The flags transformer_lens really applies when `requested` (fold_ln, center_writing_weights,
    center_unembed) are asked for on a model of this config, as `from_pretrained` decides them:
    none of the three on a shortformer, neither fold_ln nor center_writing_weights on a post-norm
    architecture, no center_unembed with logit soft-capping (Gemma-2). A flag missing from
    `requested` counts as False."""
    requested = {flag: bool(requested.get(flag, False)) for flag in PROCESSING_FLAGS}
    shortformer = cfg.positional_embedding_type == "shortformer"
    post_norm = cfg.original_architecture in POST_NORM_ARCHITECTURES
    return {
        "fold_ln": requested["fold_ln"] and not (shortformer or post_norm),
        "center_writing_weights": requested["center_writing_weights"]
        and not (shortformer or post_norm),
        "center_unembed": requested["center_unembed"]
        and not (shortformer or softcap_enabled(cfg.output_logits_soft_cap)),
    }


def _official_or_none(name: str) -> str | None:
    try:
        return loading.get_official_model_name(name)
    except ValueError:
        return None


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    # transformer_lens prints "Loaded pretrained model" and warns that from_pretrained is
    # deprecated; library code must not print, and the deprecation is not the user's to fix.
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module="transformer_lens")
        yield
