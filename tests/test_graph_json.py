"""Prompt graphs exported as circuit-tracer / Neuronpedia graph JSON: the influence math on a
graph worked by hand, the export of a toy prompt graph checked against the model's real
transcoder activations, the same file from both stores, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from circuitcat.catalog import open_store
from circuitcat.catalog.graph_json import GraphFile, cumulative_influence, prompt_graph_json
from circuitcat.cli.main import app

runner = CliRunner()


def test_cumulative_influence_by_hand() -> None:
    # 0 token, 1 feature, 2 error, 3 target. Into 1: 0 (w 2) and 2 (w -2), half each by |w|;
    # into 3: 1 (w 1) and 0 (w 3), a quarter and three quarters. Influence on 3: node 0
    # 0.75 + 0.25 * 0.5 = 0.875, node 1 0.25, node 2 0.125; total 1.25.
    src, dst = np.array([0, 2, 1, 0]), np.array([1, 1, 3, 3])
    w = np.array([2.0, -2.0, 1.0, 3.0])
    got = cumulative_influence(4, src, dst, w, target=3)
    np.testing.assert_allclose(got, [0.875 / 1.25, 1.125 / 1.25, 1.0, 0.0])


def _first_prompt(store_path: str) -> dict[str, Any]:
    with open_store(store_path) as s:
        return s.query("attributed_prompts", set_uid="toy-years/tc-v1", task="greater-than")[0]


def _graph(store_path: str, prompt_uid: str) -> GraphFile:
    with open_store(store_path) as s:
        return prompt_graph_json(s, prompt_uid)


def _real_activations(prompt_tokens: list[str]) -> dict[tuple[int, int, int], float]:
    """(layer, index, pos) -> the transcoder activation on the real model's forward pass."""
    from circuitcat.ingest.models import load_model
    from circuitcat.ingest.transcoders.load import load_transcoders

    loaded = load_model("toy-years")
    tset = load_transcoders("toy-years", loaded)
    model = loaded.model
    assert model.tokenizer is not None
    ids = model.tokenizer.convert_tokens_to_ids(prompt_tokens)
    acts = {}
    with torch.no_grad():
        _, cache = model.run_with_cache(torch.tensor([ids]))
        for layer in tset.layers:
            tc = tset[layer]
            z = tc.encode(cache[tc.cfg.input_hook][0])
            for pos, index in torch.nonzero(z).tolist():
                acts[(layer, index, pos)] = float(z[pos, index])
    return acts


def test_toy_prompt_graph_is_well_formed_and_true(toy_catalog: str) -> None:
    prompt = _first_prompt(toy_catalog)
    g = _graph(toy_catalog, prompt["uid"])
    ids = [n.node_id for n in g.nodes]
    assert len(ids) == len(set(ids))
    assert {link.source for link in g.links} | {link.target for link in g.links} <= set(ids)
    (target,) = [n for n in g.nodes if n.is_target_logit]
    assert target.feature_type == "logit" and "(p=" in target.clerp
    assert target.layer == str(5)  # toy: 4 layers, the target one row above the last
    assert g.metadata.prompt == prompt["text"] and g.metadata.schema_version == 1
    assert len(g.metadata.prompt_tokens) == 1 + max(n.ctx_idx for n in g.nodes)
    kinds = {n.feature_type for n in g.nodes}
    assert {"embedding", "cross layer transcoder", "mlp reconstruction error", "logit"} <= kinds

    # Each feature's activation is the sum of what the catalog stores into it; it must equal
    # the transcoder's activation on the real model's forward pass at that position.
    real = _real_activations(g.metadata.prompt_tokens)
    features = [n for n in g.nodes if n.feature_type == "cross layer transcoder"]
    assert features
    for n in features:
        layer, index, pos = (int(x) for x in n.node_id.split("_"))
        assert n.activation == pytest.approx(real[(layer, index, pos)], rel=1e-3, abs=1e-4)
    influence = [n.influence for n in g.nodes if not n.is_target_logit]
    assert all(x is not None and 0 < x <= 1 + 1e-9 for x in influence)


def test_cli_export_and_list(toy_catalog: str, tmp_path: Path) -> None:
    env = {"CIRCUITCAT_STORE": toy_catalog}
    listed = runner.invoke(app, ["prompt", "list", "--format", "json", "--limit", "2"], env=env)
    assert listed.exit_code == 0, listed.output
    uids = [r["uid"] for r in json.loads(listed.stdout)]
    assert len(uids) == 2
    for uid in (*uids, uids[0]):  # twice the same: one entry in the viewer's index
        done = runner.invoke(app, ["prompt", "export", uid, "--out", str(tmp_path / "v")], env=env)
        assert done.exit_code == 0, done.output
    index = json.loads((tmp_path / "v" / "graph-metadata.json").read_text())
    slugs = sorted(g["slug"] for g in index["graphs"])
    assert slugs == sorted(f"toy-years-tc-v1-{u.replace('/', '-')}" for u in uids)
    for slug in slugs:
        GraphFile.model_validate_json((tmp_path / "v" / f"{slug}.json").read_text())
    single = tmp_path / "one.json"
    done = runner.invoke(app, ["prompt", "export", uids[0], "--out", str(single)], env=env)
    assert done.exit_code == 0 and json.loads(single.read_text())["links"]
    missing = runner.invoke(
        app, ["prompt", "export", "greater-than/nope", "--out", "x.json"], env=env
    )
    assert missing.exit_code == 1 and "prompt list" in missing.stderr
