"""`prompt export --out DIR` ships a graph with its feature dashboards for circuit-tracer's local
viewer (catalog/feature_files.py). The files are read with circuit-tracer's own code: its
pydantic models (frontend/feature_models.py, frontend/graph_models.py) and its local server
(frontend/local_server.py), from the circuit-tracer 0.5.0 wheel fetched from PyPI into a
temporary folder (those modules need only pydantic and the standard library)."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from circuitcat.catalog import open_store
from circuitcat.catalog.feature_files import (
    HIST_LOG10_MAX,
    HIST_LOG10_MIN,
    linear_histogram,
    log_bins,
    quantile_values,
)
from circuitcat.cli.main import app

runner = CliRunner()
CIRCUIT_TRACER = "circuit-tracer==0.5.0"


def test_histogram_and_quantiles_from_log_bins() -> None:
    from circuitcat.ingest.feature_stats import hist_edges

    counts = [2.0, 0.0, 0.0, 5.0, 3.0, 0.0]  # underflow, then 5 log bins over 1e-3..1e2
    edges = [hi for _, hi, _ in log_bins(counts)]
    torch.testing.assert_close(torch.tensor(edges, dtype=torch.float64), hist_edges(5).double())
    assert (HIST_LOG10_MIN, HIST_LOG10_MAX) == (-3.0, 2.0)
    hist = linear_histogram(counts, act_max=20.0, n_bins=10)
    assert sum(hist) == sum(counts) and len(hist) == 10
    q = quantile_values(counts, act_max=20.0)
    assert len(q) == 100 and q == sorted(q) and q[-1] <= 20.0
    # 2 of 10 activations lie below 1e-3; the 50th percentile lies in the 5-count bin (1e-1..1).
    assert q[19] <= 1e-3 < q[20] and 0.1 <= q[49] <= 1.0
    assert quantile_values([0.0, 0.0], 1.0) == [0.0] * 100


@pytest.fixture(scope="module")
def circuit_tracer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """circuit-tracer's package folder, unpacked from its wheel (no dependencies installed)."""
    folder = tmp_path_factory.mktemp("circuit-tracer")
    fetched = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", CIRCUIT_TRACER, "-d", str(folder)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    wheels = list(folder.glob("circuit_tracer-*.whl"))
    if fetched.returncode != 0 or not wheels:
        pytest.skip(f"cannot fetch {CIRCUIT_TRACER} from PyPI: {fetched.stderr.strip()[-200:]}")
    with zipfile.ZipFile(wheels[0]) as z:
        z.extractall(folder / "src")
    return folder / "src"


CHECK = r"""
import json, sys, urllib.request
from pathlib import Path
from circuit_tracer.frontend import feature_models, graph_models
from circuit_tracer.frontend.local_server import serve

data = Path(sys.argv[1])
(graph_path,) = [p for p in data.glob("*.json") if p.name != "graph-metadata.json"]
graph = graph_models.Model.model_validate_json(graph_path.read_text())
checked = 0
server = serve(data_dir=str(data), port=int(sys.argv[2]))
try:
    base = f"http://127.0.0.1:{sys.argv[2]}"
    listed = json.load(urllib.request.urlopen(f"{base}/data/graph-metadata.json"))
    assert [g["slug"] for g in listed["graphs"]] == [graph.metadata.slug]
    urllib.request.urlopen(f"{base}/graph_data/{graph.metadata.slug}.json").read()
    for node in graph.nodes:
        if node.feature_type != "cross layer transcoder":
            continue
        # The viewer's loadFeature: a scan starting with "./" reads `${scan}/${feature}.json`.
        assert graph.metadata.scan.startswith("./")
        url = f"{base}/{graph.metadata.scan[2:]}/{node.feature}.json"
        feature = feature_models.Model.model_validate_json(urllib.request.urlopen(url).read())
        assert feature.index == node.feature and feature.examples_quantiles[0].examples
        checked += 1
finally:
    server.stop()
print(json.dumps({"features": checked, "nodes": len(graph.nodes)}))
"""


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def exported(toy_catalog: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A toy prompt graph exported into a folder with its feature files, by the CLI."""
    with open_store(toy_catalog, read_only=True) as s:
        prompt = s.query("attributed_prompts", set_uid="toy-years/tc-v1", task="greater-than")[0]
    out = tmp_path_factory.mktemp("export") / "viewer"
    done = runner.invoke(
        app, ["prompt", "export", prompt["uid"], "--out", str(out), "--store", toy_catalog]
    )
    assert done.exit_code == 0 and "feature files" in done.stdout, done.output
    return out


def _graph_file(folder: Path) -> dict[str, Any]:
    return dict(
        json.loads(next(p for p in folder.glob("*.json") if p.stem != "graph-metadata").read_text())
    )


def _check(value: Any, schema: dict[str, Any], root: dict[str, Any], where: str = "$") -> None:
    """The subset of JSON Schema that pydantic's model_json_schema writes for these models
    ($ref into $defs, anyOf, types, required, properties, items); AssertionError naming the
    first place a value breaks it."""
    if "$ref" in schema:
        return _check(value, root["$defs"][schema["$ref"].rsplit("/", 1)[1]], root, where)
    if "anyOf" in schema:
        failures = []
        for option in schema["anyOf"]:
            try:
                return _check(value, option, root, where)
            except AssertionError as e:
                failures.append(str(e))
        raise AssertionError(f"{where}: matches none of {failures}")
    kind = schema.get("type")
    python = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}
    if kind in ("integer", "number"):
        ok = isinstance(value, int if kind == "integer" else int | float)
        ok = ok and not isinstance(value, bool)
    else:
        ok = kind is None or isinstance(value, python[kind])
    assert ok, f"{where}: {value!r} is not of type {kind}"
    if kind == "object":
        missing = [k for k in schema.get("required", []) if k not in value]
        assert not missing, f"{where}: missing {missing}"
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                _check(value[key], sub, root, f"{where}.{key}")
    if kind == "array" and "items" in schema:
        for i, item in enumerate(value):
            _check(item, schema["items"], root, f"{where}[{i}]")
    return None


SCHEMA = Path(__file__).parent / "fixtures" / "circuit_tracer_schema.json"


def test_exported_files_match_circuit_tracers_schema(exported: Path, toy_catalog: str) -> None:
    """Against the schemas of circuit-tracer's models, committed with the script that makes
    them (tests/fixtures/make_circuit_tracer_schema.py): runs without a network."""
    schemas = json.loads(SCHEMA.read_text())
    graph = _graph_file(exported)
    _check(graph, schemas["graph"], schemas["graph"])
    features = [n for n in graph["nodes"] if n["feature_type"] == "cross layer transcoder"]
    folder = exported / "features" / "toy-years-tc-v1"
    assert graph["metadata"]["scan"] == "./data/features/toy-years-tc-v1"
    assert sorted(p.name for p in folder.glob("*.json")) == sorted(
        {f"{n['feature']}.json" for n in features}
    )
    for path in folder.glob("*.json"):
        _check(json.loads(path.read_text()), schemas["feature"], schemas["feature"], path.name)
    broken = {**json.loads(next(folder.glob("*.json")).read_text()), "histogram": "x"}
    broken.pop("act_max")
    with pytest.raises(AssertionError, match="missing"):
        _check(broken, schemas["feature"], schemas["feature"])
    # Bias nodes sit at the positions they feed, as error-kind nodes the viewer knows.
    biases = [n for n in graph["nodes"] if n["node_id"].split("_")[1] == "-2"]
    assert biases and all(n["ctx_idx"] >= 0 and "error" in n["feature_type"] for n in biases)
    assert all(n["ctx_idx"] >= 0 for n in graph["nodes"])
    # A feature file says what the catalog says of the feature.
    one = features[0]
    layer, index, _ = (int(x) for x in one["node_id"].split("_"))
    shipped = json.loads((folder / f"{one['feature']}.json").read_text())
    with open_store(toy_catalog, read_only=True) as s:
        f = s.query("feature", uid=f"toy-years/tc-v1/L{layer}/{index}")[0]
    assert shipped["activation_frequency"] == f["density"] and shipped["act_max"] == f["act_max"]
    assert shipped["description"] == f["auto_description"] == one["clerp"]
    assert len(shipped["examples_quantiles"][0]["examples"]) == len(json.loads(f["top_contexts"]))


def test_exported_files_load_in_circuit_tracer(
    exported: Path, circuit_tracer: Path, tmp_path: Path, toy_catalog: str
) -> None:
    """With circuit-tracer's own models and local server; and the committed schema is theirs."""
    ran = subprocess.run(
        [sys.executable, "-c", CHECK, str(exported), str(_free_port())],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(circuit_tracer), "PATH": "/usr/bin:/bin"},
    )
    assert ran.returncode == 0, ran.stderr[-2000:]
    result = json.loads(ran.stdout.strip().splitlines()[-1])
    graph = _graph_file(exported)
    features = [n for n in graph["nodes"] if n["feature_type"] == "cross layer transcoder"]
    assert result["features"] == len(features) > 0
    committed = json.loads(SCHEMA.read_text())
    schema = subprocess.run(
        [sys.executable, "-c", SCHEMA_NOW],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(circuit_tracer), "PATH": "/usr/bin:/bin"},
    )
    assert json.loads(schema.stdout) == {k: committed[k] for k in ("feature", "graph")}, (
        "circuit-tracer's models changed: run tests/fixtures/make_circuit_tracer_schema.py"
    )
    # --no-features: the graph alone.
    prompt = graph["metadata"]["circuitcat"]["prompt_uid"]
    out = str(tmp_path / "g")
    alone = runner.invoke(
        app, ["prompt", "export", prompt, "--out", out, "--no-features", "--store", toy_catalog]
    )
    assert alone.exit_code == 0 and not (tmp_path / "g" / "features").exists()


SCHEMA_NOW = """
import json
from circuit_tracer.frontend import feature_models, graph_models
print(json.dumps({"feature": feature_models.Model.model_json_schema(),
                  "graph": graph_models.Model.model_json_schema()}))
"""
