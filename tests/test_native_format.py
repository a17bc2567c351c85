"""circuitcat's own transcoder format: round trip and every load error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from circuitcat.catalog.errors import TranscoderLoadError
from circuitcat.ingest.transcoders.native import (
    FORMAT,
    load_transcoder_set,
    save_transcoder_set,
)
from circuitcat.ingest.transcoders.transcoder import Transcoder, TranscoderConfig, TranscoderSet

D_IN, D_TC = 8, 16


def random_set(layers: tuple[int, ...] = (0, 1), seed: int = 0) -> TranscoderSet:
    generator = torch.Generator().manual_seed(seed)
    transcoders = {}
    for layer in layers:
        cfg = TranscoderConfig(
            d_in=D_IN,
            d_out=D_IN,
            d_transcoder=D_TC,
            layer=layer,
            input_hook=f"blocks.{layer}.ln2.hook_normalized",
            output_hook=f"blocks.{layer}.hook_mlp_out",
            metrics={"fvu": 0.1, "l0": 3.0, "dead_fraction": 0.0},
        )
        tc = Transcoder(cfg)
        with torch.no_grad():
            for p in tc.parameters():
                p.copy_(torch.randn(p.shape, generator=generator))
        transcoders[layer] = tc
    return TranscoderSet(
        name="tc-test",
        model_name="tiny",
        format="circuitcat",
        source="test",
        transcoders=transcoders,
        processing={"fold_ln": False, "center_writing_weights": False, "center_unembed": False},
    )


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    folder = tmp_path / "set"
    save_transcoder_set(random_set(), folder)
    return folder


def test_round_trip(tmp_path: Path) -> None:
    tset = random_set()
    digest = save_transcoder_set(tset, tmp_path / "set")
    loaded = load_transcoder_set(tmp_path / "set")
    assert loaded.sha256 == digest == tset.sha256 and len(digest) == 64
    assert loaded.format == "circuitcat" and loaded.name == "tc-test" and loaded.layers == [0, 1]
    assert loaded.processing == tset.processing and loaded.model_name == "tiny"
    for layer in (0, 1):
        assert loaded[layer].cfg == tset[layer].cfg
        for key in ("W_enc", "b_enc", "W_dec", "b_dec", "b_dec_out"):
            assert torch.equal(getattr(loaded[layer], key), getattr(tset[layer], key))
        x = torch.randn(5, D_IN)
        assert torch.allclose(loaded[layer](x), tset[layer](x))
    config = json.loads((tmp_path / "set" / "config.json").read_text())
    assert config["format"] == FORMAT and config["version"] == 1
    assert config["input_hook"] == "blocks.{layer}.ln2.hook_normalized"
    assert config["output_hook"] == "blocks.{layer}.hook_mlp_out"
    assert config["metrics"]["1"] == {"fvu": 0.1, "l0": 3.0, "dead_fraction": 0.0}


def test_sha256_changes_with_weights(tmp_path: Path) -> None:
    a = save_transcoder_set(random_set(seed=0), tmp_path / "a")
    b = save_transcoder_set(random_set(seed=1), tmp_path / "b")
    assert a != b


def _edit_config(folder: Path, **changes: object) -> None:
    config = json.loads((folder / "config.json").read_text())
    for key, value in changes.items():
        if value is None:
            config.pop(key)
        else:
            config[key] = value
    (folder / "config.json").write_text(json.dumps(config))


def test_missing_config(tmp_path: Path) -> None:
    with pytest.raises(TranscoderLoadError, match=r"config\.json is missing"):
        load_transcoder_set(tmp_path)


def test_invalid_json(saved: Path) -> None:
    (saved / "config.json").write_text("{not json")
    with pytest.raises(TranscoderLoadError, match="not valid JSON"):
        load_transcoder_set(saved)


def test_wrong_format(saved: Path) -> None:
    _edit_config(saved, format="saelens")
    with pytest.raises(TranscoderLoadError, match="field 'format' is 'saelens', expected"):
        load_transcoder_set(saved)


def test_wrong_version(saved: Path) -> None:
    _edit_config(saved, version=2)
    with pytest.raises(TranscoderLoadError, match="field 'version' is 2, expected 1"):
        load_transcoder_set(saved)


def test_missing_field(saved: Path) -> None:
    _edit_config(saved, d_transcoder=None)
    with pytest.raises(TranscoderLoadError, match="field 'd_transcoder' is missing"):
        load_transcoder_set(saved)


def test_bad_layers(saved: Path) -> None:
    _edit_config(saved, layers=[])
    with pytest.raises(TranscoderLoadError, match="field 'layers'"):
        load_transcoder_set(saved)


def test_wrong_activation(saved: Path) -> None:
    _edit_config(saved, activation="jumprelu")
    with pytest.raises(TranscoderLoadError, match="field 'activation' is 'jumprelu'"):
        load_transcoder_set(saved)


def test_missing_layer_file(saved: Path) -> None:
    (saved / "layer_1.safetensors").unlink()
    with pytest.raises(TranscoderLoadError, match=r"layer_1\.safetensors is missing"):
        load_transcoder_set(saved)


def test_wrong_shape(saved: Path) -> None:
    path = saved / "layer_0.safetensors"
    tensors = load_file(str(path))
    tensors["W_enc"] = tensors["W_enc"].T.contiguous()
    save_file(tensors, str(path))
    with pytest.raises(
        TranscoderLoadError, match=r"'W_enc' has shape \(16, 8\), expected \(8, 16\)"
    ):
        load_transcoder_set(saved)


def test_missing_key(saved: Path) -> None:
    path = saved / "layer_1.safetensors"
    tensors = load_file(str(path))
    del tensors["b_dec_out"]
    save_file(tensors, str(path))
    with pytest.raises(TranscoderLoadError, match=r"layer_1\.safetensors: tensor 'b_dec_out' is"):
        load_transcoder_set(saved)


def test_corrupt_layer_file(saved: Path) -> None:
    (saved / "layer_0.safetensors").write_bytes(b"garbage")
    with pytest.raises(TranscoderLoadError, match="not a readable safetensors file"):
        load_transcoder_set(saved)
