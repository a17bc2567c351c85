"""Reading circuits out of a PromptGraph: pruning by influence, and the paper's beam search.

Influence (circuit-tracer's measure): A[dst, src] = |w| / sum of |w| into dst (each row
normalised to 1), and a node's influence on the targets is t . (A + A^2 + A^3 + ...) with t the
target weights (1 / n_targets each unless given). The graph is a DAG, so the series ends after
at most depth terms: computed by repeated sparse products over the edge list, never a dense
[n_nodes x n_nodes] matrix.

Shapes: see the glossary in ingest/attribution/frozen.py.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from jaxtyping import Float, Int64
from torch import Tensor

from circuitcat.catalog.errors import IngestError
from circuitcat.ingest.attribution.graph import NodeKind, PromptGraph

NODE_THRESHOLD = 0.8
EDGE_THRESHOLD = 0.98


@dataclass(frozen=True)
class Path:
    """A path into a target: `nodes` from the source to the target, `edges` between them.

    `score` is the source's attribution to the target along this path alone: the first edge's
    w times, for each feature passed through, (w of its outgoing edge) / (its activation).
    """

    nodes: tuple[int, ...]
    edges: tuple[int, ...]
    score: float


def normalized_weights(
    graph: PromptGraph, edge_mask: Tensor | None = None
) -> Float[Tensor, " n_edges"]:
    """|w| divided by the sum of |w| into the same destination (masked edges count as 0)."""
    a = graph.w.abs() if edge_mask is None else graph.w.abs() * edge_mask
    totals = torch.zeros(graph.n_nodes, dtype=a.dtype).index_add_(0, graph.dst, a)
    return a / totals[graph.dst].clamp(min=1e-10)


def influence(
    graph: PromptGraph, weights: Float[Tensor, " n_nodes"], a: Float[Tensor, " n_edges"]
) -> Float[Tensor, " n_nodes"]:
    """weights . (A + A^2 + ...) for the normalised adjacency given as edge values `a`."""
    x, total = weights, torch.zeros_like(weights)
    for _ in range(graph.n_nodes + 1):
        x = torch.zeros_like(weights).index_add_(0, graph.src, a * x[graph.dst])
        if not bool(x.any()):
            return total
        total = total + x
    raise IngestError("influence: the graph has a cycle, attribution graphs are acyclic")


def cumulative_threshold(scores: Float[Tensor, " n"], fraction: float) -> float:
    """The smallest score to keep so that kept scores hold `fraction` of the total."""
    positive = torch.sort(scores[scores > 0], descending=True).values
    if positive.numel() == 0:
        return float("inf")
    cumulative = torch.cumsum(positive, 0) / positive.sum()
    at = int(torch.searchsorted(cumulative, torch.tensor(fraction, dtype=cumulative.dtype)))
    return float(positive[min(at, positive.numel() - 1)])


def prune(
    graph: PromptGraph,
    node_threshold: float = NODE_THRESHOLD,
    edge_threshold: float = EDGE_THRESHOLD,
    target_weights: Float[Tensor, " n_targets"] | None = None,
) -> PromptGraph:
    """The graph pruned by influence on its targets (circuit-tracer's procedure).

    1. Nodes: features, errors and biases are ranked by influence; the most influential are
       kept until they hold `node_threshold` (default 0.8) of the total influence. Tokens and
       targets are kept at this step.
    2. Edges among kept nodes: edge score = normalised |w| x (influence + target weight) of
       its destination, recomputed on the node-pruned graph; edges are kept until they hold
       `edge_threshold` (default 0.98) of the total score.
    3. Dangling nodes are dropped until none is left: a non-target without a kept outgoing
       edge, a feature without a kept incoming edge. Targets always stay.
    The result's `influence` holds each kept node's influence from step 1.
    """
    weights = _target_weights(graph, target_weights)
    node_infl = influence(graph, weights, normalized_weights(graph))
    ranked = (graph.kind == NodeKind.FEATURE) | (graph.kind == NodeKind.ERROR)
    ranked |= graph.kind == NodeKind.BIAS
    keep = ~ranked | (node_infl >= cumulative_threshold(node_infl[ranked], node_threshold))
    live = keep[graph.src] & keep[graph.dst]
    a = normalized_weights(graph, live)
    scores = a * (influence(graph, weights, a) + weights)[graph.dst]
    edge_keep = live & (scores >= cumulative_threshold(scores[live], edge_threshold))
    keep = _drop_dangling(graph, keep, edge_keep)
    graph = replace(graph, influence=node_infl)
    pruned = graph.subgraph(keep, edge_keep)
    pruned.meta.update(node_threshold=node_threshold, edge_threshold=edge_threshold)
    return pruned


def _target_weights(graph: PromptGraph, given: Tensor | None) -> Tensor:
    targets = graph.target_nodes
    weights = torch.zeros(graph.n_nodes)
    if given is None:
        weights[targets] = 1.0 / max(len(targets), 1)
    elif given.shape != targets.shape:
        raise IngestError(f"prune: {len(targets)} targets but {given.numel()} target weights")
    else:
        weights[targets] = given.float().cpu()
    return weights


def _drop_dangling(graph: PromptGraph, keep: Tensor, edge_keep: Tensor) -> Tensor:
    is_target = graph.kind == NodeKind.TARGET
    is_feature = graph.kind == NodeKind.FEATURE
    while True:
        live = edge_keep & keep[graph.src] & keep[graph.dst]
        has_out = torch.zeros_like(keep)
        has_out[graph.src[live]] = True
        has_in = torch.zeros_like(keep)
        has_in[graph.dst[live]] = True
        new = keep & (is_target | has_out) & (~is_feature | has_in)
        if torch.equal(new, keep):
            return keep
        keep = new


def top_paths(graph: PromptGraph, depth: int = 3, branches: int = 3) -> list[Path]:
    """The paper's greedy beam search, from each target backwards.

    Each partial path is extended by the `branches` strongest incoming edges (|w|) of its first
    node, for `depth` edges at most; paths stop early at tokens, errors and biases. Returns all
    paths found, strongest |score| first.
    """
    if depth < 1 or branches < 1:
        raise IngestError("top_paths needs depth >= 1 and branches >= 1")
    best_in = _Incoming(graph, branches)
    frontier = [Path((int(t),), (), 1.0) for t in graph.target_nodes.tolist()]
    done: list[Path] = []
    for _ in range(depth):
        grown: list[Path] = []
        for path in frontier:
            head = path.nodes[0]
            per_unit = path.score / _unit(graph, head)
            for e in best_in.get(head):
                src = int(graph.src[e])
                step = Path((src, *path.nodes), (e, *path.edges), float(graph.w[e]) * per_unit)
                (grown if graph.kind[src] == NodeKind.FEATURE else done).append(step)
        frontier = grown
    return sorted(done + frontier, key=lambda p: -abs(p.score))


def _unit(graph: PromptGraph, node: int) -> float:
    """What a path's score is divided by to get the effect per unit of its first node's input:
    a feature's activation (its input passes the ReLU one to one), 1 for a target."""
    return float(graph.activation[node]) if graph.kind[node] == NodeKind.FEATURE else 1.0


class _Incoming:
    """Each node's incoming edges, strongest first, found on demand (one sort by dst)."""

    def __init__(self, graph: PromptGraph, k: int) -> None:
        self.order: Int64[Tensor, " n_edges"] = torch.sort(graph.dst, stable=True).indices
        nodes = torch.arange(graph.n_nodes + 1)
        self.ptr = torch.searchsorted(graph.dst[self.order], nodes).tolist()
        self.abs_w, self.k = graph.w.abs(), k

    def get(self, node: int) -> list[int]:
        edges = self.order[self.ptr[node] : self.ptr[node + 1]]
        top = torch.topk(self.abs_w[edges], min(self.k, len(edges))).indices
        return edges[top].tolist()
