"""Tasks: prompts with answer tokens and a metric over the logits at the last position.

Built-in tasks are first-class definitions in `BUILTIN_TASKS` (name -> `TaskSpec`: splits,
answer set, metric, default sizes); `load_task(name, ...)` builds any of them, and
`circuitcat ... --task NAME` takes any of their names:

- `greater-than` (Hanna et al.; the transcoder paper's circuit), described below.
- `less-than`: "The <noun> lasted until the year <C><YY>, it began in the year <C>"; the answer
  must be an earlier year: sum p(y < YY) - sum p(y >= YY) over the year tokens (the same
  restricted softmax). It shares the year machinery with greater-than (the toy's corpus has
  less-than frames, every start year); its splits are greater-than's, on the start year.
- `counting`: "count : three four five" -> "six" (two to five number words shown, from
  "zero".."twenty"); p(the next number word) - p(any other number word), softmax restricted to
  the 21 number words. Unrelated to years. Splits on the answer (3 mod 5 eval, multiples of 10
  val, the rest train); the toy's corpus counts with every number, so its default split is all.

Greater-than prompts read
"The <noun> lasted from the year <C><YY> to the year <C>"; the metric is the probability
difference over the two-digit year tokens "00".."99" with the softmax restricted to them:
sum p(y > YY) - sum p(y <= YY). The text writes the year unsplit ("1732"): GPT-2 splits it into
" 17" + "32" and the toy tokenizer cuts digit runs into pairs, so one template serves both.

Custom tasks come from JSONL, one prompt a line:
    {"prompt": "...", "correct": [" Paris"], "incorrect": [" Rome", " Berlin"]}
scored by logit difference (mean correct logit minus mean incorrect logit).

Start years YY of greater-than are split so a model can be tested on years it never saw as the
start of a greater-than sentence (`GREATER_THAN_SPLITS`); "00", "01" and "99" are never used.
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor

from circuitcat.catalog.errors import TaskError
from circuitcat.catalog.schema import year_answer

Split = Literal["train", "val", "eval", "all"]
Metric = Literal["prob_diff", "logit_diff"]

GREATER_THAN_TEMPLATE = "The {noun} lasted from the year {century}{yy:02d} to the year {century}"
GREATER_THAN_CENTURIES: tuple[int, ...] = tuple(range(11, 18))
# Nouns of the paper's greater-than prompts that are single words in the toy vocabulary too.
GREATER_THAN_NOUNS: tuple[str, ...] = (
    "war", "siege", "reign", "drought", "famine", "journey", "expedition", "trial", "strike",
    "rebellion", "treaty", "plague", "voyage", "campaign", "dynasty", "occupation", "crisis",
    "festival", "project", "study", "marriage", "friendship", "rivalry", "dispute", "alliance",
    "kingdom", "empire", "revolt", "exile", "tour", "pilgrimage", "quest", "epidemic", "boom",
    "recession", "experiment", "construction", "investigation", "negotiation", "conflict",
    "invasion", "mission", "program", "insurgency", "outbreak", "blockade", "truce", "feud",
)  # fmt: skip
VALID_START_YEARS: tuple[int, ...] = tuple(range(2, 99))
GREATER_THAN_SPLITS: dict[str, tuple[int, ...]] = {
    "eval": tuple(y for y in VALID_START_YEARS if y % 5 == 3),
    "val": tuple(y for y in VALID_START_YEARS if y % 10 == 0),
    "train": tuple(y for y in VALID_START_YEARS if y % 5 != 3 and y % 10 != 0),
    "all": VALID_START_YEARS,
}


@dataclass(frozen=True)
class TaskPrompt:
    """One prompt: its text, token ids (BOS first), its answer (the correct tokens as text:
    "24..99" for a greater-than prompt whose start year is 23, "four", " Paris| London"), the
    scored token ids and, for the year tasks only, the start year YY ("23")."""

    text: str
    tokens: tuple[int, ...]
    answer: str
    correct: tuple[int, ...]
    incorrect: tuple[int, ...]
    start_year: str | None = None


@dataclass(frozen=True)
class Task:
    """A named set of prompts and the metric that scores the last-position logits."""

    name: str
    metric: Metric
    description: str
    prompts: tuple[TaskPrompt, ...]


def _encode(tokenizer: Any, text: str) -> list[int]:
    ids = list(tokenizer.encode(text, add_special_tokens=False))
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        bos = getattr(tokenizer, "eos_token_id", None)
    return ([int(bos)] if bos is not None else []) + [int(i) for i in ids]


def _decode(tokenizer: Any, token_id: int) -> str:
    return str(tokenizer.decode([token_id])).strip()


def single_token_id(tokenizer: Any, text: str) -> int:
    """The id of `text` when it is one token; TaskError otherwise."""
    ids = tokenizer.encode(text, add_special_tokens=False)
    if len(ids) != 1:
        raise TaskError(
            f"{text!r} is {len(ids)} tokens for this tokenizer, expected exactly 1; "
            "use a tokenizer whose vocabulary has it as one token"
        )
    unk = getattr(tokenizer, "unk_token_id", None)
    if unk is not None and ids[0] == unk and text != getattr(tokenizer, "unk_token", None):
        raise TaskError(f"{text!r} is not in the tokenizer's vocabulary, expected one token")
    return int(ids[0])


def year_token_ids(tokenizer: Any) -> Int[Tensor, "100"]:
    """Token ids of the two-digit year halves "00".."99", in order."""
    return torch.tensor([single_token_id(tokenizer, f"{y:02d}") for y in range(100)])


def prob_diff(
    logits_last: Float[Tensor, "batch d_vocab"],
    yy: Int[Tensor, " batch"],
    year_ids: Int[Tensor, "100"],
) -> Float[Tensor, " batch"]:
    """sum p(y > YY) - sum p(y <= YY), softmax restricted to the year tokens."""
    probs = torch.softmax(logits_last[:, year_ids].float(), dim=-1)
    above = torch.arange(100, device=probs.device)[None, :] > yy.to(probs.device)[:, None]
    return (probs * above).sum(-1) - (probs * ~above).sum(-1)


@dataclass(frozen=True)
class _YearFrame:
    """A year-comparison task: its template, the direction of the answer, and how far from the
    end the start year YY sits in the token ids (the last token is the century)."""

    name: str
    template: str
    later: bool  # greater-than: correct years > YY; less-than: correct years < YY
    yy_from_end: int
    description: str


GREATER_THAN_FRAME = _YearFrame(
    "greater-than",
    GREATER_THAN_TEMPLATE,
    True,
    6,
    "p(year > YY) - p(year <= YY) over the tokens 00..99 after "
    "'The <noun> lasted from the year <C><YY> to the year <C>'",
)
LESS_THAN_TEMPLATE = (
    "The {noun} lasted until the year {century}{yy:02d}, it began in the year {century}"
)
LESS_THAN_FRAME = _YearFrame(
    "less-than",
    LESS_THAN_TEMPLATE,
    False,
    8,
    "p(year < YY) - p(year >= YY) over the tokens 00..99 after "
    "'The <noun> lasted until the year <C><YY>, it began in the year <C>'",
)


def _year_task(frame: _YearFrame, tokenizer: Any, n: int, seed: int, split: Split) -> Task:
    if split not in GREATER_THAN_SPLITS:
        raise TaskError(f"unknown split {split!r}; use one of {sorted(GREATER_THAN_SPLITS)}")
    year_ids = year_token_ids(tokenizer).tolist()
    combos = list(
        itertools.product(GREATER_THAN_NOUNS, GREATER_THAN_CENTURIES, GREATER_THAN_SPLITS[split])
    )
    if not 1 <= n <= len(combos):
        raise TaskError(f"asked for {n} {frame.name} prompts; split {split!r} has 1..{len(combos)}")
    random.Random(seed).shuffle(combos)
    prompts: list[TaskPrompt] = []
    for noun, century, yy in combos:
        text = frame.template.format(noun=noun, century=century, yy=yy)
        tokens = _encode(tokenizer, text)
        # Skip the rare year a tokenizer merges differently (the paper drops those too).
        near_end = tokens[-frame.yy_from_end :]
        if year_ids[yy] not in near_end or _decode(tokenizer, tokens[-1]) != str(century):
            continue
        later, earlier = tuple(year_ids[yy + 1 :]), tuple(year_ids[: yy + 1])
        if not frame.later:
            later, earlier = tuple(year_ids[yy:]), tuple(year_ids[:yy])
        prompts.append(
            TaskPrompt(
                text=text,
                tokens=tuple(tokens),
                answer=year_answer(yy, frame.later),
                correct=later if frame.later else earlier,
                incorrect=earlier if frame.later else later,
                start_year=f"{yy:02d}",
            )
        )
        if len(prompts) == n:
            break
    if len(prompts) < n:
        raise TaskError(
            f"only {len(prompts)} of {n} {frame.name} prompts tokenize with the year split into "
            "two-digit halves; use a tokenizer that splits years like GPT-2 or ask for fewer"
        )
    return Task(
        name=frame.name, metric="prob_diff", description=frame.description, prompts=tuple(prompts)
    )


def greater_than(tokenizer: Any, n: int = 200, seed: int = 0, split: Split = "eval") -> Task:
    """`n` distinct greater-than prompts with start years from `split`."""
    return _year_task(GREATER_THAN_FRAME, tokenizer, n, seed, split)


def less_than(tokenizer: Any, n: int = 200, seed: int = 0, split: Split = "eval") -> Task:
    """`n` distinct less-than prompts with start years from `split` (greater-than's splits)."""
    return _year_task(LESS_THAN_FRAME, tokenizer, n, seed, split)


NUMBER_WORDS: tuple[str, ...] = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
    "eighteen", "nineteen", "twenty",
)  # fmt: skip
COUNTING_SHOWN: tuple[int, ...] = (2, 3, 4, 5)  # number words shown before the answer
COUNTING_ANSWERS: tuple[int, ...] = tuple(range(2, len(NUMBER_WORDS)))
COUNTING_SPLITS: dict[str, tuple[int, ...]] = {
    "eval": tuple(a for a in COUNTING_ANSWERS if a % 5 == 3),
    "val": tuple(a for a in COUNTING_ANSWERS if a % 10 == 0),
    "train": tuple(a for a in COUNTING_ANSWERS if a % 5 != 3 and a % 10 != 0),
    "all": COUNTING_ANSWERS,
}


def counting(tokenizer: Any, n: int = 70, seed: int = 0, split: Split = "all") -> Task:
    """`n` distinct counting prompts "count : <k words>" whose answer (the next number word)
    is in `split`; the metric is p(answer) - p(other number words)."""
    if split not in COUNTING_SPLITS:
        raise TaskError(f"unknown split {split!r}; use one of {sorted(COUNTING_SPLITS)}")
    ids = [single_token_id(tokenizer, w) for w in NUMBER_WORDS]
    combos = [(a, k) for a in COUNTING_SPLITS[split] for k in COUNTING_SHOWN if k <= a]
    if not 1 <= n <= len(combos):
        raise TaskError(f"asked for {n} counting prompts; split {split!r} has 1..{len(combos)}")
    random.Random(seed).shuffle(combos)
    prompts = []
    for a, k in combos[:n]:
        text = "count : " + " ".join(NUMBER_WORDS[a - k : a])
        others = tuple(i for j, i in enumerate(ids) if j != a)
        prompts.append(
            TaskPrompt(text, tuple(_encode(tokenizer, text)), NUMBER_WORDS[a], (ids[a],), others)
        )
    return Task(
        name="counting",
        metric="prob_diff",
        description="p(next number word) - p(other number words) over 'zero'..'twenty' after "
        "'count : <two to five number words in order>'",
        prompts=tuple(prompts),
    )


@dataclass(frozen=True)
class TaskSpec:
    """A built-in task: how its prompts are made, its splits (the values each split draws its
    prompts from), the metric, and its default sizes."""

    name: str
    metric: Metric
    description: str
    answers: str  # what the correct and incorrect token sets are, in words
    splits: dict[str, tuple[int, ...]]
    default_split: Split
    default_n: int  # prompts for `ingest prompts` / `circuit find`
    verify_n: int  # prompts for `circuit verify`
    build: Callable[[Any, int, int, Split], Task]

    def available(self, split: Split | None = None) -> int:
        """How many distinct prompts `split` (default: the task's own) can give at most."""
        split = split or self.default_split
        if self.name == "counting":
            return sum(1 for a in self.splits[split] for k in COUNTING_SHOWN if k <= a)
        return len(GREATER_THAN_NOUNS) * len(GREATER_THAN_CENTURIES) * len(self.splits[split])


BUILTIN_TASKS: dict[str, TaskSpec] = {
    "greater-than": TaskSpec(
        "greater-than", "prob_diff", GREATER_THAN_FRAME.description,
        "correct: years > YY; incorrect: years <= YY", GREATER_THAN_SPLITS, "eval", 100, 200,
        lambda tok, n, seed, split: greater_than(tok, n=n, seed=seed, split=split),
    ),
    "less-than": TaskSpec(
        "less-than", "prob_diff", LESS_THAN_FRAME.description,
        "correct: years < YY; incorrect: years >= YY", GREATER_THAN_SPLITS, "eval", 100, 200,
        lambda tok, n, seed, split: less_than(tok, n=n, seed=seed, split=split),
    ),
    "counting": TaskSpec(
        "counting", "prob_diff", "p(next number word) - p(other number words)",
        "correct: the next number word; incorrect: the other 20 number words", COUNTING_SPLITS,
        "all", 40, 70, lambda tok, n, seed, split: counting(tok, n=n, seed=seed, split=split),
    ),
}  # fmt: skip


def builtin_task(name: str) -> TaskSpec:
    """The built-in task called `name`; TaskError naming the built-in ones otherwise."""
    if name not in BUILTIN_TASKS:
        raise TaskError(
            f"unknown task {name!r}: the built-in tasks are {', '.join(BUILTIN_TASKS)}; for "
            'another task pass --prompts FILE.jsonl (one {"prompt", "correct", "incorrect"} '
            "object a line)"
        )
    return BUILTIN_TASKS[name]


def _parse_line(tokenizer: Any, line: str, where: str) -> TaskPrompt:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as e:
        raise TaskError(f"{where}: not valid JSON ({e.msg}); write one JSON object a line") from e
    if not isinstance(row, dict):
        raise TaskError(f"{where}: expected a JSON object with prompt, correct, incorrect")
    prompt = row.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        raise TaskError(f"{where}: field 'prompt' must be a non-empty string")
    ids: dict[str, tuple[int, ...]] = {}
    for key in ("correct", "incorrect"):
        value = row.get(key)
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise TaskError(f"{where}: field {key!r} must be a non-empty list of token strings")
        try:
            ids[key] = tuple(single_token_id(tokenizer, v) for v in value)
        except TaskError as e:
            raise TaskError(f"{where}: field {key!r}: {e}") from e
    shared = set(ids["correct"]) & set(ids["incorrect"])
    both = sorted({v for v, i in zip(row["correct"], ids["correct"], strict=True) if i in shared})
    if both:
        raise TaskError(
            f"{where}: {both} is both correct and incorrect; a token can only be one of them"
        )
    return TaskPrompt(
        text=prompt,
        tokens=tuple(_encode(tokenizer, prompt)),
        answer="|".join(row["correct"]),
        correct=ids["correct"],
        incorrect=ids["incorrect"],
    )


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of a UTF-8 file, read as it goes; bad bytes name their line."""
    with path.open("rb") as f:
        for i, raw in enumerate(f, start=1):
            try:
                yield i, raw.decode("utf-8-sig" if i == 1 else "utf-8")
            except UnicodeDecodeError as e:
                raise TaskError(
                    f"{path}:{i}: not UTF-8 text (byte {e.start + 1} of the line); save the "
                    "task file as UTF-8"
                ) from e


def load_jsonl_task(
    path: Path, tokenizer: Any, name: str | None = None, n: int | None = None
) -> Task:
    """A custom task from a JSONL file (its first `n` prompts: the rest is never read), scored
    by logit difference."""
    if not path.is_file():
        raise TaskError(f"task file {path} does not exist")
    prompts: list[TaskPrompt] = []
    for i, line in _lines(path):
        if line.strip():
            prompts.append(_parse_line(tokenizer, line, f"{path}:{i}"))
        if n is not None and len(prompts) >= n:
            break
    if not prompts:
        raise TaskError(f"task file {path} has no prompts; write one JSON object a line")
    return Task(
        name=name or path.stem,
        metric="logit_diff",
        description=f"mean correct logit minus mean incorrect logit, prompts from {path.name}",
        prompts=tuple(prompts),
    )


def check_fits(task: Task, n_ctx: int) -> None:
    """Every prompt fits the model's context; TaskError naming the first that does not."""
    for i, p in enumerate(task.prompts, start=1):
        if len(p.tokens) > n_ctx:
            raise TaskError(
                f"prompt {i} of task {task.name!r} is {len(p.tokens)} tokens; the model reads "
                f"at most {n_ctx}: shorten it ({p.text[:40]!r}...)"
            )


def _id_mask(rows: Sequence[tuple[int, ...]], d_vocab: int) -> torch.Tensor:
    mask = torch.zeros(len(rows), d_vocab, dtype=torch.bool)
    for i, ids in enumerate(rows):
        mask[i, list(ids)] = True
    return mask


def score(
    metric: Metric, logits_last: Float[Tensor, "batch d_vocab"], prompts: Sequence[TaskPrompt]
) -> Float[Tensor, " batch"]:
    """The task metric of each prompt from its last-position logits."""
    logits = logits_last.float()
    correct = _id_mask([p.correct for p in prompts], logits.shape[-1]).to(logits.device)
    incorrect = _id_mask([p.incorrect for p in prompts], logits.shape[-1]).to(logits.device)
    if metric == "prob_diff":
        restricted = logits.masked_fill(~(correct | incorrect), float("-inf"))
        probs = torch.softmax(restricted, dim=-1)
        return (probs * correct).sum(-1) - (probs * incorrect).sum(-1)
    if metric == "logit_diff":
        mean_correct = (logits * correct).sum(-1) / correct.sum(-1)
        mean_incorrect = (logits * incorrect).sum(-1) / incorrect.sum(-1)
        return mean_correct - mean_incorrect
    raise TaskError(f"unknown metric {metric!r}; use prob_diff or logit_diff")


def batch_tokens(
    prompts: Sequence[TaskPrompt], pad_id: int = 0
) -> tuple[Int[Tensor, "batch pos"], Int[Tensor, " batch"]]:
    """Right-padded token ids and the index of each prompt's last real token."""
    length = max(len(p.tokens) for p in prompts)
    tokens = torch.full((len(prompts), length), pad_id, dtype=torch.long)
    for i, p in enumerate(prompts):
        tokens[i, : len(p.tokens)] = torch.tensor(p.tokens)
    last = torch.tensor([len(p.tokens) - 1 for p in prompts])
    return tokens, last


def load_task(
    name: str,
    tokenizer: Any,
    *,
    n: int | None = None,
    seed: int = 0,
    split: Split | None = None,
    prompts: Path | None = None,
) -> Task:
    """A built-in task (`BUILTIN_TASKS`: n prompts from `split`, picked by `seed`; defaults are
    the task's own), or a JSONL task file (its first n prompts) named `name`."""
    if n is not None and n < 1:
        raise TaskError(f"--n must be at least 1 (got {n}); leave it out for the default")
    if prompts is not None:
        return load_jsonl_task(prompts, tokenizer, name=name, n=n)
    spec = builtin_task(name)
    split = split or spec.default_split
    return spec.build(tokenizer, n or min(spec.default_n, spec.available(split)), seed, split)


def verify_size(name: str, prompts: Path | None = None) -> int | None:
    """How many prompts `circuit verify` scores by default: the built-in task's `verify_n`
    (at most what its default split holds); None for a task file (all of it) or an unknown
    name (load_task then says so)."""
    if prompts is not None or name not in BUILTIN_TASKS:
        return None
    spec = BUILTIN_TASKS[name]
    return min(spec.verify_n, spec.available())
