"""circuitcat.catalog: the graph schema, the two stores and the named queries. No torch here.

Open a store with `open_store(uri)`; write `NodeBatch`/`EdgeBatch` columns (or records turned
into batches with `records_to_batch`); read with `store.query(name, **params)` or
`store.run_cypher(text)`. Every error is a `CircuitcatError`.
"""

from .batches import EdgeBatch, NodeBatch
from .errors import (
    CircuitcatError,
    IngestError,
    InvalidRowsError,
    ModelLoadError,
    QueryError,
    QueryTimeoutError,
    ReadOnlyViolationError,
    StoreAuthError,
    StoreError,
    StoreUnavailableError,
    TaskError,
    TranscoderLoadError,
)
from .protocol import CatalogStore, QueryResult, StoreInfo, StoreSettings
from .records import (
    CircuitRecord,
    InterventionRecord,
    LabelRecord,
    ModelRecord,
    PromptRecord,
    RunRecord,
    TaskRecord,
    TranscoderSetRecord,
    records_to_batch,
)
from .schema import NodeKind, RelKind
from .store import open_store

__all__ = [
    "CatalogStore",
    "CircuitRecord",
    "CircuitcatError",
    "EdgeBatch",
    "IngestError",
    "InterventionRecord",
    "InvalidRowsError",
    "LabelRecord",
    "ModelLoadError",
    "ModelRecord",
    "NodeBatch",
    "NodeKind",
    "PromptRecord",
    "QueryError",
    "QueryResult",
    "QueryTimeoutError",
    "ReadOnlyViolationError",
    "RelKind",
    "RunRecord",
    "StoreAuthError",
    "StoreError",
    "StoreInfo",
    "StoreSettings",
    "StoreUnavailableError",
    "TaskError",
    "TaskRecord",
    "TranscoderLoadError",
    "TranscoderSetRecord",
    "open_store",
    "records_to_batch",
]
