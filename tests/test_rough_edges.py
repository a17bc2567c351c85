"""The rough edges of a first afternoon (issue 22), each through the CLI on the toy catalog:
what networkx reads, how -p values are typed, full-precision CSV, "0 rows", the layer count in
a missing feature's hint, what a prompt's answer holds, and errors that point to the portable
Cypher subset."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import networkx as nx
from typer.testing import CliRunner

from circuitcat.cli.main import app

SET = "toy-years/tc-v1"


def run(store: str, *args: str, code: int = 0) -> tuple[str, str]:
    done = CliRunner().invoke(app, [*args, "--store", store])
    assert done.exit_code == code, f"{' '.join(args)}\n{done.output}"
    if code:
        assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1
    return done.stdout, done.stderr


def test_circuit_export_loads_with_networkx_defaults(toy_catalog: str, tmp_path: Path) -> None:
    out = tmp_path / "circuit.json"
    said, _ = run(toy_catalog, "circuit", "export", "greater-than", "--out", str(out))
    g = nx.node_link_graph(json.loads(out.read_text()))  # networkx's default call
    assert g.is_directed() and g.number_of_edges() > 0
    assert f"{g.number_of_nodes()} nodes, {g.number_of_edges()} edges" in said


def test_param_values_are_json_and_a_wrong_type_is_named(toy_catalog: str) -> None:
    token = "MATCH (t:Token) WHERE t.text = $token RETURN t.uid AS uid"
    _, err = run(toy_catalog, "query", "cypher", token, "-p", "token=45", code=1)
    assert "parameter token needs text (STRING) but got an integer (45)" in err
    assert "-p 'token=\"45\"'" in err
    found, _ = run(toy_catalog, "query", "cypher", token, "-p", 'token="45"', "-f", "json")
    assert json.loads(found)  # the quoted value is text, and the token is there
    layer = ["query", "named", "features_in_layer", "-p", f"set_uid={SET}", "-p", "layer=0"]
    _, err = run(toy_catalog, *layer, "-p", "limit=ten", code=1)
    assert "parameter limit needs an integer (INT64) but got text" in err
    help_text = CliRunner().invoke(app, ["query", "named", "--help"], env={"COLUMNS": "300"})
    assert "The value is read as JSON where it parses" in help_text.stdout


def test_csv_keeps_every_digit(toy_catalog: str) -> None:
    query = "MATCH (f:Feature) RETURN f.uid AS uid, f.act_mean AS m ORDER BY uid LIMIT 20"
    as_json, _ = run(toy_catalog, "query", "cypher", query, "-f", "json")
    as_csv, _ = run(toy_catalog, "query", "cypher", query, "-f", "csv")
    exact = {r["uid"]: r["m"] for r in json.loads(as_json)}
    read = {
        r["uid"]: float(r["m"]) if r["m"] else None for r in csv.DictReader(io.StringIO(as_csv))
    }
    assert read == exact and any(len(str(v)) > 8 for v in exact.values() if v)


def test_toy_eval_csv_keeps_the_headline() -> None:
    args = ["toy", "eval", "--n", "20", "--threads", "1"]
    as_json = json.loads(CliRunner().invoke(app, [*args, "-f", "json"]).stdout)
    rows = list(csv.DictReader(io.StringIO(CliRunner().invoke(app, [*args, "-f", "csv"]).stdout)))
    assert len(rows) == len(as_json["layers"]) == 4
    for key in ("metric", "metric_all_replaced", "kept_fraction"):
        assert {float(r[key]) for r in rows} == {as_json[key]}
    assert [float(r["fvu"]) for r in rows] == [layer["fvu"] for layer in as_json["layers"]]


def test_no_rows_says_so(toy_catalog: str) -> None:
    args = ["query", "named", "features_in_layer", "-p", f"set_uid={SET}", "-p", "layer=99"]
    args += ["-p", "limit=5"]
    said, _ = run(toy_catalog, *args)
    assert said == "0 rows\n"
    said, _ = run(toy_catalog, *args, "-f", "json")
    assert json.loads(said) == []


def test_a_missing_feature_names_the_layer_count(toy_catalog: str) -> None:
    _, err = run(toy_catalog, "feature", "show", "L7/1", code=1)
    assert "model toy-years has 4 layers (L0 to L3)" in err and "layer=0" in err
    _, err = run(toy_catalog, "feature", "show", "L1/99999", code=1)
    assert "has 256 features (0 to 255)" in err


def test_dialect_errors_point_to_the_portable_subset(toy_catalog: str) -> None:
    for query in ("RETURN [10, 20][0] AS first", "MATCH (f:Feature) RETURN f.nope LIMIT 1"):
        _, err = run(toy_catalog, "query", "cypher", query, code=1)
        assert 'docs/neo4j.md, "Cypher on both stores"' in err


def test_a_prompts_answer_is_its_correct_tokens_and_the_start_year_its_own_field(
    toy_catalog: str,
) -> None:
    """`answer` means one thing on every task (the correct tokens as text); the year tasks'
    start year YY is `start_year`, and `circuit show` ranges over it (else over the answers)."""
    from circuitcat.ingest.tasks import NUMBER_WORDS

    for task, later in (("greater-than", True), ("less-than", False)):
        out, _ = run(toy_catalog, "prompt", "list", "--task", task, "--format", "jsonl")
        rows = [json.loads(line) for line in out.splitlines()]
        assert rows
        for r in rows:
            yy = int(r["start_year"])
            first, last = (yy + 1, 99) if later else (0, yy - 1)
            assert r["answer"] in (f"{first:02d}..{last:02d}", f"{first:02d}"), r
    out, _ = run(toy_catalog, "prompt", "list", "--task", "counting", "--format", "jsonl")
    counting = [json.loads(line) for line in out.splitlines()]
    assert counting and all(r["start_year"] is None for r in counting)
    for r in counting:
        *_, shown = r["text"].split()
        assert r["answer"] == NUMBER_WORDS[NUMBER_WORDS.index(shown) + 1]
    shown_year, _ = run(toy_catalog, "prompt", "show", rows[0]["uid"])
    assert f"(answer {rows[0]['answer']}, start year {rows[0]['start_year']}," in shown_year

    out, _ = run(toy_catalog, "circuit", "show", "greater-than", "--format", "jsonl")
    spans = [json.loads(line)["prompts_on"] for line in out.splitlines()]
    assert spans and all(s.startswith("YY ") for s in spans if s)
    out, _ = run(toy_catalog, "circuit", "show", "counting", "--format", "jsonl")
    words = [json.loads(line)["prompts_on"] for line in out.splitlines()]
    assert any(words) and all(w.split(",")[0].strip() in NUMBER_WORDS for w in words if w)


def test_an_older_catalogs_year_prompts_are_rewritten_by_store_init(tmp_path: Path) -> None:
    """A catalog whose year prompts hold the start year in `answer` (circuitcat before
    start_year) reads as before until opened for writing; `store init` then rewrites them."""
    from circuitcat.catalog import open_store
    from circuitcat.catalog.records import PromptRecord, records_to_batch

    store = str(tmp_path / "old")
    old = [
        PromptRecord(task=t, text=f"{t} 17{yy}", tokens=["17", yy], answer=yy)
        for t, yy in (("greater-than", "23"), ("less-than", "23"), ("greater-than", "98"))
    ]
    counting = PromptRecord(task="counting", text="count : one two", tokens=["two"], answer="three")
    with open_store(store) as s:
        s.write_nodes(records_to_batch([*old, counting]))
        s.run_cypher("ALTER TABLE Prompt DROP start_year", write=True)  # as it was then
    _, err = run(store, "query", "named", "year_prompts_to_upgrade", code=1)
    assert "made by an older circuitcat" in err and "store init" in err

    run(store, "store", "init")
    with open_store(store, read_only=True) as s:
        assert s.query("year_prompts_to_upgrade") == []
        rows = {
            r[0]: (r[1], r[2])
            for r in s.run_cypher(
                "MATCH (p:Prompt) RETURN p.text, p.answer, p.start_year ORDER BY p.text"
            ).rows
        }
    assert rows == {
        "count : one two": ("three", None),
        "greater-than 1723": ("24..99", "23"),
        "greater-than 1798": ("99", "98"),
        "less-than 1723": ("00..22", "23"),
    }


def test_help_text_flows_instead_of_breaking_mid_sentence() -> None:
    """A group's list of commands gives each command's first help paragraph on one line, and a
    command's own help flows to the terminal's width (Typer keeps the docstring's line breaks
    otherwise, breaking sentences mid-way)."""
    import typer

    def summaries(group: typer.Typer) -> list[str]:
        found = [str(c.short_help) for c in group.registered_commands]
        for sub in group.registered_groups:
            assert sub.typer_instance is not None
            found += summaries(sub.typer_instance)
        return found

    lines = summaries(app)
    assert len(lines) > 30 and all(line and "\n" not in line for line in lines)
    done = CliRunner().invoke(app, ["query", "--help"], env={"COLUMNS": "200"})
    assert "it cannot change the catalog, read or write files" in done.stdout
    # a command's own help flows too: this phrase spans a line break in the docstring
    done = CliRunner().invoke(app, ["circuit", "show", "--help"], env={"COLUMNS": "200"})
    assert 'the start years, "YY 03..97", for greater-than' in done.stdout


def test_brackets_survive_tables_dashboards_and_errors(toy_catalog: str, tmp_path: Path) -> None:
    """Rich reads "[...]" as markup: a label like "[draft] start year" must print as written in
    tables, on the dashboard and in error lines, not lose its brackets."""
    import shutil

    store = str(tmp_path / "catalog")
    shutil.copytree(toy_catalog, store)
    label = "[draft] start years [bold]9x[/bold]"
    run(store, "feature", "label", f"{SET}/L0/156", label)
    shown, _ = run(store, "feature", "show", f"{SET}/L0/156")
    assert f"label: {label}" in shown
    cypher = "MATCH (f:Feature {uid: $uid}) RETURN f.label AS label"
    table, _ = run(store, "query", "cypher", cypher, "-p", f'uid="{SET}/L0/156"')
    assert label in table
    _, err = run(store, "feature", "show", "toy-years/[bold]x[/bold]/L0/1", code=1)
    assert "[bold]x[/bold]" in err
