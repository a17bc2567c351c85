"""Prompt graphs in the catalog and circuits over them: rows equal the PromptGraph, re-writing
adds nothing, stored graphs add up, the same circuit on both stores, show reads the members,
verify with every feature kept equals the transcoder-replaced model; the toy end to end."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from circuitcat.catalog import CatalogStore, open_store, schema
from circuitcat.catalog.circuits import (
    HEAD,
    find_circuit,
    read_prompt_graphs,
    show_circuit,
    total_attributions,
)
from circuitcat.catalog.errors import IngestError, QueryError
from circuitcat.catalog.records import RunRecord
from circuitcat.catalog.schema import GraphNode
from circuitcat.ingest.faithfulness import (
    faithfulness_curve,
    keep_masks,
    measure_faithfulness,
    plot_curve,
    sample_means,
    verify_circuit,
)
from circuitcat.ingest.models import LoadedModel
from circuitcat.ingest.prompt_rows import prompt_graph_batches, write_prompt_graphs
from circuitcat.ingest.prompts import PromptParams, prompt_graph, prompt_record, run_prompts
from circuitcat.ingest.register import register
from circuitcat.ingest.tasks import Task, TaskPrompt
from circuitcat.ingest.transcoders.transcoder import TranscoderSet

from .neo4j_server import Neo4jServer
from .tiny import D_VOCAB, make_set

SET_UID, MODEL_UID = "tiny/tc", "tiny"
RUN = RunRecord(kind="test", started_at="2026-01-01T00:00:00").uid


def tiny_task(n: int = 4, name: str = "custom") -> Task:
    """Prompts as token id lists (the tiny model has no tokenizer), logit-difference targets."""
    gen = torch.Generator().manual_seed(7)
    prompts = []
    for i in range(n):
        toks = torch.randint(0, D_VOCAB, (6,), generator=gen).tolist()
        prompts.append(
            TaskPrompt(" ".join(map(str, toks)), tuple(toks), str(i), (i + 1, i + 2), (i + 20,))
        )
    return Task(name, "logit_diff", "tiny test task", tuple(prompts))


@pytest.fixture(scope="module")
def tset() -> TranscoderSet:
    return make_set()


@pytest.fixture(scope="module")
def batches(loaded: LoadedModel, tset: TranscoderSet) -> list:
    """(graph, heads, node batches, edge batches) of each prompt of the tiny task."""
    out = []
    task = tiny_task()
    for tp in task.prompts:
        graph, heads = prompt_graph(loaded, tset, tp, PromptParams())
        record = prompt_record(loaded, task, tp, RUN)
        nodes, edges = prompt_graph_batches(graph, SET_UID, MODEL_UID, record, RUN, heads)
        out.append((graph, heads, record, nodes, edges))
    return out


def filled(uri: str, loaded: LoadedModel, tset: TranscoderSet, batches: list, **kw) -> CatalogStore:
    store = open_store(uri, **kw)
    register(store, loaded, tset)
    write_prompt_graphs(store, [(nodes, edges) for *_, nodes, edges in batches])
    return store


def stored_edges(store: CatalogStore, prompt: str) -> list[dict]:
    return store.query("prompt_attributions", prompts=[prompt])


# --------------------------------------------------------------------------------------------
# writing


def test_stored_edges_equal_the_graph_and_rewriting_adds_nothing(
    tmp_path: Path, loaded: LoadedModel, tset: TranscoderSet, batches: list
) -> None:
    graph, heads, record, nodes, edges = batches[0]
    with filled(str(tmp_path / "c"), loaded, tset, batches[:1]) as store:
        counts = store.info()
        rows = stored_edges(store, record.uid)
        write_prompt_graphs(store, [(nodes, edges)])  # the same graph again: MERGE
        assert store.info() == counts
    assert counts.relationships["ATTRIBUTES"] == len(rows) > graph.n_edges
    # Edges from features, tokens and errors: exactly the graph's (plus remainders).
    whole = [r for r in rows if r["src_head"] is None]
    assert {r["via"] for r in whole} == {"all"}
    assert parts_by_edge(whole) == edges_by_key(graph)
    # Head edges: per destination, the parts of its inputs through that head.
    uids, expected = graph_uids(graph), defaultdict(float)
    for dst, via, w in zip(heads.dst.tolist(), heads.via.tolist(), heads.w.tolist(), strict=True):
        if via >= 0:
            head = schema.head_uid(MODEL_UID, via // heads.n_heads, via % heads.n_heads)
            expected[(head, uids[dst], int(graph.pos[dst]))] += w
    got = {(r["src"], r["dst"], r["dst_pos"]): r["w"] for r in rows if r["src_head"] is not None}
    assert got == pytest.approx(dict(expected), rel=1e-6, abs=1e-7)
    assert all(
        r["via"].startswith("attn:") and r["src_pos"] == -1
        for r in rows
        if r["src_head"] is not None
    )
    # Split by route instead, the parts of each edge add up to its w (fp32 rounding).
    split = prompt_graph_batches(graph, SET_UID, MODEL_UID, record, RUN, heads, split_edges=True)
    with filled(str(tmp_path / "split"), loaded, tset, [(None, None, None, *split)]) as store:
        rows = stored_edges(store, record.uid)
    assert {"resid", "all"} <= {r["via"] for r in rows} and all(r["src_head"] is None for r in rows)
    assert any(r["via"].startswith("attn:") for r in rows)
    assert parts_by_edge(rows) == pytest.approx(edges_by_key(graph), rel=1e-5, abs=1e-6)


def parts_by_edge(rows: list[dict]) -> dict[tuple, float]:
    by_edge: dict[tuple, float] = defaultdict(float)
    for r in rows:
        if r["src_error"] != "remainder":
            by_edge[(r["src"], r["src_pos"], r["dst"], r["dst_pos"])] += r["w"]
    return dict(by_edge)


def edges_by_key(graph) -> dict[tuple, float]:
    uids = graph_uids(graph)
    return {
        (uids[src], int(graph.pos[src]), uids[dst], int(graph.pos[dst])): w
        for src, dst, w in zip(
            graph.src.tolist(), graph.dst.tolist(), graph.w.tolist(), strict=True
        )
    }


def graph_uids(graph) -> list[str]:
    out = []
    for kind, layer, index in zip(graph.kind, graph.layer, graph.index, strict=True):
        k, la, ix = int(kind), int(layer), int(index)
        if k == GraphNode.FEATURE:
            out.append(schema.feature_uid(SET_UID, la, ix))
        elif k == GraphNode.TOKEN:
            out.append(schema.token_uid(MODEL_UID, ix))
        elif k == GraphNode.ERROR:
            out.append(schema.error_uid(SET_UID, la, "transcoder_error"))
        elif k == GraphNode.BIAS:
            out.append(schema.error_uid(SET_UID, -1 if la == graph.n_layers else la, "bias"))
        else:
            out.append(schema.target_uid("custom", "logit_diff"))
    return out


def test_stored_graphs_add_up_to_the_target(
    tmp_path: Path, loaded: LoadedModel, tset: TranscoderSet, batches: list
) -> None:
    """With remainder edges, every destination's stored inputs add up to its value, so the
    total attributions of the leaves (tokens, errors, biases) add up to the target."""
    with filled(str(tmp_path / "c"), loaded, tset, batches) as store:
        prompts = [b[2].uid for b in batches]
        graphs = read_prompt_graphs(store, prompts, SET_UID)
    scores = total_attributions(graphs)
    leaves = graphs.kind != 0  # not a feature; targets have no outgoing edges
    for p, (graph, *_) in enumerate(batches):
        target = float(graph.in_total[graph.target_nodes][0])
        leaf = scores.per_prompt[p, leaves]
        scale = max(1.0, float(np.abs(leaf).sum()))  # fp32 edges, cancelling contributions
        assert leaf.sum() == pytest.approx(target, abs=1e-5 * scale)
        incoming = np.zeros(len(graphs.uids))
        rows = (graphs.prompt == p) & (graphs.kind[graphs.src] != HEAD)  # heads: a decomposition
        np.add.at(incoming, graphs.dst[rows], graphs.w[rows])
        t = graphs.uids.index(schema.target_uid("custom", "logit_diff"))
        assert incoming[t] == pytest.approx(target, abs=1e-5 * scale)


def test_prompts_job_resumes_and_needs_register(
    tmp_path: Path, loaded: LoadedModel, tset: TranscoderSet
) -> None:
    task = tiny_task(3)
    with open_store(str(tmp_path / "c")) as store:
        with pytest.raises(IngestError, match="ingest register"):
            run_prompts(store, loaded, tset, task)
        register(store, loaded, tset)
        seen: list[int] = []
        first = run_prompts(store, loaded, tset, task, progress=lambda d, n: seen.append(d))
        assert (first.written, first.skipped, seen) == (3, 0, [1, 2, 3])
        counts = store.info()
        again = run_prompts(store, loaded, tset, task)
        assert (again.written, again.skipped) == (0, 3)
        assert store.info().relationships == counts.relationships
        assert len(store.query("attributed_prompts", task="custom", set_uid=SET_UID)) == 3


# --------------------------------------------------------------------------------------------
# circuits


def test_find_and_show_read_the_members(
    tmp_path: Path, loaded: LoadedModel, tset: TranscoderSet, batches: list
) -> None:
    with filled(str(tmp_path / "c"), loaded, tset, batches) as store:
        report = find_circuit(store, "custom", name="tiny", top_n=6)
        view = show_circuit(store, "tiny")
        assert report.n_features == 6 == len(view.features)
        assert [f["uid"] for f in view.features] == [uid for uid, _ in report.top[:6]]
        assert view.heads and view.tokens and view.paths
        assert all(f["n_prompts"] >= 1 for f in view.features)
        assert {p["depth"] for p in view.paths} <= {2, 3}
        smaller = find_circuit(store, "custom", name="tiny", top_n=2)  # replaces the first
        assert smaller.n_features == len(show_circuit(store, "tiny").features) == 2
        with pytest.raises(QueryError, match="circuitcat circuit find"):
            show_circuit(store, "nope")


def test_the_docs_cypher_runs_on_the_embedded_store(
    tmp_path: Path, loaded: LoadedModel, tset: TranscoderSet, batches: list
) -> None:
    """Every ```cypher block of docs/circuits.md, on a circuit named like the docs' one."""
    text = (Path(__file__).parents[1] / "docs" / "circuits.md").read_text()
    blocks = re.findall(r"```cypher\n(.*?)```", text, re.S)
    assert len(blocks) >= 5
    with filled(str(tmp_path / "c"), loaded, tset, batches) as store:
        find_circuit(store, "custom", name="greater-than", top_n=6)
        answers = [store.run_cypher(block).rows for block in blocks]
    assert all(answers[:3])  # the circuit's features, its subgraph, its edges into the target


@pytest.mark.neo4j
def test_the_same_circuit_on_both_stores(
    tmp_path: Path,
    loaded: LoadedModel,
    tset: TranscoderSet,
    batches: list,
    clean_neo4j: Neo4jServer,
) -> None:
    views = []
    for uri, kw in (
        (str(tmp_path / "lb"), {}),
        (clean_neo4j.uri, {"user": clean_neo4j.user, "password": clean_neo4j.password}),
    ):
        with filled(uri, loaded, tset, batches, **kw) as store:
            find_circuit(store, "custom", name="tiny", top_n=6)
            view = show_circuit(store, "tiny").as_dict()
            views.append({k: rounded(view[k]) for k in ("features", "heads", "tokens", "paths")})
    assert views[0] == views[1]


def rounded(value: object) -> object:
    if isinstance(value, float):
        return float(f"{value:.6g}")
    if isinstance(value, list):
        return [rounded(v) for v in value]
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    return value


# --------------------------------------------------------------------------------------------
# faithfulness


def test_verify_with_every_feature_kept_is_the_replaced_model(
    tmp_path: Path, loaded: LoadedModel, tset: TranscoderSet, batches: list
) -> None:
    task = tiny_task()
    means = sample_means(loaded, tset, n_docs=64)
    every = [(layer, i) for layer in tset.layers for i in range(tset.d_transcoder)]
    all_kept = measure_faithfulness(loaded.model, tset, task, every, means, n_random=0)
    assert all_kept.circuit == pytest.approx(all_kept.replaced, abs=1e-6)
    assert abs(all_kept.empty - all_kept.replaced) > 1e-3  # ablation does something
    assert all_kept.full != pytest.approx(all_kept.replaced, abs=1e-3)
    assert int(keep_masks(tset, every[:3])[0].sum()) == 3
    with filled(str(tmp_path / "c"), loaded, tset, batches) as store:
        find_circuit(store, "custom", name="tiny", top_n=4)
        result = verify_circuit(store, loaded, tset, task, "tiny", n_random=2)
        stored = json.loads(store.query("circuits", circuit_name="tiny")[0]["faithfulness"])
    assert stored == json.loads(json.dumps(result.as_dict()))
    assert result.n_features == 4 and len(result.random_draws) == 2
    assert result.means_from.startswith("random tokens")


def test_curve_and_plot(tmp_path: Path, loaded: LoadedModel, tset: TranscoderSet) -> None:
    means = sample_means(loaded, tset, n_docs=32)
    members = [(0, i) for i in range(5)]
    curve = faithfulness_curve(loaded.model, tset, tiny_task(2), members, means, n_random=2)
    assert curve.sizes[0] == 0 and curve.sizes[-1] == 5
    assert len(curve.random) == 2 and len(curve.random[0]) == len(curve.sizes)
    path = plot_curve(curve, tmp_path / "curve.png", "tiny")
    assert path.read_bytes()[:4] == b"\x89PNG"


# --------------------------------------------------------------------------------------------
# the toy model end to end, through the CLI


def test_toy_end_to_end(tmp_path: Path) -> None:
    toy = pytest.importorskip("circuitcat.ingest.toy.model")
    if not (toy.WEIGHTS_DIR / toy.CONFIG_FILE).is_file():
        pytest.skip("toy weights not trained yet (circuitcat toy train)")
    from circuitcat.cli.circuit import app as circuit_app
    from circuitcat.cli.ingest import app as ingest_app

    runner, env = CliRunner(), {"CIRCUITCAT_STORE": str(tmp_path / "c")}

    def run(app, *args: str) -> str:
        result = runner.invoke(app, list(args), env=env)
        assert result.exit_code == 0, result.stdout + result.stderr
        return result.stdout

    run(ingest_app, "register", "toy-years", "--transcoders", "toy-years", "--device", "cpu")
    out = run(ingest_app, "prompts", "--task", "greater-than", "--n", "6", "--threads", "1")
    assert "6 written" in out
    assert "0 written, 6 already stored" in run(
        ingest_app, "prompts", "--task", "greater-than", "--n", "6", "--threads", "1"
    )
    run(circuit_app, "find", "--task", "greater-than", "--top-n", "20")
    view = json.loads(run(circuit_app, "show", "greater-than", "--format", "json"))
    assert len(view["features"]) == 20 and view["paths"]
    faith = json.loads(
        run(circuit_app, "verify", "greater-than", "--n", "40", "--draws", "2", "-f", "json")
    )
    assert faith["n_features"] == 20 and -1 <= faith["circuit"] <= 1
