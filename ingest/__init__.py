"""Ingest jobs: load a model with its transcoders and write what they compute into a catalog.

The front door, in the order a catalog is built (each job reloads the registered set itself):

    loaded, tset = load_pair("path/to/model", "path/to/transcoders")   # or load_registered
    register_set(store, loaded, tset)
    run_features(store, loaded, tset, open_corpus(...))    # statistics, top contexts
    run_weights(store, loaded, tset, WeightsParams())      # input-invariant connections
    run_prompts(store, loaded, tset, load_task(...), PromptParams())   # attribution graphs
    find_circuit(store, task)  /  verify_circuit(store, loaded, tset, task, name)
    (find_circuit and show_circuit need no model: they live in circuitcat.catalog.circuits)

Names are imported on first use, so `import circuitcat.ingest` stays cheap (no torch).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "load_pair": "inputs",
    "load_registered": "inputs",
    "pick_device": "inputs",
    "set_threads": "inputs",
    "register_set": "register",  # the function `register.register` (a module name too)
    "open_corpus": "corpus",
    "run_features": "features",
    "WeightsParams": "weights_job",
    "run_weights": "weights_job",
    "PromptParams": "prompts",
    "load_task": "tasks",
    "run_prompts": "prompts",
    "find_circuit": "circuitcat.catalog.circuits",
    "show_circuit": "circuitcat.catalog.circuits",
    "verify_circuit": "faithfulness",
    "circuit_curve": "faithfulness",
}
__all__ = [
    "PromptParams",
    "WeightsParams",
    "circuit_curve",
    "find_circuit",
    "load_pair",
    "load_registered",
    "load_task",
    "open_corpus",
    "pick_device",
    "register_set",
    "run_features",
    "run_prompts",
    "run_weights",
    "set_threads",
    "show_circuit",
    "verify_circuit",
]

if TYPE_CHECKING:
    from circuitcat.catalog.circuits import find_circuit, show_circuit

    from .corpus import open_corpus
    from .faithfulness import circuit_curve, verify_circuit
    from .features import run_features
    from .inputs import load_pair, load_registered, pick_device, set_threads
    from .prompts import PromptParams, run_prompts
    from .register import register as register_set
    from .tasks import load_task
    from .weights_job import WeightsParams, run_weights


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    where = _EXPORTS[name]
    module = importlib.import_module(where if "." in where else f".{where}", __name__)
    return getattr(module, "register" if name == "register_set" else name)
