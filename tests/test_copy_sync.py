"""`store copy` makes the target equal the source: a replaced circuit replaces, deleted edges
and nodes go, repeats on the target collapse, and each copy says what it added, changed and
removed (nothing, the second time)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from circuitcat.catalog import CatalogStore, EdgeBatch, NodeBatch, NodeKind, RelKind, open_store
from circuitcat.catalog.copy import copy_catalog
from circuitcat.cli.main import app

from . import catalog_data as data
from .content import content
from .neo4j_server import Neo4jServer

CIRCUIT = data.CircuitRecord(name="gt", task="greater-than", set=data.SET.uid, method="mean").uid


def _target(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> CatalogStore:
    if backend == "ladybug":
        return open_store(str(tmp_path / "target"))
    server: Neo4jServer = request.getfixturevalue("clean_neo4j")
    return open_store(server.uri, user=server.user, password=server.password)


def _edit_source(store: CatalogStore) -> None:
    """What happens to a local catalog between two copies."""
    # The circuit is found again with other members: old CONTAINS edges go.
    store.run_cypher("MATCH (:Circuit)-[k:CONTAINS]->() DELETE k", write=True)
    members = data.feature_uids(2)[:3]
    store.write_edges(
        EdgeBatch(
            RelKind.CONTAINS, NodeKind.CIRCUIT, NodeKind.FEATURE, [CIRCUIT] * 3, members,
            {"score": [3.0, 2.0, 1.0], "run": [data.RUN.uid] * 3},
        )
    )  # fmt: skip
    store.run_cypher(
        "MATCH (a:Feature)-[r:VIRTUAL_WEIGHT]->(b:Feature) WHERE b.layer = 2 DELETE r", write=True
    )
    store.write_nodes(
        NodeBatch(NodeKind.FEATURE, {"uid": data.feature_uids(0)[:1], "label": ["x"]})
    )
    store.run_cypher("MATCH (h:Head) WHERE h.head = 1 DETACH DELETE h", write=True)


@pytest.mark.parametrize("backend", ["ladybug", pytest.param("neo4j", marks=pytest.mark.neo4j)])
def test_copy_makes_the_target_equal_the_source(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    with (
        open_store(str(tmp_path / "source")) as source,
        _target(backend, tmp_path, request) as target,
    ):
        data.write_all(source)
        first = copy_catalog(source, target)
        assert content(target) == content(source)
        assert first["Feature"].added == 18 and first["VIRTUAL_WEIGHT"].added == 48
        assert not any(c.changed or c.removed for c in first.values())
        n_contains = len(content(source)["CONTAINS"])

        _edit_source(source)
        # A repeat of an edge on the target (as concurrent writers once left) collapses too.
        target.run_cypher(
            "MATCH (a:Token)-[r:PROMOTES]-(b:Feature) WITH a, b, r LIMIT 1 "
            "CREATE (b)-[:PROMOTES {w: r.w, `rank`: r.`rank`, run: r.run}]->(a)",
            write=True,
        )
        second = copy_catalog(source, target)
        assert content(target) == content(source)
        assert second["CONTAINS"].added == 3 and second["CONTAINS"].removed == n_contains
        assert second["VIRTUAL_WEIGHT"].removed == 12
        assert (second["Feature"].changed, second["Head"].removed) == (1, 1)
        assert second["PROMOTES"].changed == 1
        third = copy_catalog(source, target)
        assert not any(c.added or c.changed or c.removed for c in third.values())


def test_cli_copy_reports_changes_and_then_nothing(tmp_path: Path) -> None:
    source, target = str(tmp_path / "a"), str(tmp_path / "b")
    with open_store(source) as s:
        data.write_all(s)
    runner = CliRunner()
    first = runner.invoke(app, ["store", "copy", "--from", source, "--to", target])
    assert first.exit_code == 0 and "added" in first.stdout and "Feature" in first.stdout
    with open_store(source) as s:
        s.run_cypher("MATCH ()-[r:DEEMBEDS]->() DELETE r", write=True)
    second = runner.invoke(app, ["store", "copy", "--from", source, "--to", target])
    lines = [line for line in second.stdout.splitlines() if "DEEMBEDS" in line]
    assert second.exit_code == 0 and len(lines) == 1
    assert np.array([int(x) for x in lines[0].split("│")[2:6]]).tolist() == [0, 0, 0, 10]
    third = runner.invoke(app, ["store", "copy", "--from", source, "--to", target])
    assert third.exit_code == 0 and "nothing changed" in third.stdout
