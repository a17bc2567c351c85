"""Per-prompt attribution graphs over the local replacement model.

frozen.py: the frozen (linear) model of one prompt, its forward and batched adjoint.
graph.py: `attribute` -> PromptGraph, `split_by_head` -> HeadEdges, targets.
prune.py: `prune` by influence, `top_paths` (the paper's beam search).
"""

from circuitcat.ingest.attribution.frozen import FrozenPrompt, FrozenRun, freeze, frozen_forward
from circuitcat.ingest.attribution.graph import (
    RESID,
    DirectionTarget,
    FeatureTarget,
    HeadEdges,
    LogitTarget,
    NodeKind,
    PromptGraph,
    Target,
    attribute,
    metric_direction,
    split_by_head,
)
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
    "freeze",
    "frozen_forward",
    "influence",
    "metric_direction",
    "prune",
    "split_by_head",
    "top_paths",
]
