"""The test Neo4j (tests/neo4j_server.py) is a real 5.26 server that answers Bolt."""

from __future__ import annotations

import pytest
from neo4j import GraphDatabase

from .neo4j_server import Neo4jServer, empty_neo4j

pytestmark = pytest.mark.neo4j


def test_server_answers_and_is_5_26(clean_neo4j: Neo4jServer) -> None:
    with GraphDatabase.driver(clean_neo4j.uri, auth=clean_neo4j.auth) as driver:
        driver.verify_connectivity()
        assert driver.execute_query("RETURN 1 AS one").records[0]["one"] == 1

        driver.execute_query("CREATE (:Probe {name: $name, layer: $layer})", name="a", layer=3)
        records = driver.execute_query(
            "MATCH (p:Probe {name: $name}) RETURN p.layer AS layer", name="a", routing_="r"
        ).records
        assert [r["layer"] for r in records] == [3]

        components = driver.execute_query(
            "CALL dbms.components() YIELD name, versions RETURN name, versions"
        ).records
    kernel = next(c for c in components if c["name"] == "Neo4j Kernel")
    assert kernel["versions"][0].startswith("5.26."), kernel["versions"]


def test_empty_neo4j_removes_data_and_schema(clean_neo4j: Neo4jServer) -> None:
    with GraphDatabase.driver(clean_neo4j.uri, auth=clean_neo4j.auth) as driver:
        driver.execute_query("CREATE CONSTRAINT probe_id FOR (p:Probe) REQUIRE p.id IS UNIQUE")
        driver.execute_query("CREATE INDEX probe_layer FOR (p:Probe) ON (p.layer)")
        driver.execute_query("UNWIND range(1, 50) AS i CREATE (:Probe {id: i})-[:NEXT]->(:Other)")

        empty_neo4j(clean_neo4j)

        count = driver.execute_query("MATCH (n) RETURN count(n) AS n").records[0]["n"]
        constraints = driver.execute_query("SHOW CONSTRAINTS YIELD name RETURN name").records
        indexes = driver.execute_query(
            "SHOW INDEXES YIELD name, type WHERE type <> 'LOOKUP' RETURN name"
        ).records
    assert (count, constraints, indexes) == (0, [], [])
