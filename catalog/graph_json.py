"""One stored prompt graph as the graph JSON that circuit-tracer's viewer and Neuronpedia read.

The catalog keeps (set, layer, index) and positions explicit; the viewer's conventions live only
here. Node ids: features `{layer}_{index}_{pos}`, tokens `E_{token_id}_{pos}` (layer "E"),
transcoder errors `{layer}_-1_{pos}`, biases `{layer}_-2_{pos}` (type "bias error": one node per
layer and position it feeds, as the viewer has no node without a position and no bias type;
it draws any type containing "error" as an error node), the remainder of edges dropped
by pruning `{layer}_-3_{pos}`, the target `{n_layers + 1}_{id}_{pos}` as a logit node. A
feature's `feature` number is the Cantor pairing of (layer, index), which Neuronpedia decodes
when `schema_version` is 1. Terms after the last layer (ln_final and unembedding biases, the
target's remainder) sit at layer n_layers, just under the target.

Links are the stored ATTRIBUTES summed over routes (head-split edges add back up to the whole
edge; Head -> X edges re-split the same effects and are left out). A feature's `activation` is
the sum of everything stored into it at its position, which is its pre-activation exactly
(bias and remainder edges included). `influence` is circuit-tracer's cumulative influence
score: nodes sorted by their influence on the target through |w|-normalised edges, and each
node's running share of the total, so a viewer threshold of 0.8 keeps the nodes that carry
80% of it.
"""

from __future__ import annotations

import json
import re
import time
from collections import defaultdict
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from .errors import CircuitcatError
from .protocol import CatalogStore
from .schema import feature_uid

SCHEMA_VERSION = 1
SLUG_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
# Error kinds (catalog Error.kind) as the viewer's feature number and type; "error" in a type
# makes the viewer treat the node as an error node.
ERROR_KINDS: dict[str, tuple[int, str]] = {
    "transcoder_error": (-1, "mlp reconstruction error"),
    # The viewer knows embeddings, logits, transcoder features and error nodes (a type with
    # "error" in it: drawn as an error, no dashboard); a bias is a constant term, not a
    # feature, so it goes as an error-kind node.
    "bias": (-2, "bias error"),
    "remainder": (-3, "pruned edges error"),
}
FINAL_LAYER = -1  # an Error node's layer for terms after the last layer


class GraphMetadata(BaseModel):
    slug: str
    scan: str
    transcoder_list: list[str] = Field(default_factory=list)
    prompt_tokens: list[str]
    prompt: str
    node_threshold: float | None = None
    schema_version: int = SCHEMA_VERSION
    info: dict[str, Any] = Field(default_factory=dict)
    circuitcat: dict[str, Any] = Field(default_factory=dict)  # where it came from in the catalog


class QParams(BaseModel):
    pinnedIds: list[str] = Field(default_factory=list)
    supernodes: list[list[str]] = Field(default_factory=list)
    linkType: str = "both"
    clickedId: str = ""
    sg_pos: str = ""


class GraphNode(BaseModel):
    node_id: str
    feature: int | None
    layer: str
    ctx_idx: int
    feature_type: str
    jsNodeId: str
    clerp: str = ""
    token_prob: float = 0.0
    is_target_logit: bool = False
    influence: float | None = None
    activation: float | None = None


class GraphLink(BaseModel):
    source: str
    target: str
    weight: float


class GraphFile(BaseModel):
    metadata: GraphMetadata
    qParams: QParams = Field(default_factory=QParams)
    nodes: list[GraphNode]
    links: list[GraphLink]


def cantor(layer: int, index: int) -> int:
    return (layer + index) * (layer + index + 1) // 2 + index


def slug_of(text: str) -> str:
    """A slug Neuronpedia accepts: letters, digits, '_', '.', '-'."""
    return SLUG_UNSAFE.sub("-", text).strip("-")[:100] or "graph"


def _display(token: str) -> str:
    return token.replace("\n", "⏎").replace("\t", "→").replace("\r", "↵")


def _one(rows: list[dict[str, Any]], what: str, fix: str) -> dict[str, Any]:
    if not rows:
        raise CircuitcatError(f"{what} is not in the catalog; {fix}")
    return rows[0]


def pick_prompt_set(store: CatalogStore, prompt_uid: str, set_uid: str | None) -> str:
    """The transcoder set of a prompt's stored graph: the given one, or the only one stored."""
    sets = [r["set_uid"] for r in store.query("prompt_sets", prompt=prompt_uid)]
    if set_uid is not None:
        if set_uid not in sets:
            have = ", ".join(sets) or "none"
            raise CircuitcatError(
                f"prompt {prompt_uid} has no stored graph for transcoder set {set_uid} (it has: "
                f"{have}); build one with `circuitcat ingest prompts --set {set_uid}`"
            )
        return set_uid
    if not sets:
        raise CircuitcatError(
            f"prompt {prompt_uid} has no stored attribution graph; build one with "
            "`circuitcat ingest prompts`"
        )
    if len(sets) > 1:
        raise CircuitcatError(
            f"prompt {prompt_uid} has graphs for {len(sets)} transcoder sets "
            f"({', '.join(sets)}); pick one with --set"
        )
    return str(sets[0])


def _edges_of_set(rows: list[dict[str, Any]], set_uid: str) -> list[dict[str, Any]]:
    """The rows of one set's graph. Tokens and targets belong to no set: an edge between two
    of them is this set's when the run that wrote it also wrote this set's other edges."""
    runs = {r["run"] for r in rows if set_uid in (r["src_set"], r["dst_set"])}
    return [
        r
        for r in rows
        if r["src_set"] in (None, set_uid)
        and r["dst_set"] in (None, set_uid)
        and (r["src_set"] is not None or r["dst_set"] is not None or r["run"] in runs)
    ]


class _Nodes:
    """Graph nodes keyed by (catalog uid, position), built as edges name them."""

    def __init__(self, n_layers: int, prompt_tokens: list[str], target_p: float) -> None:
        self.n_layers = n_layers
        self.prompt_tokens = prompt_tokens
        self.target_p = target_p
        self.by_key: dict[tuple[str, int], GraphNode] = {}

    def source(self, r: dict[str, Any]) -> GraphNode:
        pos = int(r["src_pos"])
        if r["src_kind"] == "bias" and pos < 0:
            # A bias has no position; the viewer places every node at one, so a layer's bias
            # is one node per position it feeds (its edges into that position's nodes).
            pos = int(r["dst_pos"])
        key = (r["src"], pos)
        if key not in self.by_key:
            pos = key[1]
            if r["src_index"] is not None:
                node = self._feature(int(r["src_layer"]), int(r["src_index"]), pos, r["src_label"])
            elif r["src_token"] is not None:
                tok = int(r["src_token"])
                node = GraphNode(
                    node_id=f"E_{tok}_{pos}",
                    feature=pos,
                    layer="E",
                    ctx_idx=pos,
                    feature_type="embedding",
                    jsNodeId=f"E_{tok}-{pos}",
                    clerp=f'Emb: "{self._token(pos)}"',
                )
            elif r["src_kind"] in ERROR_KINDS:
                node = self._error(str(r["src_kind"]), int(r["src_layer"]), pos)
            else:
                raise CircuitcatError(f"cannot export source node {r['src']}: unknown kind")
            self.by_key[key] = node
        return self.by_key[key]

    def destination(self, r: dict[str, Any]) -> GraphNode:
        key = (r["dst"], int(r["dst_pos"]))
        if key not in self.by_key:
            pos = key[1]
            if r["dst_index"] is not None:
                node = self._feature(int(r["dst_layer"]), int(r["dst_index"]), pos, r["dst_label"])
            else:
                name = str(r["dst_name"])
                ident = name.split(":", 1)[1] if r["dst_kind"] == "logit" else "0"
                layer = self.n_layers + 1
                node = GraphNode(
                    node_id=f"{layer}_{ident}_{pos}",
                    feature=int(ident) if ident.isdigit() else 0,
                    layer=str(layer),
                    ctx_idx=pos,
                    feature_type="logit",
                    jsNodeId=f"L_{ident}-{pos}",
                    # The viewer reads the number after "p=" (for a metric target: its value).
                    clerp=f'Output "{name}" (p={self.target_p:.3f})',
                    token_prob=self.target_p,
                    is_target_logit=True,
                )
            self.by_key[key] = node
        return self.by_key[key]

    def _token(self, pos: int) -> str:
        return self.prompt_tokens[pos] if 0 <= pos < len(self.prompt_tokens) else "?"

    def _feature(self, layer: int, index: int, pos: int, label: str | None) -> GraphNode:
        return GraphNode(
            node_id=f"{layer}_{index}_{pos}",
            feature=cantor(layer, index),
            layer=str(layer),
            ctx_idx=pos,
            feature_type="cross layer transcoder",
            jsNodeId=f"{layer}_{index}-0",
            clerp=label or "",
        )

    def _error(self, kind: str, layer: int, pos: int) -> GraphNode:
        number, feature_type = ERROR_KINDS[kind]
        layer = self.n_layers if layer == FINAL_LAYER else layer
        name = "Bias" if kind == "bias" else feature_type.capitalize()
        return GraphNode(
            node_id=f"{layer}_{number}_{pos}",
            feature=number,
            layer=str(layer),
            ctx_idx=pos,
            feature_type=feature_type,
            jsNodeId=f"{layer}_{number}-{pos}",
            clerp=f'{name}: "{self._token(pos)}"',
        )


def cumulative_influence(
    n_nodes: int, src: np.ndarray, dst: np.ndarray, w: np.ndarray, target: int
) -> np.ndarray:
    """Per node, circuit-tracer's cumulative influence score (see the module doc); the target
    itself gets 0. The graph is acyclic, so the propagation ends within n_nodes steps."""
    incoming = np.zeros(n_nodes)
    np.add.at(incoming, dst, np.abs(w))
    a = np.abs(w) / np.where(incoming[dst] > 0, incoming[dst], 1.0)  # A[dst, src], rows sum to 1
    current = np.zeros(n_nodes)
    current[target] = 1.0
    influence = np.zeros(n_nodes)
    for _ in range(n_nodes):
        step = np.zeros(n_nodes)
        np.add.at(step, src, current[dst] * a)
        if not step.any():
            break
        influence += step
        current = step
    order = np.argsort(-influence, kind="stable")
    total = influence.sum() or 1.0
    cumulative = np.empty(n_nodes)
    cumulative[order] = np.cumsum(influence[order]) / total
    cumulative[target] = 0.0
    return cumulative


def prompt_graph_json(
    store: CatalogStore,
    prompt_uid: str,
    set_uid: str | None = None,
    *,
    slug: str | None = None,
    scan: str | None = None,
) -> GraphFile:
    """The stored graph of one prompt (for one transcoder set) as graph JSON."""
    prompt = _one(
        store.query("prompt", uid=prompt_uid),
        f"prompt {prompt_uid}",
        "list the stored ones with `circuitcat prompt list --task TASK`",
    )
    set_uid = pick_prompt_set(store, prompt_uid, set_uid)
    tset = _one(
        store.query("transcoder_set", uid=set_uid),
        f"transcoder set {set_uid}",
        "register it with `circuitcat ingest register`",
    )
    model = _one(
        store.query("model", uid=tset["model"]),
        f"model {tset['model']}",
        "register it with `circuitcat ingest register`",
    )
    rows = _edges_of_set(store.query("prompt_graph", prompt=prompt_uid), set_uid)
    tokens = [_display(str(t)) for t in prompt["tokens"] or []]
    metric = prompt["metric_value"]
    nodes = _Nodes(int(model["n_layers"]), tokens, float(metric) if metric is not None else 0.0)
    ordered, links, inputs = _nodes_and_links(nodes, rows)
    _annotate(store, set_uid, prompt_uid, ordered, links, inputs)
    meta = GraphMetadata(
        slug=slug_of(slug or f"{set_uid}-{prompt_uid}"),
        scan=slug_of(scan or str(model["uid"])),
        prompt_tokens=tokens,
        prompt=str(prompt["text"]),
        info={
            "description": f"{prompt['task']} prompt graph from circuitcat ({set_uid})",
            "generator": {"name": "circuitcat", "version": _version()},
            "create_time_ms": int(time.time() * 1000),
        },
        circuitcat={
            "prompt_uid": prompt_uid,
            "task": prompt["task"],
            "transcoder_set": set_uid,
            "answer": prompt["answer"],
            "start_year": prompt.get("start_year"),
            "metric_value": metric,
        },
    )
    return GraphFile(metadata=meta, nodes=ordered, links=links)


def _nodes_and_links(
    nodes: _Nodes, rows: list[dict[str, Any]]
) -> tuple[list[GraphNode], list[GraphLink], dict[str, float]]:
    """The graph's nodes in viewer order, its links (stored rows summed per node pair) and each
    node's summed input."""
    weights: dict[tuple[str, str], float] = defaultdict(float)
    inputs: dict[str, float] = defaultdict(float)
    for r in rows:
        s, d = nodes.source(r), nodes.destination(r)
        weights[(s.node_id, d.node_id)] += float(r["w"])
        inputs[d.node_id] += float(r["w"])
    ordered = sorted(nodes.by_key.values(), key=_node_order)
    links = [GraphLink(source=s, target=d, weight=w) for (s, d), w in sorted(weights.items())]
    return ordered, links, inputs


def _annotate(
    store: CatalogStore,
    set_uid: str,
    prompt_uid: str,
    ordered: list[GraphNode],
    links: list[GraphLink],
    inputs: dict[str, float],
) -> None:
    """Each node's influence on the target; each feature's activation and clerp (in place)."""
    index = {n.node_id: i for i, n in enumerate(ordered)}
    targets = [i for i, n in enumerate(ordered) if n.is_target_logit]
    if len(targets) != 1:
        raise CircuitcatError(
            f"prompt {prompt_uid}: the stored graph has {len(targets)} targets, expected 1; "
            "re-run `circuitcat ingest prompts` for it"
        )
    src = np.array([index[link.source] for link in links], dtype=np.int64)
    dst = np.array([index[link.target] for link in links], dtype=np.int64)
    w = np.array([link.weight for link in links])
    influence = cumulative_influence(len(ordered), src, dst, w, targets[0])
    clerps: dict[str, str] = {}
    for i, node in enumerate(ordered):
        if node.feature_type == "cross layer transcoder":
            node.activation = inputs[node.node_id]
            if not node.clerp:
                uid = feature_uid(set_uid, int(node.layer), _index(node.node_id))
                clerps[uid] = clerps.get(uid) or _auto_clerp(store, uid)
                node.clerp = clerps[uid]
        if not node.is_target_logit:
            node.influence = float(influence[i])


def _index(node_id: str) -> int:
    return int(node_id.split("_")[1])


def _auto_clerp(store: CatalogStore, uid: str) -> str:
    """For an unlabelled feature: where it is and the logits it promotes most."""
    rows = store.query("feature", uid=uid)
    logits = json.loads(rows[0]["top_logits"] or "[]") if rows else []
    ups = [str(x["token"]) for x in logits if x["w"] > 0][:3]
    name = uid.rsplit("/", 2)
    where = f"{name[-2]}/{name[-1]}"
    return f"{where} promotes {' '.join(ups)}" if ups else where


def _node_order(n: GraphNode) -> tuple[int, int, int]:
    layer = -1 if n.layer == "E" else int(n.layer)
    return (layer, n.ctx_idx, n.feature if n.feature is not None else 0)


def _version() -> str:
    try:
        return importlib_metadata.version("circuitcat")
    except importlib_metadata.PackageNotFoundError:
        return "unknown"


def write_graph_json(graph: GraphFile, out: Path) -> Path:
    """Writes OUT.json, or into a folder OUT: {slug}.json plus the graph-metadata.json index
    that circuit-tracer's local viewer lists graphs from (other graphs' entries are kept)."""
    if out.suffix == ".json":
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(graph.model_dump_json(indent=1))
        return out
    if out.exists() and not out.is_dir():
        raise CircuitcatError(
            f"cannot write into {out}: it is a file; pass a .json path or a folder"
        )
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{graph.metadata.slug}.json"
    path.write_text(graph.model_dump_json(indent=1))
    index_path = out / "graph-metadata.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else {"graphs": []}
    entries = [g for g in index.get("graphs", []) if g.get("slug") != graph.metadata.slug]
    index["graphs"] = [*entries, graph.metadata.model_dump(exclude={"info", "circuitcat"})]
    index_path.write_text(json.dumps(index, indent=1))
    return path


def features_scan(set_uid: str) -> str:
    """The `scan` under which circuit-tracer's local viewer finds the set's feature files:
    served from its data folder (catalog/feature_files.py)."""
    return f"./data/features/{slug_of(set_uid)}"


def export_prompt(
    store: CatalogStore,
    prompt_uid: str,
    out: Path,
    set_uid: str | None = None,
    *,
    slug: str | None = None,
    scan: str | None = None,
    features: bool = True,
) -> tuple[GraphFile, Path, int]:
    """Write a prompt graph to OUT.json or into a folder OUT (write_graph_json); into a folder
    with `features`, also the feature files of every feature in it under OUT/features/<set>/,
    and (unless `scan` is given) a scan that points the local viewer at them. Returns the
    graph, its path and how many feature files were written."""
    from .feature_files import write_feature_files

    graph = prompt_graph_json(store, prompt_uid, set_uid, slug=slug, scan=scan)
    set_uid = str(graph.metadata.circuitcat["transcoder_set"])
    into_folder = out.suffix != ".json" and features
    if into_folder and scan is None:
        graph.metadata.scan = features_scan(set_uid)
    path = write_graph_json(graph, out)
    if not into_folder:
        return graph, path, 0
    numbers = {
        feature_uid(set_uid, int(n.layer), _index(n.node_id)): int(n.feature or 0)
        for n in graph.nodes
        if n.feature_type == "cross layer transcoder"
    }
    written = write_feature_files(store, numbers, out / "features" / slug_of(set_uid))
    return graph, path, written
