"""Circuits, the read side: aggregate the stored prompt graphs of a task into a Circuit and read
it back (show, export, render and the web pages share `circuit_members`). Needs no model and no
torch; faithfulness, which runs the model, is ingest/faithfulness.py.

find: the task's stored prompt graphs for one transcoder set are read back with one named
query (`prompt_attributions`) and each node's total attribution onto the target is computed from
the stored edges: with G(target) = 1 and, for a feature instance f (a feature at a position of a
prompt), G(f) = sum over its out-edges f -> k of w / act(f) x G(k), where act(f) is the sum of
its stored incoming edges (they add up to its pre-activation, which a firing ReLU feature passes
on as its activation), a source's total attribution is A = sum over its out-edges of w x G(k):
every path's product of edge weights, divided by the activations passed through. A feature's
score is the mean over prompts of |sum of A over its positions| (0 where it is absent); the top
N features (default: 5% of the live features, those that fired in the corpus pass, else of the
features seen in the graphs) make the circuit. Heads are scored by the attribution flowing
through them (edge parts with via "attn:L.H", times G of their destination) and kept until they
hold 80% of the total; tokens by the mean |A| over the prompts they appear in (top 20).
The Circuit node and its CONTAINS {score} edges replace any earlier version of the circuit.

show: only named queries over the stored graph (`circuit_*`), nothing recomputed.

verify: see ingest/faithfulness.py.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from typing import Any

import numpy as np

from . import schema
from .batches import EdgeBatch
from .errors import IngestError, QueryError
from .protocol import CatalogStore
from .records import CircuitRecord, RunRecord
from .records import records_to_batch as batch_of
from .runs import finish_run, start_run
from .schema import GraphNode, NodeKind, RelKind

CIRCUIT_FRACTION = 0.05  # default circuit size: this fraction of the live features
HEAD_SHARE = 0.8
TOP_TOKENS = 20
PROMPTS_PER_QUERY = 25
FEATURE, TOKEN, ERROR, TARGET, HEAD = (
    GraphNode.FEATURE, GraphNode.TOKEN, GraphNode.ERROR, GraphNode.TARGET, GraphNode.HEAD
)  # fmt: skip

# --------------------------------------------------------------------------------------------
# reading stored prompt graphs


@dataclass(frozen=True)
class StoredGraphs:
    """A task's stored prompt graphs for one set: one row per ATTRIBUTES edge (or edge part).

    `src`/`dst` index `uids` (with `kind` FEATURE/TOKEN/ERROR/TARGET/HEAD and `layer`, -1 where
    a node has none); `prompt` indexes `prompts`. Rows from HEAD nodes decompose the others.
    """

    prompts: list[str]
    uids: list[str]
    kind: np.ndarray
    layer: np.ndarray
    prompt: np.ndarray
    src: np.ndarray
    dst: np.ndarray
    src_pos: np.ndarray
    dst_pos: np.ndarray
    via: np.ndarray
    w: np.ndarray


def _src_kind(r: dict[str, Any]) -> int | None:
    if r["src_index"] is not None:
        return FEATURE
    if r["src_token"] is not None:
        return TOKEN
    if r["src_error"] is not None:
        return ERROR
    return HEAD if r["src_head"] is not None else None


def _dst_kind(r: dict[str, Any]) -> int | None:
    if r["dst_index"] is not None:
        return FEATURE
    return TARGET if r["dst_task"] is not None else None


def read_prompt_graphs(store: CatalogStore, prompts: Sequence[str], set_uid: str) -> StoredGraphs:
    """The stored ATTRIBUTES edges of `prompts` that belong to set `set_uid` (its features and
    error nodes, plus tokens, heads and targets); other sets' are left out."""
    node_ids: dict[str, int] = {}
    kinds: list[int] = []
    layers: list[int] = []
    cols: dict[str, list[Any]] = {k: [] for k in ("prompt", "src", "dst", "sp", "dp", "via", "w")}
    prompt_index = {p: i for i, p in enumerate(prompts)}

    def node(uid: str, kind: int, layer: Any) -> int:
        if uid not in node_ids:
            node_ids[uid] = len(kinds)
            kinds.append(kind)
            layers.append(-1 if layer is None else int(layer))
        return node_ids[uid]

    for start in range(0, len(prompts), PROMPTS_PER_QUERY):
        chunk = list(prompts[start : start + PROMPTS_PER_QUERY])
        for r in store.query("prompt_attributions", prompts=chunk):
            sk, dk = _src_kind(r), _dst_kind(r)
            other_set = {r["src_set"], r["dst_set"]} - {None, set_uid}
            if sk is None or dk is None or other_set:
                continue
            cols["prompt"].append(prompt_index[r["prompt"]])
            cols["src"].append(node(r["src"], sk, r["src_layer"]))
            cols["dst"].append(node(r["dst"], dk, r["dst_layer"]))
            cols["sp"].append(r["src_pos"])
            cols["dp"].append(r["dst_pos"])
            cols["via"].append(r["via"])
            cols["w"].append(r["w"])
    ints = {k: np.asarray(cols[k], dtype=np.int64) for k in ("prompt", "src", "dst", "sp", "dp")}
    return StoredGraphs(
        prompts=list(prompts),
        uids=list(node_ids),
        kind=np.asarray(kinds, dtype=np.int64),
        layer=np.asarray(layers, dtype=np.int64),
        prompt=ints["prompt"],
        src=ints["src"],
        dst=ints["dst"],
        src_pos=ints["sp"],
        dst_pos=ints["dp"],
        via=np.asarray(cols["via"], dtype=object),
        w=np.asarray(cols["w"], dtype=np.float64),
    )


# --------------------------------------------------------------------------------------------
# scoring


@dataclass(frozen=True)
class NodeScores:
    """Per node of StoredGraphs: `per_prompt[p, n]` = node n's total attribution onto the target
    in prompt p, summed over its positions; `heads` = {via: per-prompt attribution through it}."""

    per_prompt: np.ndarray
    heads: dict[str, np.ndarray]


def total_attributions(g: StoredGraphs) -> NodeScores:
    """Total attribution of every source onto the target, per prompt (see the module doc)."""
    n = len(g.w)
    keys = np.concatenate(
        [np.stack([g.prompt, g.src, g.src_pos], 1), np.stack([g.prompt, g.dst, g.dst_pos], 1)]
    )
    inst, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    s_i, d_i = inverse[:n], inverse[n:]
    edge = g.kind[g.src] != HEAD  # Head rows decompose edges: not counted again
    act = np.zeros(len(inst))
    np.add.at(act, d_i[edge], g.w[edge])
    inst_kind, inst_layer = g.kind[inst[:, 1]], g.layer[inst[:, 1]]
    grad = (inst_kind == TARGET).astype(np.float64)
    is_feature = inst_kind == FEATURE
    for layer in sorted(set(inst_layer[is_feature].tolist()), reverse=True):
        here = is_feature & (inst_layer == layer)
        rows = here[s_i] & edge
        np.add.at(grad, s_i[rows], g.w[rows] * grad[d_i[rows]])
        safe = np.where(act[here] != 0, act[here], np.inf)
        grad[here] = grad[here] / safe
    flow = g.w * grad[d_i]
    per_prompt = np.zeros((len(g.prompts), len(g.uids)))
    np.add.at(per_prompt, (g.prompt[edge], g.src[edge]), flow[edge])
    heads: dict[str, np.ndarray] = {}
    for via in sorted({v for v in g.via.tolist() if v.startswith("attn:")}):
        rows = g.via == via
        heads[via] = np.bincount(g.prompt[rows], flow[rows], minlength=len(g.prompts))
    return NodeScores(per_prompt, heads)


@dataclass(frozen=True)
class Selection:
    """What a circuit keeps: (uid, score) for features, heads ("attn:L.H") and tokens."""

    features: list[tuple[str, float]]
    heads: list[tuple[str, float]]
    tokens: list[tuple[str, float]]
    n_seen: int  # distinct features with any attribution
    error_share: float  # share of the leaves' mean |A| on Error nodes (errors, biases, remainders)


def select(
    g: StoredGraphs, scores: NodeScores, top_n: int | None, threshold: float | None
) -> Selection:
    """The top features (by mean |A| over prompts), heads and tokens (see the module doc)."""
    absolute = np.abs(scores.per_prompt)
    mean = absolute.mean(0)
    order = sorted(range(len(g.uids)), key=lambda i: (-mean[i], g.uids[i]))
    feats = [i for i in order if g.kind[i] == FEATURE and mean[i] > 0]
    n_seen = len(feats)
    if threshold is not None:
        feats = [i for i in feats if mean[i] >= threshold]
    if top_n is not None:
        feats = feats[:top_n]
    present = (scores.per_prompt != 0).sum(0)
    cond = np.where(present > 0, absolute.sum(0) / np.maximum(present, 1), 0.0)
    toks = sorted((i for i in range(len(g.uids)) if g.kind[i] == TOKEN), key=lambda i: -cond[i])
    head_scores = sorted(
        ((via, float(np.abs(v).mean())) for via, v in scores.heads.items()),
        key=lambda t: (-t[1], t[0]),
    )
    total = sum(sc for _, sc in head_scores)
    heads, held = [], 0.0
    for via, sc in head_scores:
        if held >= HEAD_SHARE * total or sc <= 0:
            break
        heads.append((via, sc))
        held += sc
    leaves = (g.kind == TOKEN) | (g.kind == ERROR)  # their attributions add up to the target
    errors = float(mean[g.kind == ERROR].sum()) / max(float(mean[leaves].sum()), 1e-30)
    return Selection(
        features=[(g.uids[i], float(mean[i])) for i in feats],
        heads=heads,
        tokens=[(g.uids[i], float(cond[i])) for i in toks[:TOP_TOKENS] if cond[i] > 0],
        n_seen=n_seen,
        error_share=errors,
    )


# --------------------------------------------------------------------------------------------
# find


@dataclass
class CircuitReport:
    uid: str
    name: str
    task: str
    set_uid: str
    n_prompts: int
    n_features: int
    n_live: int
    live_from: str
    n_heads: int
    n_tokens: int
    error_share: float
    seconds: float
    top: list[tuple[str, float]] = field(default_factory=list)


def pick_set(store: CatalogStore, task: str, set_uid: str | None) -> str:
    """The transcoder set whose prompt graphs to use: the given one, or the only one stored."""
    sets = {r["set_uid"]: r["n_prompts"] for r in store.query("attributed_sets", task=task)}
    if set_uid is not None:
        if set_uid not in sets:
            raise IngestError(
                f"no prompt graphs of task {task!r} for set {set_uid!r}; run "
                "`circuitcat ingest prompts` with that set first"
            )
        return set_uid
    if not sets:
        raise IngestError(
            f"no prompt graphs stored for task {task!r}; run `circuitcat ingest prompts "
            f"--task {task}` first"
        )
    if len(sets) > 1:
        raise IngestError(f"task {task!r} has prompt graphs for sets {sorted(sets)}; pick --set")
    return next(iter(sets))


def _live_count(store: CatalogStore, set_uid: str, n_seen: int) -> tuple[int, str]:
    live = int(store.query("set_live_feature_count", set_uid=set_uid)[0]["n"])
    return (live, "corpus pass") if live else (n_seen, "features seen in the prompt graphs")


def _model_uid(store: CatalogStore, set_uid: str) -> str:
    rows = store.query("transcoder_set", uid=set_uid)
    if not rows:
        raise IngestError(
            f"transcoder set {set_uid!r} is not in the catalog; run `ingest register`"
        )
    return str(rows[0]["model"])


def _contains(circuit: str, kind: NodeKind, rows: list[tuple[str, float]], run: str) -> EdgeBatch:
    return EdgeBatch(
        RelKind.CONTAINS,
        NodeKind.CIRCUIT,
        kind,
        [circuit] * len(rows),
        [uid for uid, _ in rows],
        {"score": [sc for _, sc in rows], "run": [run] * len(rows)},
    )


def find_circuit(
    store: CatalogStore,
    task: str,
    set_uid: str | None = None,
    *,
    name: str | None = None,
    top_n: int | None = None,
    threshold: float | None = None,
) -> CircuitReport:
    """Aggregate the task's stored prompt graphs into a Circuit (see the module doc).

    `top_n` features, or those scoring >= `threshold`; neither: 5% of the live features.
    """
    started = time.perf_counter()
    set_uid = pick_set(store, task, set_uid)
    prompts = [r["uid"] for r in store.query("attributed_prompts", task=task, set_uid=set_uid)]
    graphs = read_prompt_graphs(store, prompts, set_uid)
    scores = total_attributions(graphs)
    n_seen = int(((graphs.kind == FEATURE) & (np.abs(scores.per_prompt).sum(0) > 0)).sum())
    n_live, live_from = _live_count(store, set_uid, n_seen)
    if top_n is None and threshold is None:
        top_n = max(1, math.floor(CIRCUIT_FRACTION * n_live))
    sel = select(graphs, scores, top_n, threshold)
    if not sel.features:
        raise IngestError(f"no feature of set {set_uid!r} has attribution in task {task!r}")
    name = name or task
    params = {
        "top_n": top_n,
        "threshold": threshold,
        "n_prompts": len(prompts),
        "n_live": n_live,
        "live_from": live_from,
        "score": "mean over prompts of |total attribution onto the target|",
        "error_share": sel.error_share,
    }
    run = RunRecord(
        kind="circuit",
        params={"task": task, "set": set_uid, "name": name, **params},
        code_version=version("circuitcat"),
    )
    n_features = len(sel.features)
    record = CircuitRecord(name=name, task=task, set=set_uid, method="attribution",
                           params=params, n_features=n_features, run=run.uid)  # fmt: skip
    model_uid = _model_uid(store, set_uid)
    heads = [(_head_uid(model_uid, via), sc) for via, sc in sel.heads]
    start_run(store, run)
    _clear_members(store, record.uid)
    store.write_nodes(batch_of([record]))
    for kind, rows in ((NodeKind.FEATURE, sel.features), (NodeKind.HEAD, heads)):
        store.write_edges(_contains(record.uid, kind, rows, run.uid))
    store.write_edges(_contains(record.uid, NodeKind.TOKEN, sel.tokens, run.uid))
    finish_run(store, run)
    return CircuitReport(
        record.uid, name, task, set_uid, len(prompts), len(sel.features), n_live, live_from,
        len(heads), len(sel.tokens), sel.error_share, time.perf_counter() - started,
        sel.features[:10],
    )  # fmt: skip


def _clear_members(store: CatalogStore, uid: str) -> None:
    """Delete an earlier version's CONTAINS edges: a circuit found again replaces its members."""
    for kind, part in (
        (NodeKind.FEATURE, "features"),
        (NodeKind.HEAD, "heads"),
        (NodeKind.TOKEN, "tokens"),
    ):
        members = [str(r["uid"]) for r in store.query(f"circuit_{part}", uid=uid)]
        if members:
            batch = EdgeBatch(
                RelKind.CONTAINS, NodeKind.CIRCUIT, kind, [uid] * len(members), members
            )
            store.delete_edges(batch)


def _head_uid(model_uid: str, via: str) -> str:
    layer, head = via.removeprefix("attn:").split(".")
    return schema.head_uid(model_uid, int(layer), int(head))


# --------------------------------------------------------------------------------------------
# show (named queries only)


def get_circuit(
    store: CatalogStore, name: str, set_uid: str | None = None, task: str | None = None
) -> dict[str, Any]:
    """The stored circuit called `name` (narrowed by set and task); QueryError if none or many."""
    rows = [
        r
        for r in store.query("circuits", circuit_name=name)
        if (set_uid is None or r["set_uid"] == set_uid) and (task is None or r["task"] == task)
    ]
    if not rows:
        raise QueryError(
            f"no circuit named {name!r} in the catalog; create it with "
            f"`circuitcat circuit find --task TASK --name {name}`"
        )
    if len(rows) > 1:
        which = ", ".join(f"{r['set_uid']} ({r['task']})" for r in rows)
        raise QueryError(f"{len(rows)} circuits are named {name!r}: {which}; pick --set / --task")
    row = dict(rows[0])
    row["params"] = json.loads(row["params"] or "{}")
    row["faithfulness"] = json.loads(row["faithfulness"] or "{}")
    return row


@dataclass
class CircuitView:
    """A circuit as stored: node, features, heads, tokens and strongest paths."""

    circuit: dict[str, Any]
    features: list[dict[str, Any]]
    heads: list[dict[str, Any]]
    tokens: list[dict[str, Any]]
    paths: list[dict[str, Any]]
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def prompts_by_feature(store: CatalogStore, uid: str) -> dict[str, dict[str, Any]]:
    """Per feature of circuit `uid`: the keys (start years, else answers) of the task prompts
    in whose stored graphs it has an outgoing edge, each with its number of prompts, and how
    many prompts those are in all."""
    found: dict[str, dict[str, Any]] = {}
    for r in store.query("circuit_feature_prompts", uid=uid):
        seen = found.setdefault(r["uid"], {"keys": {}, "n_prompts": 0})
        seen["keys"][str(r["key"])] = int(r["n_prompts"])
        seen["n_prompts"] += int(r["n_prompts"])
    return found


def prompt_span(seen: dict[str, Any] | None, shown: int = 4) -> str:
    """The prompts a circuit feature works on (a `prompts_by_feature` value), in a few
    characters: "YY 03..97" for the year tasks' start years, else the answers, most frequent
    first, e.g. "six, four, nine +3"."""
    counts: dict[str, int] = (seen or {}).get("keys") or {}
    if not counts:
        return ""
    if all(k.isdigit() and len(k) == 2 for k in counts):
        first, last = min(counts), max(counts)
        return f"YY {first}" if first == last else f"YY {first}..{last}"
    keys = sorted(counts, key=lambda k: (-counts[k], k))
    more = f" +{len(keys) - shown}" if len(keys) > shown else ""
    return ", ".join(keys[:shown]) + more


def top_logit_text(top_logits: str | None, k: int = 3) -> str:
    """The k most promoted tokens from Feature.top_logits JSON ("" when absent)."""
    if not top_logits:
        return ""
    entries = [e for e in json.loads(top_logits) if e.get("w", 0) > 0][:k]
    return " ".join(f"{e['token']}({e['w']:+.2g})" for e in entries)


def strongest_paths(
    edges: list[dict[str, Any]],
    targets: list[dict[str, Any]],
    acts: list[dict[str, Any]],
    tokens: list[dict[str, Any]],
    limit: int = 10,
) -> list[dict[str, Any]]:
    """Token -> feature (-> feature) -> target paths in the circuit's mean graph (rows of
    `circuit_edges`, `circuit_target_edges`, `circuit_activations`, `circuit_tokens`).

    score = the token's mean edge weight over the prompts it occurs in, times for each feature
    passed (sum of its out-edge / sum of its activations over the task's prompts): the mean
    attribution along the path, with each feature's effect per unit of activation pooled over
    prompts. The `limit` strongest (|score|) of each depth.
    """
    act = {r["uid"]: r["total"] for r in acts}
    into_target = {
        r["src"]: (r["target"], r["total"] / act[r["src"]]) for r in targets if act.get(r["src"])
    }
    text = {r["uid"]: r["token"] or f"#{r['token_id']}" for r in tokens}
    out_edges: dict[str, list[tuple[str, float]]] = {}
    for r in edges:
        if r["src"] not in text and act.get(r["src"]):
            out_edges.setdefault(r["src"], []).append((r["dst"], r["total"] / act[r["src"]]))
    paths: dict[int, list[dict[str, Any]]] = {2: [], 3: []}
    for r in (r for r in edges if r["src"] in text):
        first, f1 = r["total"] / r["n_prompts"], r["dst"]
        chains = [([f1], 1.0)] + [([f1, f2], g) for f2, g in out_edges.get(f1, [])]
        for feats, gain in chains:
            if feats[-1] in into_target:
                name, last = into_target[feats[-1]]
                paths[len(feats) + 1].append(
                    {"depth": len(feats) + 1, "token": text[r["src"]], "features": feats,
                     "target": name, "score": first * gain * last, "n_prompts": r["n_prompts"]}
                )  # fmt: skip
    ranked = [
        sorted(p, key=lambda x: (-abs(x["score"]), x["token"], x["features"]))
        for p in paths.values()
    ]
    return [row for depth in ranked for row in depth[:limit]]


def show_circuit(
    store: CatalogStore,
    name: str,
    set_uid: str | None = None,
    task: str | None = None,
    limit: int = 10,
) -> CircuitView:
    """Read a circuit back from the store: named queries only, nothing recomputed."""
    started = time.perf_counter()
    circuit = get_circuit(store, name, set_uid, task)
    uid = circuit["uid"]
    answers = prompts_by_feature(store, uid)
    features = []
    for r in store.query("circuit_features", uid=uid):
        seen = answers.get(r["uid"], {})
        features.append(
            {
                "uid": r["uid"],
                "layer": r["layer"],
                "index": r["feature_index"],
                "score": r["score"],
                "prompts_on": prompt_span(seen),
                "n_prompts": seen.get("n_prompts", 0),
                "top_logits": top_logit_text(r["top_logits"]),
                "label": r["label"],
                "description": r["description"],  # the label, else the automatic one
            }
        )
    m = circuit_members(store, uid)
    paths = strongest_paths(m.edges, m.target_edges, m.activations, m.tokens, limit)
    return CircuitView(circuit, features, m.heads, m.tokens, paths, time.perf_counter() - started)


@dataclass(frozen=True)
class CircuitMembers:
    """A stored circuit's members and its mean graph, as the `circuit_*` named queries return
    them: what `circuit show`, `circuit export`, `circuit render` and the web pages read."""

    features: list[dict[str, Any]]
    tokens: list[dict[str, Any]]
    heads: list[dict[str, Any]]
    edges: list[dict[str, Any]]  # member -> member, summed over the task's prompts
    target_edges: list[dict[str, Any]]  # member feature -> the target
    activations: list[dict[str, Any]]  # per member feature: its summed activation


def circuit_members(store: CatalogStore, uid: str) -> CircuitMembers:
    """Every member and edge of the circuit `uid` (one named query each)."""
    return CircuitMembers(
        *(
            store.query(f"circuit_{part}", uid=uid)
            for part in ("features", "tokens", "heads", "edges", "target_edges", "activations")
        )
    )
