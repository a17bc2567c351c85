"""What a store is: the `CatalogStore` protocol both backends implement, its result types, and
the settings a store is opened with.

Settings resolve once: argument > CIRCUITCAT_* environment > default (a per-user data
directory). A user and password written into a Neo4j URI (bolt://user:pw@host) are taken out of
it: the URI the store keeps, shows and reports has none.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Self, runtime_checkable
from urllib.parse import SplitResult, unquote, urlsplit

from platformdirs import user_data_dir
from pydantic import BaseModel, ConfigDict

from .batches import EdgeBatch, NodeBatch
from .errors import StoreUnavailableError
from .schema import NodeKind

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
    # Run nodes per (kind, status); "stale" counts runs left "running" by a job that is gone.
    runs: dict[tuple[str, str], int] = field(default_factory=dict)


@runtime_checkable
class CatalogStore(Protocol):
    """What every store does. Writes are idempotent: re-writing a batch adds nothing."""

    uri: str
    backend: str

    def connect(self) -> None: ...
    def init_schema(self) -> None: ...
    def write_nodes(self, batch: NodeBatch, *, provenance: bool = True) -> int: ...
    def write_edges(self, batch: EdgeBatch) -> int: ...
    def delete_nodes(self, kind: NodeKind, uids: list[str]) -> int: ...
    def delete_edges(self, batch: EdgeBatch) -> int: ...
    def query(self, name: str, /, **params: Any) -> list[dict[str, Any]]: ...
    def run_cypher(
        self,
        text: str,
        params: Mapping[str, Any] | None = None,
        *,
        write: bool = False,
        timeout: float | None = None,
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
    # Neo4j: write transactions in flight at once (parallel sessions over disjoint targets).
    neo4j_writers: int = 4
    # Opened for reading only: the embedded file opens read-only, nothing is created.
    read_only: bool = False

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
    read_only: bool = False,
) -> StoreSettings:
    env = os.environ if env is None else env
    given = uri if uri is not None else env.get("CIRCUITCAT_STORE")
    if given is not None and not given.strip():
        raise StoreUnavailableError(
            "the store location is empty; pass --store PATH or a bolt:// URI, or leave --store "
            "and CIRCUITCAT_STORE unset for the per-user default"
        )
    location, url_user, url_password = _split_credentials(given or str(default_store_path()))
    return StoreSettings(
        uri=location,
        neo4j_user=url_user or user or env.get("CIRCUITCAT_NEO4J_USER"),
        neo4j_password=url_password or password or env.get("CIRCUITCAT_NEO4J_PASSWORD"),
        neo4j_database=env.get("CIRCUITCAT_NEO4J_DATABASE"),
        neo4j_writers=_writers(env.get("CIRCUITCAT_NEO4J_WRITERS")),
        read_only=read_only,
    )


def _writers(text: str | None) -> int:
    """CIRCUITCAT_NEO4J_WRITERS: a whole number from 1 (one transaction at a time) to 64."""
    if text is None or not text.strip():
        return StoreSettings.model_fields["neo4j_writers"].default
    if not text.strip().isdigit() or not 1 <= int(text) <= 64:
        raise StoreUnavailableError(
            f"CIRCUITCAT_NEO4J_WRITERS={text!r}: expected a whole number from 1 to 64 (write "
            "transactions in flight at once; 1 writes one chunk at a time)"
        )
    return int(text)


def redact(uri: str) -> str:
    """The URI with any password replaced by ***, for messages."""
    if "://" not in uri or "@" not in uri.split("://", 1)[1]:
        return uri
    scheme, rest = uri.split("://", 1)
    userinfo, _, host = rest.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in userinfo else f"{scheme}://{user}@{host}"


def _split_credentials(uri: str) -> tuple[str, str | None, str | None]:
    """(URI without user:password@, user, password) for a Neo4j URI; paths pass unchanged.
    A port that is not a number is a StoreUnavailableError naming the fix."""
    if not uri.startswith(NEO4J_SCHEMES):
        return uri, None, None
    parts = urlsplit(uri)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if not parts.hostname or port == -1:
        raise StoreUnavailableError(
            f"{redact(uri)} is not a valid Neo4j URI; write it as bolt://HOST:PORT "
            "(PORT a number, e.g. 7687)"
        )
    netloc = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    netloc += f":{port}" if port is not None else ""
    clean = SplitResult(parts.scheme, netloc, parts.path, parts.query, parts.fragment).geturl()
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    return clean, user, password
