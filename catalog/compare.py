"""Comparing stored circuits: shared features and heads against a null of random circuits, and
the members that several circuits reuse. Needs no model and no torch; matching the features of
two transcoder sets by their decoders (which needs the weights) is ingest/matching.py, and the
faithfulness of one circuit on another task's prompts is ingest/faithfulness.py (`transfer`).

For each kind of member (features, heads), with a = circuit A's members and b = B's:

- shared = |a & b|, Jaccard = |a & b| / |a | b|;
- score-weighted overlap = sum over shared members of min(p_i, q_i), where p and q are the
  members' CONTAINS scores divided by their circuit's total: the share of score mass the two
  circuits have in common (1 for a circuit with itself, 0 when nothing is shared).

The null: `draws` pairs of random circuits with A's and B's sizes per layer, each drawn from the
same layer's pool (live features of the circuit's set, those that fired in the corpus pass, or
every feature of the layer where no corpus pass is stored; every head of the layer), with A's
and B's scores given to the drawn members in random order. The mean and standard deviation of
each number over the draws say whether an observed overlap means anything.

Across two transcoder sets of one model, B's features are first mapped onto A's through
`matching` (B feature uid -> A feature uid); unmatched ones count as unshared, and B's null draws
are mapped the same way. Heads belong to the model, so they match as they are.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from . import schema
from .circuits import get_circuit
from .errors import QueryError
from .protocol import CatalogStore

DEFAULT_DRAWS = 200
MIN_DRAWS = 100


@dataclass(frozen=True)
class Members:
    """One kind of a circuit's members: uid -> (layer, score)."""

    layer: dict[str, int]
    score: dict[str, float]

    def sizes(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for layer in self.layer.values():
            out[layer] = out.get(layer, 0) + 1
        return out


@dataclass(frozen=True)
class Overlap:
    """Shared members of one kind, and the same numbers for random circuits (mean, sd)."""

    kind: str
    n_a: int
    n_b: int
    shared: int
    jaccard: float
    weighted: float
    null_shared: tuple[float, float]
    null_jaccard: tuple[float, float]
    null_weighted: tuple[float, float]
    members: list[dict[str, Any]] = field(default_factory=list)  # uid, layer, score_a, score_b


@dataclass(frozen=True)
class Comparison:
    a: dict[str, Any]
    b: dict[str, Any]
    matching: str
    draws: int
    seed: int
    features: Overlap
    heads: Overlap

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def overlap_numbers(a: Mapping[str, float], b: Mapping[str, float]) -> tuple[int, float, float]:
    """(shared, Jaccard, score-weighted overlap) of two scored member sets (see the module doc)."""
    shared = a.keys() & b.keys()
    union = len(a.keys() | b.keys())
    total_a = sum(abs(v) for v in a.values()) or 1.0
    total_b = sum(abs(v) for v in b.values()) or 1.0
    weighted = sum(min(abs(a[u]) / total_a, abs(b[u]) / total_b) for u in shared)
    return len(shared), (len(shared) / union if union else 0.0), float(weighted)


def _mapped(scores: Mapping[str, float], matching: Mapping[str, str] | None) -> dict[str, float]:
    """B's scores keyed by A's uids where matched (scores of B features matched to one A feature
    add up); unmatched members keep their own uid."""
    if matching is None:
        return dict(scores)
    out: dict[str, float] = {}
    for uid, sc in scores.items():
        key = matching.get(uid, uid)
        out[key] = out.get(key, 0.0) + sc
    return out


def _random_circuit(
    members: Members, pools: Mapping[int, Sequence[str]], rng: np.random.Generator
) -> dict[str, float]:
    """Members' per-layer sizes drawn from the layer pools, given their scores in random order."""
    out: dict[str, float] = {}
    scores_by_layer: dict[int, list[float]] = {}
    for uid, layer in members.layer.items():
        scores_by_layer.setdefault(layer, []).append(members.score[uid])
    for layer, scores in scores_by_layer.items():
        pool = pools.get(layer, ())
        k = min(len(scores), len(pool))
        picked: list[int] = rng.choice(len(pool), size=k, replace=False).tolist() if k else []
        order = rng.permutation(len(scores))[:k]
        for i, j in zip(picked, order, strict=True):
            out[pool[int(i)]] = scores[int(j)]
    return out


def compare_members(
    kind: str,
    a: Members,
    b: Members,
    pools_a: Mapping[int, Sequence[str]],
    pools_b: Mapping[int, Sequence[str]],
    *,
    matching: Mapping[str, str] | None = None,
    draws: int = DEFAULT_DRAWS,
    seed: int = 0,
) -> Overlap:
    """The observed overlap of `a` and `b` and its null over `draws` random pairs."""
    b_scores = _mapped(b.score, matching)
    shared, jaccard, weighted = overlap_numbers(a.score, b_scores)
    rng = np.random.default_rng(seed)
    null = np.array(
        [
            overlap_numbers(
                _random_circuit(a, pools_a, rng),
                _mapped(_random_circuit(b, pools_b, rng), matching),
            )
            for _ in range(draws)
        ]
    ).reshape(-1, 3)
    back: dict[str, list[str]] = {}
    if matching is not None:
        for uid, target in matching.items():
            back.setdefault(target, []).append(uid)
    rows = [
        {
            "uid": uid,
            "layer": a.layer[uid],
            "score_a": a.score[uid],
            "score_b": b_scores[uid],
            "matched": back.get(uid, [uid]) if matching is not None else [uid],
        }
        for uid in sorted(a.score.keys() & b_scores.keys(), key=lambda u: -a.score[u])
    ]

    def stat(col: int) -> tuple[float, float]:
        return (float(null[:, col].mean()), float(null[:, col].std())) if draws else (0.0, 0.0)

    return Overlap(
        kind, len(a.score), len(b.score), shared, jaccard, weighted,
        stat(0), stat(1), stat(2), rows,
    )  # fmt: skip


# --------------------------------------------------------------------------------------------
# reading circuits and pools from the store


def resolve_circuit(store: CatalogStore, ref: str, task: str | None = None) -> dict[str, Any]:
    """A circuit by uid (".../circuit/<task>/<name>") or by name; QueryError if none or many."""
    if "/circuit/" in ref:
        rows = store.query("circuit_by_uid", uid=ref)
        if not rows:
            raise QueryError(
                f"no circuit with uid {ref!r} in the catalog; `circuitcat query named "
                "web_circuit_list` lists them"
            )
        row = dict(rows[0])
        row["params"] = json.loads(row["params"] or "{}")
        row["faithfulness"] = json.loads(row["faithfulness"] or "{}")
        return row
    named = [r for r in store.query("circuits", circuit_name=ref) if task in (None, r["task"])]
    if len(named) > 1:
        raise QueryError(
            f"{len(named)} circuits are named {ref!r}: pass one of their uids instead "
            f"({', '.join(r['uid'] for r in named)})"
        )
    return get_circuit(store, ref, None, task)


def feature_members(store: CatalogStore, uid: str) -> Members:
    rows = store.query("circuit_features", uid=uid)
    return Members({r["uid"]: int(r["layer"]) for r in rows}, {r["uid"]: r["score"] for r in rows})


def head_members(store: CatalogStore, uid: str) -> Members:
    rows = store.query("circuit_heads", uid=uid)
    return Members({r["uid"]: int(r["layer"]) for r in rows}, {r["uid"]: r["score"] for r in rows})


def feature_pools(store: CatalogStore, set_uid: str) -> dict[int, list[str]]:
    """Per layer, the set's live features (fired in the corpus pass); every stored feature of
    the layer where no corpus pass is stored."""
    rows = store.query("set_feature_means", set_uid=set_uid)
    live = [r for r in rows if (r["density"] or 0) > 0] or rows
    pools: dict[int, list[str]] = {}
    for r in live:
        pools.setdefault(int(r["layer"]), []).append(
            schema.feature_uid(set_uid, int(r["layer"]), int(r["feature_index"]))
        )
    return pools


def model_of_set(store: CatalogStore, set_uid: str) -> str:
    rows = store.query("transcoder_set", uid=set_uid)
    if not rows:
        raise QueryError(f"transcoder set {set_uid!r} is not in the catalog; run `ingest register`")
    return str(rows[0]["model"])


def head_pools(store: CatalogStore, model_uid: str) -> dict[int, list[str]]:
    """Per layer, every attention head of the model."""
    rows = store.query("model", uid=model_uid)
    if not rows:
        raise QueryError(f"model {model_uid!r} is not in the catalog; run `ingest register`")
    n_layers, n_heads = int(rows[0]["n_layers"]), int(rows[0]["n_heads"])
    return {
        layer: [schema.head_uid(model_uid, layer, h) for h in range(n_heads)]
        for layer in range(n_layers)
    }


def check_comparable(a: dict[str, Any], b: dict[str, Any], store: CatalogStore) -> bool:
    """True when A and B need a feature matching (two sets of one model); QueryError when they
    are on different models, which no matching method relates."""
    if a["set_uid"] == b["set_uid"]:
        return False
    model_a, model_b = model_of_set(store, a["set_uid"]), model_of_set(store, b["set_uid"])
    if model_a != model_b:
        raise QueryError(
            f"circuit {a['name']!r} is on model {model_a!r} and {b['name']!r} on {model_b!r}: "
            "no method matches features across models; compare circuits of one model"
        )
    return True


def compare_circuits(
    store: CatalogStore,
    a_ref: str,
    b_ref: str,
    *,
    matching: Mapping[str, str] | None = None,
    matching_name: str = "same transcoder set",
    draws: int = DEFAULT_DRAWS,
    seed: int = 0,
) -> Comparison:
    """Compare circuits A and B (names or uids) as the module doc says. Circuits on two sets of
    one model need `matching` (B feature -> A feature, ingest/matching.py)."""
    if draws < MIN_DRAWS:
        raise QueryError(f"--draws must be at least {MIN_DRAWS} (got {draws})")
    a, b = resolve_circuit(store, a_ref), resolve_circuit(store, b_ref)
    if check_comparable(a, b, store) and matching is None:
        raise QueryError(
            f"circuits {a['name']!r} and {b['name']!r} are on different transcoder sets "
            f"({a['set_uid']}, {b['set_uid']}); match their features by decoder first "
            "(`circuitcat circuit compare` does)"
        )
    if a["set_uid"] == b["set_uid"]:
        matching = None
    model = model_of_set(store, a["set_uid"])
    heads = head_pools(store, model)
    feats = compare_members(
        "features",
        feature_members(store, a["uid"]),
        feature_members(store, b["uid"]),
        feature_pools(store, a["set_uid"]),
        feature_pools(store, b["set_uid"]),
        matching=matching,
        draws=draws,
        seed=seed,
    )
    if matching is None:  # the named query agrees with the computed set
        named = {r["uid"] for r in store.query("circuit_shared_features", a=a["uid"], b=b["uid"])}
        if named != {r["uid"] for r in feats.members}:
            raise QueryError("circuit_shared_features disagrees with the circuits' members")
    hd = compare_members(
        "heads",
        head_members(store, a["uid"]),
        head_members(store, b["uid"]),
        heads,
        heads,
        draws=draws,
        seed=seed + 1,
    )
    return Comparison(
        {k: a[k] for k in ("uid", "name", "task", "set_uid")},
        {k: b[k] for k in ("uid", "name", "task", "set_uid")},
        matching_name if matching is not None else "same transcoder set",
        draws,
        seed,
        feats,
        hd,
    )


@dataclass(frozen=True)
class Reuse:
    """A feature or head in two or more circuits, with its score in each."""

    uid: str
    kind: str
    layer: int
    n_circuits: int
    scores: dict[str, float]  # circuit uid -> score


def reused_members(store: CatalogStore, min_circuits: int = 2) -> list[Reuse]:
    """Features and heads contained in at least `min_circuits` circuits (`feature_reuse` and
    `head_reuse`), most reused first."""
    if min_circuits < 2:
        raise QueryError(f"--min-circuits must be at least 2 (got {min_circuits})")
    out: dict[tuple[str, str], Reuse] = {}
    for kind, query in (("feature", "feature_reuse"), ("head", "head_reuse")):
        for r in store.query(query, min_circuits=min_circuits):
            key = (kind, r["uid"])
            if key not in out:
                out[key] = Reuse(r["uid"], kind, int(r["layer"]), int(r["n_circuits"]), {})
            out[key].scores[r["circuit"]] = r["score"]
    return sorted(out.values(), key=lambda x: (-x.n_circuits, x.kind, x.uid))
