"""Helpers for the `circuitcat serve` tests (test_serve_api.py, test_web_browser.py): a
writable copy of the toy catalog, a slice of it small enough to write into Neo4j quickly, and
a real server on a free port. No tests here."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn

from circuitcat.catalog import CatalogStore, EdgeBatch, NodeBatch, NodeKind, RelKind, statements
from circuitcat.catalog.schema import REL_SPECS
from circuitcat.cli.web import ServeConfig, create_app

TOKEN = "alice-token-0123456789abcdef"
CIRCUIT = "toy-years/tc-v1/circuit/greater-than/greater-than"
FEATURE = "toy-years/tc-v1/L0/156"  # the toy circuit's strongest feature
N_SLICE_PROMPTS = 3


def copy_toy(toy_catalog: str, to: Path) -> str:
    """A copy of the toy catalog folder that a test may write to."""
    shutil.copytree(toy_catalog, to)
    return str(to)


def _columns(rows: list[list[Any]], names: list[str]) -> dict[str, list[Any]]:
    return {name: [row[i] for row in rows] for i, name in enumerate(names)}


# Which edges the slice keeps, as a condition on the read (a: source, b: target, r: edge).
SLICE_WHERE = {
    RelKind.ATTRIBUTES: "r.prompt IN $prompts",
    RelKind.VIRTUAL_WEIGHT: "a.uid IN $members AND b.uid IN $members",
    RelKind.DEEMBEDS: "b.uid IN $members AND r.`rank` < 4",
    RelKind.PROMOTES: "a.uid IN $members AND r.`rank` < 8",
}


def slice_batches(source: CatalogStore) -> list[NodeBatch | EdgeBatch]:
    """Every node of the toy catalog and the edges the serve tests read: the prompt graphs of
    a few prompts and the weights among the circuit's features (a few thousand edges of the
    330 thousand), nodes first."""
    members = [r["uid"] for r in source.query("circuit_features", uid=CIRCUIT)]
    prompts = [r["uid"] for r in source.query("prompts_of_task", task="greater-than", limit=1000)]
    params = {"members": members, "prompts": sorted(prompts)[:N_SLICE_PROMPTS]}
    batches: list[NodeBatch | EdgeBatch] = []
    for kind in NodeKind:
        result = source.run_cypher(statements.read_nodes(kind))
        if result.rows:
            cols = _columns(result.rows, result.columns)
            cols = {k: v for k, v in cols.items() if k == "uid" or any(x is not None for x in v)}
            batches.append(NodeBatch(kind, cols))
    for rel, spec in REL_SPECS.items():
        for src, dst in spec.pairs:
            text = statements.read_edges(rel, src, dst)
            if rel in SLICE_WHERE:
                text = text.replace(" RETURN ", f" WHERE {SLICE_WHERE[rel]} RETURN ", 1)
            used = {k: v for k, v in params.items() if f"${k}" in text}
            result = source.run_cypher(text, used)
            if not result.rows:
                continue
            cols = _columns(result.rows, result.columns)
            props = {
                k: v
                for k, v in cols.items()
                if k not in ("src", "dst") and (k in spec.key or any(x is not None for x in v))
            }
            batches.append(EdgeBatch(rel, src, dst, cols["src"], cols["dst"], props))
    return batches


def write_batches(target: CatalogStore, batches: list[NodeBatch | EdgeBatch]) -> None:
    for batch in batches:
        if isinstance(batch, NodeBatch):
            target.write_nodes(batch, provenance=False)  # type: ignore[call-arg]
        else:
            target.write_edges(batch)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def live_server(config: ServeConfig) -> Iterator[str]:
    """`circuitcat serve`'s app under uvicorn in a thread; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(config), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
