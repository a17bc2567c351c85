"""The embedded default store: LadybugDB, one file on disk, in process.

Bulk writes go through COPY from Arrow tables; upserts are UNWIND ... MERGE inside one
transaction, so a failed batch leaves nothing behind. A query without --write is checked by
catalog/readonly.py, then runs as one prepared statement in a READ ONLY transaction; commands
that only read open the file read-only as well.
"""

from __future__ import annotations

import re
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import ladybug

from . import statements
from .base import BATCH_ROWS, BaseStore, check_values
from .batches import EdgeBatch, NodeBatch
from .errors import (
    MissingEndpointError,
    QueryError,
    QueryTimeoutError,
    ReadOnlyViolationError,
    StoreError,
    StoreUnavailableError,
)
from .protocol import QueryResult, StoreSettings
from .readonly import PORTABLE_CYPHER, check_ladybug
from .schema import NODE_PROPS, REL_SPECS, NodeKind, RelKind, quote

DB_FILE = "catalog.lbug"
# A read-only open that meets a writer's checkpoint is refused by the engine; it is retried
# this long (docs/neo4j.md, "Reading while a job writes").
CHECKPOINT_WAIT_S = 120.0
_CHECKPOINT = ("checkpoint is in progress", "checkpoint recovery is pending", "shadow pages")
_UPGRADE_HINT = (
    " (this catalog was made by an older circuitcat: open it once for writing, e.g. "
    "`circuitcat store init`, to add what it lacks)"
)


def database_file(uri: str) -> Path:
    """A path ending in .lbug is the database file; any other path is a folder holding one."""
    path = Path(uri).expanduser()
    return path if path.suffix == ".lbug" else path / DB_FILE


def require_catalog(path: Path) -> None:
    """StoreUnavailableError unless `path` (a database file) holds a catalog: commands other
    than `store init` and the ingest jobs never create one where a path was mistyped."""
    if not path.is_file():
        raise StoreUnavailableError(
            f"there is no catalog at {path}; create one with `circuitcat store init` or an "
            "ingest job, or pass --store PATH to an existing one"
        )


def _plain(value: Any) -> Any:
    # Nodes and relationships come back as dicts with internal keys (_ID, _LABEL, _SRC, _DST);
    # keep only the properties, as the Neo4j store does.
    if isinstance(value, dict) and "_ID" in value:
        return {k: v for k, v in value.items() if not k.startswith("_")}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


# Errors where Cypher that Neo4j runs may fail here (a missing property, a function the engine
# lacks, 0-based list indexing): the message points to the portable subset.
_DIALECT_ERRORS = ("Binder exception", "Parser exception", "Catalog exception", "Runtime exception")
_MISSING_KEY = "Unable to find primary key"  # the engine's COPY error for a missing endpoint


class LadybugStore(BaseStore):
    backend = "ladybug"
    bulk_checks_endpoints = True

    def __init__(self, settings: StoreSettings) -> None:
        super().__init__(settings)
        self.path = database_file(settings.uri)
        self._db: ladybug.Database | None = None
        self._conn: ladybug.Connection | None = None
        self._columns: dict[str, list[str]] = {}
        self._hint = ""
        # Told once when a read-only open waits for a writer's checkpoint (open_store(on_wait)).
        self.on_wait: Callable[[str], None] | None = None

    def connect(self) -> None:
        fix = "pass --store PATH (or set CIRCUITCAT_STORE) to a writable location"
        read_only = self.settings.read_only
        if read_only:
            require_catalog(self.path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            blocker = next((p for p in self.path.parents if p.is_file()), None)
            why = f"{blocker} is a file, not a folder" if blocker else e.strerror
            raise StoreUnavailableError(
                f"cannot create the store folder {self.path.parent}: {why}; {fix}"
            ) from e
        try:
            self._open(read_only)
        except RuntimeError as e:
            raise StoreUnavailableError(_open_error(self.path, str(e), fix)) from e
        self._hint = _UPGRADE_HINT if read_only and self._outdated() else ""

    def _open(self, read_only: bool) -> None:
        """Open the file. Read-only opens share it with a writer (another process's job or
        `serve`); one that meets the writer's checkpoint is retried for CHECKPOINT_WAIT_S."""
        deadline = time.monotonic() + CHECKPOINT_WAIT_S
        told = False
        while True:
            try:
                self._db = ladybug.Database(str(self.path), read_only=read_only)
                self._conn = ladybug.Connection(self._db)
                return
            except RuntimeError as e:
                if not read_only or not any(c in str(e) for c in _CHECKPOINT):
                    raise
                if time.monotonic() > deadline:
                    raise StoreUnavailableError(
                        f"a writer has been checkpointing {self.path} for over "
                        f"{CHECKPOINT_WAIT_S:.0f} s; try again when its job has finished"
                    ) from e
                if not told and self.on_wait is not None:
                    self.on_wait(
                        f"waiting: a writer is checkpointing {self.path} (up to "
                        f"{CHECKPOINT_WAIT_S:.0f} s)"
                    )
                told = True
                time.sleep(0.05)

    def _outdated(self) -> bool:
        """Whether the file lacks tables or properties of this circuitcat's schema (a read-only
        open cannot add them, as init_schema does)."""
        wanted = [(k.value, NODE_PROPS[k]) for k in NodeKind]
        wanted += [(r.value, REL_SPECS[r].props) for r in RelKind]
        try:
            return any(set(props) - set(self._table_columns(t)) for t, props in wanted)
        except QueryError:
            return True

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
        if self._db is not None:
            self._db.close()
        self._conn = self._db = None

    @property
    def conn(self) -> ladybug.Connection:
        if self._conn is None:
            raise StoreError("the store is closed; open it with open_store(...)")
        return self._conn

    def _execute(self, text: str, params: Mapping[str, Any] | None = None) -> QueryResult:
        try:
            result = self.conn.execute(text, dict(params or {}))
        except RuntimeError as e:
            raise QueryError(self._failed(str(e))) from e
        if isinstance(result, list):  # several statements: keep the last one's rows
            result = result[-1]
        columns = result.get_column_names()
        rows = [[_plain(v) for v in row] for row in result.get_all()]
        return QueryResult(columns, rows)

    def _failed(self, error: str) -> str:
        """The engine's error, with where to look when it is Cypher the other store takes."""
        where = PORTABLE_CYPHER if error.startswith(_DIALECT_ERRORS) else ""
        return f"query failed on the embedded store: {error.strip()}{self._hint}{where}"

    @contextmanager
    def _transaction(self, read_only: bool = False) -> Iterator[None]:
        self._execute("BEGIN TRANSACTION READ ONLY" if read_only else "BEGIN TRANSACTION")
        try:
            yield
        except BaseException:
            # The engine may already have rolled back after a failed statement.
            with suppress(QueryError):
                self._execute("ROLLBACK")
            raise
        self._execute("COMMIT")

    def init_schema(self) -> None:
        for stmt in statements.ladybug_ddl():
            self._execute(stmt)
        self._columns = {}
        wanted = [(k.value, NODE_PROPS[k]) for k in NodeKind]
        wanted += [(r.value, REL_SPECS[r].props) for r in RelKind]
        for table, props in wanted:
            # A catalog made by an older circuitcat lacks newer properties: add them.
            present = self._table_columns(table)
            for prop, ptype in props.items():
                if prop not in present:
                    self._execute(f"ALTER TABLE {table} ADD IF NOT EXISTS {quote(prop)} {ptype}")
            self._columns[table] = self._table_columns(table)

    def _table_columns(self, table: str) -> list[str]:
        """Property names in the table's own order (COPY matches Arrow columns by position)."""
        rows = self._execute(f"CALL table_info('{table}') RETURN *").rows
        return [str(r[1]) for r in rows]

    def _read(self, text: str, params: Mapping[str, Any]) -> QueryResult:
        return self._execute(text, params)

    def _bulk_nodes(self, batch: NodeBatch) -> None:
        table = batch.to_arrow().select(self._columns[batch.kind])
        self._execute(f"COPY {batch.kind} FROM $batch_rows", {"batch_rows": table})

    def _merge_nodes(self, batch: NodeBatch) -> None:
        stmt = statements.node_merge(batch.kind, batch.prop_names)
        with self._transaction():
            for start in range(0, len(batch), BATCH_ROWS):
                self._execute(stmt, {"rows": batch.rows(start, start + BATCH_ROWS)})

    def _bulk_edges(self, batch: EdgeBatch) -> None:
        # Tables joining several node pairs need the pair named; single-pair tables take none.
        pair = ""
        if len(REL_SPECS[batch.kind].pairs) > 1:
            pair = f" (from='{batch.src_kind}', to='{batch.dst_kind}')"
        table = batch.to_arrow().select(["from", "to", *self._columns[batch.kind]])
        try:
            self._execute(f"COPY {batch.kind} FROM $batch_rows{pair}", {"batch_rows": table})
        except QueryError as e:  # COPY writes nothing when an endpoint is missing
            if _MISSING_KEY in str(e):
                raise MissingEndpointError(f"{batch.kind} edges: {e}") from e
            raise

    def _merge_edges(self, batch: EdgeBatch) -> None:
        stmt = statements.edge_merge(batch.kind, batch.src_kind, batch.dst_kind, batch.prop_names)
        with self._transaction():
            for rows in batch.chunks(BATCH_ROWS):
                self._execute(stmt, {"rows": rows})

    def run_cypher(
        self,
        text: str,
        params: Mapping[str, Any] | None = None,
        *,
        write: bool = False,
        timeout: float | None = None,
    ) -> QueryResult:
        check_values(params or {})
        if write:
            self._refuse_if_read_only()
            return self._execute(text, params)
        check_ladybug(text)
        try:
            with self._timeout(timeout), self._transaction(read_only=True):
                return self._execute_one(text, params)
        except QueryError as e:
            if "read-only" in str(e) or "write operations" in str(e):
                raise ReadOnlyViolationError(
                    "this query writes to the catalog; pass --write to allow it"
                ) from e
            raise

    @contextmanager
    def _timeout(self, seconds: float | None) -> Iterator[None]:
        """The engine interrupts a query running past `seconds` (QueryTimeoutError)."""
        if not seconds:
            yield
            return
        self.conn.set_query_timeout(max(1, round(seconds * 1000)))
        try:
            yield
        except QueryError as e:
            if "Interrupted" in str(e):
                raise QueryTimeoutError(
                    f"the query ran past its time limit ({seconds:g} s) and was stopped"
                ) from e
            raise
        finally:
            self.conn.set_query_timeout(0)

    def _execute_one(self, text: str, params: Mapping[str, Any] | None) -> QueryResult:
        """Exactly one statement, as the engine parses it (prepare refuses several)."""
        with warnings.catch_warnings():  # prepare is deprecated in favour of execute(text)
            warnings.simplefilter("ignore", DeprecationWarning)
            prepared = self.conn.prepare(text)
        if not prepared.is_success():
            raise QueryError(self._failed(prepared.get_error_message()))
        try:
            result = self.conn.execute(prepared, dict(params or {}))
        except RuntimeError as e:
            raise QueryError(self._failed(str(e))) from e
        if isinstance(result, list):
            raise ReadOnlyViolationError("a read-only query is one statement")
        return QueryResult(
            result.get_column_names(), [[_plain(v) for v in row] for row in result.get_all()]
        )


def _open_error(path: Path, error: str, fix: str) -> str:
    """Why the embedded file did not open, and the fix."""
    if "not a valid" in error or "Not a valid" in error:
        return f"{path} is not a circuitcat catalog (not a Ladybug database file); {fix}"
    if "lock" in error.lower():
        holder = re.search(r"held by PID (\d+)", error)
        who = f"process {holder.group(1)}" if holder else "another process"
        return (
            f"cannot open the embedded store {path} for writing: {who} holds it open (an ingest "
            "job?); wait for it to finish, or use a Neo4j store for concurrent jobs"
        )
    return f"cannot open the embedded store {path}: {error}; {fix}"
