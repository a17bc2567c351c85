"""A tiny random model and transcoder set for ingest tests (no toy weights needed)."""

from __future__ import annotations

import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from circuitcat.ingest.models import LoadedModel
from circuitcat.ingest.transcoders.transcoder import Transcoder, TranscoderConfig, TranscoderSet

N_LAYERS, D_MODEL, N_HEADS, D_VOCAB, D_TC = 2, 16, 2, 40, 24


def tiny_model() -> LoadedModel:
    cfg = HookedTransformerConfig(
        n_layers=N_LAYERS,
        d_model=D_MODEL,
        n_ctx=8,
        d_head=8,
        n_heads=N_HEADS,
        d_vocab=D_VOCAB,
        act_fn="gelu",
        seed=0,
    )
    return LoadedModel(HookedTransformer(cfg), "tiny", "test", {"fold_ln": False})


def make_set(sha: str = "a" * 64) -> TranscoderSet:
    tcs = {}
    for layer in range(N_LAYERS):
        cfg = TranscoderConfig(
            D_MODEL,
            D_MODEL,
            D_TC,
            layer,
            f"blocks.{layer}.ln2.hook_normalized",
            f"blocks.{layer}.hook_mlp_out",
        )
        tcs[layer] = Transcoder(cfg)
        gen = torch.Generator().manual_seed(layer)
        with torch.no_grad():
            tcs[layer].W_enc.normal_(generator=gen)
            tcs[layer].W_dec.normal_(generator=gen)
    return TranscoderSet("tc", "tiny", "circuitcat", "/tmp/tc", tcs, {}, sha)
