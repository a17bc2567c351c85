"""Benchmark: `write_import_files` (store import-files) on a parts folder and on an embedded store.

    .venv/bin/python -m bench.import_files [--edges 1000000] [--fanout 100] [--bucket-rows N]
        [--keep DIR]

Synthetic data shaped like the weights job: `edges / fanout` Feature nodes over 8 layers, each
with `fanout` outgoing VIRTUAL_WEIGHT edges (w, w_raw, rank, via "resid", run), written as parts
of 100k edges with PartsWriter. Timed, each into a fresh folder:

- parts: write_import_files from the parts folder alone;
- store: write_import_files from an embedded store holding the same (loaded with load_parts;
  the load itself is timed too, for scale, but is not what this measures).

Prints wall seconds, this process's CPU seconds (all threads) and VIRTUAL_WEIGHT rows/s.
`--bucket-rows` lowers neo4j_import.BUCKET_ROWS, to time the spill path that catalogs larger
than the memory bound take.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from circuitcat.catalog import neo4j_import
from circuitcat.catalog.batches import EdgeBatch, NodeBatch
from circuitcat.catalog.parts import PartsWriter, load_parts
from circuitcat.catalog.schema import NodeKind, RelKind, feature_uid, run_uid, transcoder_set_uid
from circuitcat.catalog.store import open_store

N_LAYERS = 8
PART_EDGES = 100_000
SET_UID = transcoder_set_uid("bench-model", "bench-transcoders")
RUN_UID = run_uid("bench", "2000-01-01T00:00:00")


def write_parts(folder: Path, n_edges: int, fanout: int, seed: int = 0) -> int:
    """Feature nodes and `n_edges` VIRTUAL_WEIGHT edges as parts; returns the edge count."""
    rng = np.random.default_rng(seed)
    n_features = max(2, n_edges // fanout)
    per_layer = -(-n_features // N_LAYERS)
    layers = np.arange(n_features) // per_layer
    index = np.arange(n_features) % per_layer
    uids = [feature_uid(SET_UID, int(lay), int(i)) for lay, i in zip(layers, index, strict=True)]
    writer = PartsWriter(folder)
    writer.write_nodes(
        NodeBatch(
            NodeKind.FEATURE,
            {
                "uid": uids,
                "set": [SET_UID] * n_features,
                "layer": layers,
                "index": index,
                "density": rng.random(n_features),
                "run": [RUN_UID] * n_features,
            },
        )
    )
    src = np.repeat(np.arange(n_features), fanout)[:n_edges]
    step = np.tile(np.arange(1, fanout + 1), n_features)[:n_edges]
    dst = (src * 7919 + step * 104_729) % n_features
    dst = np.where(dst == src, (dst + 1) % n_features, dst)
    uid_array = np.array(uids, dtype=object)
    for start in range(0, len(src), PART_EDGES):
        s, d = src[start : start + PART_EDGES], dst[start : start + PART_EDGES]
        w = rng.standard_normal(len(s))
        writer.write_edges(
            EdgeBatch(
                RelKind.VIRTUAL_WEIGHT,
                NodeKind.FEATURE,
                NodeKind.FEATURE,
                uid_array[s].tolist(),
                uid_array[d].tolist(),
                {
                    "w": w,
                    "w_raw": w * 1.5,
                    "rank": step[start : start + PART_EDGES] - 1,
                    "via": ["resid"] * len(s),
                    "run": [RUN_UID] * len(s),
                },
            )
        )
    return len(src)


def _timed(label: str, out: Path, n_edges: int, **sources: object) -> None:
    start, cpu = time.perf_counter(), time.process_time()
    files = neo4j_import.write_import_files(out, **sources)  # type: ignore[arg-type]
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    rows = {f.path.name: f.rows for f in files.relationships}
    written = rows.get("edges-VIRTUAL_WEIGHT-Feature-Feature.csv", 0)
    assert written == n_edges, (written, n_edges)
    nodes = sum(f.rows for f in files.nodes)
    print(
        f"{label:<6} {seconds:7.2f} s ({cpu:.2f} s CPU)  {n_edges / seconds:>10,.0f} edge rows/s  "
        f"({n_edges:,} edges + {nodes:,} nodes)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edges", type=int, default=1_000_000)
    parser.add_argument("--fanout", type=int, default=100)
    parser.add_argument("--bucket-rows", type=int, default=None)
    parser.add_argument("--keep", type=Path, default=None, help="work here and keep the files")
    args = parser.parse_args()
    if args.bucket_rows:
        neo4j_import.BUCKET_ROWS = args.bucket_rows
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-import-files-"))
    try:
        parts, store_path = work / "parts", work / "store"
        start = time.perf_counter()
        n_edges = write_parts(parts, args.edges, args.fanout)
        print(f"wrote parts: {time.perf_counter() - start:.2f} s")
        _timed("parts", work / "out-parts", n_edges, source=None, parts=parts)
        start = time.perf_counter()
        with open_store(str(store_path)) as store:
            load_parts(store, parts)
        print(f"load_parts into the embedded store: {time.perf_counter() - start:.2f} s")
        with open_store(str(store_path), read_only=True) as store:
            _timed("store", work / "out-store", n_edges, source=store, parts=None)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
