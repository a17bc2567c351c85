"""The store and query commands as a user runs them, on both stores."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from circuitcat.catalog import open_store
from circuitcat.cli.main import app

from . import catalog_data as data
from .neo4j_server import Neo4jServer

runner = CliRunner()


@pytest.fixture(params=["ladybug", pytest.param("neo4j", marks=pytest.mark.neo4j)])
def store_env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    if request.param == "ladybug":
        return {"CIRCUITCAT_STORE": str(tmp_path / "catalog")}
    server: Neo4jServer = request.getfixturevalue("clean_neo4j")
    env = {"CIRCUITCAT_STORE": server.uri}
    if server.user:
        env |= {
            "CIRCUITCAT_NEO4J_USER": server.user,
            "CIRCUITCAT_NEO4J_PASSWORD": server.password or "",
        }
    return env


def run(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def test_help_lists_the_command_groups() -> None:
    code, out, _ = run({}, "--help")
    assert code == 0
    for group in ("store", "query"):
        assert group in out


def test_init_info_and_cypher(store_env: dict[str, str]) -> None:
    code, out, _ = run(store_env, "store", "init")
    assert code == 0 and store_env["CIRCUITCAT_STORE"] in out
    with open_store(
        store_env["CIRCUITCAT_STORE"],
        user=store_env.get("CIRCUITCAT_NEO4J_USER"),
        password=store_env.get("CIRCUITCAT_NEO4J_PASSWORD"),
    ) as s:
        data.write_all(s)
    code, out, _ = run(store_env, "store", "info", "--format", "json")
    counts = {r["kind"]: r["count"] for r in json.loads(out)}
    assert code == 0 and counts["Feature"] == 18 and counts["VIRTUAL_WEIGHT"] == 48
    code, out, _ = run(store_env, "store", "info")
    assert "version:" in out and "Feature" in out
    query = "MATCH (f:Feature) WHERE f.layer = $layer RETURN f.`index` AS i ORDER BY i LIMIT 2"
    code, out, _ = run(store_env, "query", "cypher", query, "--param", "layer=1", "-f", "csv")
    assert (code, out.split()) == (0, ["i", "0", "1"])
    code, out, _ = run(
        store_env,
        "query",
        "named",
        "feature_logits",
        "-p",
        f"uid={data.feature_uids(1)[0]}",
        "-p",
        "limit=2",
        "-f",
        "jsonl",
    )
    assert code == 0 and [json.loads(line)["w"] for line in out.splitlines()] == [2.0, 1.0]


def test_write_queries_need_write(store_env: dict[str, str]) -> None:
    create = "CREATE (t:Task {uid: 'x', name: 'x'})"
    assert run(store_env, "store", "init")[0] == 0  # a read-only query never creates a catalog
    code, _, err = run(store_env, "query", "cypher", create)
    assert code == 1 and "pass --write" in err and "Traceback" not in err
    code, _, _ = run(store_env, "query", "cypher", create, "--write")
    assert code == 0
    code, out, _ = run(
        store_env, "query", "cypher", "MATCH (t:Task) RETURN count(t) AS n", "-f", "json"
    )
    assert json.loads(out) == [{"n": 1}]


def test_errors_are_one_line_with_exit_code_1(tmp_path: Path) -> None:
    code, _, err = run({"CIRCUITCAT_STORE": "bolt://127.0.0.1:9"}, "store", "info")
    assert code == 1 and err.count("\n") == 1 and "cannot reach Neo4j" in err
    blocker = tmp_path / "file"
    blocker.write_text("")
    code, _, err = run({"CIRCUITCAT_STORE": str(blocker / "x")}, "store", "init")
    assert code == 1 and "writable location" in err
    code, _, err = run({"CIRCUITCAT_STORE": str(tmp_path / "c")}, "query", "cypher", "MATCH (")
    assert code == 1 and err.startswith("error:")
    code, _, err = run(
        {"CIRCUITCAT_STORE": str(tmp_path / "c")}, "query", "cypher", "RETURN 1", "--param", "oops"
    )
    assert code == 2 and "key=value" in err


@pytest.mark.neo4j
def test_neo4j_login_errors_name_the_variables(neo4j_server: Neo4jServer) -> None:
    if neo4j_server.user is None:
        pytest.skip("this Neo4j runs without auth (NEO4J_URI without NEO4J_USER)")
    store = {"CIRCUITCAT_STORE": neo4j_server.uri}
    wrong = store | {
        "CIRCUITCAT_NEO4J_USER": neo4j_server.user,
        "CIRCUITCAT_NEO4J_PASSWORD": "not-" + (neo4j_server.password or ""),
    }
    code, _, err = run(wrong, "store", "info")
    assert code == 1 and err.count("\n") == 1
    assert "refused the login of user" in err and "CIRCUITCAT_NEO4J_PASSWORD" in err
    code, _, err = run(store | {"CIRCUITCAT_NEO4J_USER": ""}, "store", "info")
    assert code == 1 and "requires a login" in err and "CIRCUITCAT_NEO4J_USER" in err
