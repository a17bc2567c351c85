"""`ingest register` on a tiny model and random transcoders, into both stores."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from circuitcat.catalog import CatalogStore, open_store
from circuitcat.catalog.errors import IngestError
from circuitcat.catalog.records import records_to_batch
from circuitcat.ingest.models import LoadedModel
from circuitcat.ingest.register import register, set_record

from .neo4j_server import Neo4jServer
from .tiny import D_TC, D_VOCAB, N_HEADS, N_LAYERS, make_set


@pytest.fixture(params=["ladybug", pytest.param("neo4j", marks=pytest.mark.neo4j)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CatalogStore]:
    if request.param == "ladybug":
        uri, user, pw = str(tmp_path / "c"), None, None
    else:
        server: Neo4jServer = request.getfixturevalue("clean_neo4j")
        uri, user, pw = server.uri, server.user, server.password
    with open_store(uri, user=user, password=pw) as s:
        yield s


def test_register_writes_everything_once(store: CatalogStore, loaded: LoadedModel) -> None:
    report = register(store, loaded, make_set())
    assert not report.already_registered
    info = store.info()
    assert info.nodes["Feature"] == N_LAYERS * D_TC
    assert info.nodes["Token"] == D_VOCAB and info.nodes["Head"] == N_LAYERS * N_HEADS
    assert info.relationships["IN_SET"] == N_LAYERS * D_TC
    assert info.relationships["FOR_MODEL"] == 1
    status = store.run_cypher("MATCH (r:Run) RETURN r.status AS s").rows
    assert status == [["done"]]
    f = store.query("feature", uid="tiny/tc/L1/23")[0]
    assert (f["layer"], f["feature_index"]) == (1, 23)

    again = register(store, loaded, make_set())
    assert again.already_registered
    assert store.info().nodes == info.nodes

    with pytest.raises(IngestError, match=r"already registered from different files.*--name"):
        register(store, loaded, make_set(sha="b" * 64))


def test_a_half_finished_register_is_completed_by_rerunning(
    store: CatalogStore, loaded: LoadedModel
) -> None:
    tset = make_set()
    # As if a run died after writing the set node and before its features.
    store.write_nodes(records_to_batch([set_record(tset, "tiny", "run/dead")]))
    report = register(store, loaded, tset)
    assert not report.already_registered
    assert store.info().nodes["Feature"] == N_LAYERS * D_TC


def test_register_under_a_new_name(store: CatalogStore, loaded: LoadedModel) -> None:
    register(store, loaded, make_set())
    renamed = replace(make_set(sha="b" * 64), name="tc-v2")
    register(store, loaded, renamed)
    assert store.info().nodes["TranscoderSet"] == 2
