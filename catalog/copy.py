"""Make one store equal another (e.g. a local embedded catalog copied to the team's Neo4j).

For each node kind and each relationship kind and node pair, the source and target are compared
by identity (a node's uid; an edge's endpoints plus its key properties) and by properties:
- in the source only: added;
- in both with different properties (or repeated on the target): changed, i.e. rewritten
  (an edge is deleted and written again, so properties the source lacks go too);
- in the target only: removed (edges first, then nodes with anything still attached).
So a circuit replaced on the source replaces on the target, deleted edges go, and copying again
changes nothing and says so. Both sides are read whole, one kind at a time: fine for catalogs of
millions of edges, not for a first load of hundreds of millions (docs/neo4j.md: bulk import).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import statements
from .batches import EdgeBatch, NodeBatch
from .protocol import CatalogStore
from .schema import NODE_PROPS, REL_SPECS, NodeKind, RelKind

Progress = Callable[[str, int], None]
Key = tuple[Any, ...]


@dataclass
class KindChanges:
    """What a copy did to one node or relationship kind on the target."""

    rows: int = 0  # in the source
    added: int = 0
    changed: int = 0
    removed: int = 0


def _frozen(value: Any) -> Any:
    return tuple(_frozen(v) for v in value) if isinstance(value, list) else value


def _read(store: CatalogStore, text: str, key: list[str]) -> dict[Key, list[dict[str, Any]]]:
    """Rows by identity (a list: a target may hold repeats), nulls left out."""
    result = store.run_cypher(text)
    out: dict[Key, list[dict[str, Any]]] = {}
    for rec in result.records():
        props = {k: _frozen(v) for k, v in rec.items() if v is not None}
        out.setdefault(tuple(rec[k] for k in key), []).append(props)
    return out


def _diff(
    source: dict[Key, list[dict[str, Any]]], target: dict[Key, list[dict[str, Any]]]
) -> tuple[list[Key], list[Key], list[Key]]:
    """(source only, changed or repeated on the target, target only)."""
    added = [k for k in source if k not in target]
    changed = [k for k in source if k in target and target[k] != source[k]]
    removed = [k for k in target if k not in source]
    return added, changed, removed


def _columns(rows: list[dict[str, Any]], names: list[str], keep: set[str]) -> dict[str, list]:
    """One list per property; a property null on every row is left out (unless in `keep`)."""
    cols = {n: [r.get(n) for r in rows] for n in names}
    return {n: [list(v) if isinstance(v, tuple) else v for v in c] for n, c in cols.items()
            if n in keep or any(v is not None for v in c)}  # fmt: skip


def _copy_nodes(source: CatalogStore, target: CatalogStore, kind: NodeKind) -> tuple[
    KindChanges, list[str]
]:  # fmt: skip
    """Add and change nodes of a kind; returns the changes and the uids to remove last."""
    text = statements.read_nodes(kind)
    src, tgt = _read(source, text, ["uid"]), _read(target, text, ["uid"])
    added, changed, removed = _diff(src, tgt)
    names = ["uid", *NODE_PROPS[kind]]
    if added:
        target.write_nodes(
            NodeBatch(kind, _columns([src[k][0] for k in added], names, {"uid"})),
            provenance=False,
        )
    if changed:
        rows = [src[k][0] for k in changed]
        target.write_nodes(NodeBatch(kind, _columns(rows, names, {"uid"})), provenance=False)
        _unset_missing(target, kind, changed, src, tgt)
    return KindChanges(len(src), len(added), len(changed), len(removed)), [k[0] for k in removed]


def _unset_missing(
    target: CatalogStore, kind: NodeKind, keys: list[Key], src: dict, tgt: dict
) -> None:
    """Unset the properties that changed nodes have on the target but not on the source."""
    unset: dict[str, list[str]] = {}
    for k in keys:
        for prop in (set(tgt[k][0]) - set(src[k][0])) & set(NODE_PROPS[kind]):
            unset.setdefault(prop, []).append(k[0])
    for prop, uids in sorted(unset.items()):
        target.run_cypher(statements.node_unset(kind, prop), {"uids": uids}, write=True)


def _copy_edges(
    source: CatalogStore, target: CatalogStore, rel: RelKind, src_kind: NodeKind, dst: NodeKind
) -> KindChanges:
    spec = REL_SPECS[rel]
    key = ["src", "dst", *spec.key]
    text = statements.read_edges(rel, src_kind, dst)
    src, tgt = _read(source, text, key), _read(target, text, key)
    added, changed, removed = _diff(src, tgt)
    names, keys = list(spec.props), set(spec.key)

    def batch(rows: list[dict[str, Any]]) -> EdgeBatch:
        cols = _columns(rows, names, keys)
        return EdgeBatch(rel, src_kind, dst, [r["src"] for r in rows],
                         [r["dst"] for r in rows], cols)  # fmt: skip

    gone = [dict(zip(key, k, strict=True)) for k in removed + changed]
    if gone:
        target.delete_edges(batch(gone))
    new = [src[k][0] for k in added + changed]
    if new:
        target.write_edges(batch(new))
    return KindChanges(len(src), len(added), len(changed), len(removed))


def copy_catalog(
    source: CatalogStore, target: CatalogStore, progress: Progress | None = None
) -> dict[str, KindChanges]:
    """Make the target equal the source (module doc); the changes per node and edge kind."""
    changes: dict[str, KindChanges] = {}
    doomed: dict[NodeKind, list[str]] = {}
    for kind in NodeKind:
        changes[kind.value], doomed[kind] = _copy_nodes(source, target, kind)
        if progress:
            progress(kind.value, changes[kind.value].rows)
    for rel, spec in REL_SPECS.items():
        total = Counter[str]()
        for src_kind, dst in spec.pairs:
            c = _copy_edges(source, target, rel, src_kind, dst)
            total.update(rows=c.rows, added=c.added, changed=c.changed, removed=c.removed)
        changes[rel.value] = KindChanges(**total)
        if progress:
            progress(rel.value, total["rows"])
    for kind, uids in doomed.items():
        if uids:
            target.delete_nodes(kind, uids)
    return changes
