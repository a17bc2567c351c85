"""Transcoder training on a tiny random model: it must learn, and report sane metrics."""

from __future__ import annotations

import pytest
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from circuitcat.catalog.errors import IngestError
from circuitcat.ingest.transcoders.training import (
    TranscoderTrainConfig,
    collect_activations,
    init_transcoder,
    measure_transcoder,
    resample_dead,
    train_transcoder,
    train_transcoder_set,
)


@pytest.fixture(scope="module")
def tiny_model() -> HookedTransformer:
    cfg = HookedTransformerConfig(
        n_layers=2,
        d_model=16,
        n_heads=2,
        d_head=8,
        d_mlp=64,
        n_ctx=12,
        d_vocab=40,
        act_fn="gelu_new",
        normalization_type="LN",
        model_name="tiny",
        seed=0,
        device="cpu",
    )
    return HookedTransformer(cfg, move_to_device=False).eval()


def token_batches(seed: int, n: int = 4) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randint(1, 40, (16, 12), generator=generator) for _ in range(n)]


def test_collect_activations_drops_pad(tiny_model: HookedTransformer) -> None:
    tokens = token_batches(0, 1)[0]
    tokens[:, 8:] = 0
    acts = collect_activations(tiny_model, [tokens], [0, 1], pad_id=0)
    assert acts[1].x.shape == (16 * 8, 16) and acts[1].y.shape == (16 * 8, 16)
    _, cache = tiny_model.run_with_cache(tokens)
    assert torch.allclose(acts[0].y[:8], cache["blocks.0.hook_mlp_out"][0, :8])
    with pytest.raises(IngestError, match="no token batches"):
        collect_activations(tiny_model, [], [0])


def test_training_reduces_fvu(tiny_model: HookedTransformer) -> None:
    train = collect_activations(tiny_model, token_batches(0), [1])[1]
    held_out = collect_activations(tiny_model, token_batches(1, 2), [1])[1]
    cfg = TranscoderTrainConfig(d_transcoder=64, steps=300, batch_size=256, l1_coeff=0.005)
    before = measure_transcoder(init_transcoder(train, 1, 64, torch.Generator()), held_out)
    tc = train_transcoder(train, 1, cfg)
    after = measure_transcoder(tc, held_out)
    assert before.fvu >= 0.9 and after.fvu < 0.5 * before.fvu
    assert 0 < after.l0 < 64 and 0.0 <= after.dead_fraction < 1.0
    assert torch.allclose(tc.W_dec.norm(dim=-1), torch.ones(64), atol=1e-4)
    assert torch.allclose(
        init_transcoder(train, 1, 64, torch.Generator()).b_dec_out, train.y.mean(0)
    )


def test_resample_revives_dead_features(tiny_model: HookedTransformer) -> None:
    acts = collect_activations(tiny_model, token_batches(2, 1), [0])[0]
    tc = init_transcoder(acts, 0, 32, torch.Generator().manual_seed(0))
    with torch.no_grad():
        tc.b_enc[:8] = -1e4
    dead = (tc.encode(acts.x) <= 0).all(0)
    assert dead[:8].all()
    optimizer = torch.optim.Adam([tc.W_enc, tc.b_enc, tc.W_dec, tc.b_dec_out])
    resample_dead(tc, optimizer, dead, acts.x, acts.y, torch.Generator().manual_seed(0))
    assert (tc.encode(acts.x)[:, dead] > 0).any(0).float().mean() > 0.5


def test_train_transcoder_set(tiny_model: HookedTransformer) -> None:
    cfg = TranscoderTrainConfig(d_transcoder=32, steps=50, batch_size=128)
    tset = train_transcoder_set(tiny_model, token_batches(0, 2), token_batches(1, 1), cfg, "tc")
    assert tset.layers == [0, 1] and tset.model_name == "tiny" and tset.d_transcoder == 32
    for layer in tset.layers:
        assert set(tset[layer].cfg.metrics) == {"fvu", "l0", "dead_fraction"}
        assert tset[layer].cfg.input_hook == f"blocks.{layer}.ln2.hook_normalized"
        assert tset[layer].cfg.output_hook == f"blocks.{layer}.hook_mlp_out"
