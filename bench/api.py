"""Benchmark: latency of `circuitcat serve`'s JSON API, per endpoint, on both stores.

    .venv/bin/python -m bench.api [--toy PATH] [--features 50000] [--edges 1000000]
        [--repeats 40] [--backends ladybug,neo4j] [--synthetic-backends ladybug] [--write-docs]

Two catalogs:

- the toy catalog `circuitcat demo` builds (from --toy PATH, else built in a temporary folder),
  served from the embedded store and, copied with `store copy`'s code, from Neo4j;
- a synthetic catalog shaped like a real one, with --edges VIRTUAL_WEIGHT edges (default 1M)
  among --features features over 8 layers, plus 8 de-embedding and 8 logit edges per feature,
  a task with 50 prompts of 2,000 attribution edges each, and 1,000 labelled features.

Each catalog is served by the real app under uvicorn on 127.0.0.1 and asked over HTTP with
keep-alive (httpx), as a browser would; every endpoint gets 3 untimed warm-up requests, then
--repeats timed ones (feature pages and pairs draw a different feature each time). Neo4j comes
from NEO4J_URI (with NEO4J_USER/NEO4J_PASSWORD) or, unset, tests/neo4j_server.find_neo4j; it is
emptied first. With --write-docs the results replace the "API latency" section of
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import uvicorn

from bench.docs import replace_section
from circuitcat.catalog import (
    CatalogStore,
    EdgeBatch,
    LabelRecord,
    ModelRecord,
    NodeBatch,
    NodeKind,
    PromptRecord,
    RelKind,
    RunRecord,
    TaskRecord,
    TranscoderSetRecord,
    open_store,
    records_to_batch,
)
from circuitcat.catalog import schema as s
from circuitcat.catalog.copy import copy_catalog
from circuitcat.cli.web import ServeConfig, create_app

SECTION = "## API latency"
N_LAYERS, VOCAB, PER_FEATURE, N_PROMPTS, PER_PROMPT, N_LABELS = 8, 5000, 8, 50, 2000, 1000
MODEL, TASK = "bench-model", "bench-task"
SET = s.transcoder_set_uid(MODEL, "bench-set")
RUN = RunRecord(kind="bench", started_at="2000-01-01T00:00:00", status="done")
# name -> path template; {f}/{g}: features drawn per request, {c}: a circuit, {p}: a prompt
ENDPOINTS = [
    ("catalog overview", "/api/catalog"),
    ("features, by density", "/api/features?limit=50"),
    ("features, layer + sort", "/api/features?layer=3&sort=act_max&order=asc&limit=50"),
    ("feature page", "/api/features/{f}"),
    ("search (label)", "/api/search?q=curly"),
    ("search (token)", "/api/search?q={t}"),
    ("across graphs (pair)", "/api/pairs?src={f}&dst={g}"),
    ("circuit graph", "/api/circuits/{c}"),
    ("prompt graph JSON", "/api/prompts/{p}/graph"),
    ("cypher (count)", "POST /api/cypher"),
]
GOALS = {"feature page": 100.0, "search (label)": 100.0, "search (token)": 100.0}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---- the synthetic catalog ------------------------------------------------------------------


def _features(n: int, rng: np.random.Generator) -> NodeBatch:
    layer = np.repeat(np.arange(N_LAYERS), n // N_LAYERS)
    index = np.tile(np.arange(n // N_LAYERS), N_LAYERS)
    uids = [s.feature_uid(SET, int(a), int(b)) for a, b in zip(layer, index, strict=True)]
    logits = json.dumps([{"token": f"t{i}", "token_id": i, "w": 0.5 - i / 10} for i in range(10)])
    contexts = json.dumps(
        [
            {
                "tokens": [f"t{i}" for i in range(11)],
                "acts": [0.0] * 8 + [3.0, 1.0, 0.0],
                "pos": 8,
                "value": 3.0,
            }
        ]
        * 10
    )
    labels = np.array([None] * len(uids), dtype=object)
    labels[rng.choice(len(uids), N_LABELS, replace=False)] = [f"curly {i}" for i in range(N_LABELS)]
    return NodeBatch(
        NodeKind.FEATURE,
        {
            "uid": uids,
            "set": [SET] * len(uids),
            "layer": layer,
            "index": index,
            "density": rng.uniform(0, 0.2, len(uids)),
            "act_mean": rng.uniform(0.5, 3, len(uids)),
            "act_max": rng.uniform(3, 20, len(uids)),
            "act_hist": [list(rng.integers(0, 500, 21).astype(float)) for _ in uids],
            "top_logits": [logits] * len(uids),
            "top_contexts": [contexts] * len(uids),
            "label": list(labels),
            "run": [RUN.uid] * len(uids),
        },
    )


def _edges(kind: RelKind, src: Any, dst: Any, w: np.ndarray, **extra: Any) -> EdgeBatch:
    kinds = {
        RelKind.VIRTUAL_WEIGHT: (NodeKind.FEATURE, NodeKind.FEATURE),
        RelKind.DEEMBEDS: (NodeKind.TOKEN, NodeKind.FEATURE),
        RelKind.PROMOTES: (NodeKind.FEATURE, NodeKind.TOKEN),
        RelKind.ATTRIBUTES: (NodeKind.FEATURE, NodeKind.FEATURE),
    }[kind]
    props = {"w": w, "run": [RUN.uid] * len(w), **extra}
    return EdgeBatch(kind, kinds[0], kinds[1], list(src), list(dst), props)


def _small_nodes(n_features: int, prompts: list[PromptRecord]) -> list[NodeBatch]:
    model = ModelRecord(name=MODEL, source="bench", n_layers=N_LAYERS, d_model=8, n_heads=1,
                        d_vocab=VOCAB, arch="bench", run=RUN.uid)  # fmt: skip
    tset = TranscoderSetRecord(name="bench-set", model=MODEL, source="bench", format="bench",
                               d_transcoder=n_features // N_LAYERS, layers=list(range(N_LAYERS)),
                               input_hook="-", output_hook="-", sha256="0",
                               run=RUN.uid)  # fmt: skip
    tokens = {"uid": [s.token_uid(MODEL, t) for t in range(VOCAB)], "model": [MODEL] * VOCAB,
              "token_id": np.arange(VOCAB), "text": [f"t{t}" for t in range(VOCAB)]}  # fmt: skip
    return [
        records_to_batch([RUN]),
        records_to_batch([model]),
        records_to_batch([tset]),
        NodeBatch(NodeKind.TOKEN, tokens),
        records_to_batch([TaskRecord(name=TASK, metric="bench", run=RUN.uid)]),
        records_to_batch(list(prompts)),
    ]


def _labels(store: CatalogStore, feats: NodeBatch) -> None:
    labelled = [
        u for u, lab in zip(feats.columns["uid"], feats.columns["label"], strict=True) if lab
    ]
    labels = [
        LabelRecord(feature=u, text=f"curly {i}", author="bench", created_at=RUN.started_at)
        for i, u in enumerate(labelled)
    ]
    store.write_nodes(records_to_batch(list(labels)))
    rows = {"run": [RUN.uid] * len(labels)}
    store.write_edges(EdgeBatch(RelKind.HAS_LABEL, NodeKind.FEATURE, NodeKind.LABEL, labelled,
                                [x.uid for x in labels], rows))  # fmt: skip


def _weights(store: CatalogStore, uids: np.ndarray, n_edges: int, rng: np.random.Generator) -> None:
    """VIRTUAL_WEIGHT: each later-layer feature reads from ~n_edges / (their count) earlier ones,
    drawn at random and made distinct; PER_FEATURE distinct tokens in and out per feature."""
    n_features, per_layer = len(uids), len(uids) // N_LAYERS
    dst = np.repeat(np.arange(per_layer, n_features), n_edges // (n_features - per_layer) + 2)
    src = rng.integers(0, (dst // per_layer) * per_layer)
    _, first = np.unique(src * n_features + dst, return_index=True)
    keep = np.sort(first)[:n_edges]
    src, dst, n = src[keep], dst[keep], len(keep)
    store.write_edges(_edges(RelKind.VIRTUAL_WEIGHT, uids[src], uids[dst], rng.normal(0, 1, n),
                             rank=np.zeros(n, dtype=np.int64), via=["resid"] * n))  # fmt: skip
    tokens = np.array([s.token_uid(MODEL, t) for t in range(VOCAB)], dtype=object)
    picks = (np.repeat(rng.integers(0, VOCAB, n_features), PER_FEATURE)
             + np.tile(np.arange(PER_FEATURE) * 97, n_features)) % VOCAB  # fmt: skip
    m, rank = len(picks), np.tile(np.arange(PER_FEATURE), n_features)
    per = np.repeat(uids, PER_FEATURE)
    store.write_edges(_edges(RelKind.DEEMBEDS, tokens[picks], per, rng.normal(0, 1, m),
                             rank=rank, via=["direct"] * m))  # fmt: skip
    store.write_edges(_edges(RelKind.PROMOTES, per, tokens[(picks + 31) % VOCAB],
                             rng.normal(0, 1, m), rank=rank))  # fmt: skip


def _attributions(
    store: CatalogStore, uids: np.ndarray, prompts: list[PromptRecord], rng: np.random.Generator
) -> None:
    """Per prompt, PER_PROMPT edges between distinct pairs of first-half to second-half
    features, drawn anew for each prompt."""
    half, a = len(uids) // 2, len(prompts) * PER_PROMPT
    src = np.concatenate([rng.choice(half, PER_PROMPT, replace=False) for _ in prompts])
    dst = np.concatenate([half + rng.choice(half, PER_PROMPT, replace=False) for _ in prompts])
    store.write_edges(_edges(RelKind.ATTRIBUTES, uids[src], uids[dst], rng.normal(0, 1, a),
                             prompt=np.repeat([p.uid for p in prompts], PER_PROMPT),
                             src_pos=np.arange(a) % 7, dst_pos=np.arange(a) % 7 + 7,
                             via=["resid"] * a))  # fmt: skip


def synthetic(store: CatalogStore, n_features: int, n_edges: int, seed: int = 0) -> None:
    """Write the synthetic catalog (module doc) through the store's own writer."""
    rng = np.random.default_rng(seed)
    feats = _features(n_features, rng)
    uids = np.array(feats.columns["uid"], dtype=object)
    prompts = [
        PromptRecord(task=TASK, text=f"prompt {i}", tokens=["a", "b"], answer="b", run=RUN.uid)
        for i in range(N_PROMPTS)
    ]
    for batch in [*_small_nodes(n_features, prompts), feats]:
        store.write_nodes(batch)
    _labels(store, feats)
    _weights(store, uids, n_edges, rng)
    _attributions(store, uids, prompts, rng)


# ---- measuring ------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def served(config: ServeConfig) -> Iterator[str]:
    """The app under uvicorn in a thread, as `circuitcat serve` runs it; yields its URL."""
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(config), port=port, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def _samples(
    client: httpx.Client, url: str, fill: Callable[[], dict[str, str]], n: int
) -> list[float]:
    times = []
    for i in range(n + 3):
        values = fill()
        start = time.perf_counter()
        if url.startswith("POST "):
            body = {"query": "MATCH (f:Feature) WHERE f.layer = 1 RETURN count(f) AS n"}
            r = client.post(url.split(" ", 1)[1], json=body)
        else:
            r = client.get(url.format(**values))
        elapsed = (time.perf_counter() - start) * 1000
        r.raise_for_status()
        if i >= 3:
            times.append(elapsed)
    return times


def measure(uri: str, repeats: int, login: dict[str, str | None]) -> dict[str, tuple[float, float]]:
    """Median and p95 (ms) per endpoint that applies to the catalog."""
    with open_store(uri, init=False, **login) as store:
        sets = store.query("transcoder_sets")
        n = store.query("set_feature_count", set_uid=sets[0]["uid"])[0]["n"]
        per_layer = n // len(sets[0]["layers"])
        circuits = store.query("web_circuit_list")
        prompts = store.query("attributed_prompts", set_uid=sets[0]["uid"], task="greater-than")
        token = store.run_cypher("MATCH (t:Token) RETURN t.text ORDER BY t.uid LIMIT 1").rows
    rng = np.random.default_rng(1)
    layers = sets[0]["layers"]

    def fill() -> dict[str, str]:
        la, lb = sorted(rng.choice(layers, 2, replace=len(layers) < 2))
        f = s.feature_uid(sets[0]["uid"], int(la), int(rng.integers(per_layer)))
        g = s.feature_uid(sets[0]["uid"], int(lb), int(rng.integers(per_layer)))
        c = circuits[0]["uid"] if circuits else ""
        p = prompts[0]["uid"] if prompts else ""
        return {"f": f, "g": g, "c": c, "p": p, "t": str(token[0][0]) if token else ""}

    out = {}
    with served(ServeConfig(store=uri)) as base, httpx.Client(base_url=base, timeout=60) as client:
        for name, url in ENDPOINTS:
            if ("{c}" in url and not circuits) or ("{p}" in url and not prompts):
                continue
            times = _samples(client, url, fill, repeats)
            out[name] = (statistics.median(times), float(np.percentile(times, 95)))
            log(f"  {name}: median {out[name][0]:.1f} ms, p95 {out[name][1]:.1f} ms")
    return out


# ---- the run --------------------------------------------------------------------------------


def _toy(path: str | None, tmp: Path) -> str:
    if path:
        return path
    from circuitcat.ingest.demo import run_demo

    log("building the toy catalog (circuitcat demo)")
    uri = str(tmp / "toy")
    with open_store(uri) as store:
        run_demo(store)
    return uri


@contextmanager
def neo4j(tmp: Path) -> Iterator[dict[str, Any]]:
    """A Neo4j server (NEO4J_URI, else the local launcher), emptied; yields uri and login."""
    from tests.neo4j_server import empty_neo4j, find_neo4j

    server, cleanup, reason = find_neo4j(tmp / "neo4j")
    if server is None:
        raise RuntimeError(f"no Neo4j: {reason}")
    try:
        empty_neo4j(server, drop_schema=False)
        os.environ["CIRCUITCAT_NEO4J_USER"] = server.user or ""
        os.environ["CIRCUITCAT_NEO4J_PASSWORD"] = server.password or ""
        yield {"uri": server.uri, "user": server.user, "password": server.password}
    finally:
        cleanup()


def run(args: argparse.Namespace) -> dict[str, dict[str, tuple[float, float]]]:
    results: dict[str, dict[str, tuple[float, float]]] = {}
    none: dict[str, str | None] = {}
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp_name:
        tmp = Path(tmp_name)
        toy = _toy(args.toy, tmp)
        synth = str(tmp / "synthetic")
        if "ladybug" in args.backends:
            log("toy catalog, embedded store")
            results["toy, Ladybug"] = measure(toy, args.repeats, none)
        if "ladybug" in args.synthetic_backends:
            start = time.perf_counter()
            with open_store(synth) as store:
                synthetic(store, args.features, args.edges)
            log(f"synthetic catalog written in {time.perf_counter() - start:.0f} s")
            results[f"{args.edges:,} edges, Ladybug"] = measure(synth, args.repeats, none)
        if "neo4j" in args.backends or "neo4j" in args.synthetic_backends:
            with neo4j(tmp) as server:
                login = {"user": server["user"], "password": server["password"]}
                _neo4j_runs(args, toy, server["uri"], login, results)
    return results


def _neo4j_runs(
    args: argparse.Namespace,
    toy: str,
    uri: str,
    login: dict[str, Any],
    results: dict[str, dict[str, tuple[float, float]]],
) -> None:
    if "neo4j" in args.backends:
        start = time.perf_counter()
        with open_store(toy, read_only=True) as src, open_store(uri, **login) as dst:
            copy_catalog(src, dst)
        log(f"toy catalog copied to Neo4j in {time.perf_counter() - start:.0f} s")
        results["toy, Neo4j"] = measure(uri, args.repeats, login)
    if "neo4j" in args.synthetic_backends:
        from tests.neo4j_server import Neo4jServer, empty_neo4j

        empty_neo4j(Neo4jServer(uri, login["user"], login["password"], "env"), drop_schema=False)
        with open_store(uri, **login) as store:
            synthetic(store, args.features, args.edges)
        results[f"{args.edges:,} edges, Neo4j"] = measure(uri, args.repeats, login)


NOTES = """\
What the endpoints do: the feature page is 11 named queries that start from one feature's
adjacency, so it costs the same on a large catalog; the feature list and label search scan the
set's features (sorting or matching text), so they grow with the number of features, not edges;
search also asks the token's de-embedding and logit edges. The circuit graph runs the CLI's
circuit queries (`circuit_edges`, `circuit_activations`, ... over every prompt graph of the task)
and the prompt graph JSON is `circuitcat prompt export`'s exporter; both exist only on the toy.
Neo4j answers over Bolt on the same machine, after the toy catalog was copied into it."""


def markdown(results: dict[str, dict[str, tuple[float, float]]], args: argparse.Namespace) -> str:
    columns = list(results)
    lines = [
        SECTION,
        "",
        f"`python -m bench.api` on {dt.date.today()}, {platform.machine()}, {os.cpu_count()} "
        f"cores (shared), Python {platform.python_version()}. Milliseconds per request through "
        "the real server (uvicorn, HTTP on 127.0.0.1, keep-alive), median / p95 of "
        f"{args.repeats} after 3 warm-ups; feature pages and pairs draw a new feature each "
        f"time. Synthetic catalog: {args.features:,} features over {N_LAYERS} layers, "
        f"{args.edges:,} VIRTUAL_WEIGHT edges, {PER_FEATURE} DEEMBEDS and {PER_FEATURE} PROMOTES "
        f"per feature, {N_PROMPTS} prompts x {PER_PROMPT:,} ATTRIBUTES, {N_LABELS:,} labels. "
        "Goal: feature page and search under 100 ms median on the embedded store.",
        "",
        "| endpoint | " + " | ".join(columns) + " |",
        "| --- | " + " | ".join("---:" for _ in columns) + " |",
    ]
    for name, _ in ENDPOINTS:
        cells = [
            f"{results[c][name][0]:.1f} / {results[c][name][1]:.1f}" if name in results[c] else "-"
            for c in columns
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", NOTES]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--toy", help="an existing toy catalog (default: build one)")
    parser.add_argument("--features", type=int, default=50_000)
    parser.add_argument("--edges", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--backends", default="ladybug,neo4j", help="for the toy catalog")
    parser.add_argument("--synthetic-backends", default="ladybug")
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    args.backends = args.backends.split(",")
    args.synthetic_backends = [b for b in args.synthetic_backends.split(",") if b]
    results = run(args)
    text = markdown(results, args)
    print(text)
    for name, goal in GOALS.items():
        for column, row in results.items():
            if "Ladybug" in column and name in row and row[name][0] > goal:
                log(f"over the goal: {name} on {column}: {row[name][0]:.1f} ms > {goal:.0f} ms")
    if args.write_docs:
        replace_section(SECTION, text)


if __name__ == "__main__":
    main()
