"""Interventions on transcoder features: ablate, clamp, scale, steer and patch, with the
attribution graph's prediction beside the model's answer (docs/concepts.md).

    from circuitcat.ingest.interventions import Intervention, intervene
    result = intervene(model, tset, task.prompts, task.metric,
                       Intervention("clamp", ((1, 17),), value=8.0, positions=(-1,)))
    result.before, result.after, result.frozen, result.predicted, result.flagged
"""

from .core import InterventionResult, intervene
from .edits import OPS, Intervention, ResolvedEdit
from .run import Freeze

__all__ = ["OPS", "Freeze", "Intervention", "InterventionResult", "ResolvedEdit", "intervene"]
