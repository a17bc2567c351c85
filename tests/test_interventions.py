"""Interventions (ingest/interventions, `circuitcat intervention`): the math on the toy model and
on every transcoder kind's real-format fixture, and the CLI on the demo catalog.

Independent checks: the graph's prediction is the attribution graph's own linear system
(summed over its edges); the complement of a circuit at its means gives `circuit verify`'s
number; ablating every feature leaves exactly the error (+ b_dec_out + skip) term; a tiny edit
in the frozen model moves the metric by the prediction.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from circuitcat.catalog import open_store
from circuitcat.catalog.circuits import get_circuit
from circuitcat.cli.main import app
from circuitcat.ingest.attribution import LogitTarget, attribute
from circuitcat.ingest.faithfulness import (
    ablation_hooks,
    circuit_members,
    keep_masks,
    stored_means,
    task_metric,
)
from circuitcat.ingest.inputs import load_pair
from circuitcat.ingest.interventions import Intervention, intervene
from circuitcat.ingest.interventions.run import clean_pass, pad_batch
from circuitcat.ingest.tasks import TaskPrompt, greater_than
from circuitcat.ingest.toy import load_toy_model, load_toy_transcoders

from .helpers import invoke
from .test_real_formats import FIXTURES, KIND_LAYOUTS, SUPPORTED, declared, model_dir, set_id

GT = "greater-than"


@pytest.fixture(scope="module")
def toy() -> tuple[Any, Any]:
    return load_toy_model(), load_toy_transcoders()


@pytest.fixture(scope="module")
def gt_prompts(toy: tuple[Any, Any]) -> tuple[TaskPrompt, ...]:
    return greater_than(toy[0].tokenizer, n=40, seed=0, split="eval").prompts


def _graph_influence(graph: Any, target_node: int) -> torch.Tensor:
    """d target / d activation of every node, summed over the graph's paths: edge w / source
    activation is the edge's weight per unit of its source."""
    act = graph.activation[graph.src]
    per_unit = torch.where(act != 0, graph.w / act, torch.zeros_like(act))
    x = torch.zeros(graph.n_nodes)
    x[target_node] = 1.0
    total = torch.zeros(graph.n_nodes)
    for _ in range(graph.n_nodes):
        x = torch.zeros(graph.n_nodes).index_add_(0, graph.src, per_unit * x[graph.dst])
        if not bool(x.any()):
            break
        total += x
    return total


def test_prediction_is_the_attribution_graphs_linear_system(toy: tuple[Any, Any]) -> None:
    """The clean pass's influences equal the attribution graph's (built by ingest/attribution,
    another implementation) on every active feature, for a logit target."""
    model, tset = toy
    prompt = greater_than(model.tokenizer, n=1, seed=3, split="eval").prompts[0]
    answer = prompt.correct[5]
    p = TaskPrompt(prompt.text, prompt.tokens, "", (answer,), ())
    tokens, last = pad_batch([p], 0)
    clean = clean_pass(model, tset, tokens, last, [p], "logit")
    graph = attribute(model, tset, list(prompt.tokens), LogitTarget(answer))
    influence = _graph_influence(graph, int(graph.target_nodes[0]))
    feats = (graph.kind == 0).nonzero().flatten()
    assert len(feats) > 50
    ours = torch.stack([
        clean.grad[int(graph.layer[i])][0, int(graph.pos[i]), int(graph.index[i])] for i in feats
    ])  # fmt: skip
    torch.testing.assert_close(ours, influence[feats], atol=2e-4, rtol=2e-3)


def test_complement_at_means_equals_circuit_verify(toy_catalog: str, toy: tuple[Any, Any]) -> None:
    """`circuit verify`'s circuit number (every MLP replaced, non-members at their means) is
    the intervention 'mean, complement of the circuit, no error term'."""
    model, tset = toy
    task = greater_than(model.tokenizer, n=40, seed=1, split="eval")
    with open_store(toy_catalog, read_only=True) as s:
        circuit = get_circuit(s, GT, None)
        members = circuit_members(s, circuit["uid"])
        means = stored_means(s, circuit["set_uid"], tset)
    assert means is not None and members
    verify = task_metric(model, task, ablation_hooks(tset, keep_masks(tset, members), means.means))
    out = json.loads(
        invoke("intervention", "run", "mean", "--circuit", GT, "--complement", "--task", GT,
               "--n", "40", "--seed", "1", "--no-keep-error", "--store", toy_catalog, "-f", "json")
    )  # fmt: skip
    assert out["after"] == pytest.approx(verify, abs=1e-5)
    assert out["n_prompts"] == 40


def test_small_ablation_moves_the_metric_as_the_graph_predicts(
    toy: tuple[Any, Any], gt_prompts: tuple[TaskPrompt, ...]
) -> None:
    """Zeroing one late feature at the answer position: the frozen model moves as the graph
    predicts (only the metric's softmax is nonlinear there), and the live model within the
    documented tolerance (not flagged)."""
    model, tset = toy
    clean = clean_pass(model, tset, *pad_batch(gt_prompts, 0), gt_prompts, "prob_diff")
    last = torch.tensor([len(p.tokens) - 1 for p in gt_prompts])
    rows = torch.arange(len(gt_prompts))
    picks = []
    for layer in (2, 3):
        effect = -(clean.z[layer] * clean.grad[layer])[rows, last].mean(0)
        picks += [(layer, int(i)) for i in ((effect.abs() > 0.002) & (effect.abs() < 0.02))
                  .nonzero().flatten()[:2]]  # fmt: skip
    assert len(picks) >= 3
    for feature in picks:
        iv = Intervention("zero", (feature,), positions=(-1,))
        r = intervene(model, tset, gt_prompts, "prob_diff", iv)
        actual, predicted = r.after - r.before, r.predicted - r.before
        assert abs(actual) > 1e-5, feature
        assert r.frozen - r.before == pytest.approx(predicted, rel=0.3), feature
        assert not r.flagged, (feature, actual, predicted)
        assert abs(actual - predicted) <= 0.5 * abs(actual) + 0.01


def test_a_tiny_edit_in_the_frozen_model_moves_it_by_the_prediction(
    toy: tuple[Any, Any], gt_prompts: tuple[TaskPrompt, ...]
) -> None:
    model, tset = toy
    iv = Intervention("steer", ((1, 3), (2, 7), (3, 11)), value=1e-2, positions=(-1, -3))
    r = intervene(model, tset, gt_prompts[:8], "prob_diff", iv)
    frozen, predicted = r.frozen - r.before, r.predicted - r.before
    assert abs(predicted) > 1e-6
    assert frozen == pytest.approx(predicted, rel=2e-2, abs=2e-7)


def test_the_flag_fires_when_attention_carries_the_change(
    toy: tuple[Any, Any], gt_prompts: tuple[TaskPrompt, ...]
) -> None:
    """A huge steer of two layer-0 features at the start year's century token (position 7)
    moves later attention: the frozen model (and the graph) miss most of what happens; a small
    ablation is not flagged."""
    model, tset = toy
    big = Intervention("steer", ((0, 5), (0, 9)), value=60.0, positions=(7,))
    r = intervene(model, tset, gt_prompts, "prob_diff", big)
    assert r.flagged
    assert abs(r.after - r.frozen) > 0.5 * abs(r.after - r.before)
    small = intervene(model, tset, gt_prompts, "prob_diff", Intervention("scale", ((2, 7),), 0.9))
    assert not small.flagged


def _year(token: str) -> int:
    return int(token.strip())


def test_clamping_a_late_year_feature_moves_the_answer_later(toy_catalog: str) -> None:
    with open_store(toy_catalog, read_only=True) as s:
        rows = s.run_cypher(
            "MATCH (f:Feature)-[p:PROMOTES]->(t:Token) WHERE f.layer = 3 AND t.text = '97' "
            "AND p.w > 0 RETURN f.uid AS uid ORDER BY p.w DESC LIMIT 1"
        ).rows
    prompt = "The war lasted from the year 1723 to the year 17"
    out = json.loads(
        invoke("intervention", "run", "clamp", rows[0][0], "--value", "2xmax", "--pos", "-1",
               "--task", GT, "--prompt", prompt, "--store", toy_catalog, "-f", "json")
    )  # fmt: skip
    assert _year(out["top_after"][0]["token"]) > _year(out["top_before"][0]["token"])
    assert out["after"] > out["before"]


def test_patching_from_a_late_start_year_moves_the_answer_later(toy_catalog: str) -> None:
    out = json.loads(
        invoke("intervention", "run", "patch", "--circuit", GT, "--task", GT,
               "--source", "The war lasted from the year 1788 to the year 17",
               "--prompt", "The war lasted from the year 1713 to the year 17",
               "--store", toy_catalog, "-f", "json")
    )  # fmt: skip

    def mean_year(top: list[dict[str, Any]]) -> float:
        return sum(_year(t["token"]) * t["prob"] for t in top) / sum(t["prob"] for t in top)

    assert mean_year(out["top_after"]) > mean_year(out["top_before"]) + 10


def test_generate_shows_a_continuation_before_and_after(toy_catalog: str) -> None:
    out = invoke("intervention", "run", "zero", "L0/5", "--prompt", "the war lasted from the year",
                 "--generate", "3", "--store", toy_catalog)  # fmt: skip
    assert "greedy before:" in out and "greedy after:" in out
    assert "illusion check" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["zero", "L0/99999"], "has features 0.."),
        (["zero", "L7/1"], "layers 0..3"),
        (["clamp", "L0/1", "--value", "nan"], "not a finite number"),
        (["clamp", "L0/1", "--value", "inf"], "not a finite number"),
        (["zero", "L0/1", "--pos", "40"], "past the end"),
        (["zero", "x/y"], "is not a feature"),
        (["clamp", "L0/1"], "needs a value"),
    ],
)
def test_bad_input_is_one_line_and_saves_nothing(
    toy_catalog: str, args: list[str], message: str, tmp_path: Any
) -> None:
    result = CliRunner().invoke(
        app,
        ["intervention", "run", *args, "--prompt", "the war lasted from the year 17",
         "--save", "--store", toy_catalog],
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    with open_store(toy_catalog, read_only=True) as s:
        assert s.info().nodes.get("Intervention", 0) == 0


def test_a_prompt_longer_than_the_context_is_refused(toy_catalog: str) -> None:
    text = " ".join(["the war"] * 40)
    result = CliRunner().invoke(
        app, ["intervention", "run", "zero", "L0/1", "--prompt", text, "--store", toy_catalog]
    )
    assert result.exit_code == 1 and "the model reads at most 32" in result.output


# ---- every transcoder kind, on the libraries' own files -------------------------------------

KIND_CASES = [s for s in SUPPORTED if s["layout"] in KIND_LAYOUTS]


@pytest.mark.parametrize("tset_info", KIND_CASES, ids=set_id)
def test_every_kind_ablates_and_clamps(tset_info: dict[str, Any]) -> None:
    """Zeroing every feature leaves each MLP's error + b_dec_out + skip (computed here from the
    set's own `output`; where the set writes before Gemma's ln2_post, `mlp.hook_out`, removed
    from the MLP module's output, which then goes through ln2_post live); a clamp moves the
    logits; a tiny steer matches the prediction."""
    loaded, tset = load_pair(
        str(model_dir(tset_info)), str(FIXTURES / tset_info["path"]), activation=declared(tset_info)
    )
    model = loaded.model
    tokens = tuple(int(t) for t in torch.arange(1, 9) % model.cfg.d_vocab)
    prompt = TaskPrompt("", tokens, "", (int(tokens[-1]),), ())
    everything = Intervention("zero", (), complement=True)
    r = intervene(model, tset, [prompt], "logit", everything)
    z: dict[int, torch.Tensor] = {}
    x_in: dict[int, torch.Tensor] = {}

    def read(x: torch.Tensor, hook: Any, layer: int) -> None:
        x_in[layer] = x.float()
        z[layer] = tset[layer].encode(x.float())

    def write(out: torch.Tensor, hook: Any, layer: int) -> torch.Tensor:
        tc_out = tset.output(layer, z, x_in[layer])
        return out - (tc_out - tset[layer].b_dec_out - tset[layer].skip(x_in[layer]))

    scales: dict[int, torch.Tensor] = {}

    def write_before_norm(n: torch.Tensor, hook: Any, layer: int) -> torch.Tensor:
        y = write(n * scales[layer], hook, layer)  # the MLP module's output, edited
        return y / (y.pow(2).mean(-1, keepdim=True) + model.blocks[layer].ln2_post.eps).sqrt()

    hooks = []
    for layer in tset.layers:
        hooks.append((tset[layer].cfg.input_hook, lambda x, hook, at=layer: read(x, hook, at)))
        if layer not in tset.post_norm:
            hooks.append(
                (tset[layer].cfg.output_hook, lambda o, hook, at=layer: write(o, hook, at))
            )
            continue
        hooks.append((f"blocks.{layer}.ln2_post.hook_scale",
                      lambda s, hook, at=layer: scales.__setitem__(at, s)))  # fmt: skip
        hooks.append((f"blocks.{layer}.ln2_post.hook_normalized",
                      lambda n, hook, at=layer: write_before_norm(n, hook, at)))  # fmt: skip
    with torch.no_grad(), model.hooks(fwd_hooks=hooks):
        ref = model(torch.tensor([tokens]), return_type="logits")[0, -1, tokens[-1]]
    assert r.after == pytest.approx(float(ref), abs=1e-4)
    assert r.after != pytest.approx(r.before, abs=1e-4)
    layer = tset.layers[-1]
    clamp = intervene(model, tset, [prompt], "logit",
                      Intervention("clamp", ((layer, 0), (layer, 1)), value=5.0))  # fmt: skip
    assert clamp.after != pytest.approx(clamp.before, abs=1e-6)
    tiny = intervene(model, tset, [prompt], "logit",
                     Intervention("steer", ((tset.layers[0], 2),), value=1e-3))  # fmt: skip
    assert tiny.frozen - tiny.before == pytest.approx(tiny.predicted - tiny.before, rel=5e-2,
                                                      abs=1e-6)  # fmt: skip


def test_stored_prompts_and_given_tokens(toy_catalog: str) -> None:
    """A stored prompt runs with its task's answer sets; a bare text with --correct and
    --incorrect tokens is scored by their logit difference."""
    with open_store(toy_catalog, read_only=True) as s:
        uid = s.query("prompts_of_task", task=GT, limit=1)[0]["uid"]
    out = json.loads(invoke("intervention", "run", "zero", "L3/16", "--prompt-uid", uid,
                            "--store", toy_catalog, "-f", "json"))  # fmt: skip
    assert out["metric"] == "prob_diff" and out["task"] == GT and out["prompt"] == uid
    out = json.loads(
        invoke("intervention", "run", "scale", "L2/7", "--value", "0.5", "--prompt",
               "the war lasted from the year 17 32 to the year 17", "--correct", "45",
               "--incorrect", "12", "--store", toy_catalog, "-f", "json")
    )  # fmt: skip
    assert out["metric"] == "logit_diff" and out["n_prompts"] == 1
    csv = invoke("intervention", "run", "zero", "L3/16", "--prompt-uid", uid,
                 "--store", toy_catalog, "-f", "csv")  # fmt: skip
    assert csv.splitlines()[0] == "field,value" and "predicted" in csv


def test_a_set_that_needs_the_post_norm_is_refused_when_loaded_without_the_model() -> None:
    """A Gemma set writing before ln2_post gets that norm only when loaded with the model;
    loaded alone and handed to `intervene`, it is one clear error, not silently wrong numbers."""
    from circuitcat.catalog.errors import TranscoderLoadError
    from circuitcat.ingest.transcoders.load import load_transcoders

    info = next(s for s in SUPPORTED if (s["family"], s["layout"]) == ("gemma2", "circuit-tracer"))
    loaded, _ = load_pair(str(model_dir(info)), str(FIXTURES / info["path"]))
    alone = load_transcoders(str(FIXTURES / info["path"]))
    prompt = TaskPrompt("", (1, 2, 3), "", (4,), ())
    with pytest.raises(TranscoderLoadError, match="load_transcoders\\(path, model\\)"):
        intervene(loaded.model, alone, [prompt], "logit", Intervention("zero", ((0, 1),)))
