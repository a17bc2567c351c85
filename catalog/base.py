"""The write algorithm both stores share; each backend supplies a few primitives.

Nodes: upsert by uid, in bulk when none of the batch's uids exist yet.
Edges: the bulk path when no stored edge of this kind with the batch's key values (via,
prompt) leaves any batch source or enters any batch target (nothing can be repeated), else
MERGE on the edge's key. Every endpoint must exist (an edge to a missing node is an error, not
a silent skip): checked before the write, or, where the engine's bulk load refuses a missing
endpoint and writes nothing (Ladybug's COPY), checked only when it does.

Runs: the store remembers the Run nodes it wrote as "running" and marks them failed when it is
left by an exception; a new run finds the stale ones of its kind (catalog/runs.py).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from contextlib import suppress
from functools import cache
from typing import Any, Self

from . import runs, statements
from .batches import EdgeBatch, NodeBatch
from .errors import (
    CircuitcatError,
    InvalidRowsError,
    MissingEndpointError,
    QueryError,
    ReadOnlyViolationError,
)
from .protocol import CatalogStore, QueryResult, StoreInfo, StoreSettings
from .queries import get_query
from .readonly import parameter_names
from .schema import REL_SPECS, NodeKind, RelKind

BATCH_ROWS = 10_000
INT64 = (-(2**63), 2**63 - 1)


@cache
def _query_params(backend: str, name: str) -> frozenset[str]:
    return frozenset(parameter_names(get_query(backend, name)))


def check_values(params: Mapping[str, Any]) -> None:
    """Parameter values both engines can take: integers must fit in 64 bits."""

    def bad(value: Any) -> bool:
        if isinstance(value, bool):
            return False
        if isinstance(value, int):
            return not INT64[0] <= value <= INT64[1]
        if isinstance(value, list | tuple):
            return any(bad(v) for v in value)
        if isinstance(value, dict):
            return any(bad(v) for v in value.values())
        return False

    for key, value in params.items():
        if bad(value):
            shown = str(value) if len(str(value)) <= 40 else str(value)[:37] + "..."
            raise QueryError(
                f"parameter {key}={shown} is out of range: integers must fit in 64 bits "
                f"({INT64[0]} to {INT64[1]})"
            )


class BaseStore(CatalogStore, ABC):
    """The shared half of a `CatalogStore` (the protocol states the interface once): writes,
    named queries, runs. A backend adds `connect`, `close`, `init_schema`, `run_cypher`, `info`
    and the primitives below."""

    backend: str

    def __init__(self, settings: StoreSettings) -> None:
        self.settings = settings
        self.uri = settings.uri
        self._open_runs: set[str] = set()

    # ---- primitives each backend provides -------------------------------------------------
    @abstractmethod
    def _read(self, text: str, params: Mapping[str, Any]) -> QueryResult: ...

    @abstractmethod
    def _bulk_nodes(self, batch: NodeBatch) -> None: ...

    @abstractmethod
    def _merge_nodes(self, batch: NodeBatch) -> None: ...

    @abstractmethod
    def _bulk_edges(self, batch: EdgeBatch) -> None: ...

    @abstractmethod
    def _merge_edges(self, batch: EdgeBatch) -> None: ...

    # ---- shared behaviour --------------------------------------------------------------------
    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        exc = exc_info[1] if len(exc_info) > 1 else None
        try:
            if isinstance(exc, BaseException) and self._open_runs:
                with suppress(CircuitcatError):  # a store that went away is found stale later
                    runs.mark_failed(self, self._open_runs, runs.error_text(exc))
        finally:
            self.close()

    # ---- runs (see catalog/runs.py) ----------------------------------------------------------
    def _is_stale(self, row: Mapping[str, Any]) -> bool:
        """Whether a running run that this store did not start is dead. The embedded file has
        one writer at a time, so when this store writes, every such run is (a read-only opener
        cannot tell); Neo4j overrides this."""
        return not self.settings.read_only and str(row["uid"]) not in self._open_runs

    def _on_runs_opened(self, uids: list[str]) -> None:
        """Called after the store wrote new running runs (Neo4j starts its heartbeat)."""

    def _track_runs(self, batch: NodeBatch, written: bool) -> None:
        rows = runs.run_rows(batch)
        opened = [(u, k) for u, k, st in rows if st == runs.RUNNING and u not in self._open_runs]
        if not written:  # before the write: the runs these replace are found stale first
            keep = self._open_runs | {u for u, _, _ in rows}
            for kind in sorted({k for _, k in opened}):
                runs.mark_stale(self, kind, keep, self._is_stale)
            return
        for uid, _, status in rows:
            if status in (runs.DONE, runs.FAILED):
                self._open_runs.discard(uid)
        if opened:
            self._open_runs.update(u for u, _ in opened)
            self.run_cypher(
                runs.REOPENED, {"uids": [u for u, _ in opened], "now": runs.now_iso()}, write=True
            )
            self._on_runs_opened([u for u, _ in opened])

    def _refuse_if_read_only(self) -> None:
        if self.settings.read_only:
            raise ReadOnlyViolationError(
                f"the store {self.uri} was opened read-only; open it without read_only to write"
            )

    def _scalar(self, text: str, params: Mapping[str, Any] | None = None) -> int:
        result = self._read(text, params or {})
        return int(result.rows[0][0]) if result.rows else 0

    def query(self, name: str, /, **params: Any) -> list[dict[str, Any]]:
        """Run a named read query from the query files with exactly its parameters."""
        text = get_query(self.backend, name)
        wanted = _query_params(self.backend, name)
        missing, unknown = sorted(wanted - set(params)), sorted(set(params) - wanted)
        if missing or unknown:
            takes = ", ".join(sorted(wanted)) or "no parameters"
            problem = f"needs {', '.join(missing)}" if missing else f"has no {', '.join(unknown)}"
            raise QueryError(f"named query {name!r} {problem}: it takes {takes}")
        check_values(params)
        return self._read(text, params).records()

    def write_nodes(self, batch: NodeBatch, *, provenance: bool = True) -> int:
        """Upsert nodes by uid. Run nodes written with `provenance` (the default) are this
        store's jobs: tracked as above. A copy writes them as plain data (provenance=False)."""
        if not len(batch):
            return 0
        self._refuse_if_read_only()
        track = provenance and batch.kind is NodeKind.RUN
        if track:
            self._track_runs(batch, written=False)
        present = self._scalar(statements.count_present(batch.kind), {"uids": batch.uids})
        if present == 0:
            self._bulk_nodes(batch)
        else:
            self._merge_nodes(batch)
        if track:
            self._track_runs(batch, written=True)
        return len(batch)

    # A backend whose bulk load refuses a missing endpoint, writing nothing (Ladybug's COPY),
    # raises MissingEndpointError from _bulk_edges instead of being checked before it.
    bulk_checks_endpoints = False

    def write_edges(self, batch: EdgeBatch) -> int:
        if not len(batch):
            return 0
        self._refuse_if_read_only()
        if self._may_repeat(batch):
            self._check_both_endpoints(batch)
            self._merge_edges(batch)
        elif self.bulk_checks_endpoints:
            try:
                self._bulk_edges(batch)
            except MissingEndpointError:
                self._check_both_endpoints(batch)  # raises InvalidRowsError naming them
                raise
        else:
            self._check_both_endpoints(batch)
            self._bulk_edges(batch)
        return len(batch)

    def _may_repeat(self, batch: EdgeBatch) -> bool:
        """False when no stored edge of this kind with the batch's key values leaves any batch
        source, or none enters any batch target: then no row can repeat a stored edge.
        Targets first: a job's fresh unit (a new target layer, a new prompt) has none, and
        that check costs what the batch's targets hold, while its sources' (earlier layers,
        shared tokens) outgoing edges grow with the catalog."""
        filters = [k for k in statements.FILTER_KEYS if k in REL_SPECS[batch.kind].key]
        values = {f"{k}_values": batch.unique(k) for k in filters}
        for side, kind in (("dst", batch.dst_kind), ("src", batch.src_kind)):
            stmt = statements.count_existing(batch.kind, kind, side, filters)
            if self._scalar(stmt, {"uids": batch.unique(side), **values}) == 0:
                return False
        return True

    def _check_both_endpoints(self, batch: EdgeBatch) -> None:
        self._check_endpoints(batch.src_kind, batch.unique("src"), batch, "source")
        self._check_endpoints(batch.dst_kind, batch.unique("dst"), batch, "target")

    def _check_endpoints(
        self, kind: NodeKind, uids: list[str], batch: EdgeBatch, role: str
    ) -> None:
        present = self._scalar(statements.count_present(kind), {"uids": uids})
        if present == len(uids):
            return
        missing = [r[0] for r in self._read(statements.find_missing(kind), {"uids": uids}).rows]
        raise InvalidRowsError(
            f"{batch.kind} edges: {len(uids) - present} {role} {kind} node(s) do not exist "
            f"(e.g. {missing}); write the nodes before the edges. Nothing was written."
        )

    def counts(self) -> tuple[dict[str, int], dict[str, int]]:
        nodes = {k.value: self._scalar(statements.count_nodes(k)) for k in NodeKind}
        rels = {k.value: self._scalar(statements.count_rels(k)) for k in RelKind}
        return nodes, rels

    def delete_nodes(self, kind: NodeKind, uids: list[str]) -> int:
        """Delete nodes of a kind by uid, with their relationships."""
        self._refuse_if_read_only()
        for start in range(0, len(uids), BATCH_ROWS):
            chunk = uids[start : start + BATCH_ROWS]
            self.run_cypher(statements.node_delete(kind), {"uids": chunk}, write=True)
        return len(uids)

    def delete_edges(self, batch: EdgeBatch) -> int:
        """Delete the batch's edges (matched on endpoints and key properties)."""
        self._refuse_if_read_only()
        stmt = statements.edge_delete(batch.kind, batch.src_kind, batch.dst_kind)
        for rows in batch.chunks(BATCH_ROWS):
            self.run_cypher(stmt, {"rows": rows}, write=True)
        return len(batch)

    def info(self) -> StoreInfo:
        version = str(self.query("store_version")[0]["version"])
        nodes, rels = self.counts()
        run_counts = runs.status_counts(self, self._is_stale)
        return StoreInfo(self.uri, self.backend, version, nodes, rels, run_counts)
