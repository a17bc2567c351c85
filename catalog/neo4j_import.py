"""Files for `neo4j-admin database import full`: the first load of a new Neo4j database.

The online writer MERGEs in transactions; a team's first catalog of hundreds of millions of
edges loads an order of magnitude faster through Neo4j's offline importer, which builds the
store files directly from CSV. `write_import_files` writes those CSVs from a store, a parts
folder, or both, plus `import.sh`, the exact command to run on the (stopped) server.

What comes out is what loading would have made (`store copy` from the source, then `store load`
of the parts): nodes merge by uid and edges by identity (endpoints plus REL_SPECS[rel].key);
a later place (the parts after the source, later parts after earlier ones) overrides the
properties it sets and leaves the others, and a property it sets to null is removed. Every edge
needs both endpoints among the nodes, as the online writer insists.

Memory stays flat: rows travel as Arrow columns, the source is read about READ_ROWS rows at a
time, and when there are more than BUCKET_ROWS nodes or edges, rows are hash-partitioned by
identity into Parquet bucket files on disk, so merging holds one bucket at a time (and every
node's uid, to check the edges' endpoints).

CSV conventions (neo4j-admin's defaults except where named in the command): one file per node
kind (`uid:ID(<Kind>)`, one id space per kind) and per relationship kind and node pair
(`:START_ID(<Kind>)`, `:END_ID(<Kind>)`); labels and types go on the command line
(`--nodes=Feature=...`), not in a column, which keeps files of hundreds of millions of edges
smaller. Properties are typed from the schema; strings and lists are always quoted, with `""`
for a quote; numbers are unquoted, floats in their shortest form that reads back exactly (`9`,
`1e-17`); a missing value is an empty unquoted field; list elements are joined by U+001F, which
no list element may contain; files with newlines inside strings are named in
`--multiline-fields`, so the others keep the importer's fast parallel parser.

The importer creates no constraints or indexes: `circuitcat store init` creates them once the
server runs on the imported database (docs/neo4j.md).
"""

from __future__ import annotations

import math
import re
import shlex
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from . import statements
from .errors import CircuitcatError, QueryError
from .ladybug_store import LadybugStore
from .parts import PartsError, iter_parts
from .protocol import CatalogStore, QueryResult
from .schema import NODE_PROPS, REL_SPECS, NodeKind, PropType, RelKind

Progress = Callable[[str, int], None]
EdgeGroup = tuple[RelKind, NodeKind, NodeKind]
Group = NodeKind | EdgeGroup

ARRAY_DELIMITER = "\x1f"  # U+001F, the ASCII unit separator: never in text a person wrote
READ_ROWS = 1_000_000  # rows per read of the embedded store, and per write of a bucket
READ_CHUNK = 10_000  # other stores: nodes per read (their properties, or their outgoing edges)
BUCKET_ROWS = 2_000_000  # rows merged in memory at a time
_MAX_BUCKETS = 1_024
_SET = "__set__"  # `__set__<p>`: whether a row sets property p (module doc)
# Neo4j's rule for database names (also keeps import.sh free of shell syntax).
_DATABASE = re.compile(r"[a-z][a-z0-9.-]{2,62}")
_ADMIN_TYPES = {
    PropType.STRING: "string",
    PropType.INT: "long",
    PropType.FLOAT: "double",
    PropType.STRING_LIST: "string[]",
    PropType.INT_LIST: "long[]",
    PropType.FLOAT_LIST: "double[]",
}
_UID = pa.large_string()  # 64-bit offsets: a bucket's strings may pass 2 GiB
_ARROW = {
    PropType.STRING: pa.large_string(),
    PropType.INT: pa.int64(),
    PropType.FLOAT: pa.float64(),
    PropType.STRING_LIST: pa.list_(pa.large_string()),
    PropType.INT_LIST: pa.list_(pa.int64()),
    PropType.FLOAT_LIST: pa.list_(pa.float64()),
}
# neo4j-admin's CSV: "needed" quotes every string (and nothing else), doubling quotes inside.
_CSV = pa_csv.WriteOptions(include_header=False, quoting_style="needed")


class ImportFilesError(CircuitcatError):
    """Import files cannot be written from this input."""


@dataclass(frozen=True)
class ImportFile:
    """One CSV: the label or relationship type it holds, and how many rows."""

    kind: str
    path: Path
    rows: int
    multiline: bool = False  # some string holds a newline: the importer must parse it slowly


@dataclass(frozen=True)
class ImportFiles:
    """What `write_import_files` wrote, and the neo4j-admin command that loads it."""

    folder: Path
    database: str
    nodes: list[ImportFile]
    relationships: list[ImportFile]
    script: Path

    def arguments(self, folder: str | None = None) -> list[str]:
        """Everything after `neo4j-admin`, the files under `folder` (default: where they are)."""
        where = str(self.folder.resolve()) if folder is None else folder
        args = ["database", "import", "full", self.database, "--overwrite-destination"]
        args += [f"--array-delimiter=U+{ord(ARRAY_DELIMITER):04X}"]
        args += [f"--report-file={where}/import.report"]
        every = self.nodes + self.relationships
        multiline = [f"{where}/{f.path.name}" for f in every if f.multiline]
        if multiline:
            args += ["--multiline-fields-format=v2", f"--multiline-fields={','.join(multiline)}"]
        args += [f"--nodes={f.kind}={where}/{f.path.name}" for f in self.nodes]
        args += [f"--relationships={f.kind}={where}/{f.path.name}" for f in self.relationships]
        return args

    def command(self, admin: str = "neo4j-admin") -> str:
        """The command line to run, as a shell would take it."""
        return shlex.join([admin, *self.arguments()])


# ---- the layout rows are merged in ---------------------------------------------------------


def _edge_groups() -> Iterator[EdgeGroup]:
    for rel, spec in REL_SPECS.items():
        for src, dst in spec.pairs:
            yield rel, src, dst


def _props(group: Group) -> dict[str, PropType]:
    return NODE_PROPS[group] if isinstance(group, NodeKind) else REL_SPECS[group[0]].props


def _ends(group: Group) -> list[str]:
    """The columns naming a row's nodes: a node's uid, or an edge's endpoints."""
    return ["uid"] if isinstance(group, NodeKind) else ["src", "dst"]


def _identity(group: Group) -> list[str]:
    return _ends(group) + ([] if isinstance(group, NodeKind) else list(REL_SPECS[group[0]].key))


def _describe(group: Group) -> str:
    return f"{group} nodes" if isinstance(group, NodeKind) else "{} edges ({}->{})".format(*group)


def _normalized(group: Group, table: pa.Table, nulls_unset: bool, where: str) -> pa.Table:
    """`table` in the group's layout: the ends, every property typed (null where `table` lacks
    it), and per property `__set__<p>`, whether the row sets it. A part sets every column it has
    (a null unsets); a store row sets what is not null."""
    n, props = table.num_rows, _props(group)
    unknown = sorted(set(table.column_names) - set(props) - set(_ends(group)))
    missing = [c for c in _ends(group) if c not in table.column_names]
    if unknown or missing:
        raise ImportFilesError(
            f"{where}: {_describe(group)} with unknown columns {unknown} or without "
            f"{missing}; allowed: {sorted(props)}"
        )
    columns: dict[str, pa.Array | pa.ChunkedArray] = {}
    flags: dict[str, pa.Array | pa.ChunkedArray] = {}
    try:
        for end in _ends(group):
            columns[end] = table[end].cast(_UID)
        for p, ptype in props.items():
            if p not in table.column_names:
                columns[p], flags[_SET + p] = pa.nulls(n, _ARROW[ptype]), pa.repeat(False, n)
                continue
            columns[p] = table[p].cast(_ARROW[ptype])
            flags[_SET + p] = pc.is_valid(columns[p]) if nulls_unset else pa.repeat(True, n)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as e:
        raise ImportFilesError(
            f"{where}: a column of {_describe(group)} does not hold the schema's type ({e})"
        ) from e
    return pa.table({**columns, **flags})


def _codes(column: pa.ChunkedArray) -> np.ndarray:
    """Equal values (nulls too) as equal integers."""
    encoded = pc.dictionary_encode(column.combine_chunks(), null_encoding="encode")
    return encoded.indices.to_numpy()


def _merged(group: Group, tables: list[pa.Table]) -> pa.Table:
    """One row per identity, each property from the last row that sets it (module doc): rows
    sorted by identity (stably, so in the order added), then per property and identity the
    largest position among the rows setting it."""
    table = pa.concat_tables(tables)
    names = _ends(group) + list(_props(group))
    codes = [_codes(table[k]) for k in _identity(group)]
    order = np.lexsort(codes[::-1])
    new = np.zeros(table.num_rows, dtype=bool)
    new[0] = True
    for code in codes:
        ordered = code[order]
        new[1:] |= ordered[1:] != ordered[:-1]
    starts = np.flatnonzero(new)
    if len(starts) == table.num_rows:
        return table.select(names)  # each identity once: an unset property is null already
    columns = {end: table[end].take(pa.array(order[starts])) for end in _ends(group)}
    for p in _props(group):
        setters = np.where(table[_SET + p].to_numpy()[order], order, -1)
        last = np.maximum.reduceat(setters, starts)
        columns[p] = table[p].take(pa.array(last, mask=last < 0))
    return pa.table(columns)


# ---- spilling: hash-partitioned Parquet buckets, one bucket in memory at a time ------------


def _bucket_of(uids: pa.ChunkedArray, buckets: int) -> np.ndarray:
    """Each row's bucket, from its uid's hash (Python's: stable within this process)."""
    hashes = np.fromiter(map(hash, uids.to_pylist()), dtype=np.int64, count=len(uids))
    return hashes % buckets


@dataclass
class _Spill:
    """Normalized rows by group, in the order added. With more than one bucket they are
    partitioned by the hash of their first end (so every row of one identity lands in one
    bucket, in order) into Parquet files, about READ_ROWS rows of a group at a time."""

    folder: Path
    buckets: int
    pending: dict[Group, list[pa.Table]] = field(default_factory=dict)
    files: int = 0

    def add(self, group: Group, table: pa.Table) -> None:
        if table.num_rows:
            self.pending.setdefault(group, []).append(table)
            if self.buckets > 1 and sum(t.num_rows for t in self.pending[group]) >= READ_ROWS:
                self._flush(group)

    def _dir(self, group: Group, bucket: int) -> Path:
        name = group if isinstance(group, NodeKind) else "-".join(group)
        return self.folder / name / f"{bucket:05d}"

    def _flush(self, group: Group) -> None:
        tables = self.pending.pop(group, [])
        if not tables:
            return
        table = pa.concat_tables(tables)
        bucket = _bucket_of(table[_ends(group)[0]], self.buckets)
        counts = np.bincount(bucket, minlength=self.buckets).tolist()
        table = table.take(pa.array(np.argsort(bucket, kind="stable")))
        self.files += 1
        start = 0
        for i, count in enumerate(counts):
            if count:
                self._dir(group, i).mkdir(parents=True, exist_ok=True)
                path = self._dir(group, i) / f"{self.files:08d}.parquet"
                pq.write_table(table.slice(start, count), path, compression="none")
                start += count

    def merged(self, group: Group) -> Iterator[pa.Table]:
        """The group's rows merged by identity, a bucket at a time."""
        if self.buckets == 1:
            tables = self.pending.pop(group, [])
            if tables:
                yield _merged(group, tables)
            return
        self._flush(group)
        for i in range(self.buckets):
            folder = self._dir(group, i)
            if folder.is_dir():
                tables = [pq.read_table(path) for path in sorted(folder.glob("*.parquet"))]
                shutil.rmtree(folder)
                yield _merged(group, tables)


def _buckets(rows: int) -> int:
    return max(1, min(_MAX_BUCKETS, math.ceil(rows / BUCKET_ROWS)))


# ---- reading: the source store a chunk at a time as Arrow, then the parts ------------------


def _arrow_rows(result: QueryResult, group: Group) -> pa.Table:
    """Rows a store returned (uid or src/dst, then the properties), typed as the schema says."""
    types = {end: _UID for end in _ends(group)} | {p: _ARROW[t] for p, t in _props(group).items()}
    columns = list(zip(*result.rows, strict=True)) if result.rows else [()] * len(result.columns)
    try:
        arrays = [pa.array(c, type=types[n]) for n, c in zip(result.columns, columns, strict=True)]
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise ImportFilesError(
            f"{_describe(group)}: a value does not have its schema type ({e})"
        ) from e
    return pa.table(arrays, names=result.columns)


def _chunks(uids: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(uids), READ_CHUNK):
        yield uids[start : start + READ_CHUNK]


def _cypher_tables(store: CatalogStore) -> Iterator[tuple[Group, pa.Table]]:
    """Any store: the nodes of READ_CHUNK uids at a time, then the edges leaving them."""
    uids = {
        k: [str(r[0]) for r in store.run_cypher(statements.node_uids(k)).rows] for k in NodeKind
    }
    for kind in NodeKind:
        for chunk in _chunks(uids[kind]):
            result = store.run_cypher(statements.read_nodes_in(kind), {"uids": chunk})
            yield kind, _arrow_rows(result, kind)
    for group in _edge_groups():
        for chunk in _chunks(uids[group[1]]):
            result = store.run_cypher(statements.read_edges_from(*group), {"uids": chunk})
            yield group, _arrow_rows(result, group)


def _ladybug_tables(store: LadybugStore) -> Iterator[tuple[Group, pa.Table]]:
    """The embedded store: ranges of internal offsets holding about READ_ROWS rows each, as
    Arrow tables straight from the engine."""

    def arrow(text: str, params: dict[str, Any] | None = None) -> pa.Table:
        try:
            return store.conn.execute(text, params or {}).get_as_arrow(-1)  # type: ignore[union-attr]
        except RuntimeError as e:
            raise QueryError(f"reading the embedded store failed: {e}") from e

    ends = {k: int(arrow(statements.node_offset_end(k))["n"][0].as_py() or 0) for k in NodeKind}
    for kind in NodeKind:
        for lo in range(0, ends[kind], READ_ROWS):
            yield kind, arrow(statements.read_nodes_between(kind), {"lo": lo, "hi": lo + READ_ROWS})
    edges = {r: int(arrow(statements.count_rels(r))["n"][0].as_py() or 0) for r in RelKind}
    for group in _edge_groups():
        rel, src, dst = group
        step = max(1, READ_ROWS * ends[src] // max(1, edges[rel]))
        for lo in range(0, ends[src] if edges[rel] else 0, step):
            text = statements.read_edges_between(rel, src, dst)
            yield group, arrow(text, {"lo": lo, "hi": lo + step})


def _read_source(
    store: CatalogStore, nodes: _Spill, edges: _Spill, progress: Progress | None
) -> None:
    """Every node and edge of the store (a null is no value, as copy.py reads them)."""
    tables = _ladybug_tables(store) if isinstance(store, LadybugStore) else _cypher_tables(store)
    read: dict[Group, int] = {}
    for group, table in tables:
        spill = nodes if isinstance(group, NodeKind) else edges
        spill.add(group, _normalized(group, table, True, "the store"))
        read[group] = read.get(group, 0) + table.num_rows
        if progress and table.num_rows:
            progress(f"read {_describe(group)}", read[group])


def _read_part(path: Path) -> tuple[Group, pa.Table]:
    """One part as it was written (iter_parts checked its name)."""
    what, kind = path.stem.split("-")[-2:]
    try:
        table = pq.read_table(path)
        if what == "nodes":
            return NodeKind(kind), table
        meta = table.schema.metadata or {}
        group = (
            RelKind(kind),
            NodeKind(meta[b"src_kind"].decode()),
            NodeKind(meta[b"dst_kind"].decode()),
        )
    except (OSError, pa.ArrowInvalid, KeyError, ValueError) as e:
        raise PartsError(f"{path} is not a readable circuitcat part ({e})") from e
    if group not in set(_edge_groups()):
        raise PartsError(f"{path}: {_describe(group)} is not an allowed node pair")
    names = {"__src": "src", "__dst": "dst"}
    return group, table.rename_columns([names.get(c, c) for c in table.column_names])


def _read_parts(folder: Path, nodes: _Spill, edges: _Spill, progress: Progress | None) -> None:
    """Every part, in load order; a column a part sets to null stays null (it unsets)."""
    for path in iter_parts(folder):
        group, table = _read_part(path)
        spill = nodes if isinstance(group, NodeKind) else edges
        spill.add(group, _normalized(group, table, False, str(path)))
        if progress:
            progress(f"read part {path.name}", table.num_rows)


def _estimate(store: CatalogStore | None, parts: Path | None) -> tuple[int, int]:
    """(nodes, edges) to expect, to size the buckets."""
    n_nodes = n_edges = 0
    if store is not None:
        for kind in NodeKind:
            n_nodes += int(store.run_cypher(statements.count_nodes(kind)).rows[0][0])
        for rel in RelKind:
            n_edges += int(store.run_cypher(statements.count_rels(rel)).rows[0][0])
    if parts is not None:
        for path in iter_parts(parts):
            rows = pq.read_metadata(path).num_rows
            if "-nodes-" in path.name:
                n_nodes += rows
            else:
                n_edges += rows
    return n_nodes, n_edges


# ---- writing: typed CSV --------------------------------------------------------------------


def _cells(group: Group, table: pa.Table) -> tuple[pa.Table, bool]:
    """Merged rows as the importer reads them: lists joined by U+001F (which no element may
    hold); and whether some string holds a newline."""
    props = _props(group)
    columns = []
    for name in table.column_names:
        column, ptype = table[name], props.get(name, PropType.STRING)
        if ptype is PropType.STRING_LIST:
            _check_delimiter(group, table, name)
        if ptype in (PropType.STRING_LIST, PropType.INT_LIST, PropType.FLOAT_LIST):
            column = pc.binary_join(column.cast(pa.list_(_UID)), pa.scalar(ARRAY_DELIMITER, _UID))
        columns.append(column)
    multiline = any(_has_newline(c) for c in columns if pa.types.is_large_string(c.type))
    return pa.table(columns, names=table.column_names), multiline


def _has_newline(column: pa.ChunkedArray) -> bool:
    """Whether a string holds \\n or \\r: a scan of the bytes the strings span (no per-string
    work; a large_string chunk's buffers are validity, int64 offsets, then the bytes)."""
    for chunk in column.chunks:
        _, offsets, data = chunk.buffers()
        if not len(chunk) or data is None:
            continue
        span = np.frombuffer(offsets, dtype=np.int64)[chunk.offset : chunk.offset + len(chunk) + 1]
        text = np.frombuffer(data, dtype=np.uint8)[span[0] : span[-1]]
        if (text == ord("\n")).any() or (text == ord("\r")).any():
            return True
    return False


def _check_delimiter(group: Group, table: pa.Table, name: str) -> None:
    lists = table[name].combine_chunks()
    hits = pc.match_substring(pc.list_flatten(lists), ARRAY_DELIMITER)
    if pc.any(hits).as_py():
        row = pc.list_parent_indices(lists)[pc.index(hits, True).as_py()].as_py()
        first = table[_ends(group)[0]][row].as_py()
        raise ImportFilesError(
            f"{_describe(group)}: {first!r} has a {name} element holding U+001F, the importer's "
            "array delimiter; remove that control character from the catalog, or load it with "
            "`store copy`"
        )


@dataclass
class _Csv:
    """One output file: its header on open, then merged rows."""

    kind: str
    path: Path
    header: list[str]
    stream: pa.NativeFile = field(init=False)
    rows: int = 0
    multiline: bool = False

    def __post_init__(self) -> None:
        self.stream = pa.OSFile(str(self.path), "wb")
        self.stream.write((",".join(self.header) + "\n").encode())

    def write(self, group: Group, table: pa.Table) -> None:
        cells, multiline = _cells(group, table)
        pa_csv.write_csv(cells, self.stream, _CSV)
        self.rows += table.num_rows
        self.multiline = self.multiline or multiline

    def close(self) -> ImportFile:
        self.stream.close()
        return ImportFile(self.kind, self.path, self.rows, self.multiline)


def _header(props: dict[str, PropType]) -> list[str]:
    return [f"{p}:{_ADMIN_TYPES[t]}" for p, t in props.items()]


def _write_nodes(
    out: Path, spill: _Spill, progress: Progress | None
) -> tuple[list[ImportFile], dict[NodeKind, pa.Array]]:
    written, uids = [], {}
    for kind in NodeKind:
        csv, kept = None, []
        for table in spill.merged(kind):
            if csv is None:
                header = [f"uid:ID({kind})", *_header(NODE_PROPS[kind])]
                csv = _Csv(kind.value, out / f"nodes-{kind}.csv", header)
            csv.write(kind, table)
            kept.extend(table["uid"].chunks)
        uids[kind] = pa.concat_arrays(kept) if kept else pa.array([], _UID)
        if csv is not None:
            written.append(csv.close())
    if progress:
        progress("wrote nodes", sum(f.rows for f in written))
    return written, uids


def _check_ends(group: EdgeGroup, table: pa.Table, uids: dict[NodeKind, pa.Array]) -> None:
    """Every edge's endpoints are among the nodes (the online writer insists too)."""
    rel, src, dst = group
    for role, kind, column in (("source", src, "src"), ("target", dst, "dst")):
        missing = pc.invert(pc.is_in(table[column], value_set=uids[kind]))
        if pc.any(missing).as_py():
            i = pc.index(missing, True).as_py()
            a, b, uid = table["src"][i].as_py(), table["dst"][i].as_py(), table[column][i].as_py()
            raise ImportFilesError(
                f"{rel} edge {a} -> {b}: its {role} {kind} node {uid!r} is in neither the "
                "store nor the parts; pass the store or parts that hold the nodes too"
            )


def _write_edges(
    out: Path, spill: _Spill, uids: dict[NodeKind, pa.Array], progress: Progress | None
) -> list[ImportFile]:
    written = []
    for group in _edge_groups():
        rel, src, dst = group
        csv = None
        try:
            for table in spill.merged(group):
                _check_ends(group, table, uids)
                if csv is None:
                    ends = [f":START_ID({src})", f":END_ID({dst})"]
                    header = [*ends, *_header(REL_SPECS[rel].props)]
                    csv = _Csv(rel.value, out / f"edges-{rel}-{src}-{dst}.csv", header)
                csv.write(group, table)
        finally:
            if csv is not None:
                written.append(csv.close())
    if progress:
        progress("wrote edges", sum(f.rows for f in written))
    return written


# ---- the entry point -------------------------------------------------------------------------


def write_import_files(
    out: Path,
    source: CatalogStore | None,
    parts: Path | None,
    *,
    database: str = "neo4j",
    progress: Progress | None = None,
) -> ImportFiles:
    """Write CSVs for `neo4j-admin database import full` into `out` (a new or empty folder)
    from every node and edge of `source`, then the parts in `parts` (module doc), and
    `out/import.sh`, which runs the importer into `database`."""
    if source is None and parts is None:
        raise ImportFilesError(
            "nothing to import: pass a store (--from), a parts folder (--parts), or both"
        )
    if not _DATABASE.fullmatch(database):
        raise ImportFilesError(
            f"{database!r} is not a Neo4j database name: use 3-63 lowercase letters, digits, "
            "dots or dashes, starting with a letter (community edition serves `neo4j`)"
        )
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ImportFilesError(
            f"{out} is not an empty folder; pass a new or empty one, so no earlier file "
            "is imported by mistake"
        )
    n_nodes, n_edges = _estimate(source, parts)
    out.mkdir(parents=True, exist_ok=True)
    spill_dir = out / ".merge"
    nodes = _Spill(spill_dir / "nodes", _buckets(n_nodes))
    edges = _Spill(spill_dir / "edges", _buckets(n_edges))
    try:
        if source is not None:
            _read_source(source, nodes, edges, progress)
        if parts is not None:
            _read_parts(parts, nodes, edges, progress)
        node_files, uids = _write_nodes(out, nodes, progress)
        if not node_files:
            raise ImportFilesError("the store and parts hold no nodes: there is nothing to import")
        edge_files = _write_edges(out, edges, uids, progress)
    finally:
        shutil.rmtree(spill_dir, ignore_errors=True)
    files = ImportFiles(out, database, node_files, edge_files, out / "import.sh")
    _write_script(files)
    return files


def _write_script(files: ImportFiles) -> None:
    """import.sh: the command with paths relative to the script, so the folder can move."""
    args = " \\\n  ".join(f'"{a}"' for a in files.arguments("$HERE"))
    files.script.write_text(
        "#!/usr/bin/env bash\n"
        '# Written by `circuitcat store import-files` (docs/neo4j.md, "First load of a big\n'
        '# catalog"). Run it on the Neo4j server with the server STOPPED: it REPLACES the\n'
        f"# database {files.database!r}. Then start the server and create the constraints and\n"
        "# indexes: circuitcat store init --store neo4j://HOST:7687\n"
        "# NEO4J_ADMIN: the neo4j-admin to run (default: the one on PATH).\n"
        "set -euo pipefail\n"
        'HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"\n'
        f'exec "${{NEO4J_ADMIN:-neo4j-admin}}" {args}\n',
        encoding="utf-8",
    )
    files.script.chmod(0o755)
