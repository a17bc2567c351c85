"""Matching the features of two transcoder sets of one model by their decoder directions.

A feature's decoder direction is its row of W_dec (for a cross-layer transcoder, its rows into
every layer it writes to, concatenated), divided by its norm. Feature j of set B in layer l is
matched to the feature i of set A in the same layer with the largest cosine similarity between
their directions, when that similarity is at least `threshold` (default `MATCH_THRESHOLD`, 0.7):
the two write nearly the same direction into the residual stream. Features of B with no such
partner stay unmatched, and count as unshared in `circuit compare`.

Why 0.7: two random directions in d_model = 128 (the toy) have |cosine| around 1/sqrt(128) ~
0.09, and above 0.3 with probability about 1e-3 per pair; 0.7 is far above that tail even over
the 256 x 256 pairs of a layer (whose largest is about 0.38). On the toy, a set trained from
another seed matches 705 of its 1,024 features at 0.7 (docs/circuits.md). A set matched with
itself pairs every feature with itself (cosine 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from circuitcat.catalog import schema
from circuitcat.catalog.errors import QueryError

from .transcoders.transcoder import TranscoderSet

MATCH_THRESHOLD = 0.7


def decoder_directions(tset: TranscoderSet, layer: int) -> Float[Tensor, "d_transcoder d_dir"]:
    """Unit decoder directions of one layer's features as written into the residual stream
    (every output layer concatenated; through a post-MLP norm's weight where the set writes
    before it, so sets writing before and after that norm compare in one space)."""
    tc = tset[layer]
    rows = [tset.resid_gain(m, tc.decoder(m)) for m in tc.out_layers]
    w = torch.cat([r.detach().float() for r in rows], dim=-1)
    return w / w.norm(dim=-1, keepdim=True).clamp_min(1e-12)


@dataclass(frozen=True)
class Matching:
    """B feature uid -> A feature uid, and the cosine similarity of each matched pair."""

    pairs: dict[str, str]
    cosine: dict[str, float]
    threshold: float
    n_b: int  # features of B considered

    def describe(self) -> str:
        return (
            f"decoder cosine >= {self.threshold:g} ({len(self.pairs)} of {self.n_b} features "
            "of B matched)"
        )


def match_features(
    tset_a: TranscoderSet,
    set_a: str,
    tset_b: TranscoderSet,
    set_b: str,
    threshold: float = MATCH_THRESHOLD,
) -> Matching:
    """Each feature of B matched to A's feature of the same layer with the closest decoder
    direction, where the cosine similarity is >= `threshold` (see the module doc)."""
    if not 0 < threshold <= 1:
        raise QueryError(f"--threshold must be in (0, 1] (got {threshold})")
    pairs: dict[str, str] = {}
    cosine: dict[str, float] = {}
    n_b = 0
    for layer in sorted(set(tset_a.layers) & set(tset_b.layers)):
        a, b = decoder_directions(tset_a, layer), decoder_directions(tset_b, layer)
        if a.shape[-1] != b.shape[-1]:
            raise QueryError(
                f"layer {layer}: the sets' decoders have different shapes ({a.shape[-1]} and "
                f"{b.shape[-1]} wide); no decoder matching between them"
            )
        sims = b @ a.T  # [d_transcoder_b, d_transcoder_a]
        best, index = sims.max(dim=-1)
        n_b += b.shape[0]
        for j in (best >= threshold).nonzero().flatten().tolist():
            uid_b = schema.feature_uid(set_b, layer, j)
            pairs[uid_b] = schema.feature_uid(set_a, layer, int(index[j]))
            cosine[uid_b] = float(best[j])
    return Matching(pairs, cosine, threshold, n_b)
