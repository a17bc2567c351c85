"""Per-prompt attribution graphs over the local replacement model.

capture.py: `freeze` records one prompt from the real model; `check_supported`.
frozen.py: the frozen (linear) model of one prompt, its forward and batched adjoint.
graph.py: `attribute` -> PromptGraph, targets.
heads.py: `split_by_head` -> HeadEdges.
prune.py: `prune` by influence, `top_paths` (the paper's beam search).
"""

from circuitcat.ingest.attribution.capture import check_supported, freeze
from circuitcat.ingest.attribution.frozen import FrozenPrompt, FrozenRun, frozen_forward
from circuitcat.ingest.attribution.graph import (
    DirectionTarget,
    FeatureTarget,
    LogitTarget,
    NodeKind,
    PromptGraph,
    Target,
    attribute,
    metric_direction,
)
from circuitcat.ingest.attribution.heads import RESID, HeadEdges, split_by_head
from circuitcat.ingest.attribution.prune import Path, influence, prune, top_paths

__all__ = [
    "RESID",
    "DirectionTarget",
    "FeatureTarget",
    "FrozenPrompt",
    "FrozenRun",
    "HeadEdges",
    "LogitTarget",
    "NodeKind",
    "Path",
    "PromptGraph",
    "Target",
    "attribute",
    "check_supported",
    "freeze",
    "frozen_forward",
    "influence",
    "metric_direction",
    "prune",
    "split_by_head",
    "top_paths",
]
