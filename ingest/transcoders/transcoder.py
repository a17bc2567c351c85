"""The transcoder: a sparse, wide replacement for one MLP layer.

Dimension names used across ingest/:
    batch       prompts in a batch
    pos         token positions
    d_model     residual stream width
    d_in        transcoder input width (d_model for MLP transcoders)
    d_out       transcoder output width (d_model)
    d_transcoder  number of transcoder features
    d_vocab     vocabulary size

z = ReLU((x - b_dec) @ W_enc + b_enc);  out = z @ W_dec + b_dec_out
Loaders fold an input-side b_dec into b_enc when a format has one, so b_dec is usually zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from jaxtyping import Float
from torch import Tensor, nn


@dataclass(frozen=True)
class TranscoderConfig:
    """What a transcoder reads, writes and how wide it is."""

    d_in: int
    d_out: int
    d_transcoder: int
    layer: int
    input_hook: str
    output_hook: str
    activation: str = "relu"
    metrics: dict[str, float] = field(default_factory=dict)


class Transcoder(nn.Module):
    """One ReLU transcoder, fp32 by default."""

    def __init__(self, cfg: TranscoderConfig, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.cfg = cfg
        self.W_enc = nn.Parameter(torch.zeros(cfg.d_in, cfg.d_transcoder, dtype=dtype))
        self.b_enc = nn.Parameter(torch.zeros(cfg.d_transcoder, dtype=dtype))
        self.W_dec = nn.Parameter(torch.zeros(cfg.d_transcoder, cfg.d_out, dtype=dtype))
        self.b_dec = nn.Parameter(torch.zeros(cfg.d_in, dtype=dtype))
        self.b_dec_out = nn.Parameter(torch.zeros(cfg.d_out, dtype=dtype))

    def pre_acts(self, x: Float[Tensor, "... d_in"]) -> Float[Tensor, "... d_transcoder"]:
        return (x - self.b_dec) @ self.W_enc + self.b_enc

    def encode(self, x: Float[Tensor, "... d_in"]) -> Float[Tensor, "... d_transcoder"]:
        return torch.relu(self.pre_acts(x))

    def decode(self, z: Float[Tensor, "... d_transcoder"]) -> Float[Tensor, "... d_out"]:
        return z @ self.W_dec + self.b_dec_out

    def forward(self, x: Float[Tensor, "... d_in"]) -> Float[Tensor, "... d_out"]:
        return self.decode(self.encode(x))


@dataclass
class TranscoderSet:
    """One transcoder per MLP layer of one model, plus where they came from.

    `processing` records the HookedTransformer flags (fold_ln, center_writing_weights,
    center_unembed) the set was trained against: published transcoders only match a model
    processed the same way.
    """

    name: str
    model_name: str
    format: str
    source: str
    transcoders: dict[int, Transcoder]
    processing: dict[str, bool] = field(default_factory=dict)
    sha256: str = ""

    @property
    def layers(self) -> list[int]:
        return sorted(self.transcoders)

    @property
    def d_transcoder(self) -> int:
        return next(iter(self.transcoders.values())).cfg.d_transcoder

    def __getitem__(self, layer: int) -> Transcoder:
        return self.transcoders[layer]
