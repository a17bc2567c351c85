"""Per-feature JSON files that circuit-tracer's local viewer reads as feature dashboards.

The viewer (circuit-tracer 0.5, `frontend/assets/feature_examples/init-feature-examples.js`)
loads a feature of a graph node from `{scan}/{feature}.json` when the graph's `metadata.scan`
starts with "./", where `feature` is the node's `feature` number (the Cantor pairing of layer
and index, catalog/graph_json.py); its local server (`frontend/local_server.py`) serves
`/data/...` from its data folder. So `prompt export --out DIR` writes the features of the graph
to `DIR/features/<set>/<feature>.json` and sets `scan` to `./data/features/<set>`: serving DIR
with circuit-tracer opens the graph with a dashboard for every feature.

Each file follows circuit-tracer's `frontend/feature_models.py` `Model` (checked by
tests/test_feature_files.py with circuit-tracer's own code), from what the catalog holds:
    examples_quantiles  one quantile, "Top activations": the corpus pass's top contexts, each
                        with its activations and `train_token_ind` at its peak
    top_logits / bottom_logits   the promoted / suppressed tokens, strongest first
    act_min / act_max   0 and the feature's max activation
    histogram           the corpus pass's log-binned counts re-binned into HIST_BINS equal bins
                        over [0, act_max] (each log bin's count goes to the bin of its geometric
                        middle), since the viewer places an activation linearly
    quantile_values     the 1st..100th percentiles of the firing activations, interpolated
                        geometrically inside the log bins (approximate, as binned data allows)
    activation_frequency   density
plus fields the viewer ignores: `layer`, `feature_index`, `uid`, `description`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .descriptions import best_description
from .errors import CircuitcatError
from .protocol import CatalogStore

# ingest/feature_stats.py bins act_hist this way (copied: importing it would import torch;
# tests/test_feature_files.py checks the copy): [0] is 0 < a < 10^MIN, then n log-spaced bins.
HIST_LOG10_MIN, HIST_LOG10_MAX = -3.0, 2.0
HIST_BINS = 30
QUANTILE_NAME = "Top activations"


def log_bins(counts: list[float]) -> list[tuple[float, float, float]]:
    """(low, high, count) of each act_hist bin; the underflow bin is (0, 10^MIN)."""
    n = len(counts) - 1
    if n < 1:
        return []
    step = (HIST_LOG10_MAX - HIST_LOG10_MIN) / n
    edges = [10 ** (HIST_LOG10_MIN + i * step) for i in range(n + 1)]
    bins = [(0.0, edges[0], float(counts[0]))]
    bins += [(edges[i], edges[i + 1], float(counts[i + 1])) for i in range(n)]
    return bins


def linear_histogram(counts: list[float], act_max: float, n_bins: int = HIST_BINS) -> list[float]:
    """The log-binned counts as n_bins equal bins over [0, act_max]."""
    out = [0.0] * n_bins
    if act_max <= 0:
        return out
    for lo, hi, c in log_bins(counts):
        if c <= 0:
            continue
        middle = min(math.sqrt(lo * hi) if lo > 0 else hi / 2, act_max)
        out[min(int(middle / act_max * n_bins), n_bins - 1)] += c
    return out


def quantile_values(counts: list[float], act_max: float, n: int = 100) -> list[float]:
    """The q/n quantiles (q = 1..n) of the firing activations from the log-binned counts."""
    bins = [b for b in log_bins(counts) if b[2] > 0]
    total = sum(c for _, _, c in bins)
    if total <= 0:
        return [0.0] * n
    values, seen, i = [], 0.0, 0
    for q in range(1, n + 1):
        want = total * q / n
        while i < len(bins) - 1 and seen + bins[i][2] < want:
            seen += bins[i][2]
            i += 1
        lo, hi, c = bins[i]
        frac = min(max((want - seen) / c, 0.0), 1.0)
        value = lo + (hi - lo) * frac if lo <= 0 else lo * (hi / lo) ** frac
        values.append(min(value, act_max) if act_max > 0 else value)
    return values


def _example(ctx: dict[str, Any]) -> dict[str, Any]:
    acts = [float(a) for a in ctx["acts"]]
    peak = max(range(len(acts)), key=lambda i: (acts[i], -i)) if acts else 0
    return {
        "tokens": [str(t) for t in ctx["tokens"]],
        "tokens_acts_list": acts,
        "train_token_ind": peak,
        "is_repeated_datapoint": False,
    }


def feature_file(f: dict[str, Any], number: int) -> dict[str, Any]:
    """One feature (a `feature` named-query row) as the viewer's feature JSON; `number` is the
    graph nodes' `feature` (the file's name)."""
    contexts = json.loads(f["top_contexts"] or "[]")
    logits = json.loads(f["top_logits"] or "[]")
    act_max = float(f["act_max"] or 0.0)
    hist = list(f["act_hist"] or [])
    return {
        "transcoder_id": str(f["set_uid"]),
        "index": number,
        "examples_quantiles": [
            {
                "quantile_name": QUANTILE_NAME,
                "examples": [_example(c) for c in contexts if c.get("tokens")],
            }
        ],
        "top_logits": [str(x["token"]) for x in logits if x["w"] > 0],
        "bottom_logits": [
            str(x["token"]) for x in sorted(logits, key=lambda x: x["w"]) if x["w"] < 0
        ],
        "act_min": 0.0,
        "act_max": act_max,
        "quantile_values": quantile_values(hist, act_max),
        "histogram": linear_histogram(hist, act_max),
        "activation_frequency": float(f["density"] or 0.0),
        "layer": f["layer"],
        "feature_index": f["feature_index"],
        "uid": f["uid"],
        "description": best_description(f) or "",
    }


def write_feature_files(store: CatalogStore, features: dict[str, int], folder: Path) -> int:
    """Write `folder/{number}.json` for each feature uid -> graph `feature` number; returns how
    many were written."""
    if folder.exists() and not folder.is_dir():
        raise CircuitcatError(f"cannot write feature files into {folder}: it is a file")
    folder.mkdir(parents=True, exist_ok=True)
    for uid, number in sorted(features.items()):
        rows = store.query("feature", uid=uid)
        if not rows:
            raise CircuitcatError(f"feature {uid} of the graph is not in the catalog")
        (folder / f"{number}.json").write_text(json.dumps(feature_file(rows[0], number)))
    return len(features)
