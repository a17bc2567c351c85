"""The write algorithm both stores share; each backend supplies a few primitives.

Nodes: upsert by uid, in bulk when none of the batch's uids exist yet.
Edges: first check every endpoint exists (an edge to a missing node is an error, not a silent
skip), then take the bulk path when no edge of this kind leaves any of the batch's sources yet
(a first load: nothing can be duplicated), else MERGE on the edge's key.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, Self

from . import statements
from .batches import EdgeBatch, NodeBatch
from .errors import InvalidRowsError
from .queries import get_query
from .schema import NodeKind, RelKind
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
        self._check_endpoints(batch.src_kind, sorted(set(batch.src)), batch, "source")
        self._check_endpoints(batch.dst_kind, sorted(set(batch.dst)), batch, "target")
        sources = sorted(set(batch.src))
        existing = self._scalar(
            statements.count_existing_out(batch.kind, batch.src_kind), {"uids": sources}
        )
        if existing == 0:
            self._bulk_edges(batch)
        else:
            self._merge_edges(batch)
        return len(batch)

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
