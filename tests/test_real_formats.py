"""Real formats, end to end: model folders saved by `transformers` and transcoder sets saved by
SAELens and circuit-tracer (tests/fixtures/make_real_formats.py wrote them with the libraries'
own code; MANIFEST.json lists every set).

For every (family x layout) a user would pair:
- activations equal the library's own `encode` on the same inputs, and on the model's own MLP
  input (captured from the Hugging Face model) after loading through transformer_lens;
- the CLI runs register -> features -> weights -> prompts -> circuit find -> circuit verify, with
  `register` run from the fixtures folder with relative paths and every later job from another
  folder, naming neither the model nor the transcoders;
- per family, and per transcoder kind (JumpReLU, TopK, skip, JumpReLU + skip, cross-layer), the
  prompt graph is complete and its edges match ablations of the frozen model.
Which kinds load is decided here (SUPPORTED_KINDS), not by the manifest, which records the
fixtures' facts. circuit-tracer writes a TopK set like a ReLU one, so TopK sets are registered
with `--activation topk:K`. docs/ingest-your-model.md carries the support matrix this file
renders from the manifest.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from circuitcat.catalog import open_store
from circuitcat.cli.main import app
from circuitcat.ingest.attribution import LogitTarget, NodeKind, attribute, freeze
from circuitcat.ingest.inputs import load_pair
from circuitcat.ingest.transcoders.load import load_transcoders

from .helpers import invoke
from .test_attribution import (
    assert_complete,
    destinations,
    frozen_ablation_error,
    pick_edges,
    real_ablation_error,
    write_of,
)

FIXTURES = Path(__file__).parent / "fixtures" / "real_formats"
MANIFEST = json.loads((FIXTURES / "MANIFEST.json").read_text())
MODELS = {m["family"]: m for m in MANIFEST["models"]}
SETS = MANIFEST["transcoder_sets"]
# the manifest's kinds this release loads and runs through every job
SUPPORTED_KINDS = {"relu", "jumprelu", "skip", "jumprelu+skip", "topk", "clt"}
SUPPORTED = [s for s in SETS if s["kind"] in SUPPORTED_KINDS]
REFUSED = [s for s in SETS if s["kind"] not in SUPPORTED_KINDS]
FAMILIES = list(MODELS)
DOC = Path(__file__).parents[1] / "docs" / "ingest-your-model.md"
JOBS = ("register", "features", "weights", "prompts", "circuit find", "circuit verify")
GS2 = "gemmascope2"  # Gemma Scope 2's layout (transcoder_all/layer_<i>_..._affine/)

CORPUS = "\n".join(
    [
        "the war lasted from the year 17 32 to the year 17 50 .",
        "it began in the year 18 05 and ended in the year 18 12 .",
        "the war was a war of the year 17 80 , and it ended .",
        "in the year 19 14 a war began , and in the year 19 18 it ended .",
    ]
    * 3
)
TASK = [
    {"prompt": "the war lasted from the year 17 32 to the year 17", "correct": ["50", "60"],
     "incorrect": ["10", "20"]},
    {"prompt": "it began in the year 18 80 and ended in the year 18", "correct": ["90"],
     "incorrect": ["70"]},
]  # fmt: skip
# Qwen's tokenizer splits numbers into digits, as the real one does: answer with one digit
DIGIT_TASK = [{**row, "correct": ["5"], "incorrect": ["1"]} for row in TASK]
DIGIT_FAMILIES = ("qwen2",)


def set_id(s: dict[str, Any]) -> str:
    return f"{s['family']}-{s['layout']}"


def _key(s: dict[str, Any]) -> str:
    return f"{s['family']}/{s['layout']}"


def model_dir(s: dict[str, Any]) -> Path:
    return FIXTURES / MODELS[s["family"]]["path"]


def references(s: dict[str, Any]) -> dict[str, torch.Tensor]:
    return load_file(str(FIXTURES / s["reference"]))


def declared(s: dict[str, Any]) -> str | None:
    """What register needs told: circuit-tracer's TopK files carry no k (the manifest says it:
    'TopK(k=8), not stored in the file')."""
    match = re.match(r"TopK\(k=(\d+)\)", str(s.get("activation", "")))
    return f"topk:{match.group(1)}" if s["kind"] == "topk" and match else None


def activation_args(s: dict[str, Any]) -> list[str]:
    spec = declared(s)
    return ["--activation", spec] if spec else []


# --------------------------------------------------------------------------------------------
# activations against the libraries' own encode


@pytest.mark.parametrize("tset_info", SUPPORTED, ids=set_id)
def test_same_inputs_give_the_library_activations(tset_info: dict[str, Any]) -> None:
    ref = references(tset_info)
    tset = load_transcoders(FIXTURES / tset_info["path"], activation=declared(tset_info))
    for layer in tset.layers:
        ours = tset[layer].encode(ref[f"x.{layer}"].float())
        torch.testing.assert_close(ours, ref[f"acts.{layer}"].float(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("tset_info", SUPPORTED, ids=set_id)
def test_activations_through_the_model_match_the_library(tset_info: dict[str, Any]) -> None:
    """The model loaded through transformer_lens with the processing the set records: the
    transcoders' input hook, encoded by us, equals the library's encode of the HF model's own
    MLP input."""
    ref = references(tset_info)
    loaded, tset = load_pair(
        str(model_dir(tset_info)), str(FIXTURES / tset_info["path"]), activation=declared(tset_info)
    )
    tokens = load_file(str(FIXTURES / MODELS[tset_info["family"]]["reference"]))["tokens"]
    hooks = {tset[layer].cfg.input_hook for layer in tset.layers}
    with torch.no_grad():
        _, cache = loaded.model.run_with_cache(
            tokens.reshape(1, -1), names_filter=hooks.__contains__
        )
    for layer in tset.layers:
        ours = tset[layer].encode(cache[tset[layer].cfg.input_hook][0])
        theirs = ref[f"acts_model.{layer}"].float().reshape(ours.shape)
        assert (ours - theirs).abs().max().item() < 1e-4, f"layer {layer}"
        assert (theirs > 0).any(), "the fixture should activate some features"


LIBRARY_OUTPUTS = load_file(str(FIXTURES.parent / "library_outputs.safetensors"))
KIND_SETS = [s for s in SUPPORTED if any(k.startswith(f"{_key(s)}/") for k in LIBRARY_OUTPUTS)]


@pytest.mark.parametrize("tset_info", KIND_SETS, ids=set_id)
def test_outputs_equal_the_library_forward(tset_info: dict[str, Any]) -> None:
    """What replaces each MLP (decoders of every layer that writes there, b_dec, the skip)
    equals the library's own forward / reconstruction (tests/fixtures/make_library_outputs.py)
    on the same inputs."""
    ref = references(tset_info)
    tset = load_transcoders(FIXTURES / tset_info["path"], activation=declared(tset_info))
    x = {layer: ref[f"x.{layer}"].float() for layer in tset.layers}
    with torch.no_grad():
        acts = {layer: tset[layer].encode(x[layer]) for layer in tset.layers}
        for layer in tset.layers:
            theirs = LIBRARY_OUTPUTS[f"{_key(tset_info)}/out.{layer}"]
            ours = tset.output(layer, acts, x[layer])
            torch.testing.assert_close(ours, theirs, atol=2e-6, rtol=1e-5)


# --------------------------------------------------------------------------------------------
# the documented jobs through the CLI, as a user runs them


@pytest.fixture
def user_files(tmp_path: Path, tset_info: dict[str, Any]) -> Path:
    task = DIGIT_TASK if tset_info["family"] in DIGIT_FAMILIES else TASK
    (tmp_path / "corpus.txt").write_text(CORPUS)
    (tmp_path / "task.jsonl").write_text("\n".join(json.dumps(row) for row in task))
    (tmp_path / "elsewhere").mkdir()
    return tmp_path


# Every ReLU cell a user would pair; the other kinds through every job on one family (gpt2):
# on llama their activations, forward, attribution and ablations are checked above and below.
# Gemma Scope 2 (JumpReLU + an affine skip) runs on its own model, Gemma 3.
EVERY_JOB = [
    s for s in SUPPORTED if s["kind"] == "relu" or s["family"] == "gpt2" or s["layout"] == GS2
]


@pytest.mark.slow
@pytest.mark.parametrize("tset_info", EVERY_JOB, ids=set_id)
def test_every_job_runs_from_the_registered_set(
    tset_info: dict[str, Any], user_files: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = str(user_files / "catalog")
    monkeypatch.chdir(FIXTURES)  # relative paths, as a user types them
    out = invoke(
        "ingest", "register", MODELS[tset_info["family"]]["path"],
        "--transcoders", tset_info["path"], "--device", "cpu", "--store", store,
        *activation_args(tset_info),
    )  # fmt: skip
    assert "registered:" in out
    monkeypatch.chdir(user_files / "elsewhere")  # every later job from another folder
    common = ["--store", store, "--device", "cpu"]
    out = invoke("ingest", "features", "--corpus", "../corpus.txt", "--batch-size", "4", *common)
    assert "live features" in out
    assert "VIRTUAL_WEIGHT" in invoke("ingest", "weights", *common)
    task = ["--task", "t", "--prompts", "../task.jsonl"]
    assert "2 written" in invoke("ingest", "prompts", *task, *common)
    assert "features" in invoke("circuit", "find", "--task", "t", "--top-n", "5", "--store", store)
    out = invoke("circuit", "verify", "t", "--prompts", "../task.jsonl", "--draws", "2", *common)
    assert "circuit (" in out
    with open_store(store) as s:
        (row,) = s.query("transcoder_sets")
        assert Path(row["source"]).is_absolute()
        before_post_norm = tset_info in POST_NORM_SETS  # the MLP module's output, no TL hook
        (hook,) = s.run_cypher("MATCH (t:TranscoderSet) RETURN t.output_hook").rows[0]
        assert (hook == "blocks.{layer}.mlp.hook_out") == before_post_norm, hook
        n = s.run_cypher("MATCH ()-[r:ATTRIBUTES]->() RETURN count(r)").rows[0][0]
        assert n > 0


def test_a_moved_model_folder_is_one_clear_line(tmp_path: Path) -> None:
    import shutil

    folder = tmp_path / "gpt2"
    shutil.copytree(FIXTURES / "models" / "gpt2", folder)
    store = str(tmp_path / "catalog")
    tc = str(FIXTURES / "transcoders" / "gpt2" / "circuit-tracer")
    invoke("ingest", "register", str(folder), "--transcoders", tc, "--store", store)
    shutil.move(folder, tmp_path / "moved")
    result = CliRunner().invoke(app, ["ingest", "weights", "--store", store])
    assert result.exit_code == 1
    assert "gone: pass its new place with --model PATH" in result.output
    assert "Traceback" not in result.output
    out = invoke("ingest", "weights", "--store", store, "--model", str(tmp_path / "moved"))
    assert "VIRTUAL_WEIGHT" in out


def test_a_gemma2_set_asking_for_center_unembed_records_request_and_applied(
    tmp_path: Path,
) -> None:
    """SAELens sets record the flags they pass to transformer_lens; on Gemma-2 (logit
    soft-capping) transformer_lens applies center_unembed=False whatever is asked, so the set
    fits the model as loaded. The catalog keeps both: the request (what later jobs load the
    model with) and what was applied."""
    s = next(x for x in SETS if x["family"] == "gemma2" and x["layout"] == "saelens-processed")
    assert s["model_from_pretrained_kwargs"] == dict.fromkeys(
        ("fold_ln", "center_writing_weights", "center_unembed"), True
    )
    store = str(tmp_path / "catalog")
    invoke("ingest", "register", str(model_dir(s)), "--transcoders", str(FIXTURES / s["path"]),
           "--store", store)  # fmt: skip
    with open_store(store) as catalog:
        (row,) = catalog.query("transcoder_sets")
        (full,) = catalog.query("transcoder_set", uid=row["uid"])
        (model,) = catalog.run_cypher("MATCH (m:Model) RETURN m.processing").rows
    asked = dict.fromkeys(("fold_ln", "center_writing_weights", "center_unembed"), True)
    applied = {"fold_ln": True, "center_writing_weights": True, "center_unembed": False}
    assert json.loads(full["processing"]) == asked | {f"{k}_applied": v for k, v in applied.items()}
    assert json.loads(model[0]) == applied | {f"{k}_requested": v for k, v in asked.items()}


def test_a_real_processing_mismatch_on_gemma2_is_still_refused() -> None:
    """Only what transformer_lens drops by itself is forgiven: a Gemma-2 model loaded without
    fold_ln does not fit a set that asks for it, and the message says what the request gives."""
    from circuitcat.catalog.errors import TranscoderLoadError
    from circuitcat.ingest.models import load_model

    s = next(x for x in SETS if x["family"] == "gemma2" and x["layout"] == "saelens-processed")
    unfolded = load_model(str(model_dir(s)), fold_ln=False, center_writing_weights=False)
    assert unfolded.processing["center_unembed"] is False  # asked True, soft-capped: dropped
    message = r"fold_ln=True.*applies center_unembed=False for that request.*fold_ln=False"
    with pytest.raises(TranscoderLoadError, match=message):
        load_transcoders(FIXTURES / s["path"], unfolded)


def test_forcing_other_processing_than_the_set_records_is_refused(tmp_path: Path) -> None:
    tc = str(FIXTURES / "transcoders" / "gpt2" / "saelens")
    args = ["ingest", "register", str(FIXTURES / "models" / "gpt2"), "--transcoders", tc]
    result = CliRunner().invoke(app, [*args, "--processing", "default", "--store", str(tmp_path)])
    assert result.exit_code == 1
    assert "Drop --processing" in result.output and result.output.count("\n") <= 3


# --------------------------------------------------------------------------------------------
# attribution on each family's real fixture


def family_set(family: str) -> dict[str, Any]:
    return next(s for s in SUPPORTED if s["family"] == family and s["layout"] == "saelens")


KIND_LAYOUTS = (
    "saelens-jumprelu",
    "saelens-skip",
    "saelens-jumprelu-skip",
    "circuit-tracer-jumprelu",
    "circuit-tracer-skip",
    "circuit-tracer-topk",
    "circuit-tracer-clt",
    "gemmascope-npz-jumprelu",
    GS2,
)
ATTRIBUTION_CASES = (
    [family_set(f) for f in FAMILIES]
    + [s for s in SUPPORTED if s["layout"] == "saelens-mlp-in"]
    + [s for s in SUPPORTED if s["layout"] in KIND_LAYOUTS]
)


@pytest.mark.parametrize("tset_info", ATTRIBUTION_CASES, ids=set_id)
def test_attribution_is_complete_and_matches_ablation(tset_info: dict[str, Any]) -> None:
    loaded, tset = load_pair(
        str(model_dir(tset_info)), str(FIXTURES / tset_info["path"]), activation=declared(tset_info)
    )
    tokens = load_file(str(FIXTURES / MODELS[tset_info["family"]]["reference"]))["tokens"]
    tokens = tokens.reshape(-1)
    targets = [LogitTarget(int(tokens[-1]))]
    graph = attribute(loaded, tset, tokens, targets, batch_size=32)
    completeness = assert_complete(graph)
    worst = frozen_ablation_error(freeze(loaded, tset, tokens), graph, pick_edges(graph))
    print(f"\n{set_id(tset_info):32s} {tset.kind:18s} completeness {completeness:.1e} "
          f"ablation {worst:.1e}")  # fmt: skip
    assert worst < 1e-4


# Gemma-2/3 sets declaring `mlp.hook_out`: the MLP module's output, before the post-MLP norm
POST_NORM_SETS = [
    s
    for s in SUPPORTED
    if s["family"] in ("gemma2", "gemma3")
    and s["layout"] in ("circuit-tracer", "gemmascope-npz-jumprelu")
]


@pytest.mark.parametrize("tset_info", POST_NORM_SETS, ids=set_id)
def test_a_set_writing_before_ln2_post_has_edges_the_real_model_follows(
    tset_info: dict[str, Any],
) -> None:
    """Remove a feature's (or error's) write from the MLP module's output in the real model,
    before its own ln2_post (held at ln2_post.hook_normalized, so transformer_lens applies
    ln2_post's w), with attention patterns and every normalisation scale frozen and the other
    MLP outputs held: destinations move by the edge weights. Wired to hook_mlp_out, after
    ln2_post, the edges missed ln2_post's w / s (circuit-tracer correlation 0.75-0.87)."""
    loaded, tset = load_pair(str(model_dir(tset_info)), str(FIXTURES / tset_info["path"]))
    model = loaded.model
    assert sorted(tset.post_norm) == tset.layers
    tokens = load_file(str(FIXTURES / MODELS[tset_info["family"]]["reference"]))["tokens"]
    tokens = tokens.reshape(-1)
    graph = attribute(loaded, tset, tokens, [LogitTarget(int(tokens[-1]))], batch_size=32)
    fp = freeze(loaded, tset, tokens)
    with torch.no_grad():
        _, clean = model.run_with_cache(tokens[None])
    held = [
        (name, lambda t, hook, v=value: v)
        for name, value in clean.items()
        if name.endswith(("hook_pattern", "hook_scale", "ln2_post.hook_normalized"))
    ]

    def readout(hooks: list[Any]) -> torch.Tensor:
        with torch.no_grad(), model.hooks(fwd_hooks=hooks):
            _, cache = model.run_with_cache(tokens[None])
        values = []
        for node in destinations(graph).tolist():
            layer, pos, index = (int(getattr(graph, c)[node]) for c in ("layer", "pos", "index"))
            if graph.kind[node] == NodeKind.TARGET:  # the logit before any soft cap
                final = cache["ln_final.hook_normalized"][0, -1] * model.ln_final.w
                values.append(final @ model.W_U[:, int(tokens[-1])] + model.b_U[int(tokens[-1])])
            else:
                x = cache[f"blocks.{layer}.ln2.hook_normalized"][0, pos]
                values.append(tset[layer].pre_acts(x)[index])
        return torch.stack(values)

    def changed_without(src: int) -> torch.Tensor:
        layer, pos = int(graph.layer[src]), int(graph.pos[src])
        name = f"blocks.{layer}.ln2_post.hook_normalized"
        value = clean[name].clone()
        scale = clean[f"blocks.{layer}.ln2_post.hook_scale"][0, pos]
        value[0, pos] -= write_of(fp, graph, src) / scale
        return readout([*held, (name, lambda t, hook: value)])

    worst = real_ablation_error(graph, readout(held), changed_without, per_kind=4)
    assert worst < 1e-4


def test_a_saelens_set_declaring_mlp_hook_out_on_gemma_writes_before_ln2_post(
    tmp_path: Path,
) -> None:
    """`mlp.hook_out` means the MLP module's output in every loader, not only circuit-tracer's:
    a SAELens transcoder whose cfg names it gets the post-MLP norm, one naming hook_mlp_out not."""
    import shutil

    info = next(s for s in SUPPORTED if (s["family"], s["layout"]) == ("gemma2", "saelens"))
    folder = tmp_path / "saelens"
    shutil.copytree(FIXTURES / info["path"], folder)
    for cfg in folder.glob("*/cfg.json"):
        text = cfg.read_text()
        assert ".hook_mlp_out" in text
        cfg.write_text(re.sub(r"(blocks\.\d+)\.hook_mlp_out", r"\1.mlp.hook_out", text))
    _, before = load_pair(str(model_dir(info)), str(folder))
    _, after = load_pair(str(model_dir(info)), str(FIXTURES / info["path"]))
    assert sorted(before.post_norm) == before.layers and after.post_norm == {}


def test_matching_compares_residual_writes_across_the_post_norm() -> None:
    """`circuit compare` across two sets matches decoders as written into the residual stream:
    a set writing before ln2_post matches, at cosine 1, the same features written after it
    (decoders times ln2_post's w)."""
    import copy

    from circuitcat.ingest.matching import match_features

    info = next(s for s in POST_NORM_SETS if s["family"] == "gemma2")
    _, before = load_pair(str(model_dir(info)), str(FIXTURES / info["path"]))
    after = copy.deepcopy(before)
    with torch.no_grad():
        for layer, norm in before.post_norm.items():
            after[layer].W_dec.mul_(norm.w)
    after.post_norm = {}
    found = match_features(before, "a", after, "b", threshold=0.7)
    n = sum(before[layer].cfg.d_transcoder for layer in before.layers)
    assert len(found.pairs) == n and min(found.cosine.values()) > 1 - 1e-5


@pytest.mark.parametrize("tset_info", POST_NORM_SETS, ids=set_id)
def test_the_weights_of_a_set_writing_before_ln2_post_include_its_weight(
    tset_info: dict[str, Any],
) -> None:
    """The input-invariant weights (VIRTUAL_WEIGHT, DEEMBEDS via skips, PROMOTES, top logits)
    read a feature's residual write per unit of activation: in the real model, a decoder row
    added to ln2_post.hook_normalized (the norm's scale held out, as the weights leave it out)
    moves hook_mlp_out by that row times ln2_post's w, which `decoder_sum` must give."""
    from circuitcat.ingest.weights import logit_edges

    loaded, tset = load_pair(str(model_dir(tset_info)), str(FIXTURES / tset_info["path"]))
    model = loaded.model
    tokens = load_file(str(FIXTURES / MODELS[tset_info["family"]]["reference"]))["tokens"]
    with torch.no_grad():
        _, clean = model.run_with_cache(tokens.reshape(1, -1))
    for layer in tset.layers:
        name = f"blocks.{layer}.ln2_post.hook_normalized"
        writes = tset.decoder_sum(layer).detach()
        for feature in range(3):
            row = tset[layer].W_dec[feature].detach()
            value = clean[name].clone()
            value[0, 0] += row
            hook = (name, lambda t, hook, v=value: v)
            with torch.no_grad(), model.hooks(fwd_hooks=[hook]):
                _, moved = model.run_with_cache(tokens.reshape(1, -1))
            out = f"blocks.{layer}.hook_mlp_out"
            measured = moved[out][0, 0] - clean[out][0, 0]
            torch.testing.assert_close(writes[feature], measured, rtol=1e-4, atol=1e-5)
            assert not torch.allclose(row, measured, rtol=1e-2, atol=1e-3)  # w is not 1
    (edges, *_) = logit_edges(tset, model.W_U, k=4, layers=[tset.layers[0]])
    src, dst = edges.src_index[0], edges.dst_index[0]
    expect = tset.decoder_sum(tset.layers[0]).detach()[src] @ model.W_U.detach()[:, dst]
    assert edges.w_raw is not None
    torch.testing.assert_close(edges.w_raw[0], expect, rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------------------------
# what the files cannot say is declared, and checked


@pytest.mark.parametrize("layout", ["circuit-tracer-jumprelu", "saelens-skip"])
def test_a_topk_declaration_that_contradicts_the_files_is_refused(
    layout: str, tmp_path: Path
) -> None:
    """Only ReLU files can be declared TopK (circuit-tracer's TopK files look like ReLU ones);
    a JumpReLU set is refused in one line and nothing is written. A skip set is ReLU + skip, so
    it may be declared TopK: the skip stays."""
    store = str(tmp_path / "catalog")
    s = next(x for x in SETS if x["family"] == "gpt2" and x["layout"] == layout)
    args = ["ingest", "register", str(model_dir(s)), "--transcoders", str(FIXTURES / s["path"])]
    result = CliRunner().invoke(app, [*args, "--activation", "topk:8", "--store", store])
    with open_store(store) as catalog:
        registered = catalog.query("transcoder_sets")
    if s["kind"] == "jumprelu":
        assert result.exit_code == 1 and result.output.startswith("error:")
        assert "cannot override" in result.output and "Traceback" not in result.output
        assert registered == []
    else:
        assert result.exit_code == 0, result.output
        (row,) = registered
        with open_store(store) as catalog:
            (full,) = catalog.query("transcoder_set", uid=row["uid"])
        assert full["activation"] == "topk:8"


def test_the_declared_activation_travels_with_the_set(tmp_path: Path) -> None:
    """Registered with --activation topk:8, every later job reloads the set as TopK."""
    s = next(x for x in SETS if x["family"] == "gpt2" and x["layout"] == "circuit-tracer-topk")
    store = str(tmp_path / "catalog")
    invoke("ingest", "register", str(model_dir(s)), "--transcoders", str(FIXTURES / s["path"]),
           "--activation", "topk:8", "--store", store)  # fmt: skip
    from circuitcat.ingest.inputs import load_registered

    with open_store(store) as catalog:
        _, tset = load_registered(catalog)
    assert tset.activation == "topk:8" and tset[0].k == 8
    result = CliRunner().invoke(
        app, ["ingest", "register", str(model_dir(s)), "--transcoders",
              str(FIXTURES / s["path"]), "--store", store],
    )  # fmt: skip
    assert result.exit_code == 1 and "another --activation" in result.output


# --------------------------------------------------------------------------------------------
# the support matrix in the docs


def support_matrix() -> str:
    """The docs table: one row per set in the manifest, what loads and what is refused."""
    lines = [
        "| family | layout | library | kind | " + " | ".join(JOBS) + " |",
        "|---|---|---|---|" + "---|" * len(JOBS),
    ]
    for s in SETS:
        model = MODELS[s["family"]]["class"]
        if s in REFUSED:
            marks = ["refused"] + ["-"] * (len(JOBS) - 1)
        elif declared(s):
            marks = [f"yes (`--activation {declared(s)}`)"] + ["yes"] * (len(JOBS) - 1)
        else:
            marks = ["yes"] * len(JOBS)
        lines.append(
            f"| {s['family']} (`{model}`) | {s['layout']} | {s['library']} "
            f"{s['library_version']} | {s['kind']} | " + " | ".join(marks) + " |"
        )
    return "\n".join(lines)


def test_docs_carry_the_support_matrix() -> None:
    text = DOC.read_text()
    match = re.search(r"<!-- support-matrix -->\n(.*?)\n<!-- /support-matrix -->", text, re.S)
    expected = support_matrix()
    assert match is not None and match.group(1) == expected, (
        "docs/ingest-your-model.md's support matrix is stale; put this between the "
        f"<!-- support-matrix --> markers:\n{expected}"
    )
