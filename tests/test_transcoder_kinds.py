"""Transcoder kinds on files written here: each library's JumpReLU convention (thresholds of both
signs), TopK declared at load, skip connections folded with ln2's affine, cross-layer
transcoders (CLT), and the replacement hooks that circuit verify runs them with.

The libraries' own files (tests/fixtures/real_formats) are checked in test_real_formats.py;
these tests reach the corners those fixtures do not (negative thresholds, bad CLT files).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from safetensors.torch import save_file
from torch import Tensor
from transformer_lens import HookedTransformer, HookedTransformerConfig

from circuitcat.catalog.errors import TranscoderLoadError
from circuitcat.ingest.transcoders.load import load_transcoders
from circuitcat.ingest.transcoders.replace import replacement_hooks
from circuitcat.ingest.transcoders.transcoder import TranscoderConfig, parse_activation

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # HookedTransformer(cfg)

D_MODEL, D_TC, N_LAYERS = 16, 24, 3


def randn(*shape: int, seed: int) -> Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def weights(seed: int) -> dict[str, Tensor]:
    """SAELens orientation: W_enc [d_in, d_tc], W_dec [d_tc, d_out], b_dec the output bias;
    thresholds of both signs, a skip."""
    return {
        "W_enc": randn(D_MODEL, D_TC, seed=seed) / D_MODEL**0.5,
        "b_enc": 0.3 * randn(D_TC, seed=seed + 1),
        "W_dec": randn(D_TC, D_MODEL, seed=seed + 2) / D_TC**0.5,
        "b_dec": 0.1 * randn(D_MODEL, seed=seed + 3),
        "threshold": torch.linspace(-0.5, 0.5, D_TC),
        "W_skip": 0.2 * randn(D_MODEL, D_MODEL, seed=seed + 4),
    }


def write_saelens(folder: Path, layer: int, w: dict[str, Tensor], architecture: str) -> Path:
    folder.mkdir(parents=True)
    keys = ["W_enc", "b_enc", "W_dec", "b_dec"]
    keys += ["threshold"] if "jumprelu" in architecture else []
    keys += ["W_skip"] if "skip" in architecture else []
    save_file({k: w[k] for k in keys}, str(folder / "sae_weights.safetensors"))
    cfg = {
        "architecture": architecture,
        "d_in": D_MODEL,
        "d_sae": D_TC,
        "d_out": D_MODEL,
        "apply_b_dec_to_input": False,
        "metadata": {
            "model_name": "tiny",
            "hook_name": f"blocks.{layer}.ln2.hook_normalized",
            "hook_name_out": f"blocks.{layer}.hook_mlp_out",
        },
    }
    (folder / "cfg.json").write_text(json.dumps(cfg))
    return folder


def write_circuit_tracer(folder: Path, w: dict[str, Tensor], **config: Any) -> Path:
    folder.mkdir(parents=True)
    tensors = {
        "W_enc": w["W_enc"].T.contiguous(),
        "b_enc": w["b_enc"],
        "W_dec": w["W_dec"],
        "b_dec": w["b_dec"],
        "activation_function.threshold": w["threshold"],
    }
    save_file(tensors, str(folder / "layer_0.safetensors"))
    write_ct_config(folder, **config)
    return folder


def write_ct_config(folder: Path, **config: Any) -> None:
    """circuit-tracer's config.yaml for the tiny model, `config` on top."""
    settings = {
        "model_name": "tiny",
        "feature_input_hook": "mlp.hook_in",
        "feature_output_hook": "mlp.hook_out",
        **config,
    }
    (folder / "config.yaml").write_text(yaml.safe_dump(settings))


# --------------------------------------------------------------------------------------------
# activations


def test_each_library_keeps_its_jumprelu_convention(tmp_path: Path) -> None:
    """SAELens: ReLU(pre) * (pre > t); circuit-tracer: pre * (pre > t). They differ only where
    t < 0 and t < pre <= 0, which these thresholds (from -0.5 to 0.5) reach."""
    w, x = weights(0), 2 * randn(64, D_MODEL, seed=9)
    pre = x @ w["W_enc"] + w["b_enc"]
    sae = load_transcoders(write_saelens(tmp_path / "sae", 0, w, "jumprelu_transcoder"))
    ct = load_transcoders(write_circuit_tracer(tmp_path / "ct", w))
    assert sae.activation == ct.activation == "jumprelu"
    torch.testing.assert_close(sae[0].encode(x), torch.relu(pre) * (pre > w["threshold"]))
    torch.testing.assert_close(ct[0].encode(x), pre * (pre > w["threshold"]))
    assert bool((ct[0].encode(x) < 0).any())  # negative activations kept where t < pre < 0
    assert float(sae[0].threshold.detach().min()) == 0.0  # type: ignore[union-attr]


def test_topk_is_declared_on_relu_files(tmp_path: Path) -> None:
    w = weights(1)
    folder = tmp_path / "ct"
    low = {**w, "b_enc": w["b_enc"] - 5.0, "threshold": torch.zeros(D_TC)}  # zeros: ReLU files
    write_circuit_tracer(folder, low)
    relu = load_transcoders(folder)
    topk = load_transcoders(folder, activation="topk:3")
    assert (relu.kind, topk.kind) == ("relu", "topk:3") and topk.sha256 != relu.sha256
    assert load_transcoders(folder, activation="relu").sha256 == relu.sha256
    x = randn(10, D_MODEL, seed=2)  # b_enc - 5 puts most pre-activations below zero
    z, pre = topk[0].encode(x), topk[0].pre_acts(x)
    assert bool(((z != 0).sum(-1) == 3).all())
    kept = pre.gather(-1, torch.topk(pre, 3).indices)
    torch.testing.assert_close(z.gather(-1, torch.topk(pre, 3).indices), kept)
    assert bool((kept < 0).any())  # circuit-tracer's TopK keeps negative pre-activations
    jump = write_circuit_tracer(tmp_path / "jump", w)
    with pytest.raises(TranscoderLoadError, match="cannot override"):
        load_transcoders(jump, activation="topk:3")


@pytest.mark.parametrize(
    ("spec", "message"),
    [("topk:0", "is not one of"), ("gelu", "is not one of"), ("topk:99", "keeps more features")],
)
def test_bad_activations_are_refused(spec: str, message: str) -> None:
    with pytest.raises(TranscoderLoadError, match=message):
        parse_activation(spec)
        TranscoderConfig(D_MODEL, D_MODEL, D_TC, 0, "in", "out", spec)


# --------------------------------------------------------------------------------------------
# skip connections


def ln_model(n_layers: int = N_LAYERS) -> HookedTransformer:
    cfg = HookedTransformerConfig(
        n_layers=n_layers, d_model=D_MODEL, d_head=4, n_heads=4, d_mlp=32, n_ctx=16,
        d_vocab=30, act_fn="gelu", normalization_type="LN", seed=0,
    )  # fmt: skip
    model = HookedTransformer(cfg)
    with torch.no_grad():
        for i, block in enumerate(model.blocks):
            ln2: Any = block.ln2
            ln2.w.copy_(1 + 0.5 * randn(D_MODEL, seed=50 + i))
            ln2.b.copy_(0.3 * randn(D_MODEL, seed=60 + i))
    return model.eval()


def test_skip_reads_the_post_affine_input_after_the_fold(tmp_path: Path) -> None:
    """transformer_lens 3.x hooks ln2's input before its w and b; SAELens' skip reads after
    them: folded into W_skip and b_dec_out, the skip transcoder on the pre-affine input equals
    the library's forward on the post-affine one."""
    w, model = weights(3), ln_model()
    tset = load_transcoders(write_saelens(tmp_path / "sae", 1, w, "skip_transcoder"), model)
    ln2: Any = model.blocks[1].ln2
    x_pre = randn(20, D_MODEL, seed=4)
    x_post = x_pre * ln2.w.detach() + ln2.b.detach()
    z = torch.relu(x_post @ w["W_enc"] + w["b_enc"])
    want = z @ w["W_dec"] + w["b_dec"] + x_post @ w["W_skip"].T
    with torch.no_grad():
        torch.testing.assert_close(tset[1](x_pre), want, atol=1e-5, rtol=1e-5)
    assert tset.kind == "relu+skip"


# --------------------------------------------------------------------------------------------
# cross-layer transcoders


def write_clt(folder: Path, n_layers: int = N_LAYERS, skip_file: int | None = None) -> Path:
    """circuit-tracer's CLT layout: W_enc_i [d_tc, d_model], b_enc_i, b_dec_i, threshold_i;
    W_dec_i [d_tc, n_layers - i, d_model]."""
    folder.mkdir(parents=True)
    for i in range(n_layers):
        if i == skip_file:
            continue
        enc = {
            f"W_enc_{i}": randn(D_TC, D_MODEL, seed=10 + i) / D_MODEL**0.5,
            f"b_enc_{i}": 0.2 * randn(D_TC, seed=20 + i),
            f"b_dec_{i}": 0.1 * randn(D_MODEL, seed=30 + i),
            f"threshold_{i}": 0.1 * torch.rand(D_TC, generator=torch.Generator().manual_seed(i)),
        }
        save_file(enc, str(folder / f"W_enc_{i}.safetensors"))
        dec = {f"W_dec_{i}": randn(D_TC, n_layers - i, D_MODEL, seed=40 + i) / D_TC**0.5}
        save_file(dec, str(folder / f"W_dec_{i}.safetensors"))
    write_ct_config(folder, model_kind="cross_layer_transcoder")
    return folder


def test_clt_decoders_reach_every_later_layer(tmp_path: Path) -> None:
    tset = load_transcoders(write_clt(tmp_path / "clt"))
    assert tset.kind == "jumprelu+cross-layer" and tset.cross_layer
    assert [list(tset[i].out_layers) for i in tset.layers] == [[0, 1, 2], [1, 2], [2]]
    assert tset.writers(2) == [0, 1, 2] and tset.writers(0) == [0]
    W_dec_0 = randn(D_TC, N_LAYERS, D_MODEL, seed=40) / D_TC**0.5
    for m in range(N_LAYERS):
        torch.testing.assert_close(tset[0].decoder(m).detach(), W_dec_0[:, m])
    torch.testing.assert_close(tset.decoder_sum(0, below=2).detach(), W_dec_0[:, :2].sum(1))
    x = {i: randn(5, D_MODEL, seed=70 + i) for i in range(N_LAYERS)}
    with torch.no_grad():
        z = {i: tset[i].encode(x[i]) for i in range(N_LAYERS)}
        want = tset[2].b_dec_out + sum(z[i] @ tset[i].decoder(2) for i in range(N_LAYERS))
        torch.testing.assert_close(tset.output(2, z, x[2]), want)


def test_bad_clt_folders_are_refused(tmp_path: Path) -> None:
    gap = write_clt(tmp_path / "gap", skip_file=1)
    with pytest.raises(
        TranscoderLoadError, match=r"W_enc_0.safetensors .. .*found layers \[0, 2\]"
    ):
        load_transcoders(gap)
    short = write_clt(tmp_path / "short")
    save_file({"W_dec_1": torch.zeros(D_TC, 1, D_MODEL)}, str(short / "W_dec_1.safetensors"))
    with pytest.raises(TranscoderLoadError, match=r"'W_dec_1' has shape \[24, 1, 16\], expected"):
        load_transcoders(short)
    (short / "W_dec_1.safetensors").unlink()
    with pytest.raises(TranscoderLoadError, match=r"W_dec_1\.safetensors is missing"):
        load_transcoders(short)


def test_a_clt_on_a_model_with_fewer_layers_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TranscoderLoadError, match="layer 2 does not exist"):
        load_transcoders(write_clt(tmp_path / "clt"), ln_model(n_layers=2))


# --------------------------------------------------------------------------------------------
# replacement hooks (ingest evaluate, circuit verify)


def test_replacement_hooks_run_a_clt_with_skips_live() -> None:
    """Every MLP output becomes the set's output on this pass's inputs (writes of every earlier
    layer, b_dec_out, the skip); an edit of the activations applies before any decoding, so a
    zeroed cross-layer feature is gone from every layer it writes to."""
    from .test_attribution_kinds import kind_set

    tset = kind_set("clt+skip")  # d_model 32
    cfg = HookedTransformerConfig(
        n_layers=N_LAYERS, d_model=32, d_head=8, n_heads=4, d_mlp=64, n_ctx=16, d_vocab=30,
        act_fn="gelu", normalization_type="LN", seed=0,
    )  # fmt: skip
    model = HookedTransformer(cfg).eval()
    tokens = torch.randint(0, 30, (2, 6), generator=torch.Generator().manual_seed(1))
    names = {f"blocks.{i}.{s}" for i in range(N_LAYERS) for s in ("ln2.hook_normalized",
             "hook_mlp_out")}  # fmt: skip

    def run(edit: Any = None) -> dict[str, Tensor]:
        with torch.no_grad(), model.hooks(fwd_hooks=replacement_hooks(tset, tset.layers, edit)):
            _, cache = model.run_with_cache(tokens, names_filter=names.__contains__)
        return dict(cache)

    def check(cache: dict[str, Tensor], edit: Any) -> dict[int, Tensor]:
        x = {i: cache[f"blocks.{i}.ln2.hook_normalized"] for i in range(N_LAYERS)}
        with torch.no_grad():
            z = {i: edit(i, tset[i].encode(x[i])) for i in range(N_LAYERS)}
            for m in range(N_LAYERS):
                torch.testing.assert_close(
                    cache[f"blocks.{m}.hook_mlp_out"], tset.output(m, z, x[m])
                )
        return z

    z = check(run(), lambda layer, acts: acts)
    j = int(z[0][0, 0].argmax())  # a feature of layer 0 active at (0, 0)

    def drop(layer: int, acts: Tensor) -> Tensor:
        acts = acts.clone()
        if layer == 0:
            acts[0, 0, j] = 0.0
        return acts

    base, edited = run(), run(drop)
    check(edited, drop)
    with torch.no_grad():  # layer 0's output at (0, 0) loses exactly that feature's write
        delta = base["blocks.0.hook_mlp_out"][0, 0] - edited["blocks.0.hook_mlp_out"][0, 0]
        torch.testing.assert_close(delta, z[0][0, 0, j] * tset[0].decoder(0)[j])
