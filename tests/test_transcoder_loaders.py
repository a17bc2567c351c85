"""Transcoder loaders: each format on files written here, each failure with its message."""

from __future__ import annotations

import json
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from safetensors.torch import save_file
from torch import Tensor
from transformer_lens import HookedTransformer, HookedTransformerConfig

from circuitcat.catalog.errors import TranscoderLoadError
from circuitcat.ingest.transcoders.load import (
    LN_AFFINE_FOLDED,
    load_transcoders,
    validate_against_model,
)
from circuitcat.ingest.transcoders.transcoder import TranscoderSet

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # HookedTransformer(cfg)

D_MODEL, D_TC, N_LAYERS = 32, 48, 3


def _model(normalization_type: str, d_model: int = D_MODEL) -> HookedTransformer:
    cfg = HookedTransformerConfig(
        n_layers=N_LAYERS,
        d_model=d_model,
        d_head=8,
        n_heads=d_model // 8,
        d_mlp=2 * d_model,
        n_ctx=16,
        d_vocab=50,
        act_fn="gelu",
        normalization_type=normalization_type,
        seed=0,
    )
    model = HookedTransformer(cfg)
    if normalization_type == "LN":  # non-trivial LayerNorm weights, so folding them shows
        with torch.no_grad():
            for block in model.blocks:
                ln2: Any = block.ln2
                ln2.w.copy_(1 + 0.5 * torch.randn(d_model))
                ln2.b.copy_(0.3 * torch.randn(d_model))
    return model


@pytest.fixture(scope="module")
def ln_model() -> HookedTransformer:
    """Unprocessed (LayerNorm with weights), like SAELens' and circuit-tracer's models."""
    return _model("LN")


@pytest.fixture(scope="module")
def folded_model() -> HookedTransformer:
    """fold_ln applied (LNPre), like from_pretrained("gpt2") for the paper's transcoders."""
    return _model("LNPre")


@dataclass
class Ref:
    """Reference weights: z = relu((x - b_dec) W_enc + b_enc); out = z W_dec + b_dec_out."""

    W_enc: Tensor
    b_enc: Tensor
    W_dec: Tensor
    b_dec: Tensor
    b_dec_out: Tensor

    def forward(self, x: Tensor) -> Tensor:
        z = torch.relu((x - self.b_dec) @ self.W_enc + self.b_enc)
        return z @ self.W_dec + self.b_dec_out


def _ref(seed: int, *, input_bias: bool = False, d_in: int = D_MODEL) -> Ref:
    g = torch.Generator().manual_seed(seed)
    return Ref(
        W_enc=torch.randn(d_in, D_TC, generator=g) / d_in**0.5,
        b_enc=0.1 * torch.randn(D_TC, generator=g),
        W_dec=torch.randn(D_TC, D_MODEL, generator=g) / D_TC**0.5,
        b_dec=0.2 * torch.randn(d_in, generator=g) if input_bias else torch.zeros(d_in),
        b_dec_out=0.1 * torch.randn(D_MODEL, generator=g),
    )


def _assert_matches(tset: TranscoderSet, refs: dict[int, Ref]) -> None:
    assert tset.layers == sorted(refs)
    x = torch.randn(5, 7, D_MODEL)
    for layer, ref in refs.items():
        tc = tset[layer]
        with torch.no_grad():
            torch.testing.assert_close(tc(x), ref.forward(x), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(tc.W_dec.detach(), ref.W_dec)
        torch.testing.assert_close(tc.b_dec_out.detach(), ref.b_dec_out)
        assert torch.count_nonzero(tc.b_dec) == 0  # input bias always folded into b_enc


# --- SAELens ---------------------------------------------------------------------------------


def _saelens_cfg(layer: int, *, v6: bool = True, **overrides: object) -> dict[str, object]:
    where = {
        "model_name": "tiny",
        "hook_name": f"blocks.{layer}.ln2.hook_normalized",
        "hook_name_out": f"blocks.{layer}.hook_mlp_out",
        "model_from_pretrained_kwargs": {"center_writing_weights": True},
    }
    cfg: dict[str, object] = {
        "architecture": "transcoder",
        "d_in": D_MODEL,
        "d_sae": D_TC,
        "d_out": D_MODEL,
        "apply_b_dec_to_input": False,
        "normalize_activations": "none",
    }
    cfg.update({"metadata": where} if v6 else {**where, "activation_fn_str": "relu"})
    cfg.update(overrides)
    return cfg


def _write_saelens(
    folder: Path,
    layer: int,
    ref: Ref,
    cfg: dict[str, object] | None = None,
    *,
    transposed: bool = False,
    v6: bool = True,
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cfg.json").write_text(json.dumps(_saelens_cfg(layer, v6=v6, **(cfg or {}))))
    W_enc = ref.W_enc.T.contiguous() if transposed else ref.W_enc
    tensors = {"W_enc": W_enc, "b_enc": ref.b_enc, "W_dec": ref.W_dec, "b_dec": ref.b_dec_out}
    save_file(tensors, str(folder / "sae_weights.safetensors"))
    save_file({"sparsity": torch.zeros(D_TC)}, str(folder / "sparsity.safetensors"))
    return folder


def test_saelens_single_folder(tmp_path: Path) -> None:
    ref = _ref(1)
    folder = _write_saelens(tmp_path / "blocks.1", 1, ref)
    tset = load_transcoders(folder)
    _assert_matches(tset, {1: ref})
    torch.testing.assert_close(tset[1].W_enc.detach(), ref.W_enc)
    assert tset.format == "saelens"
    assert tset.model_name == "tiny"
    assert tset[1].cfg.input_hook == "blocks.1.ln2.hook_normalized"
    assert tset[1].cfg.output_hook == "blocks.1.hook_mlp_out"
    assert tset.processing == {
        "fold_ln": False,
        "center_writing_weights": True,
        "center_unembed": False,
    }
    assert len(tset.sha256) == 64
    assert load_transcoders(folder / "cfg.json").sha256 == tset.sha256  # deterministic


def test_saelens_parent_folder_and_transposed_encoder(tmp_path: Path) -> None:
    refs = {layer: _ref(10 + layer) for layer in range(N_LAYERS)}
    for layer, ref in refs.items():  # old (pre-6) top-level keys; layer 2 stores W_enc^T
        _write_saelens(tmp_path / f"layer_{layer}", layer, ref, transposed=layer == 2, v6=False)
    tset = load_transcoders(tmp_path)
    _assert_matches(tset, refs)
    torch.testing.assert_close(tset[2].W_enc.detach(), refs[2].W_enc)
    before = tset.sha256
    save_file({"sparsity": torch.ones(D_TC)}, str(tmp_path / "layer_0" / "sparsity.safetensors"))
    assert load_transcoders(tmp_path).sha256 != before


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        ({"apply_b_dec_to_input": True}, "'apply_b_dec_to_input' is true, expected false"),
        ({"architecture": "topk"}, "'architecture' is 'topk', which is not supported yet"),
        ({"activation_fn_str": "topk"}, "'activation_fn_str' is 'topk', expected 'relu'"),
        ({"d_out": None}, "field 'd_out' is missing"),
        (
            {"metadata": {"hook_name": "blocks.0.hook_resid_pre"}},
            "this is an SAE, not a transcoder",
        ),
    ],
)
def test_saelens_config_errors(tmp_path: Path, cfg: dict[str, object], message: str) -> None:
    folder = _write_saelens(tmp_path / "sae", 0, _ref(2), cfg)
    with pytest.raises(TranscoderLoadError, match=message) as excinfo:
        load_transcoders(folder)
    assert "cfg.json" in str(excinfo.value)


@pytest.mark.parametrize(
    ("extra", "message"),
    [({"threshold": torch.zeros(D_TC)}, "threshold"), ({"W_skip": torch.zeros(4, 4)}, "W_skip")],
)
def test_saelens_tensors_the_architecture_does_not_use_are_refused(
    tmp_path: Path, extra: dict[str, Tensor], message: str
) -> None:
    folder = _write_saelens(tmp_path / "sae", 0, _ref(3))
    ref = _ref(3)
    tensors = {"W_enc": ref.W_enc, "b_enc": ref.b_enc, "W_dec": ref.W_dec, "b_dec": ref.b_dec_out}
    save_file({**tensors, **extra}, str(folder / "sae_weights.safetensors"))
    with pytest.raises(TranscoderLoadError, match=f"'{message}' is present.*does not use it"):
        load_transcoders(folder)


def test_saelens_missing_and_misshapen_tensors(tmp_path: Path) -> None:
    folder = _write_saelens(tmp_path / "sae", 0, _ref(4))
    ref = _ref(4)
    save_file(
        {"W_enc": ref.W_enc, "b_enc": ref.b_enc, "b_dec": ref.b_dec_out},
        str(folder / "sae_weights.safetensors"),
    )
    with pytest.raises(TranscoderLoadError, match=r"sae_weights.safetensors: tensor 'W_dec' is"):
        load_transcoders(folder)
    save_file(
        {
            "W_enc": ref.W_enc,
            "b_enc": ref.b_enc,
            "W_dec": ref.W_dec[:, :16].contiguous(),
            "b_dec": ref.b_dec_out,
        },
        str(folder / "sae_weights.safetensors"),
    )
    with pytest.raises(
        TranscoderLoadError, match=r"'W_dec' has shape \[48, 16\], expected \[48, 32\]"
    ):
        load_transcoders(folder)
    (folder / "sae_weights.safetensors").unlink()
    with pytest.raises(TranscoderLoadError, match=r"sae_weights.safetensors is missing"):
        load_transcoders(folder)


# --- validation against a model --------------------------------------------------------------


def test_validation_errors(tmp_path: Path, ln_model: HookedTransformer) -> None:
    small = _ref(5, d_in=16)
    _write_saelens(tmp_path / "narrow", 0, small, {"d_in": 16})
    with pytest.raises(TranscoderLoadError, match="d_in is 16, expected 32"):
        load_transcoders(tmp_path / "narrow", ln_model)
    _write_saelens(tmp_path / "deep", 5, _ref(6))
    with pytest.raises(TranscoderLoadError, match=r"layer 5 does not exist .*layers 0..2"):
        load_transcoders(tmp_path / "deep", ln_model)
    bad_hook = {"hook_name": "blocks.0.hook_nonsense", "hook_name_out": "blocks.0.hook_mlp_out"}
    _write_saelens(tmp_path / "hook", 0, _ref(7), {"metadata": bad_hook})
    with pytest.raises(TranscoderLoadError, match=r"input_hook 'blocks.0.hook_nonsense' is not"):
        load_transcoders(tmp_path / "hook", ln_model)


def test_ln_affine_folded_into_encoder(tmp_path: Path, ln_model: HookedTransformer) -> None:
    # SAELens trained on the MLP input after LN's w, b; TL 3.x hook_normalized is before them
    ref = _ref(8)
    unprocessed = {  # no model_from_pretrained_kwargs: SAELens ran the model unprocessed
        "model_name": "tiny",
        "hook_name": "blocks.1.ln2.hook_normalized",
        "hook_name_out": "blocks.1.hook_mlp_out",
    }
    folder = _write_saelens(tmp_path / "sae", 1, ref, {"metadata": unprocessed})
    unbound = load_transcoders(folder)
    with pytest.raises(TranscoderLoadError, match=r"load_transcoders\(path, model\)"):
        validate_against_model(unbound, ln_model)
    tset = load_transcoders(folder, ln_model)
    assert tset.processing[LN_AFFINE_FOLDED] is True
    validate_against_model(tset, ln_model)
    _, cache = ln_model.run_with_cache(torch.tensor([[1, 2, 3, 4]]))
    normalized = cache["blocks.1.ln2.hook_normalized"]
    ln2: Any = ln_model.blocks[1].ln2
    mlp_input = normalized * ln2.w + ln2.b
    with torch.no_grad():
        torch.testing.assert_close(
            tset[1](normalized), ref.forward(mlp_input), atol=1e-5, rtol=1e-5
        )


# --- circuit-tracer --------------------------------------------------------------------------


def _write_circuit_tracer(
    folder: Path,
    refs: dict[int, Ref],
    config: dict[str, object] | None = None,
    *,
    listed: bool = True,
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for layer, ref in refs.items():  # circuit-tracer stores W_enc as [d_transcoder, d_model]
        tensors = {
            "W_enc": ref.W_enc.T.contiguous(),
            "b_enc": ref.b_enc,
            "W_dec": ref.W_dec,
            "b_dec": ref.b_dec_out,
        }
        save_file(tensors, str(folder / f"layer_{layer}.safetensors"))
    settings: dict[str, object] = {
        "model_name": "tiny",
        "model_kind": "transcoder_set",
        "feature_input_hook": "mlp.hook_in",
        "feature_output_hook": "mlp.hook_out",
        "scan": "tiny-relu",
        "activation": "relu",
    }
    if listed:
        settings["transcoders"] = [f"hf://org/repo/layer_{i}.safetensors" for i in sorted(refs)]
    settings.update(config or {})
    (folder / "config.yaml").write_text(yaml.safe_dump(settings))
    return folder


@pytest.mark.parametrize("listed", [True, False])
def test_circuit_tracer(tmp_path: Path, folded_model: HookedTransformer, listed: bool) -> None:
    refs = {layer: _ref(20 + layer) for layer in range(N_LAYERS)}
    folder = _write_circuit_tracer(tmp_path / "ct", refs, listed=listed)
    tset = load_transcoders(folder)
    _assert_matches(tset, refs)
    torch.testing.assert_close(tset[0].W_enc.detach(), refs[0].W_enc)
    assert (tset.format, tset.name, tset.model_name) == ("circuit-tracer", "tiny-relu", "tiny")
    assert tset[2].cfg.input_hook == "blocks.2.ln2.hook_normalized"
    assert tset[2].cfg.output_hook == "blocks.2.hook_mlp_out"
    assert tset.processing == dict.fromkeys(tset.processing, False)
    with pytest.raises(TranscoderLoadError, match="expects a model loaded with fold_ln=False"):
        validate_against_model(tset, folded_model)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"activation": "topk"}, "'activation' is 'topk'.*--activation topk:K"),
        ({"model_kind": "cross_layer_transcoder"}, "needs W_enc_0.safetensors"),
        ({"model_kind": "sparse_autoencoder"}, "'model_kind' is 'sparse_autoencoder'"),
        ({"feature_input_hook": None}, "'feature_input_hook' is missing"),
        ({"transcoders": ["hf://org/repo/gone.safetensors"]}, r"transcoders\[0\] is"),
    ],
)
def test_circuit_tracer_config_errors(
    tmp_path: Path, config: dict[str, object], message: str
) -> None:
    folder = _write_circuit_tracer(tmp_path / "ct", {0: _ref(30)}, config)
    with pytest.raises(TranscoderLoadError, match=message) as excinfo:
        load_transcoders(folder)
    assert "config.yaml" in str(excinfo.value)


def test_circuit_tracer_zero_threshold_is_relu(tmp_path: Path) -> None:
    folder = _write_circuit_tracer(tmp_path / "ct", {0: _ref(31)})
    ref = _ref(31)
    save_file(
        {
            "W_enc": ref.W_enc.T.contiguous(),
            "b_enc": ref.b_enc,
            "W_dec": ref.W_dec,
            "b_dec": ref.b_dec_out,
            "activation_function.threshold": torch.zeros(D_TC),
        },
        str(folder / "layer_0.safetensors"),
    )
    tset = load_transcoders(folder)  # pre * (pre > 0) is ReLU
    assert tset.kind == "relu" and tset[0].threshold is None
    _assert_matches(tset, {0: ref})


def _write_gemma_scope_2(folder: Path, tensors: dict[int, dict[str, Tensor]]) -> Path:
    """Gemma Scope 2's hub layout under a circuit-tracer config.yaml of hf:// URIs."""
    entries = []
    for layer, layer_tensors in tensors.items():
        in_repo = f"transcoder_all/layer_{layer}_width_16k_l0_small_affine/params.safetensors"
        (folder / in_repo).parent.mkdir(parents=True)
        save_file(layer_tensors, str(folder / in_repo))
        entries.append(f"hf://google/gemma-scope-2-tiny-pt/{in_repo}")
    config = {
        "model_name": "tiny",
        "model_kind": "transcoder_set",
        "feature_input_hook": "mlp.hook_in",
        "feature_output_hook": "hook_mlp_out",
        "transcoders": entries,
    }
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    return folder


def _gemma_scope_2_tensors(ref: Ref, threshold: Tensor, affine: Tensor) -> dict[str, Tensor]:
    return {
        "w_enc": ref.W_enc.contiguous(),  # [d_model, d_sae]: not circuit-tracer's orientation
        "w_dec": ref.W_dec,
        "b_enc": ref.b_enc,
        "b_dec": ref.b_dec_out,
        "threshold": threshold,
        "affine_skip_connection": affine,
    }


def test_gemma_scope_2(tmp_path: Path) -> None:
    """JumpReLU pre * (pre > threshold), out = z w_dec + b_dec + x @ affine_skip_connection."""
    g = torch.Generator().manual_seed(70)
    refs = {layer: _ref(70 + layer) for layer in range(2)}
    thresholds = {layer: 0.1 * torch.rand(D_TC, generator=g) for layer in refs}
    affines = {layer: torch.randn(D_MODEL, D_MODEL, generator=g) / 8 for layer in refs}
    folder = _write_gemma_scope_2(
        tmp_path / "gs2",
        {i: _gemma_scope_2_tensors(refs[i], thresholds[i], affines[i]) for i in refs},
    )
    tset = load_transcoders(folder)
    assert (tset.format, tset.kind, tset.layers) == ("circuit-tracer", "jumprelu+skip", [0, 1])
    assert tset[1].cfg.output_hook == "blocks.1.hook_mlp_out"
    x = torch.randn(5, D_MODEL, generator=g)
    for layer, ref in refs.items():
        pre = x @ ref.W_enc + ref.b_enc
        z = pre * (pre > thresholds[layer])
        expected = z @ ref.W_dec + ref.b_dec_out + x @ affines[layer]
        with torch.no_grad():
            torch.testing.assert_close(tset[layer].encode(x), z, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(tset[layer](x), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"extra": torch.zeros(3)}, "tensor 'extra' is not part of a Gemma Scope 2"),
        ({"affine_skip_connection": torch.zeros(D_MODEL)}, r"'affine_skip_connection'.*\[d_model"),
        ({"threshold": None}, "tensor 'threshold' is missing"),
        ({"w_dec": torch.zeros(D_TC, D_MODEL + 1)}, r"tensor 'w_dec' has shape \[48, 33\]"),
    ],
)
def test_gemma_scope_2_errors(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    tensors = _gemma_scope_2_tensors(_ref(75), torch.zeros(D_TC), torch.eye(D_MODEL))
    tensors = {k: v for k, v in (tensors | change).items() if v is not None}
    folder = _write_gemma_scope_2(tmp_path / "gs2", {0: tensors})
    with pytest.raises(TranscoderLoadError, match=message) as excinfo:
        load_transcoders(folder)
    assert "params.safetensors" in str(excinfo.value)


# --- the paper's GPT-2 transcoders -----------------------------------------------------------


def test_paper_safetensors_folded(tmp_path: Path, folded_model: HookedTransformer) -> None:
    refs = {layer: _ref(40 + layer, input_bias=True) for layer in range(N_LAYERS)}
    for layer, ref in refs.items():  # the repackaging folds b_dec into b_enc
        folded_b_enc = ref.b_enc - ref.b_dec @ ref.W_enc
        tensors = {
            "W_enc": ref.W_enc,
            "b_enc": folded_b_enc,
            "W_dec": ref.W_dec,
            "b_dec": ref.b_dec_out,
        }
        save_file(tensors, str(tmp_path / f"gpt2-small_layer_{layer}.safetensors"))
    tset = load_transcoders(tmp_path, folded_model)
    _assert_matches(tset, refs)
    assert (tset.format, tset.model_name) == ("gpt2-paper-safetensors", "gpt2")
    assert tset.processing == dict.fromkeys(tset.processing, True)
    assert LN_AFFINE_FOLDED not in tset.processing  # folded model: nothing to fold
    single = load_transcoders(tmp_path / "gpt2-small_layer_1.safetensors")
    assert single.layers == [1]


def test_paper_safetensors_need_processed_model(
    tmp_path: Path, ln_model: HookedTransformer
) -> None:
    ref = _ref(45)
    save_file(
        {"W_enc": ref.W_enc, "b_enc": ref.b_enc, "W_dec": ref.W_dec, "b_dec": ref.b_dec_out},
        str(tmp_path / "layer_0.safetensors"),
    )
    with pytest.raises(TranscoderLoadError, match=r"fold_ln=True.*was loaded with fold_ln=False"):
        load_transcoders(tmp_path, ln_model)


def _write_paper_pt(file: Path, layer: int, ref: Ref) -> None:
    """Save like the paper's code: {"cfg": <config object>, "state_dict": ...}, where the
    config's class lives in a module (sae_training.config) that is gone when loading."""

    @dataclass
    class LanguageModelSAERunnerConfig:
        model_name: str
        hook_point: str
        hook_point_layer: int
        out_hook_point: str
        d_in: int
        d_sae: int
        dtype: torch.dtype = torch.float32

    module = types.ModuleType("sae_training.config")
    LanguageModelSAERunnerConfig.__module__ = module.__name__
    LanguageModelSAERunnerConfig.__qualname__ = "LanguageModelSAERunnerConfig"
    module.LanguageModelSAERunnerConfig = LanguageModelSAERunnerConfig  # type: ignore[attr-defined]
    cfg = LanguageModelSAERunnerConfig(
        "gpt2-small",
        f"blocks.{layer}.ln2.hook_normalized",
        layer,
        f"blocks.{layer}.hook_mlp_out",
        D_MODEL,
        D_TC,
    )
    state = {
        "W_enc": ref.W_enc,
        "b_enc": ref.b_enc,
        "W_dec": ref.W_dec,
        "b_dec": ref.b_dec,
        "b_dec_out": ref.b_dec_out,
    }
    sys.modules["sae_training"] = types.ModuleType("sae_training")
    sys.modules["sae_training.config"] = module
    try:
        torch.save({"cfg": cfg, "state_dict": state}, file)
    finally:
        del sys.modules["sae_training.config"], sys.modules["sae_training"]


def test_paper_pickles(tmp_path: Path, folded_model: HookedTransformer) -> None:
    refs = {layer: _ref(50 + layer, input_bias=True) for layer in range(2)}
    for layer, ref in refs.items():  # names without the layer: it must come from the cfg
        _write_paper_pt(tmp_path / f"transcoder_{chr(97 + layer)}.pt", layer, ref)
    with pytest.raises(TranscoderLoadError, match=r"full unpickling.*--allow-pickle"):
        load_transcoders(tmp_path)
    tset = load_transcoders(tmp_path, folded_model, allow_pickle=True)
    _assert_matches(tset, refs)
    for layer, ref in refs.items():
        torch.testing.assert_close(tset[layer].W_enc.detach(), ref.W_enc)
        torch.testing.assert_close(tset[layer].b_enc.detach(), ref.b_enc - ref.b_dec @ ref.W_enc)
    assert (tset.format, tset.model_name) == ("gpt2-paper-pt", "gpt2-small")
    assert tset.processing == dict.fromkeys(tset.processing, True)


def test_paper_unfolded_safetensors(tmp_path: Path) -> None:
    ref = _ref(60, input_bias=True)
    save_file(
        {
            "W_enc": ref.W_enc,
            "b_enc": ref.b_enc,
            "W_dec": ref.W_dec,
            "b_dec": ref.b_dec,
            "b_dec_out": ref.b_dec_out,
        },
        str(tmp_path / "blocks.2.safetensors"),
    )
    _assert_matches(load_transcoders(tmp_path), {2: ref})


def test_paper_layer_unknown(tmp_path: Path) -> None:
    ref = _ref(61)
    save_file(
        {"W_enc": ref.W_enc, "b_enc": ref.b_enc, "W_dec": ref.W_dec, "b_dec": ref.b_dec_out},
        str(tmp_path / "weights.safetensors"),
    )
    with pytest.raises(TranscoderLoadError, match="cannot tell which layer"):
        load_transcoders(tmp_path)


# --- dispatch --------------------------------------------------------------------------------


def test_unknown_layout_lists_layouts(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(TranscoderLoadError, match=r"Understood:.*SAELens.*circuit-tracer.*paper"):
        load_transcoders(tmp_path)
    with pytest.raises(TranscoderLoadError, match="no file or folder at"):
        load_transcoders(tmp_path / "missing")


def test_native_folder(tmp_path: Path, ln_model: HookedTransformer) -> None:
    from circuitcat.ingest.transcoders.native import save_transcoder_set

    saelens_dir = _write_saelens(tmp_path / "sae", 0, _ref(70))
    original = load_transcoders(saelens_dir)
    original.processing = {"fold_ln": False}
    save_transcoder_set(original, tmp_path / "native")
    tset = load_transcoders(tmp_path / "native", ln_model)
    assert tset.format == "circuitcat"
    assert LN_AFFINE_FOLDED not in tset.processing  # our own format reads TL 3.x hooks as is
    torch.testing.assert_close(tset[0].W_enc.detach(), original[0].W_enc.detach())


def test_toy_name_dispatches_to_toy(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import circuitcat.ingest.toy.model as toy

    sentinel = load_transcoders(_write_saelens(tmp_path / "sae", 0, _ref(71)))
    monkeypatch.setattr(toy, "load_toy_transcoders", lambda device="cpu": sentinel)
    assert load_transcoders("toy-years") is sentinel
    assert load_transcoders("toy") is sentinel
