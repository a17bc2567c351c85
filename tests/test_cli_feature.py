"""`feature show` and `prompt list` through the CLI on the synthetic catalog (catalog_data)."""

from __future__ import annotations

import csv
import io
import json

import pytest
from typer.testing import CliRunner

from circuitcat.catalog import open_store
from circuitcat.cli.main import app

from . import catalog_data as data


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = str(tmp_path_factory.mktemp("feature-cli") / "catalog")
    with open_store(path) as catalog:
        data.write_all(catalog)
    return path


def show(store: str, *args: str) -> str:
    result = CliRunner().invoke(app, ["feature", "show", *args, "--store", store])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_the_short_uid_circuit_show_prints_is_accepted(store: str) -> None:
    full = data.feature_uids(1)[3]
    assert show(store, "L1/3") == show(store, full)
    assert json.loads(show(store, "L1/3", "--format", "json"))["uid"] == full


def test_a_missing_feature_hint_names_its_set_and_layer(store: str) -> None:
    result = CliRunner().invoke(app, ["feature", "show", "L2/99", "--store", store])
    assert result.exit_code == 1  # the model has 2 layers: the hint says so, and lists layer 0
    assert "has 2 layers (L0 to L1)" in result.output
    assert f"set_uid={data.SET.uid} -p layer=0" in result.output


def test_each_format_is_its_own_format(store: str) -> None:
    record = json.loads(show(store, "L0/1", "--format", "json", "--limit", "1"))
    assert isinstance(record["top_contexts"], list) and isinstance(record["top_logits"], list)
    assert len(record["sources"]) <= 1
    rows = list(csv.reader(io.StringIO(show(store, "L0/1", "--format", "csv"))))
    assert rows[0] == ["field", "value"] and ["layer", "0"] in rows
    assert json.loads(show(store, "L0/1", "--format", "jsonl"))["layer"] == 0


def test_prompt_list_says_when_it_stops_at_the_limit(store: str) -> None:
    with open_store(store) as catalog:
        n = len(catalog.query("attributed_prompts", set_uid=data.SET.uid, task="greater-than"))
    assert n >= 1
    args = ["prompt", "list", "--task", "greater-than", "--store", store]
    result = CliRunner().invoke(app, [*args, "--limit", str(n - 1)])
    assert result.exit_code == 0, result.output
    assert f"showing {n - 1} of {n} prompts" in result.stderr
    full = CliRunner().invoke(app, [*args, "--limit", str(n)])
    assert "showing" not in full.stderr
