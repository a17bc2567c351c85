"""The team store: Neo4j 5 over Bolt with the official driver.

Uniqueness constraints exist before any MERGE; writes are UNWIND $rows batches of ~10k rows in
write transactions; reads use read routing. Driver errors become typed errors with the fix.

Concurrent writers never duplicate an edge. Edges are written in chunks that hold every row into
their target nodes; each chunk is one transaction that first locks its targets (in uid order),
then counts the stored edges of this kind into them, then CREATEs (none) or MERGEs. Two jobs
writing the same edges therefore take turns per chunk, and the second one MERGEs onto the
first one's edges. One batch's chunks have disjoint targets, so they run in parallel sessions
(`neo4j_writers` transactions in flight, CIRCUITCAT_NEO4J_WRITERS): the server's cores work
on one batch. Transactions that meet on shared source nodes may deadlock; the server detects
it and the driver retries the chunk (a transient error).

Read-only (`run_cypher` without write): the query runs in a server-enforced read transaction,
after its EXPLAIN plan passes catalog/readonly.py (no LOAD CSV, administration, procedures off
the read-only list, other databases).
"""

from __future__ import annotations

import logging
import ssl
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager, suppress
from typing import Any

import neo4j
import numpy as np
from neo4j import GraphDatabase, RoutingControl
from neo4j import exceptions as nx
from neo4j.graph import Node, Path, Relationship

from . import runs, statements
from .base import BATCH_ROWS, BaseStore, check_values
from .batches import EdgeBatch, NodeBatch
from .errors import (
    CircuitcatError,
    QueryError,
    QueryTimeoutError,
    ReadOnlyViolationError,
    StoreAuthError,
    StoreError,
    StoreUnavailableError,
)
from .protocol import QueryResult, StoreSettings
from .readonly import PORTABLE_CYPHER, check_neo4j_plan
from .schema import REL_SPECS

log = logging.getLogger(__name__)
_ACCESS_MODE = "Neo.ClientError.Statement.AccessMode"


def _plain(value: Any) -> Any:
    if isinstance(value, Node | Relationship):
        return dict(value.items())
    if isinstance(value, Path):
        return [dict(n.items()) for n in value.nodes]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


class _DriverLogToDebug(logging.Handler):
    """The driver's own messages (e.g. "Transaction failed and will be retried") go to this
    module's logger at DEBUG: a server that went away gives one clear error line, not eight."""

    def emit(self, record: logging.LogRecord) -> None:
        log.debug("neo4j driver: %s", record.getMessage())


def _quiet_driver_logs() -> None:
    driver_log = logging.getLogger("neo4j")
    if not any(isinstance(h, _DriverLogToDebug) for h in driver_log.handlers):
        driver_log.addHandler(_DriverLogToDebug())
        driver_log.propagate = False


def _is_tls_failure(error: BaseException) -> bool:
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ssl.SSLError) or "SecurityError" in type(seen).__name__:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _target_chunks(batch: EdgeBatch, size: int) -> Iterator[list[dict[str, Any]]]:
    """The batch's rows in chunks of about `size` that each hold all rows into their targets."""
    names = ["src", "dst", *batch.prop_names]
    given = {"src": batch.src, "dst": batch.dst, **batch.columns}
    cols = {
        n: c if isinstance(c, np.ndarray) and c.dtype != object else np.asarray(list(c), object)
        for n, c in ((n, given[n]) for n in names)
    }
    dst = cols["dst"].astype(str)
    order = np.argsort(dst, kind="stable")
    ordered = dst[order]
    starts = np.concatenate([[0], np.flatnonzero(ordered[1:] != ordered[:-1]) + 1, [len(dst)]])
    a = 0
    while a < len(dst):
        at = int(np.searchsorted(starts, a + size))
        b = int(starts[min(at, len(starts) - 1)])
        idx = order[a:b]
        lists = [cols[n][idx].tolist() for n in names]
        yield [dict(zip(names, values, strict=True)) for values in zip(*lists, strict=True)]
        a = b


class Neo4jStore(BaseStore):
    backend = "neo4j"

    def __init__(self, settings: StoreSettings) -> None:
        super().__init__(settings)
        self._driver: neo4j.Driver | None = None
        self._home_db: str | None = settings.neo4j_database
        self._stop_beat = threading.Event()
        self._beat: threading.Thread | None = None

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
            if _is_tls_failure(e):
                raise StoreUnavailableError(
                    f"cannot set up TLS with Neo4j at {uri}: the server does not speak TLS on "
                    "that port, or its certificate is not trusted; use bolt:// or neo4j:// for a "
                    "server without TLS, bolt+ssc:// for a self-signed certificate"
                ) from e
            raise StoreUnavailableError(
                f"cannot reach Neo4j at {uri}; start it (`make neo4j` for a local one) or point "
                "--store / CIRCUITCAT_STORE at a running server"
            ) from e
        except nx.Neo4jError as e:
            if e.code == _ACCESS_MODE:
                raise ReadOnlyViolationError(
                    "this query writes to the catalog; pass --write to allow it"
                ) from e
            if "TransactionTimedOut" in (e.code or ""):
                raise QueryTimeoutError(
                    "the query ran past its time limit and the server stopped it"
                ) from e
            where = PORTABLE_CYPHER if "Statement" in (e.code or "") else ""
            raise QueryError(f"Neo4j rejected the query: {e.message or e}{where}") from e
        except nx.DriverError as e:
            raise StoreError(f"Neo4j driver error talking to {uri}: {e}") from e
        except ValueError as e:  # the driver's own URI and address checks
            raise StoreUnavailableError(f"cannot use {uri} as a Neo4j address: {e}") from e

    def connect(self) -> None:
        s = self.settings
        auth = (s.neo4j_user, s.neo4j_password or "") if s.neo4j_user else None
        _quiet_driver_logs()
        with self._errors():
            # Notifications off: "label does not exist yet" warnings are normal on a new catalog.
            self._driver = GraphDatabase.driver(
                s.uri, auth=auth, connection_timeout=10.0, notifications_min_severity="OFF"
            )
            self._driver.verify_connectivity()

    def close(self) -> None:
        self._stop_beat.set()
        if self._beat is not None:
            self._beat.join(timeout=10)
            self._beat = None
        if self._driver is not None:
            self._driver.close()
            self._driver = None

    @property
    def driver(self) -> neo4j.Driver:
        if self._driver is None:
            raise StoreError("the store is closed; open it with open_store(...)")
        return self._driver

    def _session(self, read: bool = False) -> neo4j.Session:
        mode = neo4j.READ_ACCESS if read else neo4j.WRITE_ACCESS
        return self.driver.session(database=self.settings.neo4j_database, default_access_mode=mode)

    def _run(
        self, text: str, params: Mapping[str, Any], *, read: bool, timeout: float | None = None
    ) -> QueryResult:
        routing = RoutingControl.READ if read else RoutingControl.WRITE
        # A timeout travels with the transaction: the server stops it (QueryTimeoutError).
        query = neo4j.Query(text, timeout=timeout) if timeout else text  # type: ignore[arg-type]
        with self._errors():
            result = self.driver.execute_query(
                query,  # type: ignore[arg-type]  # generated from the closed schema
                dict(params),
                routing_=routing,
                database_=self.settings.neo4j_database,
            )
        rows = [[_plain(v) for v in record.values()] for record in result.records]
        return QueryResult(list(result.keys), rows)

    def _write_chunks(self, stmt: str, chunks: Iterable[list[dict[str, Any]]]) -> None:
        def work(tx: neo4j.ManagedTransaction, rows: list[dict[str, Any]]) -> None:
            tx.run(stmt, rows=rows).consume()  # type: ignore[arg-type]

        self._in_parallel(work, chunks)

    def _in_parallel(
        self,
        work: Callable[[neo4j.ManagedTransaction, list[dict[str, Any]]], None],
        chunks: Iterable[list[dict[str, Any]]],
    ) -> None:
        """One write transaction per chunk, `neo4j_writers` in flight at once (each in its own
        session), at most twice that many chunks built ahead. The chunks must not depend on
        each other; the first failure stops the rest and is raised."""

        def one(rows: list[dict[str, Any]]) -> None:
            with self._errors(), self._session() as s:
                s.execute_write(work, rows)

        writers = self.settings.neo4j_writers
        if writers <= 1:
            for rows in chunks:
                one(rows)
            return
        with ThreadPoolExecutor(writers, thread_name_prefix="circuitcat-neo4j-writer") as pool:
            pending: set[Future[None]] = set()
            try:
                for rows in chunks:
                    if len(pending) >= 2 * writers:
                        done, pending = wait(pending, return_when=FIRST_COMPLETED)
                        for f in done:
                            f.result()
                    pending.add(pool.submit(one, rows))
                for f in pending:
                    f.result()
            finally:
                for f in pending:
                    f.cancel()

    def init_schema(self) -> None:
        for stmt in statements.neo4j_ddl():
            self._run(stmt, {}, read=False)

    def _read(self, text: str, params: Mapping[str, Any]) -> QueryResult:
        return self._run(text, params, read=True)

    def _node_chunks(self, batch: NodeBatch) -> Iterator[list[dict[str, Any]]]:
        for start in range(0, len(batch), BATCH_ROWS):
            yield batch.rows(start, start + BATCH_ROWS)

    def _bulk_nodes(self, batch: NodeBatch) -> None:
        # MERGE on a uniqueness-constrained key is index-backed and safe under concurrency.
        self._merge_nodes(batch)

    def _merge_nodes(self, batch: NodeBatch) -> None:
        stmt = statements.node_merge(batch.kind, batch.prop_names)
        self._write_chunks(stmt, self._node_chunks(batch))

    def _bulk_edges(self, batch: EdgeBatch) -> None:
        stmt = statements.edge_create(batch.kind, batch.src_kind, batch.dst_kind, batch.prop_names)
        self._write_chunks(stmt, _target_chunks(batch, BATCH_ROWS))

    def _merge_edges(self, batch: EdgeBatch) -> None:
        stmt = statements.edge_merge(batch.kind, batch.src_kind, batch.dst_kind, batch.prop_names)
        self._write_chunks(stmt, _target_chunks(batch, BATCH_ROWS))  # a pair in one chunk

    def write_edges(self, batch: EdgeBatch) -> int:
        """Check the endpoints, then write chunk by chunk under target locks (module doc)."""
        if not len(batch):
            return 0
        self._refuse_if_read_only()
        self._check_endpoints(batch.src_kind, batch.unique("src"), batch, "source")
        self._check_endpoints(batch.dst_kind, batch.unique("dst"), batch, "target")
        kind, src, dst, props = batch.kind, batch.src_kind, batch.dst_kind, batch.prop_names
        filters = [k for k in statements.FILTER_KEYS if k in REL_SPECS[kind].key]
        lock = statements.lock_nodes(dst)
        count = statements.count_existing(kind, dst, "dst", filters)
        create = statements.edge_create(kind, src, dst, props)
        merge = statements.edge_merge(kind, src, dst, props)

        def work(tx: neo4j.ManagedTransaction, rows: list[dict[str, Any]]) -> None:
            targets = sorted({r["dst"] for r in rows})
            values = {f"{k}_values": sorted({r[k] for r in rows}) for k in filters}
            tx.run(lock, uids=targets).consume()  # type: ignore[arg-type]
            record = tx.run(count, uids=targets, **values).single()  # type: ignore[arg-type]
            stmt = create if record is None or record[0] == 0 else merge
            tx.run(stmt, rows=rows).consume()  # type: ignore[arg-type]

        self._in_parallel(work, _target_chunks(batch, BATCH_ROWS))
        return len(batch)

    # ---- runs: a heartbeat while this store has runs open (catalog/runs.py) ------------------
    def _is_stale(self, row: Mapping[str, Any]) -> bool:
        return str(row["uid"]) not in self._open_runs and runs.age_s(row) > runs.STALE_AFTER_S

    def _on_runs_opened(self, uids: list[str]) -> None:
        if self._beat is None:
            self._stop_beat.clear()
            self._beat = threading.Thread(
                target=self._heartbeat, name="circuitcat-run-heartbeat", daemon=True
            )
            self._beat.start()

    def _heartbeat(self) -> None:
        while not self._stop_beat.wait(runs.HEARTBEAT_S):
            uids = sorted(self._open_runs)
            if uids:
                with suppress(CircuitcatError):  # a server that went away: stale later
                    self._run(runs.HEARTBEAT, {"uids": uids, "now": runs.now_iso()}, read=False)

    # ---- ad hoc Cypher -----------------------------------------------------------------------
    def _plan(self, text: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """The server's plan for a query; EXPLAIN runs nothing."""
        with self._errors(), self._session(read=True) as s:
            summary = s.run("EXPLAIN " + text, dict(params)).consume()  # type: ignore[arg-type]
        return dict(summary.plan or {})

    def _database(self) -> str:
        """The database the catalog is in (the user's home database unless configured)."""
        if self._home_db is None:
            root = str(self._plan("RETURN 1", {}).get("operatorType", ""))
            self._home_db = root.partition("@")[2]
        return self._home_db

    def run_cypher(
        self,
        text: str,
        params: Mapping[str, Any] | None = None,
        *,
        write: bool = False,
        timeout: float | None = None,
    ) -> QueryResult:
        params = dict(params or {})
        check_values(params)
        if write:
            self._refuse_if_read_only()
            return self._run(text, params, read=False)
        check_neo4j_plan(self._plan(text, params), self._database())
        return self._run(text, params, read=True, timeout=timeout)
