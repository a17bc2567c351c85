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

Memory stays flat: the source is read a chunk of nodes at a time, and rows are hash-partitioned
by identity into bucket files on disk, so merging holds one bucket (~BUCKET_ROWS rows) at a time.

CSV conventions (neo4j-admin's defaults except where named in the command): one file per node
kind (`uid:ID(<Kind>)`, one id space per kind) and per relationship kind and node pair
(`:START_ID(<Kind>)`, `:END_ID(<Kind>)`); labels and types go on the command line
(`--nodes=Feature=...`), not in a column, which keeps files of hundreds of millions of edges
smaller. Properties are typed from the schema; strings are always quoted, with `""` for a quote;
a missing value is an empty unquoted field; list elements are joined by U+001F, which no list
element may contain; files with newlines inside strings are named in `--multiline-fields`, so
the others keep the importer's fast parallel parser.

The importer creates no constraints or indexes: `circuitcat store init` creates them once the
server runs on the imported database (docs/neo4j.md).
"""

from __future__ import annotations

import math
import pickle
import re
import shlex
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Generic, TypeVar

import pyarrow.parquet as pq

from . import statements
from .batches import NodeBatch
from .errors import CircuitcatError
from .parts import _read as read_part
from .parts import iter_parts
from .protocol import CatalogStore
from .schema import NODE_PROPS, REL_SPECS, NodeKind, PropType, RelKind, quote

Progress = Callable[[str, int], None]
EdgeGroup = tuple[RelKind, NodeKind, NodeKind]
G = TypeVar("G", NodeKind, EdgeGroup)

ARRAY_DELIMITER = "\x1f"  # U+001F, the ASCII unit separator: never in text a person wrote
READ_CHUNK = 1_000  # source nodes per read (their properties, or their outgoing edges)
BUCKET_ROWS = 500_000  # rows merged in memory at a time
_FLUSH_ROWS = 4_096  # rows a bucket buffers before appending them to its file
_MAX_BUCKETS = 4_096
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


# ---- reading: the source store a chunk of nodes at a time, then the parts ------------------


def _uids(store: CatalogStore, kind: NodeKind) -> list[str]:
    rows = store.run_cypher(f"MATCH (n:{kind}) RETURN n.uid AS uid ORDER BY uid").rows
    return [str(r[0]) for r in rows]


def _nodes_of(kind: NodeKind) -> str:
    """statements.read_nodes for the nodes in $uids."""
    cols = ", ".join(f"n.{quote(p)} AS {quote(p)}" for p in NODE_PROPS[kind])
    return f"UNWIND $uids AS u MATCH (n:{kind} {{uid: u}}) RETURN n.uid AS uid, {cols}"


def _edges_from(rel: RelKind, src: NodeKind, dst: NodeKind) -> str:
    """statements.read_edges for the edges leaving the nodes in $uids."""
    cols = ", ".join(f"r.{quote(p)} AS {quote(p)}" for p in REL_SPECS[rel].props)
    return (
        f"UNWIND $uids AS u MATCH (a:{src} {{uid: u}})-[r:{rel}]->(b:{dst}) "
        f"RETURN a.uid AS src, b.uid AS dst, {cols}"
    )


def _chunks(uids: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(uids), READ_CHUNK):
        yield uids[start : start + READ_CHUNK]


def _edge_groups() -> Iterator[EdgeGroup]:
    for rel, spec in REL_SPECS.items():
        for src, dst in spec.pairs:
            yield rel, src, dst


def _edge_identity(rel: RelKind, row: dict[str, Any]) -> tuple[Any, ...]:
    return (row["src"], row["dst"], *(row.get(k) for k in REL_SPECS[rel].key))


def _read_source(
    store: CatalogStore,
    nodes: _Spill[NodeKind],
    edges: _Spill[EdgeGroup],
    progress: Progress | None,
) -> None:
    """Every node and edge of the store (nulls left out: absent, as copy.py reads them)."""
    uids = {kind: _uids(store, kind) for kind in NodeKind}
    for kind in NodeKind:
        for chunk in _chunks(uids[kind]):
            for rec in store.run_cypher(_nodes_of(kind), {"uids": chunk}).records():
                nodes.add(kind, (rec["uid"],), {k: v for k, v in rec.items() if v is not None})
        if progress and uids[kind]:
            progress(f"read {kind}", len(uids[kind]))
    for rel, src, dst in _edge_groups():
        n = 0
        for chunk in _chunks(uids[src]):
            for rec in store.run_cypher(_edges_from(rel, src, dst), {"uids": chunk}).records():
                props = {k: v for k, v in rec.items() if v is not None}
                edges.add((rel, src, dst), _edge_identity(rel, rec), props)
                n += 1
        if progress and n:
            progress(f"read {rel} ({src}->{dst})", n)


def _read_parts(
    folder: Path, nodes: _Spill[NodeKind], edges: _Spill[EdgeGroup], progress: Progress | None
) -> None:
    """Every part, in load order; a column a part sets to null stays null (it unsets)."""
    for path in iter_parts(folder):
        batch = read_part(path)
        if isinstance(batch, NodeBatch):
            for row in batch.rows():
                nodes.add(batch.kind, (row["uid"],), row)
        else:
            group = (batch.kind, batch.src_kind, batch.dst_kind)
            for rows in batch.chunks(_FLUSH_ROWS):
                for row in rows:
                    edges.add(group, _edge_identity(batch.kind, row), row)
        if progress:
            progress(f"read part {path.name}", len(batch))


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


# ---- merging: hash-partitioned bucket files, one bucket in memory at a time ----------------


@dataclass
class _Spill(Generic[G]):
    """Rows by (group, identity), partitioned into bucket files so that every row of one
    identity lands in one bucket, in the order it was added."""

    folder: Path
    buckets: int
    pending: list[list[tuple[G, tuple[Any, ...], dict[str, Any]]]] = field(init=False)

    def __post_init__(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.pending = [[] for _ in range(self.buckets)]

    def add(self, group: G, identity: tuple[Any, ...], props: dict[str, Any]) -> None:
        i = hash((group, identity)) % self.buckets
        self.pending[i].append((group, identity, props))
        if len(self.pending[i]) >= _FLUSH_ROWS:
            self._flush(i)

    def _flush(self, i: int) -> None:
        if self.pending[i]:
            with (self.folder / f"{i:05d}.pickle").open("ab") as f:
                pickle.dump(self.pending[i], f, protocol=pickle.HIGHEST_PROTOCOL)
            self.pending[i] = []

    def merged(self) -> Iterator[tuple[G, dict[str, Any]]]:
        """Each (group, merged properties) once: later rows override, bucket by bucket."""
        for i in range(self.buckets):
            self._flush(i)
            path = self.folder / f"{i:05d}.pickle"
            if not path.exists():
                continue
            rows: dict[tuple[G, tuple[Any, ...]], dict[str, Any]] = {}
            with path.open("rb") as f:
                for group, identity, props in _pickles(f):
                    seen = rows.get((group, identity))
                    if seen is None:
                        rows[(group, identity)] = props
                    else:
                        seen.update(props)
            path.unlink()
            for (group, _), props in rows.items():
                yield group, props


def _pickles(f: IO[bytes]) -> Iterator[tuple[Any, tuple[Any, ...], dict[str, Any]]]:
    while True:
        try:
            chunk = pickle.load(f)  # our own file, written above
        except EOFError:
            return
        yield from chunk


def _buckets(rows: int) -> int:
    return max(1, min(_MAX_BUCKETS, math.ceil(rows / BUCKET_ROWS)))


# ---- writing: typed CSV --------------------------------------------------------------------


def _string(value: Any) -> str:
    return '"' + str(value).replace('"', '""') + '"'


def _cell(value: Any, ptype: PropType, where: str) -> str:
    if value is None:
        return ""
    if ptype is PropType.STRING:
        return _string(value)
    if ptype is PropType.INT:
        return str(int(value))
    if ptype is PropType.FLOAT:
        return repr(float(value))
    if ptype is PropType.STRING_LIST:
        items = [str(v) for v in value]
        if any(ARRAY_DELIMITER in v for v in items):
            raise ImportFilesError(
                f"{where}: a list element holds U+001F, the importer's array delimiter; remove "
                "that control character from the catalog, or load it with `store copy`"
            )
        return _string(ARRAY_DELIMITER.join(items))
    if ptype is PropType.INT_LIST:
        return ARRAY_DELIMITER.join(str(int(v)) for v in value)
    return ARRAY_DELIMITER.join(repr(float(v)) for v in value)


@dataclass
class _Csv:
    """One output file: its header on open, rows as typed cells."""

    kind: str
    path: Path
    header: list[str]
    columns: list[tuple[str, PropType]]
    file: IO[str] = field(init=False)
    rows: int = 0
    multiline: bool = False

    def __post_init__(self) -> None:
        self.file = self.path.open("w", encoding="utf-8", newline="")
        self.file.write(",".join(self.header) + "\n")

    def write(self, lead: list[str], props: dict[str, Any]) -> None:
        where = f"{self.kind} {lead[0]}"
        cells = lead + [_cell(props.get(p), t, where) for p, t in self.columns]
        line = ",".join(cells)
        if "\n" in line or "\r" in line:
            self.multiline = True
        self.file.write(line + "\n")
        self.rows += 1

    def close(self) -> ImportFile:
        self.file.close()
        return ImportFile(self.kind, self.path, self.rows, self.multiline)


def _typed(props: dict[str, PropType], skip: tuple[str, ...] = ()) -> list[tuple[str, PropType]]:
    return [(p, t) for p, t in props.items() if p not in skip]


def _header(columns: list[tuple[str, PropType]]) -> list[str]:
    return [f"{p}:{_ADMIN_TYPES[t]}" for p, t in columns]


def _write_nodes(
    out: Path, spill: _Spill[NodeKind], progress: Progress | None
) -> tuple[list[ImportFile], dict[NodeKind, set[str]]]:
    files: dict[NodeKind, _Csv] = {}
    uids: dict[NodeKind, set[str]] = {kind: set() for kind in NodeKind}
    for kind, props in spill.merged():
        if kind not in files:
            columns = _typed(NODE_PROPS[kind])
            header = [f"uid:ID({kind})", *_header(columns)]
            files[kind] = _Csv(kind.value, out / f"nodes-{kind}.csv", header, columns)
        uid = str(props["uid"])
        uids[kind].add(uid)
        files[kind].write([_string(uid)], props)
    written = [files[k].close() for k in NodeKind if k in files]
    if progress:
        progress("wrote nodes", sum(f.rows for f in written))
    return written, uids


def _write_edges(
    out: Path, spill: _Spill[EdgeGroup], uids: dict[NodeKind, set[str]], progress: Progress | None
) -> list[ImportFile]:
    files: dict[EdgeGroup, _Csv] = {}
    try:
        for (rel, src, dst), props in spill.merged():
            for role, kind, uid in (("source", src, props["src"]), ("target", dst, props["dst"])):
                if uid not in uids[kind]:
                    raise ImportFilesError(
                        f"{rel} edge {props['src']} -> {props['dst']}: its {role} {kind} node "
                        f"{uid!r} is in neither the store nor the parts; pass the store or parts "
                        "that hold the nodes too"
                    )
            if (rel, src, dst) not in files:
                columns = _typed(REL_SPECS[rel].props)
                header = [f":START_ID({src})", f":END_ID({dst})", *_header(columns)]
                path = out / f"edges-{rel}-{src}-{dst}.csv"
                files[(rel, src, dst)] = _Csv(rel.value, path, header, columns)
            files[(rel, src, dst)].write([_string(props["src"]), _string(props["dst"])], props)
    finally:
        for csv in files.values():
            csv.file.close()
    written = [files[g].close() for g in _edge_groups() if g in files]
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
    spill_dir = out / ".merge"
    nodes = _Spill[NodeKind](spill_dir / "nodes", _buckets(n_nodes))
    edges = _Spill[EdgeGroup](spill_dir / "edges", _buckets(n_edges))
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
