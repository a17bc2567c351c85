"""Automatic feature descriptions (catalog/descriptions.py): built from the catalog alone, kept
apart from human labels, shown wherever a feature is named; and the research questions as
commands (catalog/research.py), checked against the prompt graphs' own export."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from circuitcat.catalog import CatalogStore, open_store
from circuitcat.catalog.descriptions import auto_description, best_description, describe_set
from circuitcat.catalog.errors import QueryError
from circuitcat.catalog.graph_json import prompt_graph_json
from circuitcat.catalog.research import compare_prompts, find_features, prompt_position, token_list
from circuitcat.cli.main import app

runner = CliRunner()
SET = "toy-years/tc-v1"
FEATURE = f"{SET}/L0/156"


def test_description_from_contexts_and_logits() -> None:
    contexts = [
        {"tokens": ["the", "year", "17", "45", "to"], "acts": [0, 0, 0.1, 2.0, 0.2], "value": 2},
        {"tokens": ["year", "17", "44"], "acts": [0, 0.5, 1.5], "value": 1.5},
        {"tokens": ["from", "45", "x"], "acts": [0, 1.2, 0], "value": 1.2},  # "45" again
    ]
    logits = [
        {"token": "46", "w": 0.5},
        {"token": "47", "w": 0.4},
        {"token": "00", "w": -0.2},
        {"token": "01", "w": -0.6},
    ]
    text = auto_description(0, 0.031, json.dumps(contexts), json.dumps(logits))
    assert text == (
        'L0 · fires on "45" (the year 17 «45» to), "44" · promotes 46 47 · '
        "suppresses 01 00 · density 3.1%"
    )
    assert text == auto_description(0, 0.031, json.dumps(contexts), json.dumps(logits))
    assert auto_description(2, 0.0, "[]", None) == "L2 · never fired in the corpus pass"
    # Subword pieces keep their own spaces.
    gpt2 = [{"tokens": [" the", " year", " 17"], "acts": [0, 0, 3], "value": 3}]
    assert "(the year «17»)" in auto_description(5, 0.5, json.dumps(gpt2), None)
    row = {"label": None, "explanation": "", "auto_description": "auto"}
    assert best_description(row) == "auto"
    assert best_description({**row, "label": "human"}) == "human"
    assert best_description({"label": None}) is None


def test_token_specs() -> None:
    assert token_list("46..49") == ["46", "47", "48", "49"]
    assert token_list("00..02") == ["00", "01", "02"]
    assert token_list(" Paris, Rome ,") == ["Paris", "Rome"]
    for bad in ("9..1", " , ", "0..99999"):
        with pytest.raises(QueryError):
            token_list(bad)


@pytest.fixture(scope="module")
def toy_copy(toy_catalog: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A writable copy of the demo's catalog (the session's one is only read)."""
    path = tmp_path_factory.mktemp("described") / "catalog"
    shutil.copytree(toy_catalog, path)
    return str(path)


@pytest.fixture
def toy(toy_catalog: str) -> Iterator[CatalogStore]:
    with open_store(toy_catalog, read_only=True) as s:
        yield s


def _count(store: CatalogStore, cypher: str) -> Any:
    return store.run_cypher(cypher).rows[0][0]


def test_every_live_feature_is_described_after_the_demo(toy: CatalogStore) -> None:
    live = "MATCH (f:Feature) WHERE f.density > 0 RETURN count(f)"
    described = "MATCH (f:Feature) WHERE f.density > 0 AND f.auto_description <> '' RETURN count(f)"
    assert _count(toy, live) > 0 and _count(toy, described) == _count(toy, live)
    f = toy.query("feature", uid=FEATURE)[0]
    # What it says is what the feature's own fields say.
    assert f["auto_description"] == auto_description(
        f["layer"], f["density"], f["top_contexts"], f["top_logits"]
    )
    top = json.loads(f["top_logits"])[0]["token"]
    assert (
        f["auto_description"].startswith("L0 · fires on ")
        and f" promotes {top}" in (f["auto_description"])
    )


def test_a_label_wins_everywhere_and_survives_reingest(toy_copy: str, tmp_path: Path) -> None:
    env = {"CIRCUITCAT_STORE": toy_copy}
    with open_store(toy_copy) as s:
        auto = s.query("feature", uid=FEATURE)[0]["auto_description"]
        prompt = s.query("attributed_prompts", set_uid=SET, task="greater-than")[0]["uid"]
        in_graph = {
            n.clerp for n in prompt_graph_json(s, prompt).nodes if n.node_id.startswith("0_156_")
        }
    shown = json.loads(
        runner.invoke(app, ["feature", "show", FEATURE, "--format", "json"], env=env).stdout
    )
    assert shown["description"] == auto and shown["label"] is None
    labelled = runner.invoke(app, ["feature", "label", FEATURE, "late-century start year"], env=env)
    assert labelled.exit_code == 0, labelled.output

    # Re-ingesting (the corpus pass again) and describing again keep the label.
    from circuitcat.ingest.corpus import open_corpus
    from circuitcat.ingest.features import run_features
    from circuitcat.ingest.models import load_model
    from circuitcat.ingest.transcoders.load import load_transcoders

    loaded = load_model("toy-years")
    tset = load_transcoders("toy-years", loaded)
    with open_store(toy_copy) as s:
        corpus = open_corpus("toy", n_docs=50, n_ctx=loaded.model.cfg.n_ctx)
        run_features(s, loaded, tset, corpus, checkpoint_dir=tmp_path)
        assert describe_set(s, SET) == {SET: 1024}
        f = s.query("feature", uid=FEATURE)[0]
        assert f["label"] == "late-century start year" and f["auto_description"]
        graph = prompt_graph_json(s, prompt)
    assert {n.clerp for n in graph.nodes if n.node_id.startswith("0_156_")} == {
        "late-century start year"
    } and in_graph  # it was in the graph, and the export names it by its label now
    shown = json.loads(
        runner.invoke(app, ["feature", "show", FEATURE, "--format", "json"], env=env).stdout
    )
    assert shown["description"] == "late-century start year"
    table = runner.invoke(app, ["feature", "show", FEATURE], env=env).stdout
    assert "label: late-century start year" in table and "automatic description: L0" in table

    from circuitcat.cli.web.reads import FeatureFilter, feature_page, list_features, search

    with open_store(toy_copy, read_only=True) as s:
        assert feature_page(s, FEATURE)["description"] == "late-century start year"
        found = search(s, "late-century")["labelled"]
        assert [r["uid"] for r in found] == [FEATURE]
        assert found[0]["description"] == "late-century start year"
        # Search reads automatic descriptions too.
        promoted = auto.split(" promotes ")[1].split(" ")[0]  # its most promoted token
        rows = list_features(s, FeatureFilter(label=f"promotes {promoted}", limit=500))["features"]
        # The labelled feature is found by its automatic description too; it shows its label.
        assert FEATURE in {r["uid"] for r in rows}
        others = [r for r in rows if r["uid"] != FEATURE]
        assert others and all(f"promotes {promoted}" in r["description"] for r in others)
    out = tmp_path / "circuit.json"
    done = runner.invoke(app, ["circuit", "export", "greater-than", "--out", str(out)], env=env)
    assert done.exit_code == 0, done.output
    nodes = json.loads(out.read_text())["nodes"]
    described = [n for n in nodes if n.get("kind") == "feature"]
    assert described and all(n.get("description") for n in described)


def test_describe_refuses_an_unknown_set(toy_copy: str) -> None:
    done = runner.invoke(app, ["feature", "describe", "--set", "nope/x", "--store", toy_copy])
    assert done.exit_code == 1 and "no transcoder set 'nope/x'" in done.stderr


# ---- research questions --------------------------------------------------------------------


def _two_prompts(store: CatalogStore) -> tuple[str, str]:
    rows = store.query("attributed_prompts", set_uid=SET, task="greater-than")
    return rows[0]["uid"], rows[1]["uid"]


def _graph_features(store: CatalogStore, prompt: str) -> dict[tuple[str, int], float]:
    """(feature uid, position) -> activation, from the prompt's graph JSON export."""
    graph = prompt_graph_json(store, prompt)
    out = {}
    for n in graph.nodes:
        if n.feature_type == "cross layer transcoder":
            layer, index, pos = (int(x) for x in n.node_id.split("_"))
            out[(f"{SET}/L{layer}/{index}", pos)] = float(n.activation or 0.0)
    return out


def test_features_at_a_position_and_what_drives_the_metric(toy: CatalogStore) -> None:
    prompt, _ = _two_prompts(toy)
    exported = _graph_features(toy, prompt)
    last = max(pos for _, pos in exported)
    found = prompt_position(toy, prompt, -1, limit=10_000)
    assert found["position"] == last == len(found["tokens"]) - 1
    at = {r["uid"]: r["activation"] for r in found["features"]}
    want = {uid: act for (uid, pos), act in exported.items() if pos == last}
    assert at.keys() == want.keys() and len(at) == found["n_features"] > 0
    for uid, act in want.items():
        assert at[uid] == pytest.approx(act, rel=1e-6, abs=1e-9)
    assert all(r["description"] for r in found["features"])
    # The metric's direct inputs add up to what the export has flowing into the target.
    graph = prompt_graph_json(toy, prompt)
    (target,) = [n.node_id for n in graph.nodes if n.is_target_logit]
    into = sum(link.weight for link in graph.links if link.target == target)
    inputs = prompt_position(toy, prompt, None, limit=10_000)["metric_inputs"]
    assert sum(r["w"] for r in inputs) == pytest.approx(into, rel=1e-6)
    ws = [abs(r["w"]) for r in inputs]
    assert ws == sorted(ws, reverse=True)
    with pytest.raises(QueryError, match="outside prompt"):
        prompt_position(toy, prompt, 999)


def test_features_two_prompts_share(toy: CatalogStore) -> None:
    a, b = _two_prompts(toy)
    found = compare_prompts(toy, a, b, limit=10_000)
    in_a = {uid for uid, _ in _graph_features(toy, a)}
    in_b = {uid for uid, _ in _graph_features(toy, b)}
    assert {r["uid"] for r in found["shared"]} == in_a & in_b and found["n_shared"] > 0
    assert (found["n_features_a"], found["n_features_b"]) == (len(in_a), len(in_b))
    same = compare_prompts(toy, a, a)
    assert same["n_shared"] == same["n_features_a"]


def test_find_features_by_what_they_read_and_promote(toy: CatalogStore) -> None:
    years = token_list("46..99")
    found = find_features(toy, "45", "46..99", layer=0, limit=1000)
    # Brute force over every layer-0 feature's stored de-embedding and logits.
    expected = set()
    for f in toy.query("features_in_layer", set_uid=SET, layer=0, limit=10_000):
        reads = toy.query("feature_tokens", uid=f["uid"], limit=10_000)
        logits = toy.query("feature_logits", uid=f["uid"], limit=10_000)
        if any(r["token"] == "45" and r["w"] > 0 for r in reads) and any(
            r["token"] in years and r["w"] > 0 for r in logits
        ):
            expected.add(f["uid"])
    assert {r["uid"] for r in found} == expected and expected
    assert all(r["layer"] == 0 for r in found)
    counts = [r["n_promoted"] for r in found]
    assert counts == sorted(counts, reverse=True)
    promoting = find_features(toy, None, "46..99", layer=0, limit=1000)
    assert expected <= {r["uid"] for r in promoting}
    with pytest.raises(QueryError, match="say what to find"):
        find_features(toy, None, None)


def test_research_commands(toy_catalog: str) -> None:
    env = {"CIRCUITCAT_STORE": toy_catalog}
    with open_store(toy_catalog, read_only=True) as s:
        a, b = _two_prompts(s)
    shown = runner.invoke(app, ["prompt", "show", a, "--position", "-1"], env=env)
    assert shown.exit_code == 0, shown.output
    assert "features at position" in shown.stdout and "what drives the metric" in shown.stdout
    as_json = runner.invoke(
        app, ["prompt", "show", a, "--position", "8", "--format", "json"], env=env
    )
    assert json.loads(as_json.stdout)["position"] == 8
    compared = runner.invoke(app, ["prompt", "compare", a, b, "--format", "json"], env=env)
    assert json.loads(compared.stdout)["n_shared"] > 0
    found = runner.invoke(
        app,
        ["feature", "find", "--reads-token", "45", "--promotes", "46..99", "--layer", "0"],
        env=env,
    )
    assert found.exit_code == 0 and "L0/" in found.stdout, found.output
    for bad, message in (
        (["prompt", "show", "greater-than/nope"], "prompt list"),
        (["prompt", "show", a, "--position", "99"], "outside prompt"),
        (["feature", "find"], "say what to find"),
        (["feature", "find", "--promotes", "99..46"], "reversed"),
    ):
        done = runner.invoke(app, bad, env=env)
        assert done.exit_code == 1 and message in done.stderr, (bad, done.output)


def test_attribute_your_own_text_for_a_builtin_task(toy_copy: str) -> None:
    env = {"CIRCUITCAT_STORE": toy_copy}
    text = "The war lasted from the year 1745 to the year 17"
    done = runner.invoke(
        app, ["ingest", "prompts", "--task", "greater-than", "--text", text], env=env
    )
    assert done.exit_code == 0 and "1 written" in done.stdout, done.output
    with open_store(toy_copy, read_only=True) as s:
        (row,) = [
            r
            for r in s.query("prompts_of_task", task="greater-than", limit=1000)
            if r["text"] == text
        ]
    assert (row["answer"], row["start_year"]) == ("46..99", "45") and row["metric_value"] > 0
    shown = runner.invoke(
        app, ["prompt", "show", row["uid"], "--position", "-1", "--format", "json"], env=env
    )
    assert json.loads(shown.stdout)["features"], shown.output
    bad = runner.invoke(
        app, ["ingest", "prompts", "--task", "greater-than", "--text", text, "--n", "3"], env=env
    )
    assert bad.exit_code == 1 and "leave out --prompts and --n" in bad.stderr


def test_research_questions_in_the_service(toy_catalog: str) -> None:
    """The API routes behind the prompt page's position and compare panels and the catalog
    page's finder answer as the library does."""
    from fastapi.testclient import TestClient

    from circuitcat.cli.web import ServeConfig, create_app

    with open_store(toy_catalog, read_only=True) as s:
        a, b = _two_prompts(s)
        want_position = prompt_position(s, a, 8, limit=50)
        want_shared = compare_prompts(s, a, b, limit=100)
        want_found = find_features(s, "45", "46..99", layer=0, limit=50)
    with TestClient(create_app(ServeConfig(store=toy_catalog))) as c:
        got = c.get(f"/api/prompts/{a}/position", params={"pos": 8}).json()
        assert got == json.loads(json.dumps(want_position))
        shared = c.get("/api/prompt-compare", params={"a": a, "b": b}).json()
        assert shared == json.loads(json.dumps(want_shared))
        found = c.get("/api/find", params={"reads": "45", "promotes": "46..99", "layer": 0})
        assert found.json() == json.loads(json.dumps(want_found))
        assert c.get("/api/find", params={"reads": "", "promotes": ""}).status_code == 400
        assert c.get("/api/prompts/greater-than/nope/position").status_code == 404
        assert c.get(f"/api/prompts/{a}/position", params={"pos": 99}).status_code == 400
        page = c.get(f"/prompt/{a}")
        assert page.status_code == 200
        for script in ("/static/prompt.js", "/static/index.js"):
            text = c.get(script).text
            assert "/api/prompt-compare" in text or "/api/find" in text
