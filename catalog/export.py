"""A stored circuit as a networkx graph, written as GraphML or node-link JSON.

Nodes: the circuit's features (with layer, index, score and description: the label, else the
automatic one), tokens and heads (with layer, index, score) and the task's target; edges:
ATTRIBUTES summed over the task's prompts (`weight`, `n_prompts`). Read by the same named
queries as `circuit show` (catalog/circuits.py `circuit_members`).
"""

from __future__ import annotations

import json
from pathlib import Path

import networkx as nx

from .circuits import circuit_members
from .errors import CircuitcatError
from .protocol import CatalogStore

FORMATS = (".graphml", ".json")


def circuit_graph(store: CatalogStore, circuit_uid: str) -> nx.DiGraph:
    m = circuit_members(store, circuit_uid)
    g = nx.DiGraph(circuit=circuit_uid)
    for f in m.features:
        g.add_node(
            f["uid"],
            kind="feature",
            layer=int(f["layer"]),
            index=int(f["feature_index"]),
            score=float(f["score"]),
            # the label, else the automatic description; GraphML has no null: "" for none
            description=str(f["description"] or ""),
        )
    for t in m.tokens:
        g.add_node(t["uid"], kind="token", text=str(t["token"]), score=float(t["score"]))
    for h in m.heads:
        g.add_node(
            h["uid"],
            kind="head",
            layer=int(h["layer"]),
            head=int(h["head"]),
            score=float(h["score"]),
        )
    for e in m.edges + m.target_edges:
        if e["dst"] not in g:
            g.add_node(e["dst"], kind="target", name=str(e.get("target") or e["dst"]))
        if e["src"] in g:
            g.add_edge(e["src"], e["dst"], weight=float(e["total"]), n_prompts=int(e["n_prompts"]))
    return g


def write_graph(g: nx.DiGraph, out: Path) -> Path:
    if out.suffix not in FORMATS:
        raise CircuitcatError(f"cannot write {out.name}: use one of {', '.join(FORMATS)}")
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".graphml":
        nx.write_graphml(g, out)
    else:
        # The keys networkx's default `nx.node_link_graph(json.load(f))` reads (3.4 and later)
        out.write_text(json.dumps(nx.node_link_data(g, edges="edges"), indent=1))
    return out
