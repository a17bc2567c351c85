"""Columnar batches of nodes and edges, validated before anything is written.

A batch holds one array per property (numpy arrays or lists), never one Python object per
node or edge. Validation rejects the whole batch with one message naming the first bad row,
so a store never receives half a batch of bad data. A batch of zero rows is valid: every store
writes nothing for it and returns 0.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .errors import InvalidRowsError
from .schema import NODE_PROPS, REL_SPECS, NodeKind, PropType, RelKind

Column = np.ndarray | Sequence[Any]

_ARROW_TYPES: dict[PropType, pa.DataType] = {
    PropType.STRING: pa.string(),
    PropType.INT: pa.int64(),
    PropType.FLOAT: pa.float64(),
    PropType.FLOAT_LIST: pa.list_(pa.float64()),
    PropType.INT_LIST: pa.list_(pa.int64()),
    PropType.STRING_LIST: pa.list_(pa.string()),
}


def _length(columns: Mapping[str, Column], what: str) -> int:
    lengths = {name: len(col) for name, col in columns.items()}
    if len(set(lengths.values())) > 1:
        raise InvalidRowsError(
            f"{what}: columns have different lengths {lengths}; pass one value per row"
        )
    return next(iter(lengths.values()), 0)


def _strings(values: Column) -> pa.Array:
    """A uid-like column as an Arrow array (C++ speed for the checks below); None stays null.

    An empty column is an empty string array: Arrow would infer the null type from no values,
    which the string kernels below have no kernel for."""
    if not len(values):
        return pa.array([], pa.string())
    try:
        return pa.array(values.tolist() if isinstance(values, np.ndarray) else values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([v if isinstance(v, str) else None for v in values], pa.string())


def _check_uids(values: Column, what: str, column: str) -> pa.Array:
    arr = _strings(values)
    if not pa.types.is_string(arr.type) and len(arr):
        bad_i = next(i for i, v in enumerate(values) if not isinstance(v, str))
        raise InvalidRowsError(
            f"{what}: row {bad_i} has no {column} (got {values[bad_i]!r}); "
            f"every row needs a non-empty string {column}"
        )
    bad = pc.or_kleene(pc.is_null(arr), pc.equal(pc.utf8_length(arr), 0)).fill_null(True)
    if pc.any(bad).as_py():
        i = int(pc.index(bad, True).as_py())
        raise InvalidRowsError(
            f"{what}: row {i} has no {column} (got {values[i]!r}); "
            f"every row needs a non-empty string {column}"
        )
    return arr


def _has_repeats(columns: list[pa.Array]) -> bool:
    if not columns or not len(columns[0]):
        return False  # a zero-row batch repeats nothing
    table = pa.table(columns, names=[f"c{i}" for i in range(len(columns))])
    return table.group_by(table.column_names).aggregate([]).num_rows != table.num_rows


# Edge weights must be real numbers; other float properties may be null but never NaN or inf.
_REQUIRED_FLOATS = frozenset({"w", "w_raw", "score"})


def _check_props(columns: Mapping[str, Column], props: Mapping[str, PropType], what: str) -> None:
    unknown = sorted(set(columns) - set(props))
    if unknown:
        raise InvalidRowsError(f"{what}: unknown properties {unknown}; allowed: {sorted(props)}")
    for name, col in columns.items():
        if props[name] is not PropType.FLOAT:
            continue
        if isinstance(col, np.ndarray) and col.dtype != object:
            values, nulls = col.astype(np.float64), np.zeros(len(col), dtype=bool)
        else:
            nulls = np.array([v is None for v in col], dtype=bool)
            values = np.array([np.nan if v is None else v for v in col], dtype=np.float64)
        bad = ~np.isfinite(values) & ~nulls
        if name in _REQUIRED_FLOATS:
            bad |= nulls
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            shown = None if nulls[i] else float(values[i])
            raise InvalidRowsError(
                f"{what}: row {i} has {name}={shown}; {name} must be a finite number"
            )


@dataclass(frozen=True)
class NodeBatch:
    """Nodes of one kind: a `uid` column plus any subset of that kind's properties.

    Properties left out are not touched when the node already exists."""

    kind: NodeKind
    columns: Mapping[str, Column]

    @classmethod
    def from_rows(cls, kind: NodeKind, rows: Sequence[Mapping[str, Any]]) -> NodeBatch:
        """Rows as columns; no rows is an empty batch (which writes nothing)."""
        names = sorted({k for row in rows for k in row}) or ["uid"]
        return cls(kind, {n: [row.get(n) for row in rows] for n in names})

    def __post_init__(self) -> None:
        what = f"{self.kind} nodes"
        if "uid" not in self.columns:
            raise InvalidRowsError(f"{what}: no uid column; build uids with catalog.schema.*_uid")
        props = {"uid": PropType.STRING, **NODE_PROPS[self.kind]}
        _length(self.columns, what)
        uids = _check_uids(self.columns["uid"], what, "uid")
        _check_props(self.columns, props, what)
        if _has_repeats([uids]):
            raise InvalidRowsError(
                f"{what}: the batch repeats a uid; write each node once per batch"
            )

    def __len__(self) -> int:
        return len(self.columns["uid"])

    @property
    def uids(self) -> list[str]:
        return list(self.columns["uid"])

    @property
    def prop_names(self) -> list[str]:
        """Properties this batch sets, in schema order (uid first)."""
        return ["uid"] + [p for p in NODE_PROPS[self.kind] if p in self.columns]

    def to_arrow(self) -> pa.Table:
        """Every schema property in schema order (nulls where absent): the layout COPY needs."""
        props = {"uid": PropType.STRING, **NODE_PROPS[self.kind]}
        return _arrow(self.columns, props, len(self))

    def rows(self, start: int = 0, stop: int | None = None) -> list[dict[str, Any]]:
        return _rows(self.columns, self.prop_names, start, stop)


@dataclass(frozen=True)
class EdgeBatch:
    """Relationships of one kind between one pair of node kinds, as columns.

    `src` and `dst` hold endpoint uids; `columns` any subset of the kind's properties, which must
    include the identifying `key` properties (e.g. `via` for VIRTUAL_WEIGHT)."""

    kind: RelKind
    src_kind: NodeKind
    dst_kind: NodeKind
    src: Column
    dst: Column
    columns: Mapping[str, Column] = field(default_factory=dict)

    def __post_init__(self) -> None:
        spec = REL_SPECS[self.kind]
        what = f"{self.kind} edges ({self.src_kind}->{self.dst_kind})"
        if (self.src_kind, self.dst_kind) not in spec.pairs:
            allowed = ", ".join(f"{a}->{b}" for a, b in spec.pairs)
            raise InvalidRowsError(f"{what}: not an allowed pair; {self.kind} joins {allowed}")
        _length({"src": self.src, "dst": self.dst, **self.columns}, what)
        src = _check_uids(self.src, what, "src uid")
        dst = _check_uids(self.dst, what, "dst uid")
        _check_props(self.columns, spec.props, what)
        missing = [k for k in spec.key if k not in self.columns]
        if missing:
            raise InvalidRowsError(
                f"{what}: missing key properties {missing}; they identify an edge"
            )
        key_cols = [pa.array(_plain(self.columns[k], 0, None)) for k in spec.key]
        if _has_repeats([src, dst, *key_cols]):
            raise InvalidRowsError(
                f"{what}: the batch repeats an edge (same endpoints and {list(spec.key)})"
            )

    def __len__(self) -> int:
        return len(self.src)

    @classmethod
    def concat(cls, batches: Sequence[EdgeBatch]) -> EdgeBatch:
        """Batches of one kind, node pair and property set, as one batch."""
        first = batches[0]
        if any(
            (b.kind, b.src_kind, b.dst_kind) != (first.kind, first.src_kind, first.dst_kind)
            or set(b.columns) != set(first.columns)
            for b in batches
        ):
            raise InvalidRowsError("EdgeBatch.concat needs batches of one kind, pair and columns")

        def cat(cols: list[Column]) -> Column:
            if all(isinstance(c, np.ndarray) and c.dtype != object for c in cols):
                return np.concatenate(cols)  # type: ignore[arg-type]
            return [v for c in cols for v in _plain(c, 0, None)]

        columns = {k: cat([b.columns[k] for b in batches]) for k in first.columns}
        return cls(
            first.kind,
            first.src_kind,
            first.dst_kind,
            cat([b.src for b in batches]),
            cat([b.dst for b in batches]),
            columns,
        )

    def unique(self, column: str) -> list[Any]:
        """Sorted distinct values of `src`, `dst` or a property column."""
        values = {"src": self.src, "dst": self.dst}.get(column)
        col = self.columns[column] if values is None else values
        return sorted(pc.unique(_strings(col)).to_pylist())

    @property
    def prop_names(self) -> list[str]:
        return [p for p in REL_SPECS[self.kind].props if p in self.columns]

    def to_arrow(self) -> pa.Table:
        """from, to, then every property of the kind in schema order: the layout COPY needs."""
        props = {"from": PropType.STRING, "to": PropType.STRING, **REL_SPECS[self.kind].props}
        cols = {"from": self.src, "to": self.dst, **self.columns}
        return _arrow(cols, props, len(self))

    def rows(self, start: int = 0, stop: int | None = None) -> list[dict[str, Any]]:
        cols = {"src": self.src, "dst": self.dst, **self.columns}
        return _rows(cols, ["src", "dst", *self.prop_names], start, stop)

    def chunks(self, size: int) -> Iterator[list[dict[str, Any]]]:
        for start in range(0, len(self), size):
            yield self.rows(start, start + size)


def _plain(col: Column, start: int, stop: int | None) -> list[Any]:
    part = col[start:stop]
    return part.tolist() if isinstance(part, np.ndarray) else list(part)


def _rows(
    cols: Mapping[str, Column], names: list[str], start: int, stop: int | None
) -> list[dict[str, Any]]:
    lists = [_plain(cols[n], start, stop) for n in names]
    return [dict(zip(names, values, strict=True)) for values in zip(*lists, strict=True)]


def _arrow(cols: Mapping[str, Column], props: Mapping[str, PropType], n: int) -> pa.Table:
    arrays = []
    for name, ptype in props.items():
        typ = _ARROW_TYPES[ptype]
        if name not in cols:
            arrays.append(pa.nulls(n, typ))
            continue
        col = cols[name]
        data = col if isinstance(col, np.ndarray) and col.dtype != object else list(col)
        arrays.append(pa.array(data, type=typ))
    return pa.table(arrays, names=list(props))
