"""A pruned prompt graph as catalog rows: Prompt, Target and Error nodes, ATTRIBUTES edges.

Pure conversion (no model, no store I/O besides `write_prompt_graphs`); ingest/prompts.py says
what the rows mean and runs the job.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from circuitcat.catalog import CatalogStore, EdgeBatch, NodeBatch, NodeKind, RelKind, schema
from circuitcat.catalog.errors import IngestError
from circuitcat.catalog.records import PromptRecord
from circuitcat.catalog.records import records_to_batch as batch_of
from circuitcat.catalog.schema import GraphNode

from .attribution import DirectionTarget, HeadEdges, LogitTarget, PromptGraph

TARGET_NAME = "logit_diff"  # mean correct logit - mean incorrect logit, as a direction
ALL_ROUTES = "all"
ERROR_KINDS = {GraphNode.ERROR: "transcoder_error", GraphNode.BIAS: "bias"}
REMAINDER = "remainder"
FINAL_LAYER = -1  # error_uid's layer for terms after the last layer

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
        if kind == GraphNode.FEATURE:
            uids.append(schema.feature_uid(set_uid, layer, index))
        elif kind == GraphNode.TOKEN:
            uids.append(schema.token_uid(model_uid, index))
        elif kind in ERROR_KINDS:
            final = kind == GraphNode.BIAS and layer == graph.n_layers
            err = (FINAL_LAYER if final else layer, ERROR_KINDS[GraphNode(kind)])
            uids.append(schema.error_uid(set_uid, *err))
            errors[uids[-1]] = err
        else:
            uids.append(target_uid)
    return np.array(uids, dtype=object), errors


def _catalog_kinds(graph: PromptGraph) -> np.ndarray:
    table = {
        GraphNode.FEATURE: NodeKind.FEATURE,
        GraphNode.TOKEN: NodeKind.TOKEN,
        GraphNode.ERROR: NodeKind.ERROR,
        GraphNode.BIAS: NodeKind.ERROR,
        GraphNode.TARGET: NodeKind.TARGET,
    }
    return np.array([table[GraphNode(k)] for k in graph.kind.tolist()], dtype=object)


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
    src = [schema.head_uid(model_uid, v // n_heads, v % n_heads) for v in keys[:, 0].tolist()]
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
    is_dst = (graph.kind == GraphNode.FEATURE) | (graph.kind == GraphNode.TARGET)
    rem = (graph.in_total.double() - graph.incoming_totals().double()).numpy()
    keep = is_dst.numpy() & ((rem != 0) | (graph.kind == GraphNode.TARGET).numpy())
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
    uid = schema.target_uid(task, name)
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
        FINAL_LAYER if kind == GraphNode.TARGET else layer
        for kind, layer in zip(graph.kind[nodes].tolist(), graph.layer[nodes].tolist(), strict=True)
    ]
    uids = [schema.error_uid(set_uid, layer, REMAINDER) for layer in layers]
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
    task = NodeBatch(NodeKind.TASK, {"uid": [schema.task_uid(prompt.task)], "name": [prompt.task]})
    of_task = EdgeBatch(
        RelKind.OF_TASK,
        NodeKind.PROMPT,
        NodeKind.TASK,
        [prompt.uid],
        [schema.task_uid(prompt.task)],
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
