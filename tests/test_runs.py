"""Run provenance is honest: a job that fails is marked failed, one killed outright is found
stale by the next run of its kind, a live one is not, and `store info` counts runs by status."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from circuitcat.catalog import CatalogStore, open_store
from circuitcat.catalog import runs as run_status
from circuitcat.catalog.records import RunRecord, records_to_batch
from circuitcat.cli.main import app
from circuitcat.ingest.models import LoadedModel
from circuitcat.ingest.register import register
from circuitcat.ingest.weights_job import WeightsParams, run_weights

from .neo4j_server import Neo4jServer
from .tiny import make_set

PARAMS = WeightsParams(top_k=2, heads_per_feature=1, top_k_tokens=2, top_k_logits=2)
BACKENDS = ["ladybug", pytest.param("neo4j", marks=pytest.mark.neo4j)]


@pytest.fixture(params=BACKENDS)
def catalog(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, dict]:
    """(where, login) of an empty catalog on each store."""
    if request.param == "ladybug":
        return str(tmp_path / "catalog"), {}
    server: Neo4jServer = request.getfixturevalue("clean_neo4j")
    return server.uri, {"user": server.user, "password": server.password}


def _runs(store: CatalogStore, kind: str) -> list[dict]:
    return [r for r in store.query("runs", limit=100) if r["kind"] == kind]


def _error(store: CatalogStore, uid: str) -> str:
    rows = store.run_cypher("MATCH (r:Run {uid: $uid}) RETURN r.error", {"uid": uid}).rows
    return str(rows[0][0] or "")


class Killed(Exception):
    pass


def test_a_failed_job_is_marked_failed_and_resumed(
    catalog: tuple[str, dict], loaded: LoadedModel
) -> None:
    uri, login = catalog

    def die(unit: str, done: int) -> None:
        raise Killed(f"stopped after {unit}")

    with open_store(uri, **login) as store:
        register(store, loaded, make_set())
    with pytest.raises(Killed), open_store(uri, **login) as store:
        run_weights(store, loaded, make_set(), PARAMS, progress=die)
    with open_store(uri, **login) as store:
        (run,) = _runs(store, "weights")
        assert run["status"] == "failed" and run["finished_at"]
        assert _error(store, run["uid"]).startswith("Killed: stopped after target:0")
        assert store.info().runs[("weights", "failed")] == 1
        report = run_weights(store, loaded, make_set(), PARAMS)  # resumes the failed run
        (run,) = _runs(store, "weights")
        assert report.units_skipped == 1 and run["status"] == "done"
        assert _error(store, run["uid"]) == ""
        assert store.info().runs == {("register", "done"): 1, ("weights", "done"): 1}


def test_a_killed_job_is_found_stale_by_the_next_run(
    catalog: tuple[str, dict], monkeypatch: pytest.MonkeyPatch
) -> None:
    uri, login = catalog
    monkeypatch.setattr(run_status, "STALE_AFTER_S", 0.5)
    killed = RunRecord(kind="weights", params={"set": "x"})
    store = open_store(uri, **login)
    store.write_nodes(records_to_batch([killed]))
    store.close()  # as kill -9 leaves it: no exception reached the store, nothing marked
    time.sleep(1.0)
    with open_store(uri, **login, read_only=True) as reader:
        status = "stale" if uri.startswith("bolt") else "running"  # a reader cannot tell here
        assert reader.info().runs == {("weights", status): 1}
    with open_store(uri, **login) as store:
        assert store.info().runs == {("weights", "stale"): 1}
        store.write_nodes(records_to_batch([RunRecord(kind="features")]))  # another kind
        assert _runs(store, "weights")[0]["status"] == "running"
        store.write_nodes(records_to_batch([RunRecord(kind="weights")]))
        old = next(r for r in _runs(store, "weights") if r["uid"] == killed.uid)
        assert old["status"] == "failed" and "stale" in _error(store, killed.uid)


@pytest.mark.neo4j
def test_a_live_job_on_neo4j_beats_and_is_not_stale(
    clean_neo4j: Neo4jServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(run_status, "HEARTBEAT_S", 0.2)
    monkeypatch.setattr(run_status, "STALE_AFTER_S", 1.5)
    login = {"user": clean_neo4j.user, "password": clean_neo4j.password}
    live = RunRecord(kind="prompts")
    with open_store(clean_neo4j.uri, **login) as job, open_store(clean_neo4j.uri, **login) as other:
        job.write_nodes(records_to_batch([live]))
        first = other.query("running_runs")[0]["heartbeat_at"]
        time.sleep(2.0)  # longer than STALE_AFTER_S: only the heartbeat keeps it alive
        assert other.query("running_runs")[0]["heartbeat_at"] > first
        assert other.info().runs == {("prompts", "running"): 1}
        other.write_nodes(records_to_batch([RunRecord(kind="prompts")]))
        statuses = sorted(r["status"] for r in _runs(other, "prompts"))
        assert statuses == ["running", "running"]  # the live one was left alone


def test_store_info_lists_runs_by_status(tmp_path: Path) -> None:
    path = str(tmp_path / "catalog")
    with open_store(path) as store:
        for day, status in enumerate(("done", "done", "failed"), start=1):
            run = RunRecord(kind="weights", status=status, started_at=f"2026-01-0{day}T00:00:00")
            store.write_nodes(records_to_batch([run]))
    result = CliRunner().invoke(app, ["store", "info", "--store", path, "-f", "json"])
    rows = {r["kind"]: r["count"] for r in json.loads(result.stdout) if r["element"] == "run"}
    assert result.exit_code == 0 and rows == {"weights/done": 2, "weights/failed": 1}
