"""Copy a whole catalog from one store to another (e.g. a local embedded catalog to the team's
Neo4j). Nodes first, then edges, each kind through the target's normal idempotent write path,
so copying twice adds nothing and a copy can be resumed by running it again."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import statements
from .batches import EdgeBatch, NodeBatch
from .schema import REL_SPECS, NodeKind
from .store import CatalogStore

Progress = Callable[[str, int], None]


def _columns(rows: list[list[Any]], names: list[str]) -> dict[str, list[Any]]:
    return {name: [row[i] for row in rows] for i, name in enumerate(names)}


def copy_catalog(
    source: CatalogStore, target: CatalogStore, progress: Progress | None = None
) -> dict[str, int]:
    """Copy every node and relationship; returns the rows copied per kind."""
    copied: dict[str, int] = {}
    for kind in NodeKind:
        result = source.run_cypher(statements.read_nodes(kind))
        if result.rows:
            cols = _columns(result.rows, result.columns)
            # Properties a node never had come back as null: leave them out, not null them.
            cols = {k: v for k, v in cols.items() if k == "uid" or any(x is not None for x in v)}
            target.write_nodes(NodeBatch(kind, cols))
        copied[kind.value] = len(result.rows)
        if progress:
            progress(kind.value, len(result.rows))
    for rel, spec in REL_SPECS.items():
        total = 0
        for src, dst in spec.pairs:
            result = source.run_cypher(statements.read_edges(rel, src, dst))
            if not result.rows:
                continue
            cols = _columns(result.rows, result.columns)
            props = {
                k: v
                for k, v in cols.items()
                if k not in ("src", "dst") and (k in spec.key or any(x is not None for x in v))
            }
            target.write_edges(EdgeBatch(rel, src, dst, cols["src"], cols["dst"], props))
            total += len(result.rows)
        copied[rel.value] = total
        if progress:
            progress(rel.value, total)
    return copied
