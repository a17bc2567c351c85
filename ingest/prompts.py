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
from dataclasses import asdict, dataclass, field, replace
from importlib.metadata import version
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from circuitcat.catalog import CatalogStore, EdgeBatch, NodeBatch, NodeKind, RelKind
from circuitcat.catalog import schema as s
from circuitcat.catalog.errors import IngestError, TaskError
from circuitcat.catalog.records import PromptRecord, RunRecord, TaskRecord, now_iso
from circuitcat.catalog.records import records_to_batch as batch_of

from .attribution import (
    DirectionTarget,
    HeadEdges,
    LogitTarget,
    PromptGraph,
    attribute,
    metric_direction,
    prune,
    split_by_head,
    top_paths,
)
from .attribution import NodeKind as GraphKind
from .models import LoadedModel
from .register import require_registered
from .tasks import Metric, Split, Task, TaskPrompt, greater_than, load_jsonl_task, score
from .transcoders.transcoder import TranscoderSet

Method = Literal["graph", "paths"]
Progress = Callable[[int, int], None]

TARGET_NAME = "logit_diff"  # mean correct logit - mean incorrect logit, as a direction
ALL_ROUTES = "all"
ERROR_KINDS = {GraphKind.ERROR: "transcoder_error", GraphKind.BIAS: "bias"}
REMAINDER = "remainder"
FINAL_LAYER = -1  # error_uid's layer for terms after the last layer


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
    nodes = graph.kind == GraphKind.TARGET
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
    splittable = torch.nonzero(graph.kind[graph.src] != GraphKind.BIAS).flatten()
    heads = split_by_head(
        loaded, tset, prompt.tokens, graph, splittable, batch_size=params.batch_size
    )
    return graph, heads


def _n_features(graph: PromptGraph) -> int:
    return int((graph.kind == GraphKind.FEATURE).sum())


# --------------------------------------------------------------------------------------------
# rows


def _node_uids(
    graph: PromptGraph, set_uid: str, model_uid: str, target_uid: str
) -> tuple[np.ndarray, dict[str, tuple[int, str]]]:
    """Each graph node's catalog uid (positions are not part of it: they go on the edges), and
    {uid: (layer, kind)} of the Error nodes among them."""
    uids, errors = [], {}
    for kind, layer, index in zip(
        graph.kind.tolist(), graph.layer.tolist(), graph.index.tolist(), strict=True
    ):
        if kind == GraphKind.FEATURE:
            uids.append(s.feature_uid(set_uid, layer, index))
        elif kind == GraphKind.TOKEN:
            uids.append(s.token_uid(model_uid, index))
        elif kind in ERROR_KINDS:
            final = kind == GraphKind.BIAS and layer == graph.n_layers
            err = (FINAL_LAYER if final else layer, ERROR_KINDS[GraphKind(kind)])
            uids.append(s.error_uid(set_uid, *err))
            errors[uids[-1]] = err
        else:
            uids.append(target_uid)
    return np.array(uids, dtype=object), errors


def _catalog_kinds(graph: PromptGraph) -> np.ndarray:
    table = {
        GraphKind.FEATURE: NodeKind.FEATURE,
        GraphKind.TOKEN: NodeKind.TOKEN,
        GraphKind.ERROR: NodeKind.ERROR,
        GraphKind.BIAS: NodeKind.ERROR,
        GraphKind.TARGET: NodeKind.TARGET,
    }
    return np.array([table[GraphKind(k)] for k in graph.kind.tolist()], dtype=object)


@dataclass(frozen=True)
class _Rows:
    """ATTRIBUTES rows before grouping: source uid, kind and position; destination node."""

    src_uid: np.ndarray
    src_kind: np.ndarray
    src_pos: np.ndarray
    dst: np.ndarray
    via: np.ndarray
    w: np.ndarray

    @staticmethod
    def concat(blocks: Sequence[_Rows]) -> _Rows:
        return _Rows(*(np.concatenate([getattr(b, f) for b in blocks]) for f in _ROW_FIELDS))


_ROW_FIELDS = ("src_uid", "src_kind", "src_pos", "dst", "via", "w")


def _graph_rows(
    graph: PromptGraph, uids: np.ndarray, kinds: np.ndarray, heads: HeadEdges | None
) -> _Rows:
    """The graph's edges: split into their routes' parts where `heads` is given (bias edges
    stay whole), else whole with via "all"."""
    split = np.zeros(graph.n_edges, dtype=bool)
    parts: list[tuple[Tensor, Tensor, list[str], Tensor]] = []
    if heads is not None:
        split[heads.edge.numpy()] = True
        parts.append((heads.src, heads.dst, heads.via_names(), heads.w))
    rest = torch.from_numpy(np.flatnonzero(~split))
    parts.append((graph.src[rest], graph.dst[rest], [ALL_ROUTES] * len(rest), graph.w[rest]))
    src = np.concatenate([p[0].numpy() for p in parts])
    return _Rows(
        uids[src],
        kinds[src],
        graph.pos.numpy()[src],
        np.concatenate([p[1].numpy() for p in parts]),
        np.array([v for p in parts for v in p[2]], dtype=object),
        np.concatenate([p[3].double().numpy() for p in parts]),
    )


def _head_rows(heads: HeadEdges, model_uid: str) -> _Rows:
    """Head -> destination rows: per attention head (first hop) and destination, the sum of
    the parts of its incoming edges that pass through that head; src_pos -1 (all positions)."""
    attn = heads.via >= 0
    via, dst = heads.via[attn].numpy(), heads.dst[attn].numpy()
    keys, inverse = np.unique(np.stack([via, dst], 1), axis=0, return_inverse=True)
    w = np.zeros(len(keys))
    np.add.at(w, inverse.reshape(-1), heads.w[attn].double().numpy())
    n_heads = heads.n_heads
    names = [f"attn:{v // n_heads}.{v % n_heads}" for v in keys[:, 0].tolist()]
    src = [s.head_uid(model_uid, v // n_heads, v % n_heads) for v in keys[:, 0].tolist()]
    return _Rows(
        np.array(src, dtype=object),
        np.full(len(keys), NodeKind.HEAD, dtype=object),
        np.full(len(keys), -1, dtype=np.int64),
        keys[:, 1],
        np.array(names, dtype=object),
        w,
    )


def _remainders(graph: PromptGraph) -> tuple[np.ndarray, np.ndarray]:
    """(destination nodes, what their dropped incoming edges carried): every target, and every
    feature whose kept incoming edges miss part of its pre-activation."""
    is_dst = (graph.kind == GraphKind.FEATURE) | (graph.kind == GraphKind.TARGET)
    rem = (graph.in_total.double() - graph.incoming_totals().double()).numpy()
    keep = is_dst.numpy() & ((rem != 0) | (graph.kind == GraphKind.TARGET).numpy())
    nodes = np.flatnonzero(keep)
    return nodes, rem[nodes]


def _target_node(graph: PromptGraph, task: str, run: str) -> tuple[str, NodeBatch]:
    if len(graph.targets) != 1:
        raise IngestError(
            f"a stored prompt graph has one target, this one has {len(graph.targets)}"
        )
    (t,) = graph.targets
    if isinstance(t, DirectionTarget):
        name, kind = t.name, "direction"
    elif isinstance(t, LogitTarget):
        name, kind = f"logit:{t.token}", "logit"
    else:
        name, kind = f"feature:L{t.layer}/{t.index}", "feature"
    uid = s.target_uid(task, name)
    batch = NodeBatch(
        NodeKind.TARGET,
        {"uid": [uid], "task": [task], "name": [name], "kind": [kind], "run": [run]},
    )
    return uid, batch


def _error_nodes(errors: dict[str, tuple[int, str]], set_uid: str, run: str) -> NodeBatch:
    unique = sorted(errors)
    return NodeBatch(
        NodeKind.ERROR,
        {
            "uid": unique,
            "set": [set_uid] * len(unique),
            "layer": [errors[u][0] for u in unique],
            "kind": [errors[u][1] for u in unique],
            "run": [run] * len(unique),
        },
    )


def _remainder_sources(
    graph: PromptGraph, nodes: np.ndarray, set_uid: str
) -> tuple[list[str], dict[str, tuple[int, str]]]:
    """The remainder Error node of each destination: its layer's, or layer -1 for targets."""
    layers = [
        FINAL_LAYER if kind == GraphKind.TARGET else layer
        for kind, layer in zip(graph.kind[nodes].tolist(), graph.layer[nodes].tolist(), strict=True)
    ]
    uids = [s.error_uid(set_uid, layer, REMAINDER) for layer in layers]
    return uids, {u: (layer, REMAINDER) for u, layer in zip(uids, layers, strict=True)}


def _attributes(
    rows: _Rows, uids: np.ndarray, kinds: np.ndarray, pos: np.ndarray, prompt: str, run: str
) -> list[EdgeBatch]:
    """One ATTRIBUTES batch per (source kind, destination kind), the marker batch last."""
    dst_kind = kinds[rows.dst]
    groups = sorted(
        {(str(a), str(b)) for a, b in zip(rows.src_kind, dst_kind, strict=True)},
        key=lambda pair: pair == (NodeKind.ERROR, NodeKind.TARGET),
    )
    edges = []
    for sk, dk in groups:
        sel = np.flatnonzero((rows.src_kind == sk) & (dst_kind == dk))
        edges.append(
            EdgeBatch(
                RelKind.ATTRIBUTES,
                NodeKind(sk),
                NodeKind(dk),
                rows.src_uid[sel],
                uids[rows.dst[sel]],
                {
                    "prompt": [prompt] * len(sel),
                    "w": rows.w[sel],
                    "src_pos": rows.src_pos[sel].astype(np.int64),
                    "dst_pos": pos[rows.dst[sel]].astype(np.int64),
                    "via": rows.via[sel],
                    "run": [run] * len(sel),
                },
            )
        )
    return edges


def prompt_graph_batches(
    graph: PromptGraph,
    set_uid: str,
    model_uid: str,
    prompt: PromptRecord,
    run: str,
    heads: HeadEdges | None = None,
    *,
    split_edges: bool = False,
) -> tuple[list[NodeBatch], list[EdgeBatch]]:
    """One prompt's (reduced) graph as catalog rows, columnar (see the module doc).

    Nodes: the Task (uid and name only, so a fuller record is never overwritten), the Target,
    the Error nodes, the Prompt. Edges: ATTRIBUTES one batch per (source kind, destination
    kind), OF_TASK, and last the Error -> Target batch that holds the resume marker. `heads`
    (`split_by_head` on this graph) gives Head -> destination edges, or with `split_edges`
    splits the edges themselves by route. Feature, Token and Head nodes are not written:
    `ingest register` wrote them.
    """
    target_uid, target_batch = _target_node(graph, prompt.task, run)
    uids, errors = _node_uids(graph, set_uid, model_uid, target_uid)
    kinds = _catalog_kinds(graph)
    rem_nodes, rem_w = _remainders(graph)
    rem_uids, rem_errors = _remainder_sources(graph, rem_nodes, set_uid)
    errors |= rem_errors
    n_rem = len(rem_nodes)
    blocks = [
        _graph_rows(graph, uids, kinds, heads if split_edges else None),
        _Rows(
            np.array(rem_uids, dtype=object),
            np.full(n_rem, NodeKind.ERROR, dtype=object),
            graph.pos.numpy()[rem_nodes],
            rem_nodes,
            np.full(n_rem, ALL_ROUTES, dtype=object),
            rem_w,
        ),
    ]
    if heads is not None and not split_edges:
        blocks.append(_head_rows(heads, model_uid))
    edges = _attributes(_Rows.concat(blocks), uids, kinds, graph.pos.numpy(), prompt.uid, run)
    task = NodeBatch(NodeKind.TASK, {"uid": [s.task_uid(prompt.task)], "name": [prompt.task]})
    of_task = EdgeBatch(
        RelKind.OF_TASK,
        NodeKind.PROMPT,
        NodeKind.TASK,
        [prompt.uid],
        [s.task_uid(prompt.task)],
        {"run": [run]},
    )
    nodes = [task, target_batch, _error_nodes(errors, set_uid, run), batch_of([prompt])]
    return nodes, [*edges[:-1], of_task, edges[-1]]


def _concat(columns: Sequence[Any]) -> Any:
    if all(isinstance(c, np.ndarray) for c in columns):
        return np.concatenate(columns)
    return [v for c in columns for v in (c.tolist() if isinstance(c, np.ndarray) else c)]


def merge_nodes(batches: Sequence[NodeBatch]) -> list[NodeBatch]:
    """Node batches of several prompts, one per kind (first seen order), each uid once."""
    out: dict[NodeKind, dict[str, list[Any]]] = {}
    for nb in batches:
        cols = out.setdefault(nb.kind, {name: [] for name in nb.columns})
        seen = set(cols["uid"])
        for row in nb.rows():
            if row["uid"] not in seen:
                seen.add(row["uid"])
                for name in cols:
                    cols[name].append(row.get(name))
    return [NodeBatch(kind, cols) for kind, cols in out.items()]


def merge_edges(batches: Sequence[EdgeBatch]) -> list[EdgeBatch]:
    """Edge batches of several prompts, one per (kind, source kind, destination kind), in the
    order prompt_graph_batches gives them (the Error -> Target marker batch last)."""
    groups: dict[tuple[RelKind, NodeKind, NodeKind], list[EdgeBatch]] = {}
    for eb in batches:
        groups.setdefault((eb.kind, eb.src_kind, eb.dst_kind), []).append(eb)
    marker = (RelKind.ATTRIBUTES, NodeKind.ERROR, NodeKind.TARGET)
    order = sorted(groups, key=lambda k: (k == marker, k[0] == RelKind.OF_TASK))
    return [
        EdgeBatch(
            *key,
            _concat([b.src for b in groups[key]]),
            _concat([b.dst for b in groups[key]]),
            {c: _concat([b.columns[c] for b in groups[key]]) for c in groups[key][0].columns},
        )
        for key in order
    ]


def write_prompt_graphs(
    store: CatalogStore, graphs: Sequence[tuple[list[NodeBatch], list[EdgeBatch]]]
) -> int:
    """Write the batches of one or more prompt graphs (merged: fewer, larger writes), nodes
    first, the marker edges last; returns the number of ATTRIBUTES rows written."""
    for nb in merge_nodes([nb for nodes, _ in graphs for nb in nodes]):
        store.write_nodes(nb)
    written = 0
    for eb in merge_edges([eb for _, edges in graphs for eb in edges]):
        n = store.write_edges(eb)
        written += n if eb.kind == RelKind.ATTRIBUTES else 0
    return written


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
        metric_value=prompt_metric(loaded, task.metric, prompt),
        run=run,
    )


def load_task(
    name: str,
    tokenizer: Any,
    *,
    n: int | None = None,
    seed: int = 0,
    split: Split = "eval",
    prompts: Path | None = None,
) -> Task:
    """`greater-than` (n prompts from `split`, picked by `seed`), or a JSONL task file (its first
    n prompts) named `name`."""
    if prompts is not None:
        task = load_jsonl_task(prompts, tokenizer, name=name)
        return replace(task, prompts=task.prompts[:n]) if n else task
    if name == "greater-than":
        return greater_than(tokenizer, n=n or 100, seed=seed, split=split)
    raise TaskError(
        f"unknown task {name!r}: the built-in task is 'greater-than'; for another task pass "
        '--prompts FILE.jsonl (one {"prompt", "correct", "incorrect"} object a line)'
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
    run = RunRecord(job="prompts", params=job, code_version=version("circuitcat"))
    store.write_nodes(batch_of([run]))
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
) -> PromptsReport:
    """Attribute, reduce and write every prompt of `task` not stored yet for this set
    (`write_every` prompts per write)."""
    started = time.perf_counter()
    model_uid = s.model_uid(loaded.name)
    set_uid = s.transcoder_set_uid(model_uid, tset.name)
    require_registered(store, set_uid, tset)
    run = _start(store, task, {"task": task.name, "set": set_uid, **asdict(params)})
    done = done_prompts(store, task.name, set_uid)
    report = PromptsReport(run.uid, task.name, set_uid, len(task.prompts))
    report.timings = {"attribute": 0.0, "write": 0.0}
    metrics, n_features, pending = [], 0, _Pending()
    for i, tp in enumerate(task.prompts):
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
    finished = run.model_copy(update={"status": "done", "finished_at": now_iso()})
    store.write_nodes(batch_of([finished]))
    report.metric_mean = float(np.mean(metrics)) if metrics else float("nan")
    report.features_per_prompt = n_features / max(report.written, 1)
    report.seconds = time.perf_counter() - started
    return report
