"""Sharded jobs: N shards writing parts, then `store load`, give exactly the catalog of the
unsharded job (the embedded store; both stores share the writer)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from circuitcat.catalog import RelKind, open_store
from circuitcat.catalog.schema import NODE_PROPS, REL_SPECS, NodeKind

from .helpers import invoke

N_SHARDS = 3


def content(store: str, rels: list[RelKind], nodes: list[NodeKind]) -> dict[str, Any]:
    """Every edge of `rels` and node of `nodes` with its properties, `run` left out (run uids
    differ between runs by design)."""
    out: dict[str, Any] = {}
    with open_store(store) as catalog:
        for rel in rels:
            props = [p for p in REL_SPECS[rel].props if p != "run"]
            cols = "".join(f", r.{p}" for p in props)
            rows = catalog.run_cypher(f"MATCH (a)-[r:{rel}]->(b) RETURN a.uid, b.uid{cols}").rows
            out[rel] = sorted(rows, key=repr)
        for kind in nodes:
            props = [p for p in NODE_PROPS[kind] if p != "run"]
            cols = "".join(f", n.`{p}`" for p in props)
            out[kind] = sorted(catalog.run_cypher(f"MATCH (n:{kind}) RETURN n.uid{cols}").rows)
    return out


def registered(tmp_path: Path, name: str) -> str:
    store = str(tmp_path / name)
    invoke("ingest", "register", "toy-years", "--transcoders", "toy-years", "--store", store)
    return store


def whole_and_sharded(tmp_path: Path, job: list[str]) -> tuple[str, str, Path, list[str]]:
    """`job` run whole on one registered catalog, and as N_SHARDS shards writing parts for
    another: (whole, sharded, parts, each shard's output)."""
    whole = registered(tmp_path, "whole")
    invoke(*job, "--store", whole)
    sharded, parts = registered(tmp_path, "sharded"), tmp_path / "parts"
    outputs = [
        invoke(*job, "--store", sharded, "--shard", f"{i}/{N_SHARDS}", "--parts", str(parts))
        for i in range(N_SHARDS)
    ]
    return whole, sharded, parts, outputs


def test_sharded_prompts_equal_the_unsharded_job(tmp_path: Path) -> None:
    job = ["ingest", "prompts", "--task", "greater-than", "--n", "6", "--device", "cpu"]
    whole, sharded, parts, outputs = whole_and_sharded(tmp_path, job)
    assert all("2 written" in out for out in outputs)
    with open_store(sharded) as catalog:  # nothing reached the catalog yet
        assert catalog.run_cypher("MATCH ()-[r:ATTRIBUTES]->() RETURN count(r)").rows == [[0]]
    assert "loaded" in invoke("store", "load", str(parts), "--store", sharded)
    what = ([RelKind.ATTRIBUTES, RelKind.OF_TASK], [NodeKind.PROMPT, NodeKind.ERROR])
    expected = content(whole, *what)
    assert expected[RelKind.ATTRIBUTES]
    assert content(sharded, *what) == expected
    invoke("store", "load", str(parts), "--store", sharded)  # again: nothing doubles
    assert content(sharded, *what) == expected


def test_sharded_weights_equal_the_unsharded_job(tmp_path: Path) -> None:
    """Shard i of 3 runs units u % 3 == i (a unit is a target layer, or one layer's logits)."""
    job = ["ingest", "weights", "--device", "cpu", "--top-k", "8", "--top-k-tokens", "4"]
    whole, sharded, parts, _ = whole_and_sharded(tmp_path, job)
    with open_store(sharded) as catalog:  # nothing reached the catalog yet
        assert catalog.run_cypher("MATCH ()-[r:VIRTUAL_WEIGHT]->() RETURN count(r)").rows == [[0]]
    invoke("store", "load", str(parts), "--store", sharded)
    what = ([RelKind.VIRTUAL_WEIGHT, RelKind.DEEMBEDS, RelKind.PROMOTES], [NodeKind.FEATURE])
    expected = content(whole, *what)
    assert expected[RelKind.VIRTUAL_WEIGHT] and expected[RelKind.DEEMBEDS]
    assert content(sharded, *what) == expected


def feature_stats(store: str) -> tuple[list, list]:
    with open_store(store) as catalog:
        rows = catalog.run_cypher(
            "MATCH (n:Feature) RETURN n.uid, n.density, n.act_max, n.act_hist, n.top_contexts, "
            "n.act_mean ORDER BY n.uid"
        ).rows
        scales = catalog.run_cypher("MATCH (t:TranscoderSet) RETURN t.ln2_scale_mean").rows
    return rows, scales


def test_sharded_features_equal_the_unsharded_job(tmp_path: Path) -> None:
    """Shard i of 3 runs corpus batches b % 3 == i; `--merge` sums the accumulators: counts,
    maxima, histograms and top contexts are equal, act_mean and ln2_scale_mean (fp64 sums
    in another order) equal up to float rounding."""
    job = ["ingest", "features", "--corpus", "toy", "--n-docs", "60", "--batch-size", "4"]
    job += ["--device", "cpu", "--checkpoint-dir", str(tmp_path / "ckpt")]
    whole, sharded, parts, _ = whole_and_sharded(tmp_path, job)
    assert feature_stats(sharded)[0][0][1] is None  # nothing reached the catalog yet
    invoke("ingest", "features", "--merge", str(parts), "--store", sharded, "--device", "cpu")
    (want, want_scales), (got, got_scales) = feature_stats(whole), feature_stats(sharded)
    assert [r[:5] for r in got] == [r[:5] for r in want] and want[0][1] is not None
    assert [r[5] for r in got] == pytest.approx([r[5] for r in want], rel=1e-12)
    assert got_scales[0][0] == pytest.approx(want_scales[0][0], rel=1e-12)
