"""`ingest weights` end to end on a tiny model: stored edges match a dense computation, re-runs
add nothing, a killed job resumes to the same edges, and both stores hold the same graph."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from circuitcat.catalog import CatalogStore, open_store
from circuitcat.ingest.register import register
from circuitcat.ingest.weights_job import WeightsParams, count_units, run_weights

from .neo4j_server import Neo4jServer
from .tiny import make_set

PARAMS = WeightsParams(top_k=4, heads_per_feature=2, top_k_tokens=3, top_k_logits=3)


def edge_set(store: CatalogStore) -> set[tuple]:
    rows = store.run_cypher(
        "MATCH (a)-[r:VIRTUAL_WEIGHT]->(b) RETURN a.uid, b.uid, r.via, r.w, r.`rank`"
    ).rows
    return {(a, b, via, round(w, 5), rank) for a, b, via, w, rank in rows}


def filled(
    uri: str, loaded, user=None, password=None, params: WeightsParams = PARAMS, **kw
) -> CatalogStore:
    store = open_store(uri, user=user, password=password)
    register(store, loaded, make_set())
    run_weights(store, loaded, make_set(), params, **kw)
    return store


def resid_dense() -> torch.Tensor:
    tset = make_set()
    d = tset[0].W_dec.detach()
    d = d - d.mean(dim=-1, keepdim=True)  # the model's LayerNorm centres what it reads
    return d @ tset[1].W_enc.detach()  # [F0, F1]


@pytest.mark.parametrize("budget", ["per-target", "per-pair"])
def test_stored_weights_match_a_dense_computation(tmp_path: Path, loaded, budget: str) -> None:
    """per-target (default): each target keeps top_k sources over every route, ranked by |w|,
    its resid sources a prefix of the dense resid order; per-pair: top_k resid sources of the
    layer pair, as before, plus top_k per kept head."""
    params = replace(PARAMS, budget=budget)
    with filled(str(tmp_path / "c"), loaded, params=params) as store:
        dense, j = resid_dense(), 5
        order = torch.argsort(dense[:, j].abs(), descending=True).tolist()
        rows = store.query("feature_sources", uid=f"tiny/tc/L1/{j}", limit=100)
        resid = [r for r in rows if r["via"] == "resid"]
        want = order[: PARAMS.top_k if budget == "per-pair" else len(resid)]
        assert [r["source"] for r in resid] == [f"tiny/tc/L0/{i}" for i in want]
        for r, i in zip(resid, want, strict=True):
            assert r["w"] == pytest.approx(float(dense[i, j]), rel=1e-5, abs=1e-6)
        info = store.info().relationships
        assert info["DEEMBEDS"] > 0 and info["PROMOTES"] > 0
        if budget == "per-pair":
            assert any(r["via"].startswith("attn:1.") for r in rows)
        else:
            assert len(rows) == PARAMS.top_k
            ws = [abs(r["w"]) for r in rows]
            assert ws == sorted(ws, reverse=True)
            assert info["VIRTUAL_WEIGHT"] == PARAMS.top_k * 24  # one layer of 24 targets
            assert info["DEEMBEDS"] == PARAMS.top_k_tokens * 24 * 2


def test_rerun_adds_nothing_and_resume_equals_a_clean_run(tmp_path: Path, loaded) -> None:
    with filled(str(tmp_path / "clean"), loaded) as clean:
        expected, counts = edge_set(clean), clean.info().relationships
        again = run_weights(clean, loaded, make_set(), PARAMS)
        assert again.units_done == 0 and clean.info().relationships == counts
        forced = run_weights(clean, loaded, make_set(), PARAMS, force=True)
        assert forced.units_done == count_units(make_set())
        assert clean.info().relationships == counts and edge_set(clean) == expected

    class Killed(Exception):
        pass

    def die_after_two(unit: str, done: int) -> None:
        if done == 2:
            raise Killed(unit)

    store = open_store(str(tmp_path / "resumed"))
    register(store, loaded, make_set())
    with pytest.raises(Killed):
        run_weights(store, loaded, make_set(), PARAMS, progress=die_after_two)
    report = run_weights(store, loaded, make_set(), PARAMS)
    assert report.units_skipped == 2
    assert report.units_done == count_units(make_set()) - 2
    assert edge_set(store) == expected and store.info().relationships == counts
    store.close()


@pytest.mark.neo4j
def test_both_stores_hold_the_same_weights(
    tmp_path: Path,
    loaded,
    clean_neo4j: Neo4jServer,
) -> None:
    with (
        filled(str(tmp_path / "lb"), loaded) as lb,
        filled(clean_neo4j.uri, loaded, clean_neo4j.user, clean_neo4j.password) as neo,
    ):
        assert lb.info().relationships == neo.info().relationships
        assert edge_set(lb) == edge_set(neo)
