"""The one store protocol both backends implement, and `open_store` that picks a backend by URI.

bolt://, neo4j://, neo4j+s:// (and bolt+s://...) go to Neo4j; anything else is a filesystem path
for the embedded Ladybug store. Settings resolve once: argument > CIRCUITCAT_* environment >
default (a per-user data directory).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Self

from platformdirs import user_data_dir
from pydantic import BaseModel, ConfigDict

from .batches import EdgeBatch, NodeBatch
from .errors import StoreUnavailableError

NEO4J_SCHEMES = ("bolt://", "bolt+s://", "bolt+ssc://", "neo4j://", "neo4j+s://", "neo4j+ssc://")


@dataclass(frozen=True)
class QueryResult:
    """Rows of a query as plain values, columns in the order the query returned them."""

    columns: list[str]
    rows: list[list[Any]]

    def records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


@dataclass(frozen=True)
class StoreInfo:
    uri: str
    backend: str
    version: str
    nodes: dict[str, int] = field(default_factory=dict)
    relationships: dict[str, int] = field(default_factory=dict)


class CatalogStore(Protocol):
    """What every store does. Writes are idempotent: re-writing a batch adds nothing."""

    uri: str
    backend: str

    def connect(self) -> None: ...
    def init_schema(self) -> None: ...
    def write_nodes(self, batch: NodeBatch) -> int: ...
    def write_edges(self, batch: EdgeBatch) -> int: ...
    def query(self, name: str, **params: Any) -> list[dict[str, Any]]: ...
    def run_cypher(
        self, text: str, params: Mapping[str, Any] | None = None, *, write: bool = False
    ) -> QueryResult: ...
    def info(self) -> StoreInfo: ...
    def close(self) -> None: ...
    def __enter__(self) -> Self: ...
    def __exit__(self, *exc: object) -> None: ...


class StoreSettings(BaseModel):
    """Where the catalog lives and how to log in; resolved once per command."""

    model_config = ConfigDict(frozen=True)
    uri: str
    neo4j_user: str | None = None
    neo4j_password: str | None = None
    neo4j_database: str | None = None

    @property
    def is_neo4j(self) -> bool:
        return self.uri.startswith(NEO4J_SCHEMES)


def default_store_path() -> Path:
    return Path(user_data_dir("circuitcat")) / "catalog.lbug"


def resolve_settings(
    uri: str | None = None,
    *,
    user: str | None = None,
    password: str | None = None,
    env: Mapping[str, str] | None = None,
) -> StoreSettings:
    env = os.environ if env is None else env
    return StoreSettings(
        uri=uri or env.get("CIRCUITCAT_STORE") or str(default_store_path()),
        neo4j_user=user or env.get("CIRCUITCAT_NEO4J_USER"),
        neo4j_password=password or env.get("CIRCUITCAT_NEO4J_PASSWORD"),
        neo4j_database=env.get("CIRCUITCAT_NEO4J_DATABASE"),
    )


def open_store(uri: str | None = None, *, init: bool = True, **kwargs: Any) -> CatalogStore:
    """Connect to the store at `uri` (see module doc) and, by default, create its schema."""
    settings = resolve_settings(uri, **kwargs)
    store: CatalogStore
    if settings.is_neo4j:
        from .neo4j_store import Neo4jStore

        store = Neo4jStore(settings)
    elif "://" in settings.uri:
        scheme = settings.uri.split("://", 1)[0]
        raise StoreUnavailableError(
            f"unknown store URI scheme {scheme!r} in {settings.uri!r}; use bolt:// or neo4j:// "
            "for Neo4j, or a filesystem path for the embedded store"
        )
    else:
        from .ladybug_store import LadybugStore

        store = LadybugStore(settings)
    store.connect()
    try:
        if init:
            store.init_schema()
    except BaseException:
        store.close()
        raise
    return store
