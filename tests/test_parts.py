"""Parts: batches written as Parquet by a shard and loaded later give the catalog that writing
them directly gives (both stores' writer is the same algorithm; the embedded store here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from circuitcat.catalog import RelKind, open_store
from circuitcat.catalog.parts import (
    PartsError,
    PartsWriter,
    Shard,
    ShardStore,
    load_parts,
    parse_shard,
)
from circuitcat.catalog.schema import REL_SPECS

from . import catalog_data as data


def rel_rows(store: Any, rel: str) -> list[list[Any]]:
    props = ", ".join(f"r.{p}" for p in REL_SPECS[RelKind(rel)].props)
    rows = store.run_cypher(f"MATCH (a)-[r:{rel}]->(b) RETURN a.uid, b.uid, {props}").rows
    return sorted(rows, key=repr)


def snapshot(store: Any) -> dict[str, Any]:
    info = store.info()
    rels = {rel: rel_rows(store, rel) for rel in data.EXPECTED_RELS}
    features = store.run_cypher(
        "MATCH (f:Feature) RETURN f.uid, f.density, f.act_max, f.act_hist ORDER BY f.uid"
    ).rows
    return {"nodes": info.nodes, "rels": rels, "features": features}


def test_loaded_parts_equal_direct_writes(tmp_path: Path) -> None:
    with open_store(str(tmp_path / "direct")) as direct:
        data.write_all(direct)
        expected = snapshot(direct)
    writers = [PartsWriter(tmp_path / "parts", Shard(i, 2)) for i in range(2)]
    for i, nb in enumerate(data.node_batches()):
        writers[i % 2].write_nodes(nb)
    for i, eb in enumerate(data.edge_batches()):
        writers[i % 2].write_edges(eb)
    with open_store(str(tmp_path / "loaded")) as loaded:
        report = load_parts(loaded, tmp_path / "parts")
        assert report.parts == len(data.node_batches()) + len(data.edge_batches())
        assert snapshot(loaded) == expected
        load_parts(loaded, tmp_path / "parts")  # again: MERGEd, nothing doubles
        assert snapshot(loaded) == expected


def test_a_shard_store_reads_the_catalog_and_writes_parts(tmp_path: Path) -> None:
    with open_store(str(tmp_path / "cat")) as catalog:
        data.write_all(catalog)
        before = catalog.info()
        shard = ShardStore(catalog, PartsWriter(tmp_path / "parts", Shard(0, 1)))
        assert shard.query("transcoder_sets")[0]["uid"] == data.SET.uid
        shard.write_edges(data.edge_batches()[0])
        assert catalog.info() == before
    assert len(list((tmp_path / "parts").glob("*.parquet"))) == 1


def test_a_rerun_shard_replaces_its_parts(tmp_path: Path) -> None:
    first = PartsWriter(tmp_path, Shard(1, 3))
    first.write_nodes(data.node_batches()[0])
    first.write_nodes(data.node_batches()[1])
    PartsWriter(tmp_path, Shard(0, 3)).write_nodes(data.node_batches()[0])
    PartsWriter(tmp_path, Shard(1, 3)).write_nodes(data.node_batches()[0])
    assert len(list(tmp_path.glob("shard001of003-*.parquet"))) == 1
    assert len(list(tmp_path.glob("shard000of003-*.parquet"))) == 1


@pytest.mark.parametrize("text", ["3/3", "-1/2", "a/b", "1"])
def test_bad_shard_specs_are_one_line(text: str) -> None:
    with pytest.raises(PartsError, match="expected i/N"):
        parse_shard(text)


def test_shards_split_the_work() -> None:
    shards = [parse_shard(f"{i}/3") for i in range(3)]
    assert sorted(i for s in shards for i in range(10) if s.takes(i)) == list(range(10))


def test_not_a_part_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "x.parquet").write_text("nope")
    with open_store(str(tmp_path / "cat")) as catalog, pytest.raises(PartsError, match="not a"):
        load_parts(catalog, tmp_path)
