"""`store import-files`: CSVs that the real `neo4j-admin database import full` loads into a new
database which then equals the catalog that loading would have made (the store, then its parts):
every node, edge and property, strings with quotes, commas and newlines, lists, merges."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from circuitcat.catalog import (
    CatalogStore,
    EdgeBatch,
    NodeBatch,
    NodeKind,
    RelKind,
    neo4j_import,
    open_store,
)
from circuitcat.catalog import schema as sc
from circuitcat.catalog.copy import copy_catalog
from circuitcat.catalog.neo4j_import import ImportFiles, ImportFilesError, write_import_files
from circuitcat.catalog.parts import PartsWriter, Shard, load_parts
from circuitcat.cli.main import app

from . import catalog_data as data
from .neo4j_server import REPO_ROOT, Neo4jServer, _start_launcher

LIB = REPO_ROOT / "docker" / "neo4j-local" / "target" / "lib"
LAUNCHER_CLASS = LIB.parent / "classes" / "circuitcat" / "Neo4jLauncher.class"
F0, F1, F2 = data.feature_uids(0), data.feature_uids(1), data.feature_uids(2)
NEW = sc.feature_uid(data.SET.uid, 2, 99)  # a feature only the parts hold
# What CSV must carry exactly: quotes, commas, newlines, a backslash before a quote, semicolons
# (neo4j-admin's default array delimiter), non-ASCII, leading spaces, an empty string.
TRICKY = 'say "hi", then\nnewline; tab\there \\" end é 🙂'
CONTEXTS = json.dumps([{"text": 'a "quoted", comma\nline', "act": 1.25}], ensure_ascii=False)


def _edit_source(store: CatalogStore) -> None:
    """Strings and lists that a CSV writer gets wrong, on the hand-built catalog."""
    store.write_nodes(
        NodeBatch(
            NodeKind.FEATURE,
            {"uid": F0[:3], "top_contexts": [CONTEXTS, TRICKY, ""], "label": [TRICKY, "", "x,y"]},
        )
    )
    prompt = data.PromptRecord(
        task="greater-than",
        text=TRICKY,
        tokens=[" a;b", '"q"', "c,d", TRICKY],
        answer=" 45",
        metric_value=1e-300,
    )
    store.write_nodes(data.records_to_batch([prompt]))


def _write_parts(folder: Path) -> None:
    """Two shards: a new feature and edges, overrides of stored values, repeats across shards."""
    first, second = PartsWriter(folder, Shard(0, 2)), PartsWriter(folder, Shard(1, 2))
    first.write_nodes(
        NodeBatch(
            NodeKind.FEATURE,
            {
                "uid": [NEW, F0[0]],
                "set": [data.SET.uid, None],
                "layer": [2, 0],
                "index": [99, 0],
                "density": [0.5, 0.125],
                "act_hist": [[0.0, 1e-17], [2.5]],
            },
        )
    )
    vw = {"w": [9.0, -1.5], "rank": [1, 2], "via": ["resid", "resid"], "run": [data.RUN.uid] * 2}
    # F0[0] -> F1[0] is stored: w and rank change, w_raw stays (the part leaves it out).
    first.write_edges(
        EdgeBatch(
            RelKind.VIRTUAL_WEIGHT,
            NodeKind.FEATURE,
            NodeKind.FEATURE,
            [F0[0], F1[1]],
            [F1[0], NEW],
            vw,
        )
    )
    second.write_edges(
        EdgeBatch(
            RelKind.VIRTUAL_WEIGHT,
            NodeKind.FEATURE,
            NodeKind.FEATURE,
            [F1[1], F1[1]],
            [NEW, NEW],
            {"w": [0.25, 3.0], "via": ["resid", "attn:0.1"], "run": [data.RUN.uid] * 2},
        )
    )


def _java_and_jars() -> str:
    """The java binary, after skipping (failing under CI=true) when it or the jars are absent."""
    java = shutil.which("java")
    jars = list(LIB.glob("neo4j-import-tool-*.jar"))
    if java and jars and LAUNCHER_CLASS.exists():
        return java
    reason = "neo4j-admin import needs `java` and docker/neo4j-local built (neo4j-local.sh build)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


def _neo4j_admin(java: str, home: Path, args: list[str]) -> str:
    """The real `neo4j-admin` (org.neo4j.cli.AdminTool) from the launcher's jars."""
    (home / "conf").mkdir(parents=True, exist_ok=True)
    (home / "conf" / "neo4j.conf").write_text("server.memory.pagecache.size=64m\n")
    env = {**os.environ, "NEO4J_HOME": str(home), "NEO4J_CONF": str(home / "conf")}
    cmd = [
        java,
        "-Xmx512m",
        "-XX:TieredStopAtLevel=1",
        "-cp",
        f"{LIB}/*",
        "org.neo4j.cli.AdminTool",
        *args,
    ]
    cmd += ["--threads=2", "--max-off-heap-memory=256m"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def test_imported_database_equals_the_loaded_catalog(tmp_path: Path) -> None:
    java = _java_and_jars()
    parts = tmp_path / "parts"
    with open_store(str(tmp_path / "source")) as source:
        data.write_all(source)
        _edit_source(source)
        _write_parts(parts)
        files = write_import_files(tmp_path / "import", source, parts)
        with open_store(str(tmp_path / "expected")) as expected:
            copy_catalog(source, expected)
    with open_store(str(tmp_path / "expected")) as expected:
        load_parts(expected, parts)

    by_file = {f.path.name: f for f in files.nodes + files.relationships}
    assert by_file["nodes-Feature.csv"].rows == 19 and by_file["nodes-Feature.csv"].multiline
    assert by_file["edges-VIRTUAL_WEIGHT-Feature-Feature.csv"].rows == 48 + 2
    assert not by_file["edges-IN_SET-Feature-TranscoderSet.csv"].multiline
    assert "--multiline-fields-format=v2" in files.arguments()
    assert files.script.read_text().count("--nodes=") == len(files.nodes)

    # The launcher serves database `neo4j` from STATE_DIR/data: neo4j-admin's NEO4J_HOME.
    state = tmp_path / "neo4j-state"
    report = _neo4j_admin(java, state / "data", files.arguments())
    assert "IMPORT DONE" in report
    server, stop, reason = _start_launcher(state)  # auth on, stopped if this process dies
    assert server is not None, reason
    try:
        with (
            open_store(server.uri, user=server.user, password=server.password) as imported,
            open_store(str(tmp_path / "expected"), read_only=True) as expected,
        ):
            names = imported.run_cypher("SHOW CONSTRAINTS YIELD name RETURN name").rows
            assert {f"{k.lower()}_uid" for k in NodeKind} <= {r[0] for r in names}
            changes = copy_catalog(expected, imported)
        assert all(c.added == c.changed == c.removed == 0 for c in changes.values()), changes
        assert changes["Feature"].rows == 19 and changes["Prompt"].rows == 3
    finally:
        stop()


def test_merges_as_loading_would(tmp_path: Path) -> None:
    """Later places override what they set, keep the rest; one row per identity."""
    parts = tmp_path / "parts"
    with open_store(str(tmp_path / "source")) as source:
        data.write_all(source)
        _write_parts(parts)
        files = write_import_files(tmp_path / "import", source, parts)
    lines = (tmp_path / "import" / "edges-VIRTUAL_WEIGHT-Feature-Feature.csv").read_text()
    header, *rows = lines.splitlines()
    assert header == (
        ":START_ID(Feature),:END_ID(Feature),w:double,w_raw:double,rank:long,via:string,run:string"
    )
    stored = [r for r in rows if r.startswith(f'"{F0[0]}","{F1[0]}",')]
    # Floats in their shortest exact form: 9.0 is `9`.
    assert len(stored) == 1 and stored[0].startswith(f'"{F0[0]}","{F1[0]}",9,')
    assert stored[0].split(",")[4] == "1"  # rank from the part; w_raw (index 3) kept
    assert float(stored[0].split(",")[3]) != 0
    assert sum(r.startswith(f'"{F1[1]}","{NEW}",') for r in rows) == 2  # two `via`s
    assert f'"{F1[1]}","{NEW}",0.25,,2,"resid",' in lines  # shard 1 overrides w, keeps rank
    nodes = (tmp_path / "import" / "nodes-Feature.csv").read_text()
    assert '"0\x1f1e-17"' in nodes and f'"{NEW}","{data.SET.uid}",2,99,0.5,' in nodes
    assert [f.kind for f in files.nodes][:2] == ["Model", "TranscoderSet"]
    assert (
        files.relationships[0].kind == "VIRTUAL_WEIGHT" and len(files.relationships) == 16
    )  # every kind and endpoint pair of the contract data


def _records(files: ImportFiles) -> dict[str, tuple[int, bool, list[list[str]]]]:
    """Each CSV's rows, multiline flag and parsed records, sorted: row order is free."""
    out = {}
    for f in files.nodes + files.relationships:
        with f.path.open(newline="", encoding="utf-8") as text:
            out[f.path.name] = (f.rows, f.multiline, sorted(csv.reader(text)))
    return out


def test_buckets_on_disk_merge_as_memory_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past BUCKET_ROWS, rows go through hash-partitioned Parquet buckets (and the store is read
    READ_ROWS rows at a time): the same files come out, and the buckets are gone."""
    parts = tmp_path / "parts"
    with open_store(str(tmp_path / "source")) as source:
        data.write_all(source)
        _edit_source(source)
        _write_parts(parts)
        in_memory = write_import_files(tmp_path / "memory", source, parts)
        monkeypatch.setattr(neo4j_import, "BUCKET_ROWS", 4)
        monkeypatch.setattr(neo4j_import, "READ_ROWS", 3)
        spilled = write_import_files(tmp_path / "spilled", source, parts)
    assert _records(spilled) == _records(in_memory)
    assert not (tmp_path / "spilled" / ".merge").exists()


def test_a_neo4j_source_gives_the_same_files(
    tmp_path: Path, clean_neo4j: Neo4jServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Neo4j store is read by chunks of uids through Cypher, the embedded one by offset
    ranges as Arrow: the same catalog gives the same files."""
    monkeypatch.setattr(neo4j_import, "READ_CHUNK", 5)
    parts = tmp_path / "parts"
    _write_parts(parts)
    server = clean_neo4j
    with (
        open_store(str(tmp_path / "source")) as embedded,
        open_store(server.uri, user=server.user, password=server.password) as neo4j,
    ):
        data.write_all(embedded)
        _edit_source(embedded)
        copy_catalog(embedded, neo4j)
        expected = write_import_files(tmp_path / "embedded", embedded, parts)
        got = write_import_files(tmp_path / "neo4j", neo4j, parts)
    assert _records(got) == _records(expected)


def test_errors_name_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ImportFilesError, match="pass a store"):
        write_import_files(tmp_path / "a", None, None)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "old.csv").write_text("x")
    with pytest.raises(ImportFilesError, match="not an empty folder"):
        write_import_files(tmp_path / "full", None, tmp_path)
    parts = tmp_path / "parts"
    PartsWriter(parts).write_edges(
        EdgeBatch(RelKind.IN_SET, NodeKind.FEATURE, NodeKind.TRANSCODER_SET, [F0[0]], ["s"])
    )
    PartsWriter(parts, Shard(0, 2)).write_nodes(NodeBatch(NodeKind.TRANSCODER_SET, {"uid": ["s"]}))
    with pytest.raises(ImportFilesError, match=r"source Feature node .* in neither"):
        write_import_files(tmp_path / "b", None, parts)
    with pytest.raises(ImportFilesError, match="database name"):
        write_import_files(tmp_path / "c", None, parts, database="Bad Name")
    with open_store(str(tmp_path / "s")) as store:
        store.write_nodes(NodeBatch(NodeKind.PROMPT, {"uid": ["t/x"], "tokens": [["a\x1fb"]]}))
        with pytest.raises(ImportFilesError, match="U\\+001F"):
            write_import_files(tmp_path / "d", store, None)


def test_cli_prints_the_command(tmp_path: Path) -> None:
    with open_store(str(tmp_path / "source")) as source:
        data.write_all(source)
    _write_parts(tmp_path / "parts")
    result = CliRunner().invoke(
        app,
        [
            "store",
            "import-files",
            str(tmp_path / "out"),
            "--from",
            str(tmp_path / "source"),
            "--parts",
            str(tmp_path / "parts"),
            "--database",
            "catalog",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "neo4j-admin database import full catalog --overwrite-destination" in result.stdout
    assert "circuitcat store init" in result.stdout
    assert (tmp_path / "out" / "import.sh").exists()
    again = CliRunner().invoke(
        app, ["store", "import-files", str(tmp_path / "out"), "--parts", str(tmp_path / "parts")]
    )
    assert again.exit_code == 1 and "not an empty folder" in again.output
