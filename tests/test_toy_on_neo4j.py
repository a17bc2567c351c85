"""The toy catalog copied into Neo4j once for this module (copying it is the slow part): every
Cypher block in the README and docs/ answers the same on both stores, and a prompt graph
exports to the same graph JSON file from both."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from circuitcat.catalog import CatalogStore, open_store
from circuitcat.catalog.copy import copy_catalog
from circuitcat.catalog.graph_json import prompt_graph_json

from .neo4j_server import Neo4jServer, empty_neo4j
from .test_docs import _scalars, doc_queries
from .test_graph_json import _first_prompt, _graph

pytestmark = pytest.mark.neo4j


@pytest.fixture(scope="module")
def toy_neo4j(toy_catalog: str, neo4j_server: Neo4jServer) -> Iterator[CatalogStore]:
    """The session's Neo4j holding exactly the toy catalog; the tests here only read it."""
    empty_neo4j(neo4j_server, drop_schema=False)
    server = neo4j_server
    with open_store(server.uri, user=server.user, password=server.password) as neo:
        with open_store(toy_catalog, read_only=True) as lb:
            copy_catalog(lb, neo)
        yield neo


def test_every_doc_query_runs_on_both_stores(toy_catalog: str, toy_neo4j: CatalogStore) -> None:
    answers = {}
    with open_store(toy_catalog, read_only=True) as s:
        for name, query in doc_queries():
            answers[name] = s.run_cypher(query).rows
            assert answers[name], f"{name} returned nothing on the toy catalog:\n{query}"
    for name, query in doc_queries():
        rows = toy_neo4j.run_cypher(query).rows
        if name.endswith("#0") or "ORDER BY" in query:
            assert _scalars(rows) == _scalars(answers[name]), name
        else:
            assert len(rows) == len(answers[name]), name


def test_both_stores_export_the_same_file(toy_catalog: str, toy_neo4j: CatalogStore) -> None:
    prompt = _first_prompt(toy_catalog)
    embedded = _graph(toy_catalog, prompt["uid"]).model_dump(exclude={"metadata": {"info"}})
    from_neo4j = prompt_graph_json(toy_neo4j, prompt["uid"]).model_dump(
        exclude={"metadata": {"info"}}
    )
    assert json.dumps(from_neo4j, sort_keys=True) == json.dumps(embedded, sort_keys=True)
