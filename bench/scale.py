"""Scale curves: a catalog grown to ~1M, ~4M and ~10M edges with the weights job's write pattern,
on both stores, against each engine's own bulk load, with query latency at each size.

The write pattern is the weights job's: every feature node first (registration writes them),
then one VIRTUAL_WEIGHT batch per target layer, each a fresh unit (its targets have no stored
edges), 32 sources per target, drawn from the two layers before it. The two-layer window keeps
every feature's fan-out the same at every size, so a query that costs what it returns takes the
same time at 1M and at 10M edges.

- Ladybug: the project's writer (`store.write_edges`, batch validation included) on one store;
  on a second store, per layer, the plainest `COPY VIRTUAL_WEIGHT FROM <arrow table>` of the same
  columns (the baseline). Layers alternate between the two, so both see the same machine load.
- Neo4j: the project's online writer (parallel sessions, CIRCUITCAT_NEO4J_WRITERS, default 4)
  into a running server; the baseline is `neo4j-admin database import full` of the same catalog
  (nodes and edges) at each size, offline into an empty home (JVM start included), from CSV
  files written beforehand (not timed).
- Queries at each size, after one warm-up each: `two_hop_targets` and `feature_sources`
  (limit 20) from random features, and `circuit_features`, `circuit_edges`,
  `circuit_activations` on a small circuit (40 members, 10 prompts of ATTRIBUTES edges) written
  before the growth starts. Median and p95 of `--repeats` calls through `store.query`.

`python -m bench.scale --write-docs` (part of `make bench`) replaces the "Scale curves" section of
docs/benchmarks.md; the GPT-2-small and Gemma-2-2B load times there are estimates from the rates
measured here and the edge counts of the default budget.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from pyarrow import csv as pa_csv

from bench.docs import replace_section
from bench.store_load import NEO4J_LIB, SET_UID, arrow_table, machine, versions
from circuitcat.catalog import CatalogStore, EdgeBatch, NodeBatch, NodeKind, RelKind, open_store
from circuitcat.catalog.schema import NODE_PROPS, REL_SPECS, feature_uid, run_uid

SECTION = "## Scale curves"
FEATURE, VW = NodeKind.FEATURE, RelKind.VIRTUAL_WEIGHT
RUN = run_uid("bench-scale", "2000-01-01T00:00:00")
K, WINDOW, TOP = 32, 2, 20
PAGECACHE_MB = 6144  # the local Neo4j's page cache in this benchmark
QUERIES = (
    "two_hop_targets",
    "feature_sources",
    "circuit_features",
    "circuit_edges",
    "circuit_activations",
)
# Edge counts of the default per-target budget (bench/budget.py: k 32 / 16 tokens / 16 logits a
# sign): VIRTUAL_WEIGHT (L-1) F k, DEEMBEDS L F 16, PROMOTES L F 32.
MODELS = {"GPT-2 small (12 x 24,576)": (12, 24_576), "Gemma-2-2B (26 x 16,384)": (26, 16_384)}


def log(msg: str) -> None:
    print(f"[scale {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def budget_edges(layers: int, features: int) -> int:
    return (layers - 1) * features * K + layers * features * 16 + layers * features * 32


# ---------------------------------------------------------------------------------------------
# the synthetic catalog


@dataclass
class Shape:
    features: int  # per layer
    checkpoints: list[int]  # target layers written when the curve is read

    @property
    def layers(self) -> int:
        return self.checkpoints[-1] + 1

    def edges_after(self, target_layers: int) -> int:
        return target_layers * self.features * K


def feature_uids(shape: Shape) -> np.ndarray:
    return np.array(
        [feature_uid(SET_UID, la, i) for la in range(shape.layers) for i in range(shape.features)],
        dtype=object,
    )


def node_columns(shape: Shape, uids: np.ndarray) -> dict[str, Any]:
    n = len(uids)
    rng = np.random.default_rng(0)
    return {
        "uid": uids,
        "set": np.full(n, SET_UID, dtype=object),
        "layer": np.repeat(np.arange(shape.layers), shape.features),
        "index": np.tile(np.arange(shape.features), shape.layers),
        "density": rng.random(n) * 1e-2,
        "run": np.full(n, RUN, dtype=object),
    }


def layer_edges(shape: Shape, uids: np.ndarray, layer: int) -> tuple[np.ndarray, ...]:
    """Target layer `layer`'s edges: K distinct sources per target from the WINDOW layers
    before it, strongest first. Returns (src uids, dst uids, w, rank)."""
    rng = np.random.default_rng(layer)
    f = shape.features
    lo = max(0, layer - WINDOW) * f
    span = layer * f - lo
    start = rng.integers(0, span, f)
    local = (start[:, None] + np.arange(K)[None, :] * (span // K)) % span  # distinct per target
    src = (lo + local).reshape(-1)
    dst = np.repeat(layer * f + np.arange(f), K)
    w = -np.sort(-np.abs(rng.standard_normal((f, K)) * 0.05), axis=1).reshape(-1)
    rank = np.tile(np.arange(K), f)
    return uids[src], uids[dst], w, rank


def edge_columns(w: np.ndarray, rank: np.ndarray) -> dict[str, Any]:
    n = len(w)
    return {
        "w": w,
        "w_raw": w / 0.7,
        "rank": rank,
        "via": np.full(n, "resid", dtype=object),
        "run": np.full(n, RUN, dtype=object),
    }


def circuit_batches(shape: Shape, uids: np.ndarray) -> list[NodeBatch | EdgeBatch]:
    """A 40-feature circuit over layers 0-2 with 10 prompts of ATTRIBUTES edges among its
    members (every earlier-layer member into every later-layer one)."""
    rng = np.random.default_rng(7)
    members = [int(la * shape.features + i) for la in range(3) for i in rng.choice(
        shape.features, 40 // 3 + (la == 0), replace=False)]  # fmt: skip
    layer_of = {m: m // shape.features for m in members}
    circuit = "bench-circuit"
    prompts = [f"bench/{p}" for p in range(10)]
    out: list[NodeBatch | EdgeBatch] = [
        NodeBatch(NodeKind.CIRCUIT, {
            "uid": [circuit], "name": ["bench"], "task": ["bench"], "set": [SET_UID],
            "method": ["bench"], "n_features": [len(members)], "run": [RUN],
        }),
        EdgeBatch(RelKind.CONTAINS, NodeKind.CIRCUIT, FEATURE, [circuit] * len(members),
                  uids[members].tolist(), {"score": rng.random(len(members)).tolist()}),
    ]  # fmt: skip
    pairs = [(a, b) for a in members for b in members if layer_of[a] < layer_of[b]]
    src = [uids[a] for _ in prompts for a, _ in pairs]
    dst = [uids[b] for _ in prompts for _, b in pairs]
    n = len(src)
    out.append(EdgeBatch(RelKind.ATTRIBUTES, FEATURE, FEATURE, src, dst, {
        "prompt": [p for p in prompts for _ in pairs], "w": rng.standard_normal(n).tolist(),
        "src_pos": [1] * n, "dst_pos": [2] * n, "via": ["resid"] * n, "run": [RUN] * n,
    }))  # fmt: skip
    return out


# ---------------------------------------------------------------------------------------------
# measuring


@dataclass
class Point:
    """The curve at one size."""

    edges: int
    project_s: float  # cumulative: nodes + every edge batch so far
    base_s: float | None  # Ladybug: cumulative COPY; Neo4j: the importer for this size
    step_edges: int
    step_project_s: float
    step_base_s: float | None
    queries: dict[str, tuple[float, float]] = field(default_factory=dict)  # median, p95 ms
    note: str = ""
    disk_mib: float | None = None  # the project's store on disk


@dataclass
class Curve:
    backend: str
    version: str = ""
    writers: int | None = None
    nodes: int = 0
    node_s: float = 0.0
    points: list[Point] = field(default_factory=list)
    peak_rss_mib: float = 0.0
    notes: list[str] = field(default_factory=list)


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def time_queries(
    store: CatalogStore, shape: Shape, uids: np.ndarray, done_layers: int, repeats: int
) -> dict[str, tuple[float, float]]:
    rng = np.random.default_rng(done_layers)
    f = shape.features
    # two_hop from layers whose two hops are both written; sources of written targets.
    starts = uids[rng.integers(0, (done_layers - 1) * f, repeats + 1)]
    targets = uids[f + rng.integers(0, done_layers * f, repeats + 1)]
    calls: dict[str, Callable[[int], Any]] = {
        "two_hop_targets": lambda i: store.query("two_hop_targets", uid=starts[i], limit=TOP),
        "feature_sources": lambda i: store.query("feature_sources", uid=targets[i], limit=TOP),
        "circuit_features": lambda i: store.query("circuit_features", uid="bench-circuit"),
        "circuit_edges": lambda i: store.query("circuit_edges", uid="bench-circuit"),
        "circuit_activations": lambda i: store.query("circuit_activations", uid="bench-circuit"),
    }
    out = {}
    for name, call in calls.items():
        if not call(0):
            raise SystemExit(f"{store.backend}: {name} returned nothing: the bench data is wrong")
        ms = [timed(partial(call, i)) * 1e3 for i in range(1, repeats + 1)]
        out[name] = (float(np.median(ms)), float(np.percentile(ms, 95)))
    log(f"{store.backend}: queries " + ", ".join(f"{n} {m:.1f}" for n, (m, _) in out.items()))
    return out


def folder_mib(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---- both stores


def write_edges(store: CatalogStore, src: np.ndarray, dst: np.ndarray, cols: dict) -> None:
    store.write_edges(EdgeBatch(VW, FEATURE, FEATURE, src, dst, cols))


def write_any(store: CatalogStore, batch: NodeBatch | EdgeBatch) -> None:
    if isinstance(batch, NodeBatch):
        store.write_nodes(batch)
    else:
        store.write_edges(batch)


Baseline = Callable[[np.ndarray, np.ndarray, dict], float]


def grow(
    store: CatalogStore,
    shape: Shape,
    uids: np.ndarray,
    repeats: int,
    curve: Curve,
    baseline: Baseline | None = None,
    base_s: float = 0.0,
    folder: Path | None = None,
) -> None:
    """Nodes, the circuit (not timed), then one edge batch per target layer through the
    project's writer, each followed by the baseline's load of the same columns (if any); the
    curve is read (times, queries) at the checkpoints."""
    nodes = node_columns(shape, uids)
    curve.nodes = len(uids)
    curve.node_s = timed(partial(store.write_nodes, NodeBatch(FEATURE, nodes)))
    for batch in circuit_batches(shape, uids):
        write_any(store, batch)
    project_s, step = curve.node_s, [0.0, 0.0, 0.0]
    for layer in range(1, shape.layers):
        src, dst, w, rank = layer_edges(shape, uids, layer)
        cols = edge_columns(w, rank)
        # the two alternate which goes first, so neither always meets the other's leftovers
        b = baseline(src, dst, cols) if baseline and layer % 2 == 0 else 0.0
        p = timed(partial(write_edges, store, src, dst, cols))
        b = baseline(src, dst, cols) if baseline and layer % 2 == 1 else b
        project_s, base_s = project_s + p, base_s + b
        step = [step[0] + len(src), step[1] + p, step[2] + b]
        log(f"{store.backend}: layer {layer}: project {len(src) / p:,.0f}/s"
            + (f", baseline {len(src) / b:,.0f}/s" if b else ""))  # fmt: skip
        if layer in shape.checkpoints:
            point = Point(shape.edges_after(layer), project_s, base_s if baseline else None,
                          int(step[0]), step[1], step[2] if baseline else None)  # fmt: skip
            point.queries = time_queries(store, shape, uids, layer, repeats)
            point.disk_mib = folder_mib(folder) if folder else None
            curve.points.append(point)
            step = [0.0, 0.0, 0.0]
    stored = store.info().relationships.get(VW, 0)
    if stored != shape.edges_after(shape.layers - 1):
        curve.notes.append(f"stored {stored:,} VIRTUAL_WEIGHT edges, expected more")


# ---- Ladybug


def run_ladybug(shape: Shape, uids: np.ndarray, tmp: Path, repeats: int) -> Curve:
    import ladybug

    curve = Curve("ladybug", f"Ladybug {ladybug.__version__}")
    with open_store(str(tmp / "project")) as store, open_store(str(tmp / "baseline")) as base:
        conn = base.conn  # type: ignore[attr-defined]

        def copy(kind: str, cols: dict[str, Any], names: list[str], n: int) -> None:
            conn.execute(f"COPY {kind} FROM $t", {"t": arrow_table(cols, names, n)})

        nodes = node_columns(shape, uids)
        node_names = ["uid", *NODE_PROPS[FEATURE]]
        node_s = timed(partial(copy, FEATURE, nodes, node_names, len(uids)))
        edge_names = ["from", "to", *REL_SPECS[VW].props]

        def baseline(src: np.ndarray, dst: np.ndarray, cols: dict) -> float:
            table = {"from": src, "to": dst, **cols}
            return timed(partial(copy, VW, table, edge_names, len(src)))

        grow(store, shape, uids, repeats, curve, baseline, node_s, tmp / "project")
    curve.peak_rss_mib = peak_rss_mib()
    return curve


# ---- Neo4j


def write_import_csvs(shape: Shape, uids: np.ndarray, folder: Path) -> dict[str, Any]:
    """Headers and one data file per node set / target layer, for the importer (not timed)."""
    folder.mkdir(parents=True)
    nodes = node_columns(shape, uids)
    typed = {"layer": "long", "index": "long", "rank": "long", "density": "double"}
    typed |= {"w": "double", "w_raw": "double"}
    no_header = pa_csv.WriteOptions(include_header=False)

    def header(path: Path, names: list[str]) -> Path:
        path.write_text(",".join(names) + "\n")
        return path

    node_names = ["uid:ID"] + [f"{k}:{typed[k]}" if k in typed else k for k in nodes if k != "uid"]
    pa_csv.write_csv(pa.table({k: pa.array(v) for k, v in nodes.items()}),
                     folder / "nodes.csv", no_header)  # fmt: skip
    files: dict[str, Any] = {
        "nodes": [header(folder / "nodes-h.csv", node_names), folder / "nodes.csv"]
    }
    props = list(edge_columns(np.zeros(1), np.zeros(1, int)))
    edge_names = [":START_ID", ":END_ID"] + [f"{k}:{typed[k]}" if k in typed else k for k in props]
    files["edge_header"] = header(folder / "edges-h.csv", edge_names)
    files["layers"] = []
    for layer in range(1, shape.layers):
        src, dst, w, rank = layer_edges(shape, uids, layer)
        path = folder / f"edges-{layer:03d}.csv"
        cols = {"a": src, "b": dst, **edge_columns(w, rank)}
        table = pa.table({k: pa.array(v) for k, v in cols.items()})
        pa_csv.write_csv(table, path, no_header)
        files["layers"].append(path)
    return files


def neo4j_import_s(files: dict[str, Any], layers: int, home: Path) -> tuple[float | None, str]:
    """`neo4j-admin database import full` of the nodes and the first `layers` target layers
    into an empty, offline home: (seconds with JVM start, what the tool says it took)."""
    java = shutil.which("java")
    if java is None or not list(NEO4J_LIB.glob("neo4j-import-tool-*.jar")):
        return (
            None,
            "not run: no java, or no neo4j-import-tool jar in docker/neo4j-local/target/lib",
        )
    shutil.rmtree(home, ignore_errors=True)
    (home / "conf").mkdir(parents=True)
    (home / "conf" / "neo4j.conf").write_text("server.memory.pagecache.size=512m\n")
    edges = ",".join(str(p) for p in [files["edge_header"], *files["layers"][:layers]])
    cmd = [java, "-Xmx1g", "-cp", f"{NEO4J_LIB}/*", "org.neo4j.cli.AdminTool"]
    cmd += ["database", "import", "full", "neo4j", "--overwrite-destination"]
    cmd += [f"--report-file={home / 'import.report'}"]
    cmd += [f"--nodes={FEATURE}={files['nodes'][0]},{files['nodes'][1]}"]
    cmd += [f"--relationships={VW}={edges}"]
    env = {**os.environ, "NEO4J_HOME": str(home), "NEO4J_CONF": str(home / "conf")}
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    seconds = time.perf_counter() - start
    shutil.rmtree(home, ignore_errors=True)
    if done.returncode != 0:
        tail = " ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        return None, f"importer failed (exit {done.returncode}): {tail[:300]}"
    own = re.search(r"IMPORT DONE in ([^.]+)", done.stdout)
    return seconds, f"the tool reports {own.group(1)}" if own else ""


def run_neo4j(shape: Shape, uids: np.ndarray, tmp: Path, repeats: int) -> Curve:
    from tests.neo4j_server import empty_neo4j, find_neo4j

    curve = Curve("neo4j")
    log("neo4j: writing the importer's CSV files (not timed)")
    files = write_import_csvs(shape, uids, tmp / "import-csv")
    # A server whose page cache holds the store, as a team server's is sized: with the test
    # launcher's default 512 MiB, 10M edges (~2 GB on disk) would measure the disk instead.
    os.environ.setdefault("NEO4J_LOCAL_PAGECACHE_MB", str(PAGECACHE_MB))
    server, cleanup, reason = find_neo4j(tmp / "state")
    if server is None:
        curve.notes.append(f"not run: {reason}")
        return curve
    try:
        empty_neo4j(server, drop_schema=False)
        with open_store(server.uri, user=server.user, password=server.password) as store:
            curve.version = store.info().version
            if server.origin == "launcher":
                curve.version += f", page cache {os.environ['NEO4J_LOCAL_PAGECACHE_MB']} MiB"
            curve.writers = store.settings.neo4j_writers  # type: ignore[attr-defined]
            grow(store, shape, uids, repeats, curve, folder=tmp / "state" / "data")
    finally:
        cleanup()
    shutil.rmtree(tmp / "state", ignore_errors=True)  # frees the disk before the importer runs
    for point, layer in zip(curve.points, shape.checkpoints, strict=True):
        log(f"neo4j: importer, {point.edges:,} edges")
        point.base_s, point.note = neo4j_import_s(files, layer, tmp / "import-home")
        log(f"neo4j: importer {point.base_s} s ({point.note})")
    shutil.rmtree(tmp / "import-csv", ignore_errors=True)
    curve.peak_rss_mib = peak_rss_mib()
    return curve


# ---------------------------------------------------------------------------------------------
# reporting


def _r(n: int, s: float | None) -> str:
    return "–" if not s else f"{n / s:,.0f}/s"


def curve_table(curve: Curve) -> list[str]:
    name = {"ladybug": "Ladybug", "neo4j": "Neo4j"}[curve.backend]
    base = "plain COPY" if curve.backend == "ladybug" else "neo4j-admin import"
    goal = 0.8 if curve.backend == "ladybug" else 0.5
    lines = [
        f"**{name}** ({curve.version}"
        + (f", {curve.writers} parallel writers" if curve.writers else "")
        + f"): {curve.nodes:,} Feature nodes written first in {curve.node_s:.1f} s.",
        "",
        f"| edges stored | this step, project | this step, {base} | whole catalog, project | "
        f"whole catalog, {base} | project / {base} (goal >= {goal}) | "
        + " | ".join(f"{q} ms" for q in QUERIES)
        + " | store on disk |",
        "|---:|---:|---:|---:|---:|---:|" + "---:|" * (len(QUERIES) + 1),
    ]
    for p in curve.points:
        nodes_edges = p.edges  # the importer loads nodes too; the project's time includes them
        ratio = "–" if not p.base_s else f"{p.base_s / p.project_s:.2f}"
        if p.base_s:
            ratio += " **met**" if p.base_s / p.project_s >= goal else " missed"
        step_base = _r(p.step_edges, p.step_base_s) if p.step_base_s else "–"
        cells = [
            f"{p.edges:,}",
            _r(p.step_edges, p.step_project_s),
            step_base,
            f"{_r(nodes_edges, p.project_s)} ({p.project_s:.0f} s)",
            f"{_r(nodes_edges, p.base_s)} ({p.base_s:.0f} s)" if p.base_s else p.note or "–",
            ratio,
            *(f"{p.queries[q][0]:.1f} / {p.queries[q][1]:.1f}" for q in QUERIES),
            f"{p.disk_mib:,.0f} MiB" if p.disk_mib is not None else "–",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"Peak resident memory of the bench process: {curve.peak_rss_mib:,.0f} MiB.")
    lines += [f"Note: {n}" for n in curve.notes]
    return lines


def flatness(curve: Curve) -> str:
    if len(curve.points) < 2:
        return ""
    first, last = curve.points[0], curve.points[-1]
    growth = ", ".join(f"{q} x{last.queries[q][0] / first.queries[q][0]:.2f}" for q in QUERIES)
    slow = [q for q in QUERIES if last.queries[q][0] >= 20]
    verdict = "every median under 20 ms" if not slow else f"over 20 ms: {', '.join(slow)}"
    return (
        f"Query medians from {first.edges / 1e6:.1f}M to {last.edges / 1e6:.1f}M edges: "
        f"{growth}; at the largest size {verdict}."
    )


def estimates(curves: list[Curve]) -> list[str]:
    lines = [
        "**Estimates** (not measured: edge counts of the default budget divided by the whole-"
        "catalog rates measured at the largest size above; DEEMBEDS and PROMOTES assumed to "
        "load at the VIRTUAL_WEIGHT rate):",
        "",
        "| model | edges (default budget) | "
        + " | ".join(
            f"{'Ladybug' if c.backend == 'ladybug' else 'Neo4j'} project"
            + (" | Ladybug COPY" if c.backend == "ladybug" else " | Neo4j import")
            for c in curves
            if c.points
        )
        + " |",
        "|---|---:|" + "---:|---:|" * len([c for c in curves if c.points]),
    ]
    for model, (layers, features) in MODELS.items():
        n = budget_edges(layers, features)
        cells = [model, f"{n / 1e6:.1f}M"]
        for c in curves:
            if not c.points:
                continue
            last = c.points[-1]
            cells.append(f"{n / (last.edges / last.project_s) / 60:.0f} min")
            cells.append(f"{n / (last.edges / last.base_s) / 60:.0f} min" if last.base_s else "–")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def section(shape: Shape, curves: list[Curve], args: argparse.Namespace, took: float) -> str:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    lines = [
        SECTION,
        "",
        f"`python -m bench.scale --write-docs` ({' '.join(args.argv) or 'defaults'}), "
        f"{dt.date.today().isoformat()}. Machine: {machine()}; load average {args.load_before} "
        f"before, {load} after (shared cores). {versions([])}.",
        "",
        f"{shape.layers} layers x {shape.features:,} features; per target layer one batch of "
        f"{shape.features * K:,} VIRTUAL_WEIGHT edges ({K} sources a target from the "
        f"{WINDOW} layers before it), the weights job's pattern; read at "
        + ", ".join(f"{shape.edges_after(c):,}" for c in shape.checkpoints)
        + " edges. Rates count edges; the project's whole-catalog time includes writing the "
        "nodes, as the importer's does. Queries: median / p95 ms of "
        f"{args.repeats} calls (module doc of bench/scale.py).",
        "",
    ]
    for curve in curves:
        lines += curve_table(curve)
        flat = flatness(curve)
        lines += ["", flat, ""] if flat else [""]
    lines += estimates(curves)
    lines += ["", f"The whole run took {took / 60:.0f} min."]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.split("\n")[0])
    ap.add_argument("--features", type=int, default=16_384, help="features per layer")
    ap.add_argument(
        "--checkpoints",
        default="2,8,20",
        help="target layers written when the curve is read (x features x 32 edges each)",
    )
    ap.add_argument("--repeats", type=int, default=30, help="calls timed per query and size")
    ap.add_argument("--backends", default="ladybug,neo4j")
    ap.add_argument("--write-docs", action="store_true", help="replace the docs section")
    args = ap.parse_args(argv)
    args.argv = argv
    args.load_before = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    shape = Shape(args.features, sorted(int(c) for c in args.checkpoints.split(",")))
    if shape.checkpoints[0] < 2:
        raise SystemExit("--checkpoints: the first must be >= 2 (two-hop queries need 2 layers)")
    start = time.perf_counter()
    uids = feature_uids(shape)
    runners = {"ladybug": run_ladybug, "neo4j": run_neo4j}
    curves = []
    for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
        with tempfile.TemporaryDirectory(prefix=f"scale-{backend}-") as tmp:
            log(f"{backend}: growing to {shape.edges_after(shape.layers - 1):,} edges")
            curves.append(runners[backend](shape, uids, Path(tmp), args.repeats))
    text = section(shape, curves, args, time.perf_counter() - start)
    print(text)
    if args.write_docs:
        replace_section(SECTION, text)


if __name__ == "__main__":
    main()
