"""Read-only means read-only: every known way around it, on both stores, is refused and leaves
the catalog, the file system and other transactions as they were (docs/neo4j.md)."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
from typer.testing import CliRunner

from circuitcat.catalog import CatalogStore, open_store
from circuitcat.catalog.errors import QueryError, ReadOnlyViolationError
from circuitcat.cli.main import app

from . import catalog_data as data
from .content import checksum
from .neo4j_server import Neo4jServer, empty_neo4j

DELETE_RUNS = "MATCH (r:Run) DETACH DELETE r"

LADYBUG_REFUSED = [
    f"COMMIT; {DELETE_RUNS}",
    f"ROLLBACK; {DELETE_RUNS}",
    f"/* comment */ cOmMiT; {DELETE_RUNS}",
    f"RETURN 1 // comment\n; {DELETE_RUNS}",
    f"MATCH (r:Run) RETURN r.uid AS `a;b`; {DELETE_RUNS}",
    DELETE_RUNS,
    "MATCH (f:Feature) SET f.label = 'x'",
    "MERGE (t:Task {uid: 'x'})",
    "DROP TABLE Run",
    "ALTER TABLE Run ADD extra STRING",
    "CREATE MACRO m(x) AS x + 1",
    "CREATE SEQUENCE s",
    "COPY (MATCH (r:Run) RETURN r.uid) TO '{tmp}/out.csv'",
    "copy (MATCH (r:Run) RETURN r.uid) to '{tmp}/out.parquet'",
    "LOAD FROM '/etc/passwd' (header=false) RETURN *",
    "LOAD FROM '{csv}' RETURN *",
    "MATCH (r:Run) WITH r LOAD FROM '{csv}' RETURN *",
    "EXPORT DATABASE '{tmp}/export'",
    "IMPORT DATABASE '{tmp}/export'",
    "ATTACH '{tmp}/other.lbug' AS other (dbtype lbug)",
    "USE other",
    "INSTALL json",
    "LOAD EXTENSION json",
    "BEGIN TRANSACTION",
    "CHECKPOINT",
    "CALL threads=1",
    "CALL read_csv_serial('{csv}') RETURN *",  # crashes the process if it runs
    "CALL file_info('/etc/passwd') RETURN *",
    "CALL project_graph('g', ['Feature'], []) RETURN *",
    "RETURN 'unterminated",
]
LADYBUG_ALLOWED = [
    "MATCH (f:Feature) RETURN count(f) AS n",
    "CALL show_tables() RETURN *",
    "CALL table_info('Run') RETURN *",
    "RETURN 'COMMIT; COPY x TO y; LOAD FROM z' AS text",
    # The engine reads \' as a quote inside the string too: all of it is one string.
    r"RETURN 'a\'; COPY (MATCH (r:Run) RETURN r.uid) TO \'{tmp}/sneaky.csv\'; ' AS text",
    "MATCH (f:Feature) RETURN f.uid AS `copy` ORDER BY `copy` LIMIT 1",
    "RETURN 1;",
]

NEO4J_REFUSED = [
    "LOAD CSV FROM 'file:///etc/passwd' AS line RETURN line",
    "/* x */ load csv from 'file:///etc/passwd' as line return line",
    "WITH 1 AS x LOAD CSV FROM 'file:///etc/hostname' AS line RETURN line",
    "LOAD CSV FROM '{url}' AS line RETURN line",
    "TERMINATE TRANSACTIONS 'neo4j-transaction-1'",
    "SHOW TRANSACTIONS",
    "SHOW SETTINGS",
    "SHOW USERS",
    "SHOW DATABASES",
    "CALL dbms.listConfig()",
    "CALL db.clearQueryCaches()",
    "CALL tx.setMetaData({a: 1})",
    "CALL db.createLabel('Sneaky')",
    "USE system SHOW USERS",
    DELETE_RUNS,
    "CREATE (t:Task {uid: 'x'})",
    "MATCH (f:Feature) CALL (f) { SET f.label = 'x' } RETURN count(*) AS n",
    "CALL { MATCH (r:Run) DETACH DELETE r } IN TRANSACTIONS",
    f"RETURN 1; {DELETE_RUNS}",
    "CREATE INDEX sneaky IF NOT EXISTS FOR (n:Task) ON (n.name)",
]
NEO4J_ALLOWED = [
    "MATCH (f:Feature) RETURN count(f) AS n",
    "CALL dbms.components() YIELD name RETURN name",
    "CALL db.labels()",
    "SHOW INDEXES YIELD name RETURN count(name) AS n",
]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("outside")
    (tmp / "x.csv").write_text("a,b\n1,2\n")
    return {"tmp": str(tmp), "csv": str(tmp / "x.csv")}


@pytest.fixture(scope="module")
def ladybug(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[CatalogStore, str]]:
    with open_store(str(tmp_path_factory.mktemp("lb") / "catalog")) as store:
        data.write_all(store)
        yield store, checksum(store)


class _Recorder(http.server.BaseHTTPRequestHandler):
    hits: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.hits.append(self.path)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"a,b\n")

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    """An HTTP server that records every request: Neo4j must never fetch from it."""
    server = http.server.HTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/data.csv"
    server.shutdown()
    assert _Recorder.hits == [], "Neo4j fetched a URL for a read-only query"


@pytest.fixture(scope="module")
def neo4j(neo4j_server: Neo4jServer) -> Iterator[tuple[CatalogStore, str]]:
    empty_neo4j(neo4j_server, drop_schema=False)
    server = neo4j_server
    with open_store(server.uri, user=server.user, password=server.password) as store:
        data.write_all(store)
        yield store, checksum(store)


def _fill(query: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        query = query.replace("{" + key + "}", value)
    return query


def _outside(files: dict[str, str]) -> set[str]:
    return {p.name for p in Path(files["tmp"]).iterdir()}


@pytest.mark.parametrize("query", LADYBUG_REFUSED)
def test_ladybug_refuses(query: str, ladybug: tuple, files: dict[str, str]) -> None:
    store, before = ladybug
    with pytest.raises(QueryError):  # ReadOnlyViolationError, or a plain parse error
        store.run_cypher(_fill(query, files))
    assert checksum(store) == before
    assert _outside(files) == {"x.csv"}


@pytest.mark.parametrize("query", LADYBUG_ALLOWED)
def test_ladybug_allows_reads(query: str, ladybug: tuple, files: dict[str, str]) -> None:
    store, before = ladybug
    assert store.run_cypher(_fill(query, files)).rows
    assert checksum(store) == before and _outside(files) == {"x.csv"}


@pytest.mark.neo4j
@pytest.mark.parametrize("query", NEO4J_REFUSED)
def test_neo4j_refuses(query: str, neo4j: tuple, url: str) -> None:
    store, before = neo4j
    with pytest.raises(QueryError):
        store.run_cypher(_fill(query, {"url": url}))
    assert checksum(store) == before


@pytest.mark.neo4j
@pytest.mark.parametrize("query", NEO4J_ALLOWED)
def test_neo4j_allows_reads(query: str, neo4j: tuple) -> None:
    store, before = neo4j
    assert store.run_cypher(query).rows
    assert checksum(store) == before


@pytest.mark.neo4j
def test_neo4j_read_only_query_cannot_end_a_running_job(neo4j: tuple) -> None:
    """A job's open write transaction survives TERMINATE from a read-only query."""
    store, before = neo4j
    driver = store.driver  # type: ignore[attr-defined]
    with driver.session() as job, job.begin_transaction() as tx:
        tx.run("CREATE (:Task {uid: 'job-write', name: 'x'})").consume()
        ids = store.run_cypher("RETURN 1 AS one")  # the store still answers meanwhile
        assert ids.rows == [[1]]
        with driver.session() as admin:
            tx_ids = [r["transactionId"] for r in admin.run("SHOW TRANSACTIONS")]
        for tx_id in tx_ids:
            with pytest.raises(ReadOnlyViolationError, match="TerminateTransactions"):
                store.run_cypher("TERMINATE TRANSACTIONS $ids", {"ids": [tx_id]})
        tx.rollback()  # the job's own choice: it was alive to make it
    assert checksum(store) == before


def _cli(env: dict[str, str], *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env=env)
    return result.exit_code, result.stderr


def test_cli_read_only_on_the_embedded_store(tmp_path: Path) -> None:
    env = {"CIRCUITCAT_STORE": str(tmp_path / "catalog")}
    code, err = _cli(env, "query", "cypher", "MATCH (n) RETURN count(n)")
    assert code == 1 and "no catalog at" in err and not (tmp_path / "catalog").exists()
    with open_store(env["CIRCUITCAT_STORE"]) as store:
        data.write_all(store)
        before = checksum(store)
    for query in (f"COMMIT; {DELETE_RUNS}", f"ROLLBACK; {DELETE_RUNS}", DELETE_RUNS):
        code, err = _cli(env, "query", "cypher", query)
        assert code == 1 and err.count("\n") == 1 and "--write" in err
    code, err = _cli(env, "query", "named", "feature", "-p", "name=x")
    assert code == 1 and err.count("\n") == 1 and "takes uid" in err
    code, err = _cli(env, "query", "named", "runs", "-p", "limit=99999999999999999999")
    assert code == 1 and err.count("\n") == 1 and "64 bits" in err
    with open_store(env["CIRCUITCAT_STORE"]) as store:
        assert checksum(store) == before


@pytest.mark.neo4j
def test_cli_read_only_on_neo4j(neo4j: tuple, neo4j_server: Neo4jServer) -> None:
    store, before = neo4j
    env = {
        "CIRCUITCAT_STORE": neo4j_server.uri,
        "CIRCUITCAT_NEO4J_USER": neo4j_server.user or "",
        "CIRCUITCAT_NEO4J_PASSWORD": neo4j_server.password or "",
    }
    code, err = _cli(env, "query", "cypher", "LOAD CSV FROM 'file:///etc/passwd' AS l RETURN l")
    assert code == 1 and err.count("\n") == 1 and "LOAD CSV" in err
    code, err = _cli(env, "query", "cypher", "CALL dbms.components() YIELD name RETURN name")
    assert code == 0
    assert checksum(store) == before
