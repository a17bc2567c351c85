"""`open_store`: pick the backend for a location, connect, create the schema.

bolt://, neo4j://, neo4j+s:// (and bolt+s://...) go to Neo4j; anything else is a filesystem path
for the embedded Ladybug store. To add a backend, add its class to BACKENDS (module and class
name, imported only when used, so the CLI does not load every driver) and a scheme for it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from .errors import StoreUnavailableError
from .protocol import (
    NEO4J_SCHEMES,
    CatalogStore,
    QueryResult,
    StoreInfo,
    StoreSettings,
    default_store_path,
    redact,
    resolve_settings,
)
from .upgrade import upgrade

__all__ = [
    "CatalogStore",
    "QueryResult",
    "StoreInfo",
    "StoreSettings",
    "default_store_path",
    "open_store",
    "redact",
    "resolve_settings",
]

# scheme -> (module, class); a location without a scheme is an embedded store's path
BACKENDS: dict[str, tuple[str, str]] = {
    **{scheme.removesuffix("://"): (".neo4j_store", "Neo4jStore") for scheme in NEO4J_SCHEMES},
    "": (".ladybug_store", "LadybugStore"),
}


def _backend(settings: StoreSettings) -> Any:
    scheme = settings.uri.split("://", 1)[0] if "://" in settings.uri else ""
    if scheme not in BACKENDS:
        raise StoreUnavailableError(
            f"unknown store URI scheme {scheme!r} in {redact(settings.uri)!r}; use bolt:// or "
            "neo4j:// for Neo4j, or a filesystem path for the embedded store"
        )
    module, name = BACKENDS[scheme]
    return getattr(importlib.import_module(module, __package__), name)


def open_store(
    uri: str | None = None,
    *,
    init: bool = True,
    read_only: bool = False,
    on_wait: Callable[[str], None] | None = None,
    **kwargs: Any,
) -> CatalogStore:
    """Connect to the store at `uri` (see module doc) and, by default, create its schema.

    `read_only`: for commands that only read. The embedded file opens read-only: no byte of it
    changes, a missing one is an error (not a new catalog), no schema is created, writes are
    refused, and it opens while a writer holds it (an open that meets the writer's checkpoint
    waits for it, telling `on_wait` once why)."""
    settings = resolve_settings(uri, read_only=read_only, **kwargs)
    store: CatalogStore = _backend(settings)(settings)
    if on_wait is not None and not settings.is_neo4j:
        store.on_wait = on_wait  # type: ignore[attr-defined]
    store.connect()
    try:
        if init and not read_only:
            store.init_schema()
            upgrade(store)
    except BaseException:
        store.close()
        raise
    return store
