"""The one open store a server process reads through, and the lock the embedded engine needs.

Ladybug runs in process and one connection serves one query at a time, so requests take turns
on it; the Neo4j driver pools its own connections, so requests run side by side. A read-only
server opens the embedded file read-only (it changes no byte, and shares the file with a writer
such as an ingest job or `circuitcat feature label`) and reopens it when the file has changed
since, so a page shows what the writer committed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from circuitcat.catalog import CatalogStore, QueryResult, open_store
from circuitcat.catalog.errors import CircuitcatError, QueryError
from circuitcat.catalog.ladybug_store import database_file

from ..common import existing_store
from .config import ServeConfig


class ServedCatalog:
    """The store, opened once for the process."""

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self._store: CatalogStore | None = None
        self._lock: threading.Lock | nullcontext[None] = nullcontext()
        self._files: list[Path] = []  # a read-only embedded store's files, watched for changes
        self._seen: list[tuple[int, int] | None] = []

    def open(self) -> None:
        # Read-only unless someone may write labels; the schema is created only by a writer
        # (a Neo4j user with read rights only cannot create constraints).
        writable = self.config.writable
        # A writer needs a catalog that exists: a mistyped --store is an error, not a new one.
        self._store = (
            existing_store(self.config.store)
            if writable
            else open_store(self.config.store, read_only=True)
        )
        if self._store.backend == "ladybug":
            self._lock = threading.Lock()
            if not writable and not _has_label_tables(self._store):
                # A catalog from before labels: add the (empty) tables once, as any writing
                # command would, then read it read-only again.
                self._store.close()
                open_store(self.config.store).close()
                self._store = open_store(self.config.store, read_only=True)
            if not writable:
                path = database_file(self._store.uri)
                self._files = [path, path.with_name(path.name + ".wal")]
                self._seen = self._stamps()

    def _stamps(self) -> list[tuple[int, int] | None]:
        stamps: list[tuple[int, int] | None] = []
        for f in self._files:
            try:
                st = f.stat()
            except FileNotFoundError:
                stamps.append(None)
            else:
                stamps.append((st.st_mtime_ns, st.st_size))
        return stamps

    def _reopen_if_changed(self) -> None:
        """A read-only embedded store sees the file as it was when opened: reopen it after a
        writer in another process changed it."""
        if not self._files:
            return
        stamps = self._stamps()
        if self._store is not None and stamps == self._seen:
            return
        if self._store is not None:
            self._store.close()
            self._store = None  # a failed reopen is tried again on the next request
        self._store = open_store(self.config.store, read_only=True)
        self._seen = stamps

    @property
    def is_open(self) -> bool:
        return self._store is not None

    def close(self) -> None:
        self._files = []  # closed for good: no reopening
        if self._store is not None:
            self._store.close()
            self._store = None

    @property
    def backend(self) -> str:
        return self.store.backend

    @property
    def store(self) -> CatalogStore:
        if self._store is None:
            raise CircuitcatError("the server's store is not open")
        return self._store

    @contextmanager
    def use(self) -> Iterator[CatalogStore]:
        """The store, for one request's reads (or one label write)."""
        with self._lock:
            self._reopen_if_changed()
            yield self.store

    def cypher(self, text: str, params: Mapping[str, Any]) -> QueryResult:
        """Ad hoc Cypher through the store's read-only path, under the server's timeout."""
        with self.use() as store:
            return store.run_cypher(text, params, write=False, timeout=self.config.cypher_timeout_s)


def _has_label_tables(store: CatalogStore) -> bool:
    """Whether the catalog has the tables people write (labels, saved interventions); one
    made by an older circuitcat lacks them."""
    try:
        store.query("web_feature_labels", uid="", limit=1)
        store.query("interventions", limit=1)
    except QueryError:
        return False
    return True
