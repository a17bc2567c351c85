"""What the API and the pages show, read from the catalog with named queries only (the same
ones the CLI uses, plus catalog/queries/web.cypher). Plain functions over a CatalogStore that
return JSON-ready dicts; cli/web/api.py is the HTTP layer over them."""

from __future__ import annotations

import json
import re
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from circuitcat.catalog import CatalogStore
from circuitcat.catalog.circuits import (
    circuit_members,
    prompt_span,
    prompts_by_feature,
    strongest_paths,
    top_logit_text,
)
from circuitcat.catalog.descriptions import best_description
from circuitcat.catalog.errors import QueryError
from circuitcat.catalog.interventions import list_interventions
from circuitcat.catalog.labels import label_history

# ingest/feature_stats.py bins act_hist this way (copied: importing it would import torch;
# tests/test_serve_api.py checks the copy): [0] is 0 < a < 10^MIN, then n log-spaced bins.
HIST_LOG10_MIN, HIST_LOG10_MAX = -3.0, 2.0
SHORT_UID = re.compile(r"L(\d+)/(\d+)")
LAYER = re.compile(r"(?:L|layer\s*)(\d+)", re.IGNORECASE)


class NotFoundError(QueryError):
    """The thing asked for is not in the catalog."""


class SortKey(StrEnum):
    density = "density"
    act_max = "act_max"
    act_mean = "act_mean"
    layer_index = "index"  # layer, then index


class FeatureFilter(BaseModel):
    """Which features to list, in what order, which page."""

    model_config = ConfigDict(frozen=True)
    set_uid: str = ""
    layer: int = Field(default=-1, ge=-1, le=10_000)
    label: str = Field(default="", max_length=200)
    token: str = Field(default="", max_length=200)
    sort: SortKey = SortKey.density
    descending: bool = True
    limit: int = Field(default=50, ge=1, le=500)
    offset: int = Field(default=0, ge=0, le=10_000_000)


def _parsed(text: str | None, default: Any) -> Any:
    return json.loads(text) if text else default


def _one(rows: list[dict[str, Any]], what: str) -> dict[str, Any]:
    if not rows:
        raise NotFoundError(f"no {what} in the catalog")
    return rows[0]


def catalog_overview(store: CatalogStore) -> dict[str, Any]:
    """Models, transcoder sets (with feature counts), tasks and circuits."""
    sets = store.query("transcoder_sets")
    for s in sets:
        s["n_features"] = store.query("set_feature_count", set_uid=s["uid"])[0]["n"]
    return {
        "models": store.query("models"),
        "sets": sets,
        "tasks": store.query("web_tasks"),
        "circuits": circuit_list(store),
    }


def list_features(store: CatalogStore, flt: FeatureFilter) -> dict[str, Any]:
    """One page of features. With a token: the features that token excites (de-embedding)
    and those that promote it, each strongest first, instead of the sorted list."""
    where = {"set_uid": flt.set_uid, "layer": flt.layer}
    if flt.token:
        params = {**where, "token": flt.token, "limit": flt.limit}
        reading = store.query("web_features_reading_token", **params)
        promoting = store.query("web_features_promoting_token", **params)
        return {"token": flt.token, "reading": reading, "promoting": promoting}
    where["label"] = flt.label
    total = store.query("web_feature_count", **where)[0]["n"]
    rows = store.query(
        "web_features",
        **where,
        sort=flt.sort.value,
        sign=-1.0 if flt.descending else 1.0,
        offset=flt.offset,
        limit=flt.limit,
    )
    for r in rows:
        r["top_logits"] = top_logit_text(r["top_logits"])
    return {"total": total, "offset": flt.offset, "limit": flt.limit, "features": rows}


def resolve_feature_uid(store: CatalogStore, uid: str) -> str:
    """A full uid; the short form L0/156 is completed with the catalog's only set."""
    if not SHORT_UID.fullmatch(uid):
        return uid
    sets = [str(r["uid"]) for r in store.query("transcoder_sets")]
    if len(sets) != 1:
        raise QueryError(
            f"{uid!r} is short for a feature uid, and the catalog has {len(sets)} sets"
        )
    return f"{sets[0]}/{uid}"


def require_feature(store: CatalogStore, uid: str) -> str:
    """The full uid of a stored feature; NotFoundError when there is none."""
    uid = resolve_feature_uid(store, uid)
    _one(store.query("feature", uid=uid), f"feature {uid!r}")
    return uid


def histogram(counts: list[float] | None) -> dict[str, Any]:
    """act_hist with its bin edges: bin 0 is (0, 10^MIN), bin i >= 1 is [edge i-1, edge i)."""
    counts = counts or []
    n = max(len(counts) - 1, 0)
    step = (HIST_LOG10_MAX - HIST_LOG10_MIN) / max(n, 1)
    edges = [10 ** (HIST_LOG10_MIN + i * step) for i in range(n + 1)] if counts else []
    return {"counts": counts, "edges": edges, "underflow_below": edges[0] if edges else None}


def feature_page(store: CatalogStore, uid: str, k: int = 12) -> dict[str, Any]:
    """Everything the feature page shows."""
    uid = resolve_feature_uid(store, uid)
    f = _one(store.query("feature", uid=uid), f"feature {uid!r}")
    logits = _parsed(f["top_logits"], [])
    tset = store.query("transcoder_set", uid=f["set_uid"])
    return {
        "uid": uid,
        "set_uid": f["set_uid"],
        "model": tset[0]["model"] if tset else None,
        "layer": f["layer"],
        "index": f["feature_index"],
        "density": f["density"],
        "act_mean": f["act_mean"],
        "act_max": f["act_max"],
        "label": f["label"],
        "auto_description": f["auto_description"],
        "explanation": f["explanation"],
        "explanation_score": f["explanation_score"],
        "description": best_description(f),
        "histogram": histogram(f["act_hist"]),
        "top_contexts": _parsed(f["top_contexts"], [])[:k],
        "promoted": [x for x in logits if x["w"] > 0][:k],
        "suppressed": sorted((x for x in logits if x["w"] < 0), key=lambda x: x["w"])[:k],
        "inputs": {
            "features": store.query("feature_sources", uid=uid, limit=k),
            "tokens": store.query("feature_tokens", uid=uid, limit=k),
            "prompt_graphs": store.query("web_feature_prompt_inputs", uid=uid, limit=k),
        },
        "outputs": {
            "features": store.query("feature_targets", uid=uid, limit=k),
            "prompt_graphs": store.query("web_feature_prompt_outputs", uid=uid, limit=k),
        },
        "circuits": store.query("web_feature_circuits", uid=uid),
        "labels": label_history(store, uid),
        "interventions": list_interventions(store, feature=uid, limit=k),
    }


def circuit_list(store: CatalogStore) -> list[dict[str, Any]]:
    rows = store.query("web_circuit_list")
    for r in rows:
        r["params"] = _parsed(r["params"], {})
        r["faithfulness"] = _parsed(r["faithfulness"], {})
    return rows


def _n_layers(store: CatalogStore, set_uid: str, features: list[dict[str, Any]]) -> int:
    tset = store.query("transcoder_set", uid=set_uid)
    models = [m for m in store.query("models") if tset and m["uid"] == tset[0]["model"]]
    if models and models[0]["n_layers"]:
        return int(models[0]["n_layers"])
    return 1 + max((int(f["layer"]) for f in features), default=0)


def circuit_graph(store: CatalogStore, uid: str) -> dict[str, Any]:
    """A circuit as a layered graph: tokens (row -1), features (row = layer), the target
    (row n_layers); edges are the stored attributions between members summed over the task's
    prompts, `weight` their mean per prompt. Plus heads, faithfulness and strongest paths."""
    c = _one(store.query("web_circuit", uid=uid), f"circuit {uid!r}")
    c["params"], c["faithfulness"] = _parsed(c["params"], {}), _parsed(c["faithfulness"], {})
    m = circuit_members(store, uid)
    features, tokens, edges, into_target = m.features, m.tokens, m.edges, m.target_edges
    answers = prompts_by_feature(store, uid)
    n_layers = _n_layers(store, c["set_uid"], features)
    n_prompts = max(int(c["params"].get("n_prompts") or 1), 1)
    nodes = [
        {"id": t["uid"], "kind": "token", "row": -1, "name": t["token"], "score": t["score"]}
        for t in tokens
    ]
    for f in features:
        seen = answers.get(f["uid"], {})
        nodes.append(
            {
                "id": f["uid"],
                "kind": "feature",
                "row": f["layer"],
                "name": f"L{f['layer']}/{f['feature_index']}",
                "score": f["score"],
                "label": f["label"],
                "description": f["description"],
                "density": f["density"],
                "top_logits": top_logit_text(f["top_logits"]),
                "prompts_on": prompt_span(seen),
            }
        )
    for t in {(e["dst"], e["target"]) for e in into_target}:
        nodes.append({"id": t[0], "kind": "target", "row": n_layers, "name": t[1], "score": None})
    links = [
        {
            "source": e["src"],
            "target": e["dst"],
            "weight": e["total"] / n_prompts,
            "total": e["total"],
            "n_prompts": e["n_prompts"],
        }
        for e in [*edges, *into_target]
    ]
    return {
        "circuit": c,
        "n_layers": n_layers,
        "nodes": nodes,
        "links": links,
        "heads": m.heads,
        "paths": strongest_paths(edges, into_target, m.activations, tokens, 10),
        "interventions": store.query("circuit_interventions", uid=uid, limit=50),
    }


def task_prompts(store: CatalogStore, task: str, limit: int) -> dict[str, Any]:
    """A task's prompts, each with the transcoder sets that have its graph stored."""
    sets = store.query("attributed_sets", task=task)
    with_graph: dict[str, list[str]] = {}
    for s in sets:
        for p in store.query("attributed_prompts", set_uid=s["set_uid"], task=task):
            with_graph.setdefault(p["uid"], []).append(s["set_uid"])
    prompts = store.query("prompts_of_task", task=task, limit=limit)
    for p in prompts:
        p["graph_sets"] = with_graph.get(p["uid"], [])
    return {"task": task, "sets": sets, "prompts": prompts}


def prompt_info(store: CatalogStore, uid: str) -> dict[str, Any]:
    p = _one(store.query("prompt", uid=uid), f"prompt {uid!r}")
    p["graph_sets"] = [r["set_uid"] for r in store.query("prompt_sets", prompt=uid)]
    return p


def search(store: CatalogStore, text: str, limit: int = 20) -> dict[str, Any]:
    """Features by description text (label or automatic description), by token (read or
    promoted), a layer (`L3`: its features, most active first), a feature uid, circuits by
    name, prompts by text."""
    text = text.strip()
    found: dict[str, Any] = {"query": text}
    if not text:
        return found
    flt = FeatureFilter(label=text, limit=limit)
    found["labelled"] = list_features(store, flt)["features"]
    by_token = list_features(store, FeatureFilter(token=text, limit=limit))
    found["reading_token"], found["promoting_token"] = by_token["reading"], by_token["promoting"]
    layer = LAYER.fullmatch(text)
    if layer and int(layer.group(1)) <= 10_000:
        flt = FeatureFilter(layer=int(layer.group(1)), limit=limit)
        found["layer"] = list_features(store, flt)["features"]
    try:
        uid = resolve_feature_uid(store, text)
        found["feature"] = uid if store.query("feature", uid=uid) else None
    except QueryError:
        found["feature"] = None
    found["circuits"] = [c for c in circuit_list(store) if text.lower() in c["name"].lower()]
    found["prompts"] = store.query("web_prompts_matching", text=text, limit=limit)
    return found


def feature_pair(store: CatalogStore, src: str, dst: str, limit: int = 100) -> dict[str, Any]:
    """Cross-graph: every stored prompt graph where feature src feeds feature dst, and the
    input-invariant virtual weights between them."""
    src, dst = require_feature(store, src), require_feature(store, dst)
    return {
        "src": src,
        "dst": dst,
        "prompts": store.query("web_pair_prompts", src=src, dst=dst, limit=limit),
        "virtual_weights": store.query("web_pair_weights", src=src, dst=dst),
    }
