"""What an intervention does to transcoder activations, resolved into tensors.

Every op edits the activations z of chosen features at chosen positions, before they are
decoded (so a cross-layer feature is edited in every layer it writes to):

    zero    z' = 0                       mean    z' = the feature's mean activation
    clamp   z' = value                   scale   z' = value * z
    steer   z' = z + value               (adds value x the feature's decoder direction)
    patch   z' = z on the source prompt  (feature-level activation patching)

One form covers them all: z' = z + M * ((A - 1) * z + B), with M the edited (position, feature)
mask, A the factor and B the offset. `ResolvedEdit` holds M per layer and A, B per layer and
feature (B per prompt and position for patch).

Dimension names: batch, pos, d_transcoder as in ingest/transcoders/transcoder.py.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from circuitcat.catalog.errors import InterventionError

from ..transcoders.transcoder import TranscoderSet

Op = Literal["zero", "mean", "clamp", "scale", "steer", "patch"]
OPS: tuple[str, ...] = ("zero", "mean", "clamp", "scale", "steer", "patch")
NEEDS_VALUE = {"clamp", "scale", "steer"}


@dataclass(frozen=True)
class Intervention:
    """One intervention: an op on a set of features (layer, index) at some positions.

    `value` is the clamp value, the scale factor or the steering coefficient; with
    `of_max` a clamp value is a multiple of each feature's max activation (from the corpus
    pass). `positions` index each prompt's tokens (BOS is 0; negative counts from the prompt's
    end, -1 is the last token); None edits every position. `complement` edits every feature
    of the set except `features`. `keep_error` keeps each MLP's transcoder error (the model
    runs as itself plus the edit); without it every MLP is replaced by its transcoder, as
    `circuit verify` measures."""

    op: Op
    features: tuple[tuple[int, int], ...]
    value: float | None = None
    of_max: bool = False
    positions: tuple[int, ...] | None = None
    complement: bool = False
    keep_error: bool = True
    source: str = ""  # patch: the source prompt (text or uid), for the record

    def spec(self) -> dict[str, Any]:
        """The intervention as stored (JSON-able)."""
        out = asdict(self)
        out["features"] = [f"L{layer}/{index}" for layer, index in self.features]
        out["positions"] = list(self.positions) if self.positions is not None else "all"
        return out


@dataclass
class ResolvedEdit:
    """An intervention as tensors for one batch of prompts (see the module doc)."""

    mask: dict[int, Bool[Tensor, "batch pos d_transcoder"]]
    factor: dict[int, Float[Tensor, " d_transcoder"]]
    offset: dict[int, Tensor]  # [d_transcoder], or [batch, pos, d_transcoder] for patch
    layers: list[int] = field(default_factory=list)

    def apply(self, layer: int, z: Tensor) -> Tensor:
        """z' for layer `layer` (z unchanged for a layer the edit does not touch)."""
        if layer not in self.mask:
            return z
        mask = self.mask[layer].to(z.device)[: z.shape[0], : z.shape[1]]
        offset = self.offset[layer].to(z)
        if offset.dim() == 3:
            offset = offset[: z.shape[0], : z.shape[1]]
        new = self.factor[layer].to(z) * z + offset
        return torch.where(mask, new, z)

    def delta(self, layer: int, z: Tensor) -> Tensor:
        return self.apply(layer, z) - z


def check_intervention(iv: Intervention, tset: TranscoderSet) -> None:
    """InterventionError for an op, feature or value the set cannot take."""
    if iv.op not in OPS:
        raise InterventionError(f"unknown op {iv.op!r}; use one of {', '.join(OPS)}")
    if not iv.features and not iv.complement:
        raise InterventionError("an intervention needs at least one feature (or a circuit)")
    for layer, index in iv.features:
        if layer not in tset.layers:
            raise InterventionError(
                f"feature L{layer}/{index}: set '{tset.name}' has transcoders at layers "
                f"{tset.layers[0]}..{tset.layers[-1]} ({len(tset.layers)} layers), not {layer}"
            )
        if not 0 <= index < tset.d_transcoder:
            raise InterventionError(
                f"feature L{layer}/{index}: set '{tset.name}' has features "
                f"0..{tset.d_transcoder - 1} per layer"
            )
    if iv.op in NEEDS_VALUE:
        if iv.value is None:
            raise InterventionError(f"op {iv.op!r} needs a value (--value)")
        if not math.isfinite(iv.value):
            raise InterventionError(f"value {iv.value} is not a finite number; give one")
    if iv.of_max and iv.op != "clamp":
        raise InterventionError("a value in multiples of max activation works with clamp only")


def position_mask(
    positions: tuple[int, ...] | None, lengths: Sequence[int], width: int
) -> Bool[Tensor, "batch pos"]:
    """[batch, pos] True where edited; InterventionError for a position past a prompt's end."""
    mask = torch.zeros(len(lengths), width, dtype=torch.bool)
    for row, length in enumerate(lengths):
        if positions is None:
            mask[row, :length] = True
            continue
        for p in positions:
            if not -length <= p < length:
                raise InterventionError(
                    f"position {p} is past the end of a prompt of {length} tokens (positions "
                    f"0..{length - 1}, or -1..-{length} from the end)"
                )
            mask[row, p % length] = True
    return mask


def feature_masks(
    iv: Intervention, tset: TranscoderSet
) -> dict[int, Bool[Tensor, " d_transcoder"]]:
    """Per layer, the features edited (the complement of `features` with `complement`)."""
    masks = {layer: torch.zeros(tset.d_transcoder, dtype=torch.bool) for layer in tset.layers}
    for layer, index in iv.features:
        masks[layer][index] = True
    if iv.complement:
        masks = {layer: ~m for layer, m in masks.items()}
    return {layer: m for layer, m in masks.items() if bool(m.any())}


def resolve(
    iv: Intervention,
    tset: TranscoderSet,
    lengths: Sequence[int],
    width: int,
    *,
    means: Mapping[int, Tensor] | None = None,
    act_max: Mapping[int, Tensor] | None = None,
    source_z: Mapping[int, Tensor] | None = None,
) -> ResolvedEdit:
    """The intervention as tensors for prompts of `lengths` padded to `width` positions.

    `means` (mean op), `act_max` (clamp with `of_max`) and `source_z` (patch: each layer's
    activations on the source prompt, [batch or 1, pos, d_transcoder]) are needed by those ops."""
    check_intervention(iv, tset)
    pos = position_mask(iv.positions, lengths, width)
    edit = ResolvedEdit({}, {}, {})
    for layer, feats in feature_masks(iv, tset).items():
        edit.layers.append(layer)
        edit.mask[layer] = pos[:, :, None] & feats[None, None, :]
        ones, zeros = torch.ones(tset.d_transcoder), torch.zeros(tset.d_transcoder)
        value = float(iv.value) if iv.value is not None else 0.0
        factor, offset = zeros, zeros
        if iv.op == "mean":
            if means is None:
                raise InterventionError("mean ablation needs the features' means")
            offset = means[layer].float().cpu()
        elif iv.op == "clamp":
            offset = zeros + value
            if iv.of_max:
                if act_max is None:
                    raise InterventionError("a clamp in multiples of max needs act_max")
                offset = act_max[layer].float().cpu() * value
        elif iv.op == "scale":
            factor = zeros + value
        elif iv.op == "steer":
            factor, offset = ones, zeros + value
        elif iv.op == "patch":
            if source_z is None:
                raise InterventionError("patching needs the source prompt's activations")
            src = source_z[layer].float().cpu()
            if src.shape[1] < width:
                src = torch.nn.functional.pad(src, (0, 0, 0, width - src.shape[1]))
            offset = src[:, :width].expand(len(lengths), width, -1)
        edit.factor[layer] = factor
        edit.offset[layer] = offset
    return edit
