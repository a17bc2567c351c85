"""`ingest prompts`: per-prompt attribution graphs, pruned, written into the catalog.

For each prompt of a task: `attribute` builds the full graph for the task's target (the logit
direction mean W_U[correct] - mean W_U[incorrect] at the last position: for greater-than the
years > YY against the years <= YY), the graph is reduced (`method`), and the result becomes
catalog rows:

    (:Prompt)-[:OF_TASK]->(:Task)                   the prompt; metric_value = the task metric
    (:Target {task, name, kind})                    one per task and target name
    (:Error {set, layer, kind})                     kind "transcoder_error" (per layer),
                                                    "bias" (per layer; layer -1: ln_final, b_U),
                                                    "remainder" (what pruning dropped)
    (:Feature|Token|Error)-[:ATTRIBUTES {prompt, w, src_pos, dst_pos, via}]->(:Feature|Target)
    (:Head)-[:ATTRIBUTES {prompt, w, src_pos: -1, dst_pos, via}]->(:Feature|Target)

Nodes stay global (a feature is one node across prompts); the prompt and the positions live on
the edge. Edges from Feature, Token and Error nodes carry via "all" (every route summed); for
each destination they add up to its value (a feature's pre-activation, the target). Head edges
decompose the same attribution by attention head: w = the part of the destination's incoming
edges whose first attention hop is head H of layer L (via "attn:L.H", from any source
position), so they are never added to the others. With `split_edges`, the edges themselves are
stored split by route instead (via "resid" for the direct path along the residual stream at one
position, "attn:L.H" by first hop; parts of one edge add up to its w), which is about 7x the
rows and makes path queries slower; no Head edges then. Bias and remainder edges are never split.

Pruning (method "graph", circuit-tracer's procedure, ingest/attribution/prune.py): nodes are
kept until they hold `node_threshold` (default 0.8) of the total influence on the target, then
edges until they hold `edge_threshold` (default 0.98) of the edge scores, then dangling nodes go.
Method "paths" keeps the nodes and edges of the paper's greedy beam search (`depth`,
`branches`). Either way, each destination (a kept feature's pre-activation, the target) gets a
"remainder" edge for what the dropped edges carried, so the stored incoming edges of every
destination add up to its value, as in the full graph.

Re-writing a prompt's graph adds nothing: ATTRIBUTES are keyed by (endpoints, prompt, src_pos,
dst_pos, via) and MERGEd. Resumable: a prompt is done for a transcoder set when its Prompt node
exists and the set's remainder edge into the target for it does (written last).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from typing import Any, Literal

import numpy as np
import torch

from circuitcat.catalog import CatalogStore, EdgeBatch, NodeBatch, schema
from circuitcat.catalog.errors import IngestError
from circuitcat.catalog.parts import WHOLE, Shard
from circuitcat.catalog.records import PromptRecord, RunRecord, TaskRecord
from circuitcat.catalog.records import records_to_batch as batch_of
from circuitcat.catalog.runs import finish_run, start_run
from circuitcat.catalog.schema import GraphNode

from .attribution import (
    HeadEdges,
    PromptGraph,
    attribute,
    metric_direction,
    prune,
    split_by_head,
    top_paths,
)
from .models import LoadedModel
from .prompt_rows import TARGET_NAME, prompt_graph_batches, write_prompt_graphs
from .register import require_registered
from .tasks import Metric, Task, TaskPrompt, check_fits, score
from .transcoders.transcoder import TranscoderSet

Method = Literal["graph", "paths"]
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class PromptParams:
    """How each prompt's graph is built and reduced (see the module doc)."""

    method: Method = "graph"
    node_threshold: float = 0.8
    edge_threshold: float = 0.98
    depth: int = 3
    branches: int = 3
    max_features: int | None = None
    heads: bool = True  # Head -> destination edges
    split_edges: bool = False  # edges split into one part per route instead
    batch_size: int = 64


@dataclass
class PromptsReport:
    run_uid: str
    task: str
    set_uid: str
    n_prompts: int
    written: int = 0
    skipped: int = 0
    edges: int = 0
    features_per_prompt: float = 0.0
    metric_mean: float = float("nan")
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# graphs


def paths_subgraph(graph: PromptGraph, depth: int, branches: int) -> PromptGraph:
    """The nodes and edges on the paper's top paths (beam search), targets always kept."""
    paths = top_paths(graph, depth=depth, branches=branches)
    nodes = graph.kind == GraphNode.TARGET
    edges = torch.zeros(graph.n_edges, dtype=torch.bool)
    for p in paths:
        nodes[list(p.nodes)] = True
        edges[list(p.edges)] = True
    sub = graph.subgraph(nodes, edges)
    sub.meta.update(method="paths", depth=depth, branches=branches)
    return sub


def parse_method(text: str) -> Method:
    """'graph' or 'paths'; IngestError otherwise."""
    if text == "graph":
        return "graph"
    if text == "paths":
        return "paths"
    raise IngestError(f"unknown method {text!r}; use 'graph' or 'paths'")


def check_params(params: PromptParams) -> None:
    """Every setting in range (IngestError naming the option), before anything is written."""
    parse_method(params.method)
    for name in ("node_threshold", "edge_threshold"):
        value = getattr(params, name)
        if not 0 < value <= 1:
            flag = "--" + name.replace("_", "-")
            raise IngestError(f"{flag} is a share of the total: 0 < {flag} <= 1 (got {value})")
    for name in ("depth", "branches", "max_features", "batch_size"):
        value = getattr(params, name)
        if value is not None and value < 1:
            raise IngestError(f"--{name.replace('_', '-')} must be at least 1 (got {value})")


def reduce_graph(graph: PromptGraph, params: PromptParams) -> PromptGraph:
    """The graph that gets stored: pruned by influence, or the beam search's paths."""
    if params.method == "paths":
        return paths_subgraph(graph, params.depth, params.branches)
    parse_method(params.method)  # an unknown method is an IngestError
    return prune(graph, params.node_threshold, params.edge_threshold)


def prompt_graph(
    loaded: LoadedModel, tset: TranscoderSet, prompt: TaskPrompt, params: PromptParams
) -> tuple[PromptGraph, HeadEdges | None]:
    """Attribute one prompt to its logit-difference direction, reduce it, and (for Head edges
    or split edges) split its edges by the attention head of their first hop."""
    target = metric_direction(loaded, prompt.correct, prompt.incorrect, name=TARGET_NAME)
    full = attribute(
        loaded,
        tset,
        prompt.tokens,
        target,
        max_features=params.max_features,
        batch_size=params.batch_size,
    )
    graph = reduce_graph(full, params)
    graph.meta.update(n_full_edges=full.n_edges, n_full_features=_n_features(full))
    if not (params.heads or params.split_edges):
        return graph, None
    splittable = torch.nonzero(graph.kind[graph.src] != GraphNode.BIAS).flatten()
    heads = split_by_head(
        loaded, tset, prompt.tokens, graph, splittable, batch_size=params.batch_size
    )
    return graph, heads


def _n_features(graph: PromptGraph) -> int:
    return int((graph.kind == GraphNode.FEATURE).sum())


# --------------------------------------------------------------------------------------------
# the job


def token_texts(loaded: LoadedModel, ids: Sequence[int]) -> list[str]:
    """Token strings as the tokenizer spells them; the ids as text without a tokenizer."""
    tokenizer = loaded.model.tokenizer
    if tokenizer is None:
        return [str(i) for i in ids]
    return [str(t) for t in tokenizer.convert_ids_to_tokens(list(ids))]


def prompt_metric(loaded: LoadedModel, metric: Metric, prompt: TaskPrompt) -> float:
    """The task metric of the model on one prompt (last position)."""
    model = loaded.model
    tokens = torch.tensor(prompt.tokens, device=model.cfg.device)[None]
    with torch.no_grad():
        logits = model(tokens, return_type="logits")[:, -1]
    return float(score(metric, logits, [prompt])[0])


def prompt_record(loaded: LoadedModel, task: Task, prompt: TaskPrompt, run: str) -> PromptRecord:
    return PromptRecord(
        task=task.name,
        text=prompt.text,
        tokens=token_texts(loaded, prompt.tokens),
        answer=prompt.answer,
        start_year=prompt.start_year,
        metric_value=prompt_metric(loaded, task.metric, prompt),
        run=run,
    )


def done_prompts(store: CatalogStore, task: str, set_uid: str) -> set[str]:
    """Uids of the task's prompts whose graph for this set is fully stored."""
    return {r["uid"] for r in store.query("attributed_prompts", task=task, set_uid=set_uid)}


@dataclass
class _Pending:
    """Prompt graphs attributed but not written yet."""

    graphs: list[tuple[list[NodeBatch], list[EdgeBatch]]] = field(default_factory=list)

    def flush(self, store: CatalogStore, report: PromptsReport) -> None:
        if self.graphs:
            t0 = time.perf_counter()
            report.edges += write_prompt_graphs(store, self.graphs)
            report.timings["write"] += time.perf_counter() - t0
            self.graphs = []


def _start(store: CatalogStore, task: Task, job: dict[str, Any]) -> RunRecord:
    run = RunRecord(kind="prompts", params=job, code_version=version("circuitcat"))
    start_run(store, run)
    store.write_nodes(
        batch_of([TaskRecord(name=task.name, metric=task.metric, description=task.description)])
    )
    return run


def run_prompts(
    store: CatalogStore,
    loaded: LoadedModel,
    tset: TranscoderSet,
    task: Task,
    params: PromptParams = PromptParams(),
    progress: Progress | None = None,
    write_every: int = 8,
    shard: Shard = WHOLE,
) -> PromptsReport:
    """Attribute, reduce and write every prompt of `task` not stored yet for this set
    (`write_every` prompts per write); with `shard` i/N only prompts i, i + N, ..."""
    started = time.perf_counter()
    model_uid = schema.model_uid(loaded.name)
    set_uid = schema.transcoder_set_uid(model_uid, tset.name)
    require_registered(store, set_uid, tset)
    check_params(params)
    check_fits(task, loaded.model.cfg.n_ctx)
    run = _start(store, task, {"task": task.name, "set": set_uid, **asdict(params)})
    done = done_prompts(store, task.name, set_uid)
    report = PromptsReport(run.uid, task.name, set_uid, len(task.prompts))
    report.timings = {"attribute": 0.0, "write": 0.0}
    metrics, n_features, pending = [], 0, _Pending()
    for i, tp in enumerate(task.prompts):
        if not shard.takes(i):
            continue
        record = prompt_record(loaded, task, tp, run.uid)
        metrics.append(record.metric_value or 0.0)
        if record.uid in done:
            report.skipped += 1
        else:
            t0 = time.perf_counter()
            graph, heads = prompt_graph(loaded, tset, tp, params)
            batches = prompt_graph_batches(
                graph, set_uid, model_uid, record, run.uid, heads, split_edges=params.split_edges
            )
            pending.graphs.append(batches)
            report.timings["attribute"] += time.perf_counter() - t0
            report.written += 1
            n_features += _n_features(graph)
            done.add(record.uid)
        if len(pending.graphs) >= write_every:
            pending.flush(store, report)
        if progress:
            progress(i + 1, len(task.prompts))
    pending.flush(store, report)
    finish_run(store, run)
    report.metric_mean = float(np.mean(metrics)) if metrics else float("nan")
    report.features_per_prompt = n_features / max(report.written, 1)
    report.seconds = time.perf_counter() - started
    return report
