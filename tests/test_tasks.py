"""Tasks: greater-than prompts and metric with the toy tokenizer and a GPT-2-like one; JSONL."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
from tokenizers import Regex, Tokenizer, pre_tokenizers
from tokenizers.models import WordLevel
from transformers import PreTrainedTokenizerFast

from circuitcat.catalog.errors import TaskError
from circuitcat.ingest.tasks import (
    BUILTIN_TASKS,
    GREATER_THAN_NOUNS,
    GREATER_THAN_SPLITS,
    NUMBER_WORDS,
    batch_tokens,
    counting,
    greater_than,
    less_than,
    load_jsonl_task,
    load_task,
    prob_diff,
    score,
    verify_size,
    year_token_ids,
)
from circuitcat.ingest.toy.tokenizer import load_tokenizer, save_tokenizer
from circuitcat.ingest.toy.words import NUMBER_WORDS as TOY_NUMBER_WORDS


@pytest.fixture(scope="module")
def toy_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> PreTrainedTokenizerFast:
    return load_tokenizer(save_tokenizer(tmp_path_factory.mktemp("tok")))


def gpt2_like_tokenizer(
    with_years: bool = True, extra: Sequence[str] = ()
) -> PreTrainedTokenizerFast:
    """Splits like GPT-2: " 1732" -> " 17" + "32"; words carry their leading space."""
    words = ["The", "<|endoftext|>", ",", '"'] + [f" {w}" for w in GREATER_THAN_NOUNS]
    words += [w for w in extra if w not in words]
    words += [" lasted", " from", " the", " year", " to", " Paris", " Rome", " is", " in"]
    words += [f" {c}" for c in range(10, 20)]
    if with_years:
        words += [f"{y:02d}" for y in range(100)]
    tok = Tokenizer(WordLevel({w: i for i, w in enumerate(words)}, unk_token="<|endoftext|>"))
    pattern = Regex(r" ?\d\d| ?[A-Za-z]+| ?[^\sA-Za-z\d]+")
    tok.pre_tokenizer = pre_tokenizers.Split(pattern, behavior="isolated")
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )


def test_splits_are_disjoint_and_cover_valid_years() -> None:
    train, val, ev = (set(GREATER_THAN_SPLITS[k]) for k in ("train", "val", "eval"))
    assert not (train & val or train & ev or val & ev)
    assert train | val | ev == set(range(2, 99)) == set(GREATER_THAN_SPLITS["all"])
    assert len(ev) == 20 and {0, 1, 99}.isdisjoint(train | val | ev)


def test_greater_than_toy(toy_tokenizer: PreTrainedTokenizerFast) -> None:
    task = greater_than(toy_tokenizer, n=200, seed=0, split="eval")
    assert task.name == "greater-than" and task.metric == "prob_diff" and len(task.prompts) == 200
    assert len({p.text for p in task.prompts}) == 200
    years = year_token_ids(toy_tokenizer).tolist()
    for p in task.prompts:
        yy = int(p.start_year or "")
        assert p.answer == ("99" if yy == 98 else f"{yy + 1:02d}..99")
        assert yy in GREATER_THAN_SPLITS["eval"]
        assert p.tokens[0] == toy_tokenizer.bos_token_id
        assert p.tokens[-5] == years[yy] and p.text.startswith("The ")
        assert set(p.correct) == set(years[yy + 1 :]) and set(p.incorrect) == set(years[: yy + 1])
    assert greater_than(toy_tokenizer, n=50, seed=3) == greater_than(toy_tokenizer, n=50, seed=3)


def test_greater_than_gpt2_like() -> None:
    tokenizer = gpt2_like_tokenizer()
    task = greater_than(tokenizer, n=20, seed=1, split="all")
    prompt = task.prompts[0]
    pieces = tokenizer.convert_ids_to_tokens(list(prompt.tokens))
    assert pieces[0] == "<|endoftext|>" and pieces[1] == "The"
    assert pieces[-1].startswith(" ") and pieces[-5] == prompt.start_year  # " 17" ... "32"


def test_year_halves_must_be_single_tokens() -> None:
    with pytest.raises(TaskError, match="'00' is not in the tokenizer's vocabulary"):
        greater_than(gpt2_like_tokenizer(with_years=False), n=5)


def test_bad_arguments(toy_tokenizer: PreTrainedTokenizerFast) -> None:
    with pytest.raises(TaskError, match="unknown split"):
        greater_than(toy_tokenizer, n=5, split="test")  # type: ignore[arg-type]
    with pytest.raises(TaskError, match="asked for 0"):
        greater_than(toy_tokenizer, n=0)


def test_prob_diff_values() -> None:
    year_ids = torch.arange(100) + 7
    yy = torch.tensor([32, 50, 98])
    uniform = torch.zeros(3, 120)
    expected = torch.tensor([(99 - 32 - 33) / 100, (49 - 51) / 100, (1 - 99) / 100])
    assert torch.allclose(prob_diff(uniform, yy, year_ids), expected)
    perfect = torch.full((3, 120), -30.0)
    perfect[:, year_ids[99]] = 30.0
    perfect[:, 0] = 100.0  # non-year tokens never count: the softmax is restricted
    assert torch.allclose(prob_diff(perfect, yy, year_ids), torch.ones(3))


def test_generic_score_matches_prob_diff(toy_tokenizer: PreTrainedTokenizerFast) -> None:
    task = greater_than(toy_tokenizer, n=16, seed=2)
    logits = torch.randn(16, len(toy_tokenizer), generator=torch.Generator().manual_seed(0))
    yy = torch.tensor([int(p.start_year or "") for p in task.prompts])
    direct = prob_diff(logits, yy, year_token_ids(toy_tokenizer))
    assert torch.allclose(score("prob_diff", logits, task.prompts), direct, atol=1e-6)


def write_jsonl(path: Path, rows: Sequence[object]) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def test_jsonl_task(tmp_path: Path) -> None:
    tokenizer = gpt2_like_tokenizer()
    rows = [
        {"prompt": "The war is in", "correct": [" Paris"], "incorrect": [" Rome"]},
        "",
        {"prompt": "The siege is in", "correct": [" Rome"], "incorrect": [" Paris", " in"]},
    ]
    task = load_jsonl_task(write_jsonl(tmp_path / "capitals.jsonl", rows), tokenizer)
    assert task.name == "capitals" and task.metric == "logit_diff" and len(task.prompts) == 2
    assert [(p.answer, p.start_year) for p in task.prompts] == [(" Paris", None), (" Rome", None)]
    both = [{"prompt": "The war is in", "correct": [" Paris", " Rome"], "incorrect": [" in"]}]
    (p,) = load_jsonl_task(write_jsonl(tmp_path / "two.jsonl", both), tokenizer).prompts
    assert p.answer == " Paris| Rome"  # every correct token, as the file writes them
    vocab = tokenizer.get_vocab()
    logits = torch.zeros(2, len(vocab))
    logits[0, vocab[" Paris"]] = 3.0
    logits[1, vocab[" in"]] = 4.0
    assert torch.allclose(score("logit_diff", logits, task.prompts), torch.tensor([3.0, -2.0]))
    tokens, last = batch_tokens(task.prompts, pad_id=0)
    assert tokens.shape == (2, 5) and last.tolist() == [4, 4]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{oops", "capitals.jsonl:2: not valid JSON"),
        ("[1, 2]", "capitals.jsonl:2: expected a JSON object"),
        ('{"correct": [" Paris"], "incorrect": [" Rome"]}', "capitals.jsonl:2: field 'prompt'"),
        ('{"prompt": "The war", "incorrect": [" Rome"]}', "capitals.jsonl:2: field 'correct'"),
        ('{"prompt": "The war", "correct": [" Paris"], "incorrect": []}', "field 'incorrect'"),
        ('{"prompt": "x", "correct": [" Paris Rome"], "incorrect": [" Rome"]}', "2 tokens"),
    ],
)
def test_jsonl_errors(tmp_path: Path, line: str, message: str) -> None:
    good = {"prompt": "The war is in", "correct": [" Paris"], "incorrect": [" Rome"]}
    path = write_jsonl(tmp_path / "capitals.jsonl", [good, line])
    with pytest.raises(TaskError, match=message):
        load_jsonl_task(path, gpt2_like_tokenizer())


def test_jsonl_missing_and_empty(tmp_path: Path) -> None:
    with pytest.raises(TaskError, match="does not exist"):
        load_jsonl_task(tmp_path / "nope.jsonl", gpt2_like_tokenizer())
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(TaskError, match="has no prompts"):
        load_jsonl_task(tmp_path / "empty.jsonl", gpt2_like_tokenizer())


# ---- the built-in task registry (issue 20) ---------------------------------------------------


def test_registry_builds_every_builtin_task(toy_tokenizer: PreTrainedTokenizerFast) -> None:
    assert list(BUILTIN_TASKS) == ["greater-than", "less-than", "counting"]
    for name, spec in BUILTIN_TASKS.items():
        task = load_task(name, toy_tokenizer)
        assert task.name == name == spec.name and task.metric == spec.metric
        assert len(task.prompts) == min(spec.default_n, spec.available())
        assert len({p.text for p in task.prompts}) == len(task.prompts)
        for p in task.prompts:
            assert p.correct and p.incorrect and not set(p.correct) & set(p.incorrect)
        assert load_task(name, toy_tokenizer, n=5, seed=4) == load_task(
            name, toy_tokenizer, n=5, seed=4
        )
        assert verify_size(name) == min(spec.verify_n, spec.available())
    # greater-than is unchanged by the registry: the same prompts as before
    assert load_task("greater-than", toy_tokenizer) == greater_than(toy_tokenizer, n=100)


def test_less_than_answers_are_earlier_years(toy_tokenizer: PreTrainedTokenizerFast) -> None:
    task = less_than(toy_tokenizer, n=100, seed=0, split="eval")
    years = year_token_ids(toy_tokenizer).tolist()
    for p in task.prompts:
        yy = int(p.start_year or "")
        assert p.answer == f"00..{yy - 1:02d}"
        assert yy in GREATER_THAN_SPLITS["eval"] and "lasted until" in p.text
        assert p.tokens[-8] == years[yy]
        assert set(p.correct) == set(years[:yy]) and set(p.incorrect) == set(years[yy:])
    gpt2 = gpt2_like_tokenizer(extra=[" until", ",", " it", " began"])
    assert len(less_than(gpt2, n=10, split="all").prompts) == 10


def test_counting_prompts(toy_tokenizer: PreTrainedTokenizerFast) -> None:
    task = counting(toy_tokenizer, n=70, split="all")
    assert len(task.prompts) == 70 == BUILTIN_TASKS["counting"].available("all")
    for p in task.prompts:
        words = p.text.removeprefix("count : ").split()
        start = NUMBER_WORDS.index(words[0])
        assert words == list(NUMBER_WORDS[start : start + len(words)]) and 2 <= len(words) <= 5
        assert p.answer == NUMBER_WORDS[start + len(words)] and p.start_year is None
        assert toy_tokenizer.decode(list(p.correct)).strip() == p.answer
        assert len(p.incorrect) == len(NUMBER_WORDS) - 1
    held_out = counting(toy_tokenizer, n=14, split="eval")
    assert {NUMBER_WORDS.index(p.answer) % 5 for p in held_out.prompts} == {3}
    assert NUMBER_WORDS == TOY_NUMBER_WORDS  # the toy's corpus counts with the same words


def test_unknown_task_names_the_builtin_ones(toy_tokenizer: PreTrainedTokenizerFast) -> None:
    with pytest.raises(TaskError, match="built-in tasks are greater-than, less-than, counting"):
        load_task("nope", toy_tokenizer)
    with pytest.raises(TaskError, match=r"split 'all' has 1\.\.70"):
        load_task("counting", toy_tokenizer, n=71)
