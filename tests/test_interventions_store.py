"""Saved interventions on both stores: the named queries answer the same, `store copy` carries
them, and `intervention run --save` writes one through the CLI on the real Neo4j."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from circuitcat.catalog import CatalogStore, open_store
from circuitcat.catalog.copy import copy_catalog
from circuitcat.catalog.interventions import get_intervention, list_interventions

from . import catalog_data as data
from .neo4j_server import Neo4jServer


def _neo4j(server: Neo4jServer) -> CatalogStore:
    return open_store(server.uri, user=server.user, password=server.password)


def _answers(store: CatalogStore) -> list[object]:
    one = get_intervention(store, data.INTERVENTION.uid)
    feats = [f["feature"] for f in one["features"]]
    by_feature = list_interventions(store, feature=feats[0])
    moved = store.query("ablations_moving_task", task="greater-than", min_change=0.05, limit=10)
    rows = [one | {"features": feats}, list_interventions(store), by_feature, moved]
    return json.loads(json.dumps(rows, default=str))


@pytest.fixture
def both(tmp_path: Path, clean_neo4j: Neo4jServer) -> Iterator[tuple[CatalogStore, CatalogStore]]:
    with open_store(str(tmp_path / "catalog")) as lb, _neo4j(clean_neo4j) as neo:
        yield lb, neo


@pytest.mark.neo4j
def test_saved_interventions_read_the_same_on_both_stores_and_survive_copy(
    both: tuple[CatalogStore, CatalogStore],
) -> None:
    lb, neo = both
    data.write_all(lb)
    copy_catalog(lb, neo)
    assert neo.info().nodes["Intervention"] == 1
    assert neo.info().relationships["EDITS"] == 2
    one = get_intervention(neo, data.INTERVENTION.uid)
    assert one["spec"]["value"] is None and one["flagged"] is False
    assert math.isclose(one["after"], 0.6)
    assert [f["value"] for f in one["features"]] == [None, None]
    assert _answers(lb) == _answers(neo)
