"""A catalog's content as one checksum: every node and edge with every property, in a fixed
order, so "nothing changed" is one comparison (bypass and bad-input tests). A Run's
heartbeat_at is left out: it is a live job's clock, not content."""

from __future__ import annotations

import hashlib
import json

from circuitcat.catalog import CatalogStore
from circuitcat.catalog import statements as st
from circuitcat.catalog.schema import REL_SPECS, NodeKind


def content(store: CatalogStore) -> dict[str, list[str]]:
    """Per node kind and relationship kind, the sorted JSON of its rows."""
    out: dict[str, list[str]] = {}
    for kind in NodeKind:
        rows = store.run_cypher(st.read_nodes(kind)).records()
        for row in rows:
            row.pop("heartbeat_at", None)
        out[kind.value] = sorted(json.dumps(r, sort_keys=True, default=str) for r in rows)
    for rel, spec in REL_SPECS.items():
        rows = [
            r
            for src, dst in spec.pairs
            for r in store.run_cypher(st.read_edges(rel, src, dst)).records()
        ]
        out[rel.value] = sorted(json.dumps(r, sort_keys=True, default=str) for r in rows)
    return out


def checksum(store: CatalogStore) -> str:
    return hashlib.sha256(json.dumps(content(store), sort_keys=True).encode()).hexdigest()
