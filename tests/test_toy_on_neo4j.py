"""The toy catalog on a Neo4j server of its own, loaded once per session (conftest's
toy_neo4j, through neo4j-admin import): every Cypher block in the README and docs/ answers the
same on both stores, and a prompt graph exports to the same graph JSON file from both."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from circuitcat.catalog import CatalogStore, open_store
from circuitcat.catalog.graph_json import prompt_graph_json
from circuitcat.cli.main import app

from .content import checksum
from .helpers import invoke
from .neo4j_server import Neo4jServer
from .test_docs import _scalars, doc_queries
from .test_graph_json import _first_prompt, _graph
from .test_reads import READS, fill, first_prompt

pytestmark = pytest.mark.neo4j


def test_every_doc_query_runs_on_both_stores(toy_catalog: str, toy_neo4j: CatalogStore) -> None:
    answers = {}
    with open_store(toy_catalog, read_only=True) as s:
        for name, query in doc_queries():
            answers[name] = s.run_cypher(query).rows
            assert answers[name], f"{name} returned nothing on the toy catalog:\n{query}"
    for name, query in doc_queries():
        rows = toy_neo4j.run_cypher(query).rows
        if name.endswith("#0") or "ORDER BY" in query:
            assert _scalars(rows) == _scalars(answers[name]), name
        else:
            assert len(rows) == len(answers[name]), name


def test_both_stores_export_the_same_file(toy_catalog: str, toy_neo4j: CatalogStore) -> None:
    prompt = _first_prompt(toy_catalog)
    embedded = _graph(toy_catalog, prompt["uid"]).model_dump(exclude={"metadata": {"info"}})
    from_neo4j = prompt_graph_json(toy_neo4j, prompt["uid"]).model_dump(
        exclude={"metadata": {"info"}}
    )
    assert json.dumps(from_neo4j, sort_keys=True) == json.dumps(embedded, sort_keys=True)


def test_read_commands_change_nothing_on_neo4j(
    toy_catalog: str, toy_neo4j: CatalogStore, toy_neo4j_server: Neo4jServer, tmp_path: Path
) -> None:
    """Every read command of tests/test_reads.py, on Neo4j: each answers, nothing changes."""
    env = {
        "CIRCUITCAT_STORE": toy_neo4j_server.uri,
        "CIRCUITCAT_NEO4J_USER": toy_neo4j_server.user or "",
        "CIRCUITCAT_NEO4J_PASSWORD": toy_neo4j_server.password or "",
    }
    before, prompt = checksum(toy_neo4j), first_prompt(toy_catalog)
    for command in READS:
        done = CliRunner().invoke(app, fill(command, tmp_path, prompt), env=env)
        assert done.exit_code == 0, f"{' '.join(command)}\n{done.output}"
    assert checksum(toy_neo4j) == before


def _cli_json(args: list[str], env: dict[str, str] | None = None) -> Any:
    result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == 0, f"{' '.join(args)}\n{result.output}"
    return json.loads(result.output)


def _round6(value: Any) -> Any:
    """Floats to 6 significant digits (the engines sum in different orders)."""
    if isinstance(value, float):
        return float(f"{value:.6g}")
    if isinstance(value, dict):
        return {k: _round6(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_round6(v) for v in value]
    return value


def test_compare_reuse_transfer_same_on_both_stores(
    toy_catalog: str, toy_neo4j: CatalogStore, toy_neo4j_server: Neo4jServer
) -> None:
    """The cross-circuit commands (issue 20) through the CLI: the same answers on both stores."""
    env = {
        "CIRCUITCAT_NEO4J_USER": toy_neo4j_server.user,
        "CIRCUITCAT_NEO4J_PASSWORD": toy_neo4j_server.password,
    }
    commands = [
        ["circuit", "compare", "greater-than", "less-than"],
        ["circuit", "compare", "counting", "counting", "--draws", "100"],
        ["feature", "reuse"],
        ["circuit", "transfer", "greater-than", "--task", "less-than", "--n", "40", "--draws",
         "5", "--device", "cpu"],
    ]  # fmt: skip
    for args in commands:
        embedded = _cli_json([*args, "--format", "json", "--store", toy_catalog])
        on_neo4j = _cli_json([*args, "--format", "json", "--store", toy_neo4j_server.uri], env)
        assert _round6(on_neo4j) == _round6(embedded), args
    reuse = _cli_json(["feature", "reuse", "--format", "json", "--store", toy_catalog])
    assert reuse and all(r["n_circuits"] >= 2 for r in reuse)


def test_intervention_save_on_neo4j(
    toy_neo4j: CatalogStore, toy_neo4j_server: Neo4jServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`intervention run --save` through the CLI on the real Neo4j, then list, show and the
    feature's interventions. The session's toy server is read by other tests: the saved
    intervention and its Run are removed again at the end."""
    monkeypatch.setenv("CIRCUITCAT_NEO4J_USER", toy_neo4j_server.user)
    monkeypatch.setenv("CIRCUITCAT_NEO4J_PASSWORD", toy_neo4j_server.password)
    uri, feature = toy_neo4j_server.uri, "toy-years/tc-v1/L3/16"
    try:
        out = json.loads(
            invoke("intervention", "run", "zero", "L3/16", "--pos", "-1", "--task",
                   "greater-than", "--n", "8", "--save", "--author", "alice", "--store", uri,
                   "-f", "json")
        )  # fmt: skip
        listed = json.loads(invoke("intervention", "list", "--store", uri, "-f", "json"))
        assert [r["uid"] for r in listed] == [out["saved"]]
        shown = json.loads(
            invoke("intervention", "show", out["saved"], "--store", uri, "-f", "json")
        )
        assert shown["author"] == "alice" and shown["task"] == "greater-than"
        assert shown["before"] == pytest.approx(out["before"])
        assert [f["feature"] for f in shown["features"]] == [feature]
        on_feature = invoke(
            "intervention", "list", "--feature", feature, "--store", uri, "-f", "json"
        )
        assert [r["uid"] for r in json.loads(on_feature)] == [out["saved"]]
    finally:
        toy_neo4j.run_cypher("MATCH (r:Run {kind: 'intervention'}) DETACH DELETE r", write=True)
        toy_neo4j.run_cypher("MATCH (i:Intervention) DETACH DELETE i", write=True)
