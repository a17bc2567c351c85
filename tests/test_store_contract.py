"""One contract, both stores: every test here runs against Ladybug and a real Neo4j server."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from circuitcat.catalog import CatalogStore, EdgeBatch, NodeBatch, NodeKind, RelKind, open_store
from circuitcat.catalog.errors import (
    InvalidRowsError,
    QueryError,
    ReadOnlyViolationError,
    StoreUnavailableError,
)
from circuitcat.catalog.queries import load_queries
from circuitcat.catalog.schema import NODE_PROPS, REL_SPECS, circuit_uid, prompt_uid

from . import catalog_data as data
from .neo4j_server import Neo4jServer


def _open(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> CatalogStore:
    if backend == "ladybug":
        return open_store(str(tmp_path / "catalog"))
    server: Neo4jServer = request.getfixturevalue("clean_neo4j")
    return open_store(server.uri, user=server.user, password=server.password)


@pytest.fixture(params=["ladybug", pytest.param("neo4j", marks=pytest.mark.neo4j)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CatalogStore]:
    with _open(request.param, tmp_path, request) as s:
        yield s


@pytest.fixture
def filled(store: CatalogStore) -> CatalogStore:
    data.write_all(store)
    return store


def test_every_kind_round_trips(filled: CatalogStore) -> None:
    info = filled.info()
    assert info.nodes == data.EXPECTED_NODES
    assert info.relationships == data.EXPECTED_RELS
    feature = filled.query("feature", uid=data.feature_uids(0)[2])[0]
    assert feature["layer"] == 0 and feature["feature_index"] == 2
    assert len(feature["act_hist"]) == 4
    got = filled.run_cypher(
        "MATCH (h:Head)-[r:ATTRIBUTES]->(t:Token) "
        "RETURN h.uid AS h, t.text AS t, r.via AS via, r.src_pos AS s, r.dst_pos AS d"
    )
    assert got.rows == [["tiny/L0/H1", "11", "attn:0.1", 2, 5]]
    run = filled.run_cypher("MATCH (r:Run) RETURN r.kind AS kind, r.uid AS uid").rows
    assert run == [["test", data.RUN.uid]]


def test_rewriting_creates_no_duplicates_and_updates_values(filled: CatalogStore) -> None:
    data.write_all(filled)  # the same batches again: MERGE path everywhere
    info = filled.info()
    assert info.nodes == data.EXPECTED_NODES
    assert info.relationships == data.EXPECTED_RELS
    vw = data.edge_batches()[0]
    changed = EdgeBatch(
        vw.kind, vw.src_kind, vw.dst_kind, vw.src[:1], vw.dst[:1], {"w": [9.5], "via": ["resid"]}
    )
    filled.write_edges(changed)
    top = filled.query("feature_sources", uid=vw.dst[0], limit=1)[0]
    assert (top["source"], top["w"]) == (vw.src[0], 9.5)
    assert filled.info().relationships["VIRTUAL_WEIGHT"] == data.EXPECTED_RELS["VIRTUAL_WEIGHT"]
    # A partial node batch only touches the columns it carries.
    filled.write_nodes(
        NodeBatch(NodeKind.FEATURE, {"uid": [data.feature_uids(0)[0]], "label": ["years"]})
    )
    f = filled.query("feature", uid=data.feature_uids(0)[0])[0]
    assert f["label"] == "years" and f["layer"] == 0 and f["act_max"] is not None


def test_large_batches_are_chunked(store: CatalogStore) -> None:
    # More rows than one 10k write batch, shaped like the weights job: 32 sources per target.
    n_targets, k = 800, 32
    targets = [f"big/L1/{i}" for i in range(n_targets)]
    sources = [f"big/L0/{i}" for i in range(n_targets)]
    store.write_nodes(NodeBatch(NodeKind.FEATURE, {"uid": targets + sources}))
    rng = np.random.default_rng(0)
    src = np.array(sources)[np.concatenate([rng.permutation(n_targets)[:k] for _ in targets])]
    dst = np.repeat(targets, k)
    n = len(src)
    edges = EdgeBatch(
        RelKind.VIRTUAL_WEIGHT,
        NodeKind.FEATURE,
        NodeKind.FEATURE,
        src,
        dst,
        {"w": rng.standard_normal(n), "via": np.array(["resid"] * n)},
    )
    store.write_edges(edges)  # bulk path
    store.write_edges(edges)  # merge path
    assert store.info().relationships["VIRTUAL_WEIGHT"] == n == 25_600


# Every node kind, and every (relationship kind, endpoint pair), as a zero-row batch: with only
# the uid / endpoints, with every property as an empty list, and as empty numpy arrays.
EMPTY_NODE_CASES = [
    pytest.param(kind, style, id=f"{kind}-{style}")
    for kind in NodeKind
    for style in ("uid", "lists", "arrays")
]
EMPTY_EDGE_CASES = [
    pytest.param(kind, src, dst, style, id=f"{kind}-{src}-{dst}-{style}")
    for kind, spec in REL_SPECS.items()
    for src, dst in spec.pairs
    for style in ("keys", "lists", "arrays")
]


def _empty(style: str) -> object:
    return np.array([], dtype=object) if style == "arrays" else []


def _empty_node_batch(kind: NodeKind, style: str) -> NodeBatch:
    props = [] if style == "uid" else list(NODE_PROPS[kind])
    return NodeBatch(kind, {"uid": _empty(style), **{p: _empty(style) for p in props}})


def _empty_edge_batch(kind: RelKind, src: NodeKind, dst: NodeKind, style: str) -> EdgeBatch:
    spec = REL_SPECS[kind]
    props = list(spec.key) if style == "keys" else list(spec.props)
    return EdgeBatch(
        kind, src, dst, _empty(style), _empty(style), {p: _empty(style) for p in props}
    )


@pytest.mark.parametrize(("kind", "style"), EMPTY_NODE_CASES)
def test_a_zero_row_node_batch_is_valid(kind: NodeKind, style: str) -> None:
    batch = _empty_node_batch(kind, style)
    assert len(batch) == 0 and batch.uids == [] and batch.rows() == []
    assert batch.to_arrow().num_rows == 0
    assert len(NodeBatch.from_rows(kind, [])) == 0


@pytest.mark.parametrize(("kind", "src", "dst", "style"), EMPTY_EDGE_CASES)
def test_a_zero_row_edge_batch_is_valid(
    kind: RelKind, src: NodeKind, dst: NodeKind, style: str
) -> None:
    batch = _empty_edge_batch(kind, src, dst, style)
    assert len(batch) == 0 and batch.rows() == [] and list(batch.chunks(10)) == []
    assert batch.unique("src") == [] and batch.unique("dst") == []
    assert batch.to_arrow().num_rows == 0
    assert len(EdgeBatch.concat([batch, batch])) == 0


def test_zero_row_batches_of_every_kind_write_nothing(filled: CatalogStore) -> None:
    """An empty batch is valid input on both stores: it writes nothing and raises nothing
    (issue 23: `circuit find` wrote an empty CONTAINS batch when a circuit had no heads)."""
    before = filled.info()
    for case in EMPTY_NODE_CASES:
        assert filled.write_nodes(_empty_node_batch(*case.values)) == 0
    for case in EMPTY_EDGE_CASES:
        assert filled.write_edges(_empty_edge_batch(*case.values)) == 0
    after = filled.info()
    assert (after.nodes, after.relationships) == (before.nodes, before.relationships)


def test_a_circuit_with_an_empty_member_kind_is_found(filled: CatalogStore) -> None:
    """No head carries attribution: `circuit find` stores features and tokens, no heads, and
    finding it again (which clears the old members first) works the same."""
    from circuitcat.catalog.circuits import find_circuit

    filled.run_cypher(
        "MATCH ()-[r:ATTRIBUTES]->() WHERE r.via STARTS WITH 'attn:' DELETE r", write=True
    )
    for _ in range(2):
        report = find_circuit(filled, "greater-than", data.SET.uid, name="no-heads", top_n=2)
        assert report.n_features > 0 and report.n_heads == 0
        assert filled.query("circuit_heads", uid=report.uid) == []
        assert len(filled.query("circuit_features", uid=report.uid)) == report.n_features


def test_circuit_find_with_no_heads_through_the_cli(tmp_path: Path) -> None:
    """The command as a user runs it: exits 0 with its summary, no traceback."""
    from .helpers import invoke

    path = str(tmp_path / "catalog")
    with open_store(path) as s:
        data.write_all(s)
        s.run_cypher(
            "MATCH ()-[r:ATTRIBUTES]->() WHERE r.via STARTS WITH 'attn:' DELETE r", write=True
        )
    out = invoke("circuit", "find", "--task", "greater-than", "--top-n", "2", "--store", path)
    assert "Traceback" not in out and "features" in out
    with open_store(path) as s:
        (circuit,) = s.query("circuits", circuit_name="greater-than")
        assert s.query("circuit_heads", uid=circuit["uid"]) == []


def test_edges_to_missing_nodes_are_refused_and_nothing_is_written(filled: CatalogStore) -> None:
    src = data.feature_uids(0)[:2]
    batch = EdgeBatch(
        RelKind.VIRTUAL_WEIGHT,
        NodeKind.FEATURE,
        NodeKind.FEATURE,
        src,
        [data.feature_uids(1)[0], "nope/L1/0"],
        {"w": [1.0, 2.0], "via": ["x"] * 2},
    )
    with pytest.raises(InvalidRowsError, match=r"do not exist.*nope/L1/0"):
        filled.write_edges(batch)
    assert filled.info().relationships["VIRTUAL_WEIGHT"] == data.EXPECTED_RELS["VIRTUAL_WEIGHT"]


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ({"uid": ["a", ""]}, "row 1 has no uid"),
        ({"uid": ["a", None]}, "row 1 has no uid"),
        ({"layer": [1]}, "no uid column"),
        ({"uid": ["a", "a"]}, "repeats a uid"),
        ({"uid": ["a"], "colour": ["red"]}, "unknown properties"),
        ({"uid": ["a", "b"], "density": [0.1, math.inf]}, "density=inf"),
    ],
)
def test_bad_node_rows_are_rejected(columns: dict, message: str) -> None:
    with pytest.raises(InvalidRowsError, match=message):
        NodeBatch(NodeKind.FEATURE, columns)


@pytest.mark.parametrize(
    ("w", "extra", "message"),
    [
        ([1.0, math.nan], {}, "row 1 has w=nan"),
        ([1.0, None], {}, "row 1 has w=None"),
        ([1.0, 2.0], {"via": ["resid", "resid"], "dup": True}, "repeats an edge"),
    ],
)
def test_bad_edge_rows_are_rejected(w: list, extra: dict, message: str) -> None:
    dst = ["b", "b"] if extra.pop("dup", False) else ["b", "c"]
    with pytest.raises(InvalidRowsError, match=message):
        EdgeBatch(
            RelKind.VIRTUAL_WEIGHT,
            NodeKind.FEATURE,
            NodeKind.FEATURE,
            ["a", "a"],
            dst,
            {"w": w, "via": extra.get("via", ["resid", "resid"])},
        )


def test_edge_kinds_check_their_endpoints_and_keys() -> None:
    with pytest.raises(InvalidRowsError, match="not an allowed pair"):
        EdgeBatch(RelKind.PROMOTES, NodeKind.TOKEN, NodeKind.FEATURE, ["a"], ["b"], {"w": [1.0]})
    with pytest.raises(InvalidRowsError, match="missing key properties"):
        EdgeBatch(
            RelKind.VIRTUAL_WEIGHT, NodeKind.FEATURE, NodeKind.FEATURE, ["a"], ["b"], {"w": [1.0]}
        )


def test_read_only_unless_asked(filled: CatalogStore) -> None:
    count = "MATCH (f:Feature) WHERE f.label = 'x' RETURN count(f)"
    with pytest.raises(ReadOnlyViolationError, match="--write"):
        filled.run_cypher("MATCH (f:Feature) SET f.label = 'x'")
    # Straight after a refusal the store still writes when asked (no transaction left open).
    filled.run_cypher("MATCH (f:Feature) WHERE f.layer = 0 SET f.label = 'x'", write=True)
    assert filled.run_cypher(count).rows == [[6]]
    with pytest.raises(ReadOnlyViolationError):
        filled.run_cypher("MATCH (f:Feature) SET f.label = 'y'")
    assert filled.run_cypher(count).rows == [[6]]


def test_bad_cypher_is_a_query_error(store: CatalogStore) -> None:
    with pytest.raises(QueryError):
        store.run_cypher("MATCH (n RETURN n")
    with pytest.raises(QueryError, match="no named query"):
        store.query("no_such_query")


def test_schema_init_is_idempotent_from_scratch(neo4j_server: Neo4jServer, tmp_path: Path) -> None:
    from .neo4j_server import empty_neo4j

    empty_neo4j(neo4j_server, drop_schema=True)
    for uri in (str(tmp_path / "lb"), neo4j_server.uri):
        for _ in range(2):
            with open_store(uri, user=neo4j_server.user, password=neo4j_server.password) as s:
                assert sum(s.info().nodes.values()) == 0


def test_unreachable_neo4j_is_a_typed_error() -> None:
    with pytest.raises(StoreUnavailableError, match=r"cannot reach Neo4j at bolt://127\.0\.0\.1:9"):
        open_store("bolt://127.0.0.1:9")


def test_unwritable_embedded_path_is_a_typed_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StoreUnavailableError, match="writable location"):
        open_store(str(blocker / "catalog"))
    with pytest.raises(StoreUnavailableError, match="unknown store URI scheme"):
        open_store("http://localhost:7474")


def _named_query_params() -> dict[str, dict]:
    f0, f1 = data.feature_uids(0)[1], data.feature_uids(1)[3]
    circuit = circuit_uid(data.SET.uid, "greater-than", "gt")
    prompt = prompt_uid("greater-than", "from the year 17 32 to the year 17")
    return {
        "models": {},
        "model": {"uid": data.MODEL},
        "transcoder_sets": {},
        "transcoder_set": {"uid": data.SET.uid},
        "set_ln_scales": {"uid": data.SET.uid},
        "feature": {"uid": f0},
        "features_in_layer": {"set_uid": data.SET.uid, "layer": 1, "limit": 4},
        "feature_sources": {"uid": f1, "limit": 4},
        "feature_targets": {"uid": f0, "limit": 4},
        "feature_tokens": {"uid": data.feature_uids(0)[0], "limit": 3},
        "feature_logits": {"uid": data.feature_uids(1)[0], "limit": 5},
        "two_hop_targets": {"uid": f0, "limit": 5},
        "prompts_of_task": {"task": "greater-than", "limit": 10},
        "runs": {"limit": 5},
        "run_status": {},
        "running_runs": {},
        "set_feature_count": {"set_uid": data.SET.uid},
        "attributed_prompts": {"task": "greater-than", "set_uid": data.SET.uid},
        "attributed_sets": {"task": "greater-than"},
        "prompt_attributions": {"prompts": [prompt]},
        "prompt": {"uid": prompt},
        "prompt_sets": {"prompt": prompt},
        "prompt_graph": {"prompt": prompt},
        "set_live_feature_count": {"set_uid": data.SET.uid},
        "set_feature_means": {"set_uid": data.SET.uid},
        "circuits": {"circuit_name": "gt"},
        "circuit_features": {"uid": circuit},
        "circuit_heads": {"uid": circuit},
        "circuit_tokens": {"uid": circuit},
        "circuit_feature_prompts": {"uid": circuit},
        "circuit_edges": {"uid": circuit},
        "circuit_target_edges": {"uid": circuit},
        "circuit_activations": {"uid": circuit},
        # catalog/queries/web.cypher (circuitcat serve)
        "web_features": {
            "set_uid": data.SET.uid,
            "layer": 1,
            "label": "",
            "sort": "density",
            "sign": -1.0,
            "offset": 1,
            "limit": 3,
        },
        "web_feature_count": {"set_uid": "", "layer": -1, "label": "YEAR"},
        "web_features_reading_token": {"token": "14", "set_uid": "", "layer": -1, "limit": 5},
        "web_features_promoting_token": {"token": "10", "set_uid": "", "layer": 1, "limit": 5},
        "web_feature_labels": {"uid": data.LABEL.feature, "limit": 5},
        "web_feature_circuits": {"uid": data.feature_uids(1)[0]},
        "web_feature_prompt_inputs": {"uid": data.feature_uids(1)[0], "limit": 5},
        "web_feature_prompt_outputs": {"uid": f0, "limit": 5},
        "web_circuit_list": {},
        "web_circuit": {"uid": circuit},
        "web_tasks": {},
        "web_prompts_matching": {"text": "YEAR 17 32", "limit": 5},
        "web_pair_prompts": {
            "src": data.feature_uids(0)[0],
            "dst": data.feature_uids(1)[0],
            "limit": 5,
        },
        "web_pair_weights": {"src": data.feature_uids(0)[0], "dst": data.feature_uids(1)[0]},
        # catalog/queries/research.cypher (descriptions and research questions)
        "transcoder_set_layers": {"uid": data.SET.uid},
        "feature_description_inputs": {"set_uid": data.SET.uid, "layer": 1},
        "prompt_position_features": {"prompt": prompt, "pos": 5, "set_uid": data.SET.uid},
        "prompt_metric_inputs": {"prompt": prompt, "set_uid": data.SET.uid, "limit": 5},
        "prompt_features": {"prompt": prompt, "set_uid": data.SET.uid},
        "prompt_shared_features": {"prompt_a": prompt, "prompt_b": prompt, "set_uid": data.SET.uid},
        "features_reading_tokens": {"tokens": ["13", "14"], "set_uid": "", "layer": 0, "limit": 5},
        "features_promoting_tokens": {
            "tokens": ["10", "11", "14"],
            "set_uid": data.SET.uid,
            "layer": -1,
            "limit": 5,
        },
        "features_reading_and_promoting": {
            "reads": ["12", "13", "14"],
            "promotes": ["14"],
            "set_uid": "",
            "layer": -1,
            "limit": 5,
        },
        # catalog/queries/interventions.cypher (saved interventions)
        "interventions": {"limit": 5},
        "intervention": {"uid": data.INTERVENTION.uid},
        "intervention_features": {"uid": data.INTERVENTION.uid, "limit": 5},
        "feature_interventions": {"uid": data.feature_uids(1)[0], "limit": 5},
        "circuit_interventions": {"uid": circuit, "limit": 5},
        "ablations_moving_task": {"task": "greater-than", "min_change": 0.1, "limit": 5},
        "set_feature_max": {"set_uid": data.SET.uid},
        "year_prompts_to_upgrade": {},
        # catalog/queries/compare.cypher (the catalog of circuits)
        "circuit_by_uid": {"uid": circuit},
        "circuits_of_task": {"task": "greater-than"},
        "circuit_shared_features": {"a": circuit, "b": circuit},
        "circuit_shared_heads": {"a": circuit, "b": circuit},
        "feature_reuse": {"min_circuits": 1},
        "head_reuse": {"min_circuits": 1},
    }


@pytest.mark.neo4j
def test_every_named_query_answers_the_same_on_both_stores(
    tmp_path: Path, clean_neo4j: Neo4jServer
) -> None:
    params = _named_query_params()
    names = set(load_queries("neo4j")) - {"store_version"}
    assert names == set(params), "add parameters here for every new named query"
    answers = {}
    for backend, uri in (("ladybug", str(tmp_path / "lb")), ("neo4j", clean_neo4j.uri)):
        with open_store(uri, user=clean_neo4j.user, password=clean_neo4j.password) as s:
            data.write_all(s)
            # A year prompt as a circuitcat before start_year wrote it: answer = the start year.
            old = data.PromptRecord(task="less-than", text="until 1723", tokens=["23"], answer="23")
            s.write_nodes(data.records_to_batch([old]))
            answers[backend] = {name: s.query(name, **p) for name, p in params.items()}
    for name in params:
        assert answers["ladybug"][name], f"{name} returned nothing: the test data misses it"
        for rows in (answers["ladybug"][name], answers["neo4j"][name]):
            for row in rows:
                row.pop("heartbeat_at", None)  # the time each store's job last beat
        assert _rounded(answers["ladybug"][name]) == _rounded(answers["neo4j"][name]), name


def _rounded(value: object) -> object:
    """Floats to 9 significant digits: the stores may sum in a different order."""
    if isinstance(value, float):
        return float(f"{value:.9g}")
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value


def test_an_older_embedded_catalog_gains_new_properties(tmp_path: Path) -> None:
    import ladybug

    path = tmp_path / "old.lbug"
    db = ladybug.Database(str(path))
    conn = ladybug.Connection(db)  # as an earlier circuitcat made it: fewer Feature properties
    conn.execute("CREATE NODE TABLE Feature(uid STRING PRIMARY KEY, `set` STRING, layer INT64)")
    conn.execute("CREATE (f:Feature {uid: 'old/L0/0', `set`: 'old', layer: 0})")
    conn.close()
    db.close()
    with open_store(str(path)) as s:
        s.write_nodes(
            NodeBatch(
                NodeKind.FEATURE,
                {"uid": ["new/L0/1"], "density": [0.25], "layer": [0], "label": ["fresh"]},
            )
        )
        s.write_nodes(NodeBatch(NodeKind.FEATURE, {"uid": ["old/L0/0"], "density": [0.5]}))
        rows = s.run_cypher(
            "MATCH (f:Feature) RETURN f.uid, f.layer, f.density, f.label ORDER BY f.uid"
        ).rows
    assert rows == [["new/L0/1", 0, 0.25, "fresh"], ["old/L0/0", 0, 0.5, None]]


@pytest.mark.neo4j
def test_store_copy_round_trip(tmp_path: Path, clean_neo4j: Neo4jServer) -> None:
    from typer.testing import CliRunner

    from circuitcat.cli.main import app

    first, back = str(tmp_path / "first"), str(tmp_path / "back")
    with open_store(first) as s:
        data.write_all(s)
    env = {
        "CIRCUITCAT_NEO4J_USER": clean_neo4j.user or "",
        "CIRCUITCAT_NEO4J_PASSWORD": clean_neo4j.password or "",
    }
    for a, b in ((first, clean_neo4j.uri), (first, clean_neo4j.uri), (clean_neo4j.uri, back)):
        result = CliRunner().invoke(app, ["store", "copy", "--from", a, "--to", b], env=env)
        assert result.exit_code == 0, result.output
    params = _named_query_params()
    answers = []
    for uri in (first, clean_neo4j.uri, back):
        with open_store(uri, user=clean_neo4j.user, password=clean_neo4j.password) as s:
            info = s.info()
            assert (info.nodes, info.relationships) == (data.EXPECTED_NODES, data.EXPECTED_RELS)
            answers.append({n: _rounded(s.query(n, **p)) for n, p in params.items()})
    assert answers[0] == answers[1] == answers[2]
