"""circuitcat.catalog: the graph schema, the two stores and the named queries. No torch here."""

from .batches import EdgeBatch, NodeBatch
from .errors import CircuitcatError
from .schema import NodeKind, RelKind
from .store import CatalogStore, QueryResult, StoreInfo, open_store

__all__ = [
    "CatalogStore",
    "CircuitcatError",
    "EdgeBatch",
    "NodeBatch",
    "NodeKind",
    "QueryResult",
    "RelKind",
    "StoreInfo",
    "open_store",
]
