"""Model loading: a tiny GPT-2 saved to a local folder, offline hub failures, bad folders."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformer_lens import HookedTransformer, HookedTransformerConfig
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from circuitcat.catalog.errors import ModelLoadError
from circuitcat.ingest.models import LoadedModel, load_model

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

WORDS = ["<|endoftext|>", "the", "war", "lasted", "from", "year", "to", "17", "18"]
WORDS += [f"{i:02d}" for i in range(100)]


def _save_tiny_gpt2(folder: Path, *, with_tokenizer: bool = True) -> GPT2LMHeadModel:
    vocab = {w: i for i, w in enumerate(dict.fromkeys(WORDS))}
    config = GPT2Config(n_layer=2, n_embd=64, n_head=2, n_positions=32, vocab_size=len(vocab))
    torch.manual_seed(0)
    hf_model = GPT2LMHeadModel(config).eval()
    hf_model.save_pretrained(folder)
    if with_tokenizer:
        word_level = Tokenizer(models.WordLevel(vocab, unk_token="<|endoftext|>"))
        word_level.pre_tokenizer = pre_tokenizers.Whitespace()
        special = "<|endoftext|>"
        PreTrainedTokenizerFast(
            tokenizer_object=word_level, bos_token=special, eos_token=special, unk_token=special
        ).save_pretrained(folder)
    return hf_model


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, GPT2LMHeadModel]:
    folder = tmp_path_factory.mktemp("tiny-gpt2")
    return folder, _save_tiny_gpt2(folder)


def _log_probs_match(loaded: LoadedModel, hf_model: GPT2LMHeadModel) -> None:
    tokens = loaded.model.to_tokens("the war lasted from the year 17 32 to the year 17")
    with torch.no_grad():
        ours = loaded.model(tokens).log_softmax(-1)
        theirs = hf_model(tokens).logits.log_softmax(-1)
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


def test_local_folder_loads_processed(tiny_gpt2: tuple[Path, GPT2LMHeadModel]) -> None:
    folder, hf_model = tiny_gpt2
    loaded = load_model(str(folder))
    assert loaded.processing == {
        "fold_ln": True,
        "center_writing_weights": True,
        "center_unembed": True,
    }
    assert loaded.source == f"local:{folder.resolve()}"
    assert loaded.name == folder.name
    cfg = loaded.model.cfg
    assert (cfg.n_layers, cfg.d_model, cfg.n_heads, cfg.d_vocab) == (2, 64, 2, len(set(WORDS)))
    assert cfg.normalization_type == "LNPre"  # fold_ln really applied
    assert "blocks.1.ln2.hook_normalized" in loaded.model.hook_dict
    _log_probs_match(loaded, hf_model)  # processing never changes the log-probs


def test_local_folder_unprocessed_and_named(tiny_gpt2: tuple[Path, GPT2LMHeadModel]) -> None:
    folder, hf_model = tiny_gpt2
    loaded = load_model(
        str(folder),
        fold_ln=False,
        center_writing_weights=False,
        center_unembed=False,
        model_name="my-gpt2",
    )
    assert loaded.processing == dict.fromkeys(loaded.processing, False)
    assert loaded.name == "my-gpt2"
    assert loaded.model.cfg.normalization_type == "LN"
    _log_probs_match(loaded, hf_model)


def test_folder_named_like_official_model_records_official_name(tmp_path: Path) -> None:
    folder = tmp_path / "gpt2-small"  # an alias of "gpt2" in transformer_lens
    folder.mkdir()
    _save_tiny_gpt2(folder)
    assert load_model(str(folder)).name == "gpt2"


def test_folder_without_config(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"no config\.json"):
        load_model(str(tmp_path))


def test_folder_without_tokenizer(tmp_path: Path) -> None:
    _save_tiny_gpt2(tmp_path, with_tokenizer=False)
    with pytest.raises(ModelLoadError, match="tokenizer"):
        load_model(str(tmp_path))


def test_folder_without_architectures(tmp_path: Path) -> None:
    _save_tiny_gpt2(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    del config["architectures"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="architectures"):
        load_model(str(tmp_path))


def test_unsupported_architecture(tmp_path: Path) -> None:
    _save_tiny_gpt2(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["architectures"] = ["FancyNewForCausalLM"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="FancyNewForCausalLM"):
        load_model(str(tmp_path))


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="no model folder"):
        load_model(str(tmp_path / "nope"))


def test_unknown_name() -> None:
    with pytest.raises(ModelLoadError, match="neither a local folder nor a model name"):
        load_model("surely-not-a-model-name-xyz")


def test_hub_offline_fails_fast(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from huggingface_hub import constants

    # huggingface_hub reads these at import time: patch the constants too, and point the
    # cache somewhere empty so a cached gpt2 on a dev machine cannot turn this into a load
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    start = time.monotonic()
    with pytest.raises(ModelLoadError) as excinfo:
        load_model("gpt2")
    assert time.monotonic() - start < 10
    message = str(excinfo.value)
    assert "could not load model 'gpt2' from the Hugging Face hub" in message
    assert "HF_HUB_OFFLINE" in message
    assert "circuitcat ingest register /path/to/gpt2" in message


def test_unreachable_hub_fails_fast(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from huggingface_hub import constants

    # A port nothing listens on stands in for a hub that cannot be reached: no retries.
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "https://127.0.0.1:9")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    start = time.monotonic()
    with pytest.raises(ModelLoadError, match="the hub cannot be reached") as excinfo:
        load_model("gpt2")
    assert time.monotonic() - start < 10
    assert "hf download gpt2 --local-dir /path/to/gpt2" in str(excinfo.value)


def test_toy_name_loads_toy_unprocessed(monkeypatch: pytest.MonkeyPatch) -> None:
    import circuitcat.ingest.toy.model as toy

    cfg = HookedTransformerConfig(
        n_layers=1, d_model=16, d_head=8, n_heads=2, n_ctx=8, d_vocab=20, act_fn="gelu"
    )
    stand_in = HookedTransformer(cfg)
    monkeypatch.setattr(toy, "load_toy_model", lambda device="cpu": stand_in)
    loaded = load_model("toy-years")  # the processing flags default to True: the toy ignores them
    assert loaded.model is stand_in
    assert (loaded.name, loaded.source) == ("toy-years", "builtin:toy-years")
    assert loaded.processing == {
        "fold_ln": False,
        "center_writing_weights": False,
        "center_unembed": False,
    }
