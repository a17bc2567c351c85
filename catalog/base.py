"""The write algorithm both stores share; each backend supplies a few primitives.

Nodes: upsert by uid, in bulk when none of the batch's uids exist yet.
Edges: first check every endpoint exists (an edge to a missing node is an error, not a silent
skip), then take the bulk path when no stored edge of this kind with the batch's key values
(via, prompt) leaves any batch source or enters any batch target (nothing can be repeated),
else MERGE on the edge's key.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, Self

from . import statements
from .batches import EdgeBatch, NodeBatch
from .errors import InvalidRowsError
from .queries import get_query
from .schema import REL_SPECS, NodeKind, RelKind
from .store import QueryResult, StoreInfo, StoreSettings

BATCH_ROWS = 10_000


class BaseStore(ABC):
    backend: str

    def __init__(self, settings: StoreSettings) -> None:
        self.settings = settings
        self.uri = settings.uri

    # ---- primitives each backend provides -------------------------------------------------
    @abstractmethod
    def connect(self) -> None: ...

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def init_schema(self) -> None: ...

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

    @abstractmethod
    def run_cypher(
        self, text: str, params: Mapping[str, Any] | None = None, *, write: bool = False
    ) -> QueryResult: ...

    # ---- shared behaviour --------------------------------------------------------------------
    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _scalar(self, text: str, params: Mapping[str, Any] | None = None) -> int:
        result = self._read(text, params or {})
        return int(result.rows[0][0]) if result.rows else 0

    def query(self, name: str, **params: Any) -> list[dict[str, Any]]:
        """Run a named read query from the query files."""
        return self._read(get_query(self.backend, name), params).records()

    def write_nodes(self, batch: NodeBatch) -> int:
        if not len(batch):
            return 0
        present = self._scalar(statements.count_present(batch.kind), {"uids": batch.uids})
        if present == 0:
            self._bulk_nodes(batch)
        else:
            self._merge_nodes(batch)
        return len(batch)

    def write_edges(self, batch: EdgeBatch) -> int:
        if not len(batch):
            return 0
        sources, targets = batch.unique("src"), batch.unique("dst")
        self._check_endpoints(batch.src_kind, sources, batch, "source")
        self._check_endpoints(batch.dst_kind, targets, batch, "target")
        if self._may_repeat(batch, sources, targets):
            self._merge_edges(batch)
        else:
            self._bulk_edges(batch)
        return len(batch)

    def _may_repeat(self, batch: EdgeBatch, sources: list[str], targets: list[str]) -> bool:
        """False when no stored edge of this kind with the batch's key values leaves any batch
        source, or none enters any batch target: then no row can repeat a stored edge."""
        filters = [k for k in statements.FILTER_KEYS if k in REL_SPECS[batch.kind].key]
        values = {f"{k}_values": batch.unique(k) for k in filters}
        for side, kind, uids in (
            ("src", batch.src_kind, sources),
            ("dst", batch.dst_kind, targets),
        ):
            stmt = statements.count_existing(batch.kind, kind, side, filters)
            if self._scalar(stmt, {"uids": uids, **values}) == 0:
                return False
        return True

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

    def info(self) -> StoreInfo:
        version = str(self.query("store_version")[0]["version"])
        nodes, rels = self.counts()
        return StoreInfo(self.uri, self.backend, version, nodes, rels)
