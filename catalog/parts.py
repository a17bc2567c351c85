"""Parts: a job's writes as Parquet files in a folder, bulk-loaded into a catalog later.

A sharded job (`--shard i/N --parts DIR`, one shard per GPU or scheduler task) reads what it
needs from the catalog (the registered set, finished runs) but writes its nodes and edges as
Parquet parts; `load_parts` then writes every part into a store through its normal writer, whose
fresh-unit path is the engine's bulk load. Each part is one batch, so re-loading parts MERGEs
onto the same nodes and edges: nothing is duplicated.

File names: `<shard>-<seq>-nodes-<Kind>.parquet` and `<shard>-<seq>-edges-<REL>.parquet`; the
kinds of an edge batch's endpoints live in the file's metadata. Only the columns a batch sets are
written, so properties a batch leaves out stay untouched when it is loaded.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from .batches import EdgeBatch, NodeBatch
from .errors import CircuitcatError
from .schema import NodeKind, RelKind

SHARD = re.compile(r"(\d+)/(\d+)")
_PART = re.compile(r"(?P<shard>[\w-]+)-(?P<seq>\d{6})-(?P<what>nodes|edges)-(?P<kind>\w+)\.parquet")


class PartsError(CircuitcatError):
    """A parts folder or shard spec that cannot be used."""


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count` (0-based): it takes the work items i with i % count == index."""

    index: int = 0
    count: int = 1

    @property
    def name(self) -> str:
        return f"shard{self.index:03d}of{self.count:03d}"

    def takes(self, i: int) -> bool:
        return i % self.count == self.index


WHOLE = Shard()  # the unsharded job


def parse_shard(text: str | None) -> Shard:
    """`i/N` (0 <= i < N), e.g. `0/3`; None is the whole job."""
    if text is None:
        return WHOLE
    match = SHARD.fullmatch(text.strip())
    if not match or not 0 <= int(match.group(1)) < int(match.group(2)):
        raise PartsError(f"--shard {text!r}: expected i/N with 0 <= i < N, e.g. 0/3")
    return Shard(int(match.group(1)), int(match.group(2)))


def _columns_table(columns: dict[str, Any]) -> pa.Table:
    arrays = {}
    for name, col in columns.items():
        values = col.tolist() if hasattr(col, "tolist") else list(col)
        arrays[name] = pa.array(values)
    return pa.table(arrays)


@dataclass
class PartsWriter:
    """Writes batches as parts of one shard into `folder` (the shard's older parts removed)."""

    folder: Path
    shard: Shard = field(default_factory=Shard)
    seq: int = 0

    def __post_init__(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        for old in self.folder.glob(f"{self.shard.name}-*.parquet"):
            old.unlink()  # a re-run shard replaces its parts

    def _path(self, what: str, kind: str) -> Path:
        self.seq += 1
        return self.folder / f"{self.shard.name}-{self.seq:06d}-{what}-{kind}.parquet"

    def write_nodes(self, batch: NodeBatch) -> int:
        table = _columns_table(dict(batch.columns))
        pq.write_table(table, self._path("nodes", batch.kind.value))
        return len(batch)

    def write_edges(self, batch: EdgeBatch) -> int:
        table = _columns_table({"__src": batch.src, "__dst": batch.dst, **batch.columns})
        meta = {
            b"src_kind": batch.src_kind.value.encode(),
            b"dst_kind": batch.dst_kind.value.encode(),
        }
        pq.write_table(table.replace_schema_metadata(meta), self._path("edges", batch.kind.value))
        return len(batch)


def _read(path: Path) -> NodeBatch | EdgeBatch:
    match = _PART.fullmatch(path.name)
    if match is None:
        raise PartsError(
            f"{path}: not a circuitcat part (expected <shard>-<seq>-nodes|edges-<kind>.parquet)"
        )
    try:
        table = pq.read_table(path)
        columns = {name: table.column(name).to_pylist() for name in table.column_names}
        if match["what"] == "nodes":
            return NodeBatch(NodeKind(match["kind"]), columns)
        meta = table.schema.metadata or {}
        src_kind = NodeKind(meta[b"src_kind"].decode())
        dst_kind = NodeKind(meta[b"dst_kind"].decode())
    except (OSError, pa.ArrowInvalid, KeyError, ValueError) as e:
        raise PartsError(f"{path} is not a readable circuitcat part ({e})") from e
    src, dst = columns.pop("__src"), columns.pop("__dst")
    return EdgeBatch(RelKind(match["kind"]), src_kind, dst_kind, src, dst, columns)


def iter_parts(folder: Path) -> Iterator[Path]:
    """Every part in `folder`, nodes before edges, each in shard and write order."""
    if not folder.is_dir():
        raise PartsError(
            f"no parts folder at {folder}: pass the folder the jobs wrote with --parts"
        )
    parts = sorted(folder.glob("*.parquet"))
    if not parts:
        raise PartsError(f"{folder} holds no .parquet parts")
    for part in parts:
        if _PART.fullmatch(part.name) is None:
            raise PartsError(
                f"{part}: not a circuitcat part (expected <shard>-<seq>-nodes|edges-<kind>"
                ".parquet); keep only the jobs' parts in the folder"
            )
    yield from (p for p in parts if "-nodes-" in p.name)
    yield from (p for p in parts if "-edges-" in p.name)


@dataclass
class LoadReport:
    parts: int = 0
    nodes: int = 0
    edges: int = 0


def load_parts(store: Any, folder: Path) -> LoadReport:
    """Write every part in `folder` into `store` (nodes first, so edges find their endpoints)."""
    report = LoadReport()
    for path in iter_parts(folder):
        batch = _read(path)
        if isinstance(batch, NodeBatch):
            store.write_nodes(batch)
            report.nodes += len(batch)
        else:
            store.write_edges(batch)
            report.edges += len(batch)
        report.parts += 1
    return report


class ShardStore:
    """What a sharded job is handed in place of the store: reads go to `catalog`, writes to
    `parts` (nothing reaches the catalog until `load_parts`)."""

    def __init__(self, catalog: Any, parts: PartsWriter) -> None:
        self.catalog, self.parts = catalog, parts

    def write_nodes(self, batch: NodeBatch, **_: Any) -> int:
        return self.parts.write_nodes(batch)

    def write_edges(self, batch: EdgeBatch) -> int:
        return self.parts.write_edges(batch)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.catalog, name)
