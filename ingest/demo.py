"""The demo: the whole job on the shipped toy model, step by step, reusing what is stored.

register -> corpus pass -> weights -> greater-than prompt graphs -> circuit -> faithfulness.
Each step is the same library call the `circuitcat ingest/circuit` commands make; a step whose
result is already in the catalog is skipped, so re-running the demo is quick.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from circuitcat.catalog import CatalogStore
from circuitcat.catalog.circuits import CircuitReport, CircuitView, find_circuit, show_circuit

from .corpus import open_corpus
from .faithfulness import Faithfulness, verify_circuit
from .features import run_features
from .models import load_model
from .prompts import PromptParams, PromptsReport, run_prompts
from .register import RegisterReport, register
from .tasks import load_task
from .transcoders.load import load_transcoders
from .weights_job import WeightsParams, WeightsReport, finished_run, run_weights

TASK = "greater-than"
CIRCUIT = "greater-than"

Step = Callable[[str], None]


@dataclass
class DemoReport:
    store_uri: str
    register: RegisterReport
    features_reused: bool
    weights: WeightsReport
    prompts: PromptsReport
    circuit: CircuitReport
    faithfulness: Faithfulness
    view: CircuitView
    seconds: dict[str, float] = field(default_factory=dict)


class _Stages:
    """Wall time per stage, and the caller told as each starts."""

    def __init__(self, step: Step | None) -> None:
        self.step = step
        self.seconds: dict[str, float] = {}
        self._name: str | None = None
        self._t0 = 0.0

    def start(self, name: str) -> None:
        self.stop()
        self._name, self._t0 = name, time.perf_counter()
        if self.step:
            self.step(name)

    def stop(self) -> None:
        if self._name is not None:
            self.seconds[self._name] = time.perf_counter() - self._t0
        self._name = None


def run_demo(
    store: CatalogStore,
    *,
    n_docs: int = 2000,
    n_prompts: int = 40,
    device: str = "cpu",
    step: Step | None = None,
) -> DemoReport:
    """Run (or reuse) every stage on `toy-years`; `step(name)` is called as each one starts."""
    stage = _Stages(step)
    stage.start("load")
    loaded = load_model("toy-years", device)
    tset = load_transcoders("toy-years", loaded, device=device)
    stage.start("register")
    reg = register(store, loaded, tset)
    stage.start("features")
    corpus = open_corpus("toy", n_docs=n_docs, n_ctx=loaded.model.cfg.n_ctx)
    reused = finished_run(store, "features", {"set": reg.set_uid, "corpus": corpus.describe()})
    if reused is None:
        run_features(store, loaded, tset, corpus, device=device)
    stage.start("weights")
    weights = run_weights(store, loaded, tset, WeightsParams())
    stage.start("prompts")
    task = load_task(TASK, loaded.model.tokenizer, n=n_prompts)
    prompts = run_prompts(store, loaded, tset, task, PromptParams())
    stage.start("circuit")
    circuit = find_circuit(store, TASK, reg.set_uid, name=CIRCUIT)
    stage.start("verify")
    faith = verify_circuit(store, loaded, tset, task, CIRCUIT)
    stage.start("show")
    view = show_circuit(store, CIRCUIT, reg.set_uid, TASK)
    stage.stop()
    return DemoReport(
        store.uri, reg, reused is not None, weights, prompts, circuit, faith, view, stage.seconds
    )
