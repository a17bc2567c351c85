"""The team store: Neo4j 5 over Bolt with the official driver.

Uniqueness constraints exist before any MERGE; writes are UNWIND $rows batches of ~10k rows in
write transactions; reads use read routing. Driver errors become typed errors with the fix.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import neo4j
from neo4j import GraphDatabase, RoutingControl
from neo4j import exceptions as nx
from neo4j.graph import Node, Path, Relationship

from . import statements
from .base import BATCH_ROWS, BaseStore
from .batches import EdgeBatch, NodeBatch
from .errors import (
    QueryError,
    ReadOnlyViolationError,
    StoreAuthError,
    StoreError,
    StoreUnavailableError,
)
from .store import QueryResult, StoreSettings

# EXPLAIN's query_type: r = read only; anything else writes data or schema.
_READ_ONLY_TYPES = {"r"}


def _plain(value: Any) -> Any:
    if isinstance(value, Node | Relationship):
        return dict(value.items())
    if isinstance(value, Path):
        return [dict(n.items()) for n in value.nodes]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


class Neo4jStore(BaseStore):
    backend = "neo4j"

    def __init__(self, settings: StoreSettings) -> None:
        super().__init__(settings)
        self._driver: neo4j.Driver | None = None

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Driver errors as typed errors naming the fix."""
        uri = self.settings.uri
        try:
            yield
        except nx.AuthError as e:
            user = self.settings.neo4j_user
            raise StoreAuthError(
                f"Neo4j at {uri} refused the login of user '{user}' (wrong password or no such "
                "user); check CIRCUITCAT_NEO4J_USER and CIRCUITCAT_NEO4J_PASSWORD"
                if user
                else f"Neo4j at {uri} requires a login; set CIRCUITCAT_NEO4J_USER and "
                "CIRCUITCAT_NEO4J_PASSWORD"
            ) from e
        except (nx.ServiceUnavailable, nx.SessionExpired, OSError) as e:
            raise StoreUnavailableError(
                f"cannot reach Neo4j at {uri}; start it (`make neo4j` for a local one) or point "
                "--store / CIRCUITCAT_STORE at a running server"
            ) from e
        except nx.Neo4jError as e:
            raise QueryError(f"Neo4j rejected the query: {e.message or e}") from e
        except nx.DriverError as e:
            raise StoreError(f"Neo4j driver error talking to {uri}: {e}") from e

    def connect(self) -> None:
        s = self.settings
        auth = (s.neo4j_user, s.neo4j_password or "") if s.neo4j_user else None
        with self._errors():
            # Notifications off: "label does not exist yet" warnings are normal on a new catalog.
            self._driver = GraphDatabase.driver(
                s.uri, auth=auth, connection_timeout=10.0, notifications_min_severity="OFF"
            )
            self._driver.verify_connectivity()

    def close(self) -> None:
        if self._driver is not None:
            self._driver.close()
            self._driver = None

    @property
    def driver(self) -> neo4j.Driver:
        if self._driver is None:
            raise StoreError("the store is closed; open it with open_store(...)")
        return self._driver

    def _run(self, text: str, params: Mapping[str, Any], *, read: bool) -> QueryResult:
        routing = RoutingControl.READ if read else RoutingControl.WRITE
        with self._errors():
            result = self.driver.execute_query(
                text,  # type: ignore[arg-type]  # generated from the closed schema
                dict(params),
                routing_=routing,
                database_=self.settings.neo4j_database,
            )
        rows = [[_plain(v) for v in record.values()] for record in result.records]
        return QueryResult(list(result.keys), rows)

    def _write_chunks(self, stmt: str, chunks: Iterator[list[dict[str, Any]]]) -> None:
        def work(tx: neo4j.ManagedTransaction, rows: list[dict[str, Any]]) -> None:
            tx.run(stmt, rows=rows).consume()  # type: ignore[arg-type]

        with self._errors(), self.driver.session(database=self.settings.neo4j_database) as s:
            for rows in chunks:
                s.execute_write(work, rows)

    def init_schema(self) -> None:
        for stmt in statements.neo4j_ddl():
            self._run(stmt, {}, read=False)

    def _read(self, text: str, params: Mapping[str, Any]) -> QueryResult:
        return self._run(text, params, read=True)

    def _node_chunks(self, batch: NodeBatch) -> Iterator[list[dict[str, Any]]]:
        for start in range(0, len(batch), BATCH_ROWS):
            yield batch.rows(start, start + BATCH_ROWS)

    def _bulk_nodes(self, batch: NodeBatch) -> None:
        # MERGE on a uniqueness-constrained key is index-backed; CREATE would gain little.
        self._merge_nodes(batch)

    def _merge_nodes(self, batch: NodeBatch) -> None:
        stmt = statements.node_merge(batch.kind, batch.prop_names)
        self._write_chunks(stmt, self._node_chunks(batch))

    def _bulk_edges(self, batch: EdgeBatch) -> None:
        stmt = statements.edge_create(batch.kind, batch.src_kind, batch.dst_kind, batch.prop_names)
        self._write_chunks(stmt, batch.chunks(BATCH_ROWS))

    def _merge_edges(self, batch: EdgeBatch) -> None:
        stmt = statements.edge_merge(batch.kind, batch.src_kind, batch.dst_kind, batch.prop_names)
        self._write_chunks(stmt, batch.chunks(BATCH_ROWS))

    def query_type(self, text: str, params: Mapping[str, Any] | None = None) -> str:
        """What EXPLAIN says the query does: r, rw, w or s (schema)."""
        with self._errors(), self.driver.session(database=self.settings.neo4j_database) as s:
            summary = s.run("EXPLAIN " + text, dict(params or {})).consume()  # type: ignore[arg-type]
        return str(summary.query_type)

    def run_cypher(
        self, text: str, params: Mapping[str, Any] | None = None, *, write: bool = False
    ) -> QueryResult:
        if not write and self.query_type(text, params) not in _READ_ONLY_TYPES:
            raise ReadOnlyViolationError(
                "this query writes to the catalog; pass --write to allow it"
            )
        return self._run(text, params or {}, read=not write)
