"""`circuitcat serve`'s JSON API on the toy catalog: what each endpoint answers, read-only
enforcement, limits and timeouts, hostile input, labels with and without a token, and the
same answers from Neo4j as from the embedded store."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from circuitcat.catalog import NodeBatch, NodeKind, open_store
from circuitcat.catalog.copy import copy_catalog
from circuitcat.catalog.errors import ReadOnlyViolationError
from circuitcat.catalog.graph_json import prompt_graph_json
from circuitcat.cli.web import ServeConfig, create_app, load_tokens
from circuitcat.cli.web.config import ServeConfigError, parse_tokens
from circuitcat.cli.web.reads import HIST_LOG10_MAX, HIST_LOG10_MIN

from .neo4j_server import Neo4jServer
from .test_serve_support import (
    CIRCUIT,
    FEATURE,
    TOKEN,
    copy_toy,
    free_port,
    slice_batches,
    write_batches,
)

AUTH = {"Authorization": f"Bearer {TOKEN}"}
CLI = Path(sys.executable).with_name("circuitcat")
# Slow on every engine: a billion feature triples.
SLOW = (
    "MATCH (a:Feature), (b:Feature), (c:Feature) "
    "WHERE a.density * b.density * c.density > 100.0 RETURN count(*) AS n"
)


@pytest.fixture(scope="module")
def toy_rw(toy_catalog: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A copy of the toy catalog the label tests may write to."""
    return copy_toy(toy_catalog, tmp_path_factory.mktemp("serve") / "toy")


@pytest.fixture(scope="module")
def client(toy_rw: str) -> Iterator[TestClient]:
    config = ServeConfig(store=toy_rw, tokens={"alice": TOKEN}, cypher_row_limit=50)
    with TestClient(create_app(config)) as c:
        yield c


def test_openapi_documents_the_api(client: TestClient) -> None:
    spec = client.get("/api/openapi.json").json()
    paths = set(spec["paths"])
    for path in (
        "/api/features",
        "/api/features/{uid}",
        "/api/circuits/{uid}",
        "/api/prompts/{uid}/graph",
        "/api/cypher",
        "/api/labels",
        "/api/search",
        "/api/pairs",
    ):
        assert path in paths, path
    assert client.get("/api/docs").status_code == 404  # the stock docs page needs a CDN


def test_feature_page_data(client: TestClient) -> None:
    from circuitcat.ingest.feature_stats import HIST_LOG10_MAX as HI
    from circuitcat.ingest.feature_stats import HIST_LOG10_MIN as LO

    assert (HIST_LOG10_MIN, HIST_LOG10_MAX) == (LO, HI)
    f = client.get(f"/api/features/{FEATURE}").json()
    assert (f["layer"], f["index"], f["model"]) == (0, 156, "toy-years")
    hist = f["histogram"]
    assert len(hist["edges"]) == len(hist["counts"]) and sum(hist["counts"]) > 0
    assert hist["edges"][0] == pytest.approx(1e-3) and hist["edges"][-1] == pytest.approx(1e2)
    top = f["top_contexts"][0]
    assert max(top["acts"]) == pytest.approx(f["act_max"], rel=1e-4)
    assert f["promoted"] and all(x["w"] > 0 for x in f["promoted"])
    assert f["suppressed"] and all(x["w"] < 0 for x in f["suppressed"])
    assert f["outputs"]["features"] and f["inputs"]["tokens"]
    assert f["inputs"]["prompt_graphs"] and f["outputs"]["prompt_graphs"]
    assert [c["uid"] for c in f["circuits"]] == [CIRCUIT]
    short = client.get("/api/features/L0/156").json()  # the short form, one set in the catalog
    assert short["uid"] == FEATURE


def test_features_filtered_sorted_paged(client: TestClient) -> None:
    page = client.get("/api/features", params={"sort": "density", "limit": 20}).json()
    densities = [f["density"] for f in page["features"]]
    assert page["total"] == 1024 and densities == sorted(densities, reverse=True)
    second = client.get("/api/features", params={"sort": "density", "limit": 10, "offset": 10})
    assert [f["uid"] for f in second.json()["features"]] == [
        f["uid"] for f in page["features"][10:20]
    ]
    low = client.get("/api/features", params={"sort": "act_max", "order": "asc", "layer": 2})
    rows = low.json()["features"]
    assert {f["layer"] for f in rows} == {2} and low.json()["total"] == 256
    assert [f["act_max"] for f in rows] == sorted(f["act_max"] for f in rows)
    by_index = client.get("/api/features", params={"sort": "index", "order": "asc", "limit": 3})
    assert by_index.json()["features"][0]["uid"] == "toy-years/tc-v1/L0/0"
    token = client.get("/api/features", params={"token": "98", "limit": 5}).json()
    assert FEATURE in [f["uid"] for f in token["reading"]]
    assert token["promoting"] and all(f["w"] > 0 for f in token["promoting"])


def test_circuit_as_a_graph(client: TestClient) -> None:
    listed = [c["uid"] for c in client.get("/api/circuits").json()]
    assert CIRCUIT in listed and len(listed) == 3  # the demo's: one per built-in task
    g = client.get(f"/api/circuits/{CIRCUIT}").json()
    kinds = {n["kind"] for n in g["nodes"]}
    assert kinds == {"token", "feature", "target"} and g["n_layers"] == 4
    features = [n for n in g["nodes"] if n["kind"] == "feature"]
    assert len(features) == g["circuit"]["n_features"]
    ids = {n["id"] for n in g["nodes"]}
    assert g["links"] and all(e["source"] in ids and e["target"] in ids for e in g["links"])
    assert any(e["weight"] < 0 for e in g["links"]) and any(e["weight"] > 0 for e in g["links"])
    assert g["circuit"]["faithfulness"]["kept"] > 0.8 and g["paths"]
    assert client.get("/api/circuits/no/such/circuit").status_code == 404


def test_prompts_and_prompt_graph_json(client: TestClient) -> None:
    listed = client.get("/api/tasks/greater-than/prompts", params={"limit": 100}).json()
    with_graph = [p for p in listed["prompts"] if p["graph_sets"]]
    assert len(listed["prompts"]) == 40 and with_graph
    uid = with_graph[0]["uid"]
    info = client.get(f"/api/prompts/{uid}").json()
    assert info["graph_sets"] == ["toy-years/tc-v1"]
    served = client.get(f"/api/prompts/{uid}/graph").json()
    with client.app.state.catalog.use() as s:  # type: ignore[attr-defined]
        exported = prompt_graph_json(s, uid).model_dump()
    for g in (served, exported):
        g["metadata"]["info"].pop("create_time_ms")
    assert served == exported
    assert client.get("/api/prompts/greater-than/nope/graph").status_code == 404


def test_search_and_cross_graph_pairs(client: TestClient) -> None:
    found = client.get("/api/search", params={"q": "98"}).json()
    assert FEATURE in [f["uid"] for f in found["reading_token"]]
    assert found["prompts"] and all("98" in p["text"] for p in found["prompts"])
    assert client.get("/api/search", params={"q": "L0/156"}).json()["feature"] == FEATURE
    layer = client.get("/api/search", params={"q": "L2"}).json()["layer"]
    assert len(layer) == 20 and {f["layer"] for f in layer} == {2}
    assert "layer" not in found
    store = client.app.state.catalog.store  # type: ignore[attr-defined]
    both = store.run_cypher(  # a feature it feeds both by weight and in some prompt graph
        "MATCH (a:Feature {uid: $a})-[:VIRTUAL_WEIGHT]->(b:Feature) "
        "MATCH (a)-[:ATTRIBUTES]->(b) RETURN DISTINCT b.uid ORDER BY b.uid LIMIT 1",
        {"a": FEATURE},
    ).rows
    assert both, "the toy catalog should have such a pair"
    dst = both[0][0].split("/", 2)[-1]  # the short form, L<layer>/<index>
    pair = client.get("/api/pairs", params={"src": "L0/156", "dst": dst}).json()
    assert pair["prompts"] and pair["virtual_weights"]
    assert all(p["n_edges"] >= 1 for p in pair["prompts"])


def test_cypher_rows_limits_and_refusals(client: TestClient) -> None:
    ok = client.post("/api/cypher", json={"query": "MATCH (f:Feature) RETURN f.uid", "limit": 7})
    assert ok.status_code == 200 and len(ok.json()["rows"]) == 7 and ok.json()["truncated"]
    capped = client.post("/api/cypher", json={"query": "MATCH (f:Feature) RETURN f.uid"})
    assert len(capped.json()["rows"]) == 50  # the server's cap (cypher_row_limit)
    params = client.post(
        "/api/cypher",
        json={"query": "MATCH (f:Feature {uid: $u}) RETURN f.layer AS l", "params": {"u": FEATURE}},
    )
    assert params.json()["rows"] == [[0]]
    before = client.post("/api/cypher", json={"query": "MATCH (n) RETURN count(n)"}).json()
    for hostile in (
        "CREATE (m:Model {uid: 'evil'})",
        "MATCH (f:Feature) SET f.label = 'evil'",
        "MATCH (r:Run) DETACH DELETE r",
        "COMMIT; MATCH (r:Run) DETACH DELETE r",
        "COPY (MATCH (f:Feature) RETURN f.uid) TO '/tmp/circuitcat-evil.csv'",
        "LOAD FROM '/etc/passwd' RETURN *",
    ):
        r = client.post("/api/cypher", json={"query": hostile})
        assert r.status_code in (400, 403), (hostile, r.text)
    after = client.post("/api/cypher", json={"query": "MATCH (n) RETURN count(n)"}).json()
    assert before["rows"] == after["rows"] and not Path("/tmp/circuitcat-evil.csv").exists()
    huge = client.post("/api/cypher", json={"query": "RETURN $x", "params": {"x": 10**30}})
    assert huge.status_code == 400


def test_cypher_timeout_is_enforced(toy_catalog: str) -> None:
    with TestClient(create_app(ServeConfig(store=toy_catalog, cypher_timeout_s=0.3))) as slow:
        started = time.monotonic()
        r = slow.post("/api/cypher", json={"query": SLOW})
        assert r.status_code == 504, r.text
        assert time.monotonic() - started < 5
        assert slow.post("/api/cypher", json={"query": "RETURN 1 AS one"}).json()["rows"] == [[1]]


def test_hostile_parameters(client: TestClient) -> None:
    for path in (
        "/api/features/x' OR 1=1 //",
        "/api/features/toy-years/tc-v1/L0/156'})-[r]-() DETACH DELETE r //",
        "/api/circuits/%00",
        "/api/prompts/..%2F..%2Fetc%2Fpasswd",
    ):
        assert client.get(path).status_code == 404, path
    for params in (
        {"limit": 0},
        {"limit": 10**6},
        {"offset": -1},
        {"layer": "one"},
        {"sort": "uid; DROP"},
        {"order": "sideways"},
        {"label": "x" * 1000},
        {"limit": "99999999999999999999"},
    ):
        assert client.get("/api/features", params=params).status_code == 422, params
    assert client.get("/static/../app.py").status_code == 404
    assert client.get("/static/%2e%2e/app.py").status_code == 404
    r = client.get("/feature/<script>alert(1)</script>")
    assert r.status_code == 200 and "<script>alert" not in r.text  # pages never echo input
    assert "default-src 'self'" in r.headers["content-security-policy"]
    big = client.post("/api/cypher", json={"query": "RETURN 1" + " " * 30_000})
    assert big.status_code == 422


def test_labels_need_a_token_and_keep_author_and_time(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    body = {"feature": FEATURE, "text": "start year in the 90s"}
    assert client.post("/api/labels", json=body).status_code == 401
    bad = client.post("/api/labels", json=body, headers={"Authorization": "Bearer wrong" * 4})
    assert bad.status_code == 401
    in_url = client.post(f"/api/labels?token={TOKEN}", json=body)
    assert in_url.status_code == 401  # a token in the URL is never read
    assert client.get(f"/api/features/{FEATURE}").json()["labels"] == []
    with caplog.at_level(logging.DEBUG):
        first = client.post("/api/labels", json=body, headers=AUTH)
        second = client.post("/api/labels", json={**body, "text": "  years  90-99 "}, headers=AUTH)
    assert TOKEN not in caplog.text
    assert first.status_code == 200 and second.status_code == 200
    assert second.json()["text"] == "years 90-99" and second.json()["author"] == "alice"
    f = client.get(f"/api/features/{FEATURE}").json()
    assert f["label"] == "years 90-99"
    assert [x["text"] for x in f["labels"]] == ["years 90-99", "start year in the 90s"]
    assert f["labels"][0]["created_at"] > f["labels"][1]["created_at"]
    found = client.get("/api/search", params={"q": "90-99"}).json()
    assert [x["uid"] for x in found["labelled"]] == [FEATURE]
    for text in ("", " ", "x" * 501, "bell\x07"):
        r = client.post("/api/labels", json={**body, "text": text}, headers=AUTH)
        assert r.status_code == 422, text
    missing = client.post("/api/labels", json={**body, "feature": "no/L0/1"}, headers=AUTH)
    assert missing.status_code == 404


def test_labels_survive_reingest(client: TestClient) -> None:
    client.post("/api/labels", json={"feature": FEATURE, "text": "kept"}, headers=AUTH)
    with client.app.state.catalog.use() as store:  # type: ignore[attr-defined]
        # what ingest features writes again for the feature: its statistics, never labels
        store.write_nodes(NodeBatch(NodeKind.FEATURE, {"uid": [FEATURE], "density": [0.5]}))
    f = client.get(f"/api/features/{FEATURE}").json()
    assert f["label"] == "kept" and f["density"] == 0.5 and len(f["labels"]) >= 1


def test_read_only_server_refuses_label_writes(toy_catalog: str) -> None:
    with TestClient(create_app(ServeConfig(store=toy_catalog))) as c:
        r = c.post("/api/labels", json={"feature": FEATURE, "text": "x"}, headers=AUTH)
        assert r.status_code == 401 and "read-only" in r.json()["detail"]
        assert c.get("/api/health").json()["writable"] is False


def test_a_catalog_from_before_labels_is_served(tmp_path: Path) -> None:
    import ladybug

    path = tmp_path / "old.lbug"
    db = ladybug.Database(str(path))
    conn = ladybug.Connection(db)  # as an earlier circuitcat made it: no Label tables
    conn.execute("CREATE NODE TABLE Feature(uid STRING PRIMARY KEY, layer INT64, label STRING)")
    conn.execute("CREATE (f:Feature {uid: 'old/L0/0', layer: 0})")
    conn.close()
    db.close()
    with TestClient(create_app(ServeConfig(store=str(path)))) as c:
        f = c.get("/api/features/old/L0/0").json()
    assert f["labels"] == [] and f["histogram"] == {
        "counts": [],
        "edges": [],
        "underflow_below": None,
    }


def test_tokens_from_environment_and_file(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text("# team\nbob:bbbbbbbbbbbbbbbbbbbb\ncarol:cccccccccccccccccccc  # admin\n")
    env = {"CIRCUITCAT_SERVE_TOKENS": "alice:aaaaaaaaaaaaaaaaaaaa, bob:old-old-old-old-old"}
    tokens = load_tokens(path, env)
    assert tokens == {
        "alice": "a" * 20,
        "bob": "b" * 20,
        "carol": "c" * 20,
    }
    config = ServeConfig(tokens=tokens)
    assert config.user_of("c" * 20) == "carol" and config.user_of("c" * 19) is None
    assert TOKEN not in repr(ServeConfig(tokens={"alice": TOKEN}))
    for bad in ("alice", "alice:short", "bad user:" + "x" * 20):
        with pytest.raises(ServeConfigError) as e:
            parse_tokens(bad, "test")
        assert "x" * 20 not in str(e.value)  # the message never repeats a token
    with pytest.raises(ServeConfigError):
        load_tokens(tmp_path / "missing", {})


def _run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLI), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
        check=False,
    )


def test_feature_label_command(toy_catalog: str, tmp_path: Path) -> None:
    store = copy_toy(toy_catalog, tmp_path / "toy")
    done = _run_cli(
        "feature", "label", "L0/156", "years 90-99", "--store", store, "--author", "bob"
    )
    assert done.returncode == 0, done.stderr
    assert "labelled toy-years/tc-v1/L0/156" in done.stdout
    with open_store(store, read_only=True) as s:
        assert s.query("web_feature_labels", uid=FEATURE, limit=5)[0]["author"] == "bob"
    missing = _run_cli("feature", "label", "L0/9999", "x", "--store", store)
    assert missing.returncode == 1 and "no feature" in missing.stderr


def test_serve_command(toy_catalog: str, tmp_path: Path) -> None:
    bad = _run_cli("serve", "--store", str(tmp_path / "none" / "catalog.lbug"))
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    weak = _run_cli("serve", "--store", toy_catalog, env={"CIRCUITCAT_SERVE_TOKENS": "a:short"})
    assert weak.returncode == 1 and "shorter than 16" in weak.stderr
    port = free_port()
    proc = subprocess.Popen(
        [str(CLI), "serve", "--store", toy_catalog, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        health = None
        for _ in range(200):
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1).json()
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        assert health == {"backend": "ladybug", "version": health["version"], "writable": False}
        page = httpx.get(f"http://127.0.0.1:{port}/feature/{FEATURE}")
        assert page.status_code == 200 and "/static/feature.js" in page.text
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# ---- Neo4j ------------------------------------------------------------------------------------

GETS = [
    "/api/catalog",
    "/api/features?limit=30",
    "/api/features?sort=act_mean&order=asc&layer=1&limit=10&offset=5",
    "/api/features?token=98",
    f"/api/features/{FEATURE}",
    f"/api/circuits/{CIRCUIT}",
    "/api/circuits",
    "/api/tasks/greater-than/prompts",
    "/api/search?q=lasted",
    "/api/pairs?src=L0/156&dst=L2/9",
]


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return float(f"{value:.6g}")
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value


@pytest.mark.neo4j
def test_both_stores_answer_the_same(
    toy_catalog: str, clean_neo4j: Neo4jServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    login = {"user": clean_neo4j.user, "password": clean_neo4j.password}
    with open_store(toy_catalog, read_only=True) as toy:
        batches = slice_batches(toy)
    for uri in (str(tmp_path / "slice"), clean_neo4j.uri):
        with open_store(uri, **login) as store:
            write_batches(store, batches)
    monkeypatch.setenv("CIRCUITCAT_NEO4J_USER", clean_neo4j.user or "")
    monkeypatch.setenv("CIRCUITCAT_NEO4J_PASSWORD", clean_neo4j.password or "")
    answers: dict[str, list[Any]] = {}
    for name, uri in (("ladybug", str(tmp_path / "slice")), ("neo4j", clean_neo4j.uri)):
        config = ServeConfig(store=uri, tokens={"alice": TOKEN}, cypher_timeout_s=0.5)
        with TestClient(create_app(config)) as c:
            answers[name] = [_rounded(c.get(path).json()) for path in GETS]
            _neo4j_or_embedded_checks(c, name)
    for path, lb, neo in zip(GETS, answers["ladybug"], answers["neo4j"], strict=True):
        assert lb == neo, path
    assert answers["neo4j"][4]["outputs"]["prompt_graphs"], "the slice lost the prompt graphs"
    _labels_travel_with_store_copy(clean_neo4j, tmp_path / "back")


def _neo4j_or_embedded_checks(c: TestClient, backend: str) -> None:
    assert c.get("/api/health").json()["backend"] == backend
    write = c.post("/api/cypher", json={"query": "CREATE (m:Model {uid: 'evil'}) RETURN m"})
    assert write.status_code == 403
    load = c.post("/api/cypher", json={"query": "LOAD CSV FROM 'file:///etc/passwd' AS r RETURN r"})
    assert load.status_code in (400, 403)
    assert c.post("/api/cypher", json={"query": SLOW}).status_code == 504
    count = c.post("/api/cypher", json={"query": "MATCH (m:Model) RETURN count(m)"})
    assert count.json()["rows"] == [[1]]
    store = c.app.state.catalog.store  # type: ignore[attr-defined]
    if backend == "neo4j":  # the transaction the API reads in refuses writes on the server
        with pytest.raises(ReadOnlyViolationError):
            store._run("CREATE (m:Model {uid: 'evil'})", {}, read=True)
    label = c.post("/api/labels", json={"feature": FEATURE, "text": f"on {backend}"}, headers=AUTH)
    assert label.status_code == 200 and label.json()["author"] == "alice"
    labelled = c.get("/api/features", params={"label": f"ON {backend.upper()}"}).json()
    assert [f["uid"] for f in labelled["features"]] == [FEATURE] and labelled["total"] == 1


def _labels_travel_with_store_copy(neo4j: Neo4jServer, back: Path) -> None:
    with (
        open_store(neo4j.uri, user=neo4j.user, password=neo4j.password) as neo,
        open_store(str(back)) as lb,
    ):
        copy_catalog(neo, lb)
        labels = lb.query("web_feature_labels", uid=FEATURE, limit=5)
        assert [x["text"] for x in labels] == ["on neo4j"]
        assert lb.query("feature", uid=FEATURE)[0]["label"] == "on neo4j"
    json.dumps(labels)  # plain values


def test_compose_web_service_serves_neo4j_behind_loopback() -> None:
    import yaml

    compose = yaml.safe_load((Path(__file__).parents[1] / "docker" / "compose.yml").read_text())
    web = compose["services"]["web"]
    assert web["profiles"] == ["web"] and web["command"][0] == "serve"
    assert web["depends_on"]["neo4j"]["condition"] == "service_healthy"
    assert web["environment"]["CIRCUITCAT_STORE"] == "bolt://neo4j:7687"
    assert web["environment"]["CIRCUITCAT_NEO4J_PASSWORD"] is None  # from the shell
    assert all(p.startswith("127.0.0.1:") for p in web["ports"])  # TLS proxy in front
    assert "serve-tokens" in (Path(__file__).parents[1] / ".gitignore").read_text()


def test_demo_ends_with_the_serve_command() -> None:
    import io
    from types import SimpleNamespace

    from rich.console import Console

    from circuitcat.cli.demo import _summary

    f = SimpleNamespace(
        full=0.9, replaced=0.88, circuit=0.83, kept=0.94, random=-0.5, random_kept=-0.56,
        n_prompts=40,
    )  # fmt: skip
    report = SimpleNamespace(
        circuit=SimpleNamespace(n_features=51, n_live=1024),
        prompts=SimpleNamespace(n_prompts=40),
        view=SimpleNamespace(features=[], paths=[]),
        faithfulness=f,
        seconds={"load": 0.1},
        store_uri="/tmp/my catalog",
        circuits=[],
    )
    out = io.StringIO()
    _summary(Console(file=out, width=200), report, Path("circuit.png"))  # type: ignore[arg-type]
    assert out.getvalue().rstrip().splitlines()[-2:] == [
        "  circuitcat serve --store '/tmp/my catalog'",
        "  then open http://127.0.0.1:8000/",
    ]
