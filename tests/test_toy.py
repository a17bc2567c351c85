"""The shipped toy model toy-years: tokenizer, corpus, committed weights and their targets."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
import torch
from transformers import PreTrainedTokenizerFast
from typer.testing import CliRunner

from circuitcat.catalog.errors import ModelLoadError
from circuitcat.cli.toy import app
from circuitcat.ingest.evaluate import EvalReport, replacement_hooks, task_scores
from circuitcat.ingest.tasks import GREATER_THAN_SPLITS, greater_than
from circuitcat.ingest.toy import corpus
from circuitcat.ingest.toy.evaluation import evaluate_toy
from circuitcat.ingest.toy.model import (
    TOY_MODEL_NAME,
    WEIGHTS_DIR,
    load_toy_model,
    load_toy_transcoders,
    read_toy_config,
)
from circuitcat.ingest.toy.tokenizer import build_tokenizer, load_tokenizer, save_tokenizer
from circuitcat.ingest.toy.train import ToyTrainConfig, train_toy
from circuitcat.ingest.transcoders.training import TranscoderTrainConfig


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> PreTrainedTokenizerFast:
    return load_tokenizer(save_tokenizer(tmp_path_factory.mktemp("tok")))


@pytest.fixture(scope="module")
def report() -> EvalReport:
    return evaluate_toy(n=200)


def test_tokenizer_round_trip(tokenizer: PreTrainedTokenizerFast) -> None:
    text = "the war lasted from the year 17 32 to the year 17 ."
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert tokenizer.decode(ids) == text
    assert tokenizer.tokenize("The war lasted from 1732") == [
        "the",
        "war",
        "lasted",
        "from",
        "17",
        "32",
    ]
    assert tokenizer.tokenize("frobnicate") == ["<|unk|>"]
    assert 300 <= len(tokenizer) <= 600
    assert tokenizer.bos_token == "<|bos|>" and tokenizer.pad_token == "<|pad|>"


def test_year_halves_are_single_tokens(tokenizer: PreTrainedTokenizerFast) -> None:
    ids = [tokenizer.encode(f"{y:02d}", add_special_tokens=False) for y in range(100)]
    assert all(len(i) == 1 for i in ids) and len({i[0] for i in ids}) == 100
    assert tokenizer.encode("17", add_special_tokens=False) == ids[17]  # century == year half


def test_committed_tokenizer_matches_the_code() -> None:
    committed = load_tokenizer(WEIGHTS_DIR / "tokenizer")
    assert committed.get_vocab() == build_tokenizer().get_vocab()


def test_corpus_is_deterministic() -> None:
    assert corpus.generate_texts(5, 40) == corpus.generate_texts(5, 40)
    assert corpus.generate_texts(5, 40) != corpus.generate_texts(6, 40)
    tokens = corpus.encode_texts(
        corpus.generate_texts(5, 8), load_tokenizer(WEIGHTS_DIR / "tokenizer")
    )
    assert tokens.shape == (8, 32) and (tokens[:, 0] == 0).all()


EVAL_FRAME = re.compile(r"lasted from the year (\d\d) (\d\d) to the year \1 (\d\d)")
GT = re.compile(
    r"(?:started in the year|was born in|happened after the year) "
    r"(\d\d) (\d\d)(?: and ended in the year| and died in| , in the year) \1 (\d\d)"
)
LT = re.compile(
    r"(?:ended in the year|died in the year|happened before the year|lasted until the year) "
    r"(\d\d) (\d\d) (?:, having started in|and was born in|, in|, it began in) the year \1 (\d\d)"
)
LISTS = re.compile(r"(later|earlier) and \1 : ((?:\d\d \d\d ,? ?(?:and )?)+)\.")


def test_held_out_years_never_start_the_eval_frame() -> None:
    text = " ".join(corpus.generate_texts(0, 3000))
    frame, gt, lt = EVAL_FRAME.findall(text), GT.findall(text), LT.findall(text)
    assert len(frame) > 500 and len(gt) > 300 and len(lt) > 300
    train = set(GREATER_THAN_SPLITS["train"])
    assert all(int(start) in train and int(end) > int(start) for _, start, end in frame)
    assert all(int(end) > int(start) for _, start, end in gt)
    assert all(int(end) < int(start) for _, start, end in lt)
    for direction, body in LISTS.findall(text):
        halves = [int(h) for h in re.findall(r"\d\d", body)[1::2]]
        assert halves == sorted(halves, reverse=direction == "earlier") and len(set(halves)) > 2


def test_committed_model_loads_and_runs() -> None:
    started = time.perf_counter()
    model = load_toy_model()
    tset = load_toy_transcoders()
    logits = model(model.to_tokens(["the war lasted from the year 1732 to the year 17"]))
    assert time.perf_counter() - started < 30
    assert model.cfg.model_name == TOY_MODEL_NAME and model.cfg.n_layers == 4
    assert logits.shape == (1, 13, model.cfg.d_vocab) and torch.isfinite(logits).all()
    assert tset.model_name == TOY_MODEL_NAME and tset.layers == [0, 1, 2, 3]
    assert len(tset.sha256) == 64 and tset.format == "circuitcat"
    assert tset[0].cfg.d_in == model.cfg.d_model


def test_replacement_hooks_are_scoped() -> None:
    model, tset = load_toy_model(), load_toy_transcoders()
    task = greater_than(model.tokenizer, n=20, seed=1)
    base = task_scores(model, task)
    replaced = task_scores(model, task, replacement_hooks(tset, tset.layers))
    assert not torch.allclose(base, replaced)
    assert all(not hp.fwd_hooks for hp in model.hook_dict.values())
    assert torch.allclose(task_scores(model, task), base)


def test_greater_than_on_held_out_years(report: EvalReport) -> None:
    assert report.n_prompts == 200 and report.metric >= 0.80


def test_transcoders_meet_targets(report: EvalReport) -> None:
    assert [row.layer for row in report.layers] == [0, 1, 2, 3]
    for row in report.layers:
        assert row.fvu <= 0.15 and row.l0 <= 40 and row.dead_fraction <= 0.20, row


def test_all_mlps_replaced_keeps_the_metric(report: EvalReport) -> None:
    assert report.kept_fraction >= 0.85


def test_committed_record_matches_measurement(report: EvalReport) -> None:
    recorded = read_toy_config()["metrics"]
    assert recorded["metric"] == pytest.approx(report.metric, abs=1e-4)
    assert recorded["metric_all_replaced"] == pytest.approx(report.metric_all_replaced, abs=1e-4)


def test_missing_weights(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="circuitcat toy train"):
        load_toy_model(weights_dir=tmp_path)


def test_cli_eval_json_and_errors() -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["eval", "--format", "json", "--n", "20", "--threads", "1"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["n_prompts"] == 20 and len(data["layers"]) == 4
    failed = runner.invoke(app, ["eval", "--n", "0", "--threads", "1"])
    assert failed.exit_code == 1 and "error:" in failed.stderr and "asked for 0" in failed.stderr


def test_train_toy_smoke(tmp_path: Path) -> None:
    tc_cfg = TranscoderTrainConfig(d_transcoder=32, steps=20, batch_size=256, resample_every=10)
    cfg = ToyTrainConfig(
        steps=20,
        eval_every=10,
        n_val_prompts=20,
        tc_train_sequences=64,
        tc_eval_sequences=32,
        transcoders=tc_cfg,
    )
    result = train_toy(tmp_path, cfg)
    assert [h[0] for h in result.history] == [10, 20] and result.best_step in (10, 20)
    model = load_toy_model(weights_dir=tmp_path)
    tset = load_toy_transcoders(weights_dir=tmp_path)
    assert tset.d_transcoder == 32 and tset.layers == [0, 1, 2, 3]
    assert read_toy_config(tmp_path)["training"]["steps"] == 20
    assert model.cfg.d_vocab == load_toy_model().cfg.d_vocab
    assert not torch.are_deterministic_algorithms_enabled()
