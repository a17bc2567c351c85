"""The demo: the whole job on the shipped toy model, step by step, reusing what is stored.

register -> corpus pass -> weights -> then for every built-in task (`DEMO_TASKS`: greater-than,
less-than, counting): prompt graphs -> circuit (named after the task) -> faithfulness.
Each step is the same library call the `circuitcat ingest/circuit` commands make; a step whose
result is already in the catalog is skipped, so re-running the demo is quick.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from circuitcat.catalog import CatalogStore
from circuitcat.catalog.circuits import CircuitReport, CircuitView, find_circuit, show_circuit
from circuitcat.catalog.descriptions import describe_set

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
# Every built-in task and the prompts the demo attributes for it (small: the demo's time).
DEMO_TASKS: dict[str, int] = {"greater-than": 40, "less-than": 30, "counting": 30}
# Circuit sizes other than find's default (5% of the live features): the toy's counting spreads
# over more features (51 keep 9% of its metric, 150 keep ~60%; docs/circuits.md).
DEMO_TOP_N: dict[str, int] = {"counting": 150}

Step = Callable[[str], None]


@dataclass
class TaskCircuit:
    """One built-in task's prompt graphs, its circuit and the circuit's faithfulness."""

    task: str
    prompts: PromptsReport
    circuit: CircuitReport
    faithfulness: Faithfulness


@dataclass
class DemoReport:
    """The whole demo; `prompts`, `circuit`, `faithfulness` and `view` are greater-than's."""

    store_uri: str
    register: RegisterReport
    features_reused: bool
    weights: WeightsReport
    prompts: PromptsReport
    circuit: CircuitReport
    faithfulness: Faithfulness
    view: CircuitView
    seconds: dict[str, float] = field(default_factory=dict)
    circuits: list[TaskCircuit] = field(default_factory=list)


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
    tasks: dict[str, int] | None = None,
) -> DemoReport:
    """Run (or reuse) every stage on `toy-years`; `step(name)` is called as each one starts.

    `tasks`: built-in task -> prompts to attribute (default `DEMO_TASKS`, greater-than's count
    from `n_prompts`); greater-than always runs."""
    tasks = {**DEMO_TASKS, TASK: n_prompts, **(tasks or {})}
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
    else:  # measured by an older circuitcat, perhaps: descriptions from what is stored
        describe_set(store, reg.set_uid)
    stage.start("weights")
    weights = run_weights(store, loaded, tset, WeightsParams())
    circuits = []
    for name, n in tasks.items():
        task = load_task(name, loaded.model.tokenizer, n=n)
        stage.start(f"prompts {name}")
        prompts = run_prompts(store, loaded, tset, task, PromptParams())
        stage.start(f"circuit {name}")
        circuit = find_circuit(store, name, reg.set_uid, name=name, top_n=DEMO_TOP_N.get(name))
        stage.start(f"verify {name}")
        faith = verify_circuit(store, loaded, tset, task, name)
        circuits.append(TaskCircuit(name, prompts, circuit, faith))
    stage.start("show")
    view = show_circuit(store, CIRCUIT, reg.set_uid, TASK)
    stage.stop()
    gt = next(c for c in circuits if c.task == TASK)
    return DemoReport(
        store.uri, reg, reused is not None, weights, gt.prompts, gt.circuit, gt.faithfulness,
        view, stage.seconds, circuits,
    )  # fmt: skip
