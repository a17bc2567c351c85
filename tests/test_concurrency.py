"""Two identical jobs started together on one Neo4j catalog leave exactly what one job leaves
(docs/neo4j.md, "Concurrent jobs"). Each job has its own store connection, as two processes
would; a barrier starts their writes together."""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from circuitcat.catalog import CatalogStore, EdgeBatch, NodeBatch, NodeKind, RelKind, open_store
from circuitcat.catalog.base import BATCH_ROWS
from circuitcat.ingest.models import LoadedModel
from circuitcat.ingest.prompts import run_prompts
from circuitcat.ingest.register import register
from circuitcat.ingest.tasks import Task, TaskPrompt
from circuitcat.ingest.weights_job import WeightsParams, run_weights

from .content import content
from .neo4j_server import Neo4jServer, empty_neo4j
from .tiny import D_VOCAB, make_set

pytestmark = pytest.mark.neo4j

PARAMS = WeightsParams(top_k=4, heads_per_feature=2, top_k_tokens=3, top_k_logits=3)
EDGE_KINDS = ("VIRTUAL_WEIGHT", "DEEMBEDS", "PROMOTES", "ATTRIBUTES", "OF_TASK")


def tiny_task(n: int = 3) -> Task:
    gen = torch.Generator().manual_seed(11)
    prompts = []
    for i in range(n):
        toks = tuple(torch.randint(0, D_VOCAB, (6,), generator=gen).tolist())
        prompts.append(TaskPrompt(" ".join(map(str, toks)), toks, str(i), (i + 1,), (i + 20,)))
    return Task("together", "logit_diff", "concurrency test task", tuple(prompts))


def _open(server: Neo4jServer) -> CatalogStore:
    return open_store(server.uri, user=server.user, password=server.password)


def _edges(store: CatalogStore) -> dict[str, list[str]]:
    """Every edge with its properties except `run` (which of the two jobs wrote it)."""
    got = content(store)
    return {
        k: sorted(
            json.dumps({p: v for p, v in json.loads(row).items() if p != "run"}, sort_keys=True)
            for row in got[k]
        )
        for k in EDGE_KINDS
    }


Job = Callable[[CatalogStore, LoadedModel], Any]


def _together(server: Neo4jServer, loaded: LoadedModel, job: Job) -> None:
    """Run `job` twice at once, each on its own connection; re-raise what either raised."""
    barrier, errors = threading.Barrier(2), []

    def one(model: LoadedModel) -> None:
        try:
            with _open(server) as store:
                barrier.wait(timeout=60)
                job(store, model)
        except BaseException as e:  # handed to the test thread
            errors.append(e)

    threads = [threading.Thread(target=one, args=(copy.deepcopy(loaded),)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    if errors:
        raise errors[0]


def _single_then_together(server: Neo4jServer, loaded: LoadedModel, job: Job) -> tuple[dict, dict]:
    empty_neo4j(server, drop_schema=False)
    with _open(server) as store:
        register(store, loaded, make_set())
        job(store, loaded)
        single = _edges(store)
    empty_neo4j(server, drop_schema=False)
    with _open(server) as store:
        register(store, loaded, make_set())
    _together(server, loaded, job)
    with _open(server) as store:
        return single, _edges(store)


def test_two_weights_jobs_at_once(neo4j_server: Neo4jServer, loaded: LoadedModel) -> None:
    single, both = _single_then_together(
        neo4j_server, loaded, lambda s, m: run_weights(s, m, make_set(), PARAMS, force=True)
    )
    assert {k: len(v) for k, v in both.items()} == {k: len(v) for k, v in single.items()}
    assert both == single and len(single["VIRTUAL_WEIGHT"]) > 0


def test_two_prompts_jobs_at_once(neo4j_server: Neo4jServer, loaded: LoadedModel) -> None:
    single, both = _single_then_together(
        neo4j_server, loaded, lambda s, m: run_prompts(s, m, make_set(), tiny_task())
    )
    assert {k: len(v) for k, v in both.items()} == {k: len(v) for k, v in single.items()}
    assert both == single and len(single["ATTRIBUTES"]) > 0


def _wide_batch(n_src: int, n_dst: int, per_target: int, scale: float) -> EdgeBatch:
    """Every target gets `per_target` sources out of a small shared pool: parallel chunks
    (disjoint targets) keep meeting on the same source nodes."""
    rng = np.random.default_rng(5)
    src = [f"s{int(i)}" for i in rng.integers(0, n_src, n_dst * per_target)]
    dst = [f"t{i // per_target}" for i in range(n_dst * per_target)]
    pairs = dict.fromkeys(zip(src, dst, strict=True))  # one edge per pair
    w = (np.arange(len(pairs), dtype=np.float64) * scale).tolist()
    return EdgeBatch(
        RelKind.VIRTUAL_WEIGHT, NodeKind.FEATURE, NodeKind.FEATURE,
        [s for s, _ in pairs], [d for _, d in pairs],
        {"w": w, "via": ["resid"] * len(pairs), "run": ["r"] * len(pairs)},
    )  # fmt: skip


def test_parallel_writers_write_each_edge_once(neo4j_server: Neo4jServer) -> None:
    """A batch of several chunks, written by 4 parallel sessions, then re-written (MERGE) by 4:
    every edge once, with the new weights."""
    n_src, n_dst = 300, 2_500
    nodes = NodeBatch(NodeKind.FEATURE, {
        "uid": [f"s{i}" for i in range(n_src)] + [f"t{i}" for i in range(n_dst)],
        "layer": [0] * n_src + [1] * n_dst,
        "index": list(range(n_src)) + list(range(n_dst)),
    })  # fmt: skip
    first, again = _wide_batch(n_src, n_dst, 12, 1.0), _wide_batch(n_src, n_dst, 12, 2.0)
    assert len(first) > 2 * BATCH_ROWS  # several chunks in flight at once
    empty_neo4j(neo4j_server, drop_schema=False)
    env = {"CIRCUITCAT_NEO4J_WRITERS": "4"}
    with open_store(
        neo4j_server.uri, user=neo4j_server.user, password=neo4j_server.password, env=env
    ) as store:
        assert store.settings.neo4j_writers == 4  # type: ignore[attr-defined]
        store.write_nodes(nodes)
        store.write_edges(first)
        store.write_edges(again)  # every edge exists: the MERGE path
        rows = store.run_cypher(
            "MATCH (a:Feature)-[e:VIRTUAL_WEIGHT]->(b:Feature) RETURN a.uid, b.uid, e.w"
        ).rows
    want = zip(again.src, again.dst, again.columns["w"], strict=True)
    assert sorted(map(tuple, rows)) == sorted(want)
