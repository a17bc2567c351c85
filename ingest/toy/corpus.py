"""The toy model's synthetic corpus, generated deterministically from a seed.

A training sequence is BOS followed by whole sentences packed up to `n_ctx` tokens, right-padded.
Sentences are drawn from a fixed mixture of templates (weights in `TEMPLATE_WEIGHTS`):

- greater-than frames: answer year half > start year half. `gt_lasted` is the evaluation frame
  "the <noun> lasted from the year C YY to the year C ANS"; its start years YY come only from
  `GREATER_THAN_SPLITS["train"]`, so the `val` years (multiples of 10) and the `eval` years
  (YY = 3 mod 5) never start that frame in training. The other greater-than frames ("started in
  ... and ended in", "was born in ... and died in", "happened after", lists of years in
  increasing order) use any start year 02..98: the model meets every year, but must carry what
  it learned to the evaluation frame.
- less-than frames: the same kind of sentence whose answer must be smaller ("ended in C YY ,
  having started in C ANS", lists in decreasing order); any start year.
- an equal frame (the same year repeated), year sequences counting up, neutral sentences with a
  year, and filler (animals, colours, places, counting with number words, copying, small sums)
  so the transcoders see varied features.

Years are written split ("17 32"), as GPT-2 tokenises "1732".
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor

from circuitcat.ingest.tasks import GREATER_THAN_SPLITS
from circuitcat.ingest.toy.words import (
    ADJECTIVES,
    ANIMALS,
    COLORS,
    EVENT_NOUNS,
    FOODS,
    NUMBER_WORDS,
    PEOPLE,
    PLACES,
    PLURALS,
    VERBS_PAST,
)

CENTURIES: tuple[int, ...] = tuple(range(11, 20))
GT_START_YEARS: tuple[int, ...] = GREATER_THAN_SPLITS["train"]
OTHER_GT_START_YEARS: tuple[int, ...] = GREATER_THAN_SPLITS["all"]
BUILDINGS: tuple[str, ...] = ("school", "bridge", "church", "library", "museum", "tower", "mill")

Sentence = list[str]


def _year(c: int, y: int) -> str:
    return f"{c} {y:02d}"


def _words(*parts: str) -> Sentence:
    return " ".join(parts).split()


def _gt(rng: random.Random, starts: tuple[int, ...]) -> tuple[str, int, str, str]:
    """noun, century, start year, answer year for a greater-than sentence."""
    c, y = rng.choice(CENTURIES), rng.choice(starts)
    return rng.choice(EVENT_NOUNS), c, _year(c, y), _year(c, rng.randint(y + 1, 99))


def _lt(rng: random.Random) -> tuple[str, int, str, str]:
    """noun, century, start year, answer year for a less-than sentence."""
    c, y = rng.choice(CENTURIES), rng.randint(1, 99)
    return rng.choice(EVENT_NOUNS), c, _year(c, y), _year(c, rng.randint(0, y - 1))


def gt_lasted(rng: random.Random) -> Sentence:
    n, _, start, end = _gt(rng, GT_START_YEARS)
    return _words("the", n, "lasted from the year", start, "to the year", end, ".")


def gt_started(rng: random.Random) -> Sentence:
    n, _, start, end = _gt(rng, OTHER_GT_START_YEARS)
    return _words("the", n, "started in the year", start, "and ended in the year", end, ".")


def gt_born(rng: random.Random) -> Sentence:
    _, _, start, end = _gt(rng, OTHER_GT_START_YEARS)
    return _words(rng.choice(PEOPLE), "was born in", start, "and died in", end, ".")


def gt_after(rng: random.Random) -> Sentence:
    n, _, start, end = _gt(rng, OTHER_GT_START_YEARS)
    return _words("the", n, "happened after the year", start, ", in the year", end, ".")


def gt_list(rng: random.Random) -> Sentence:
    """Years in increasing order: every year after the first is a greater-than answer."""
    c, k = rng.choice(CENTURIES), rng.randint(3, 5)
    years = sorted(rng.sample(OTHER_GT_START_YEARS, k - 1))
    years.append(rng.randint(years[-1] + 1, 99))
    listed = [_year(c, y) for y in years]
    return _words("later and later :", " , ".join(listed[:-1]), "and", listed[-1], ".")


def lt_list(rng: random.Random) -> Sentence:
    """Years in decreasing order: every year after the first is a less-than answer."""
    c, k = rng.choice(CENTURIES), rng.randint(3, 5)
    listed = [_year(c, y) for y in sorted(rng.sample(range(100), k), reverse=True)]
    return _words("earlier and earlier :", " , ".join(listed[:-1]), "and", listed[-1], ".")


def lt_ended(rng: random.Random) -> Sentence:
    n, _, start, end = _lt(rng)
    return _words("the", n, "ended in the year", start, ", having started in the year", end, ".")


def lt_died(rng: random.Random) -> Sentence:
    _, _, start, end = _lt(rng)
    who = rng.choice(PEOPLE)
    return _words(who, "died in the year", start, "and was born in the year", end, ".")


def lt_before(rng: random.Random) -> Sentence:
    n, _, start, end = _lt(rng)
    return _words("the", n, "happened before the year", start, ", in the year", end, ".")


def lt_until(rng: random.Random) -> Sentence:
    n, _, start, end = _lt(rng)
    return _words("the", n, "lasted until the year", start, ", it began in the year", end, ".")


def eq_same(rng: random.Random) -> Sentence:
    c, y = rng.choice(CENTURIES), rng.randint(0, 99)
    n, year = rng.choice(EVENT_NOUNS), _year(c, y)
    return _words(
        "the", n, "began and ended in the same year ,", year, ", so it ended in", year, "."
    )


def year_sequence(rng: random.Random) -> Sentence:
    c, y = rng.choice(CENTURIES), rng.randint(0, 96)
    years = [_year(c, y + k) for k in range(4)]
    return _words("the years", years[0], ",", years[1], ",", years[2], "and", years[3], ".")


def neutral_year(rng: random.Random) -> Sentence:
    year = _year(rng.choice(CENTURIES), rng.randint(0, 99))
    if rng.random() < 0.5:
        return _words("the", rng.choice(BUILDINGS), "was built in", year, ".")
    return _words(rng.choice(PEOPLE), "moved to", rng.choice(PLACES), "in", year, ".")


def counting(rng: random.Random) -> Sentence:
    start, length = rng.randint(0, 15), rng.randint(3, 6)
    return _words("count :", *NUMBER_WORDS[start : start + length], ".")


def small_sum(rng: random.Random) -> Sentence:
    k = rng.randint(0, 19)
    if rng.random() < 0.5:
        return _words(NUMBER_WORDS[k], "plus one is", NUMBER_WORDS[k + 1], ".")
    return _words(NUMBER_WORDS[k + 1], "minus one is", NUMBER_WORDS[k], ".")


def fact(rng: random.Random) -> Sentence:
    animal, kind = rng.choice(ANIMALS), rng.randint(0, 4)
    if kind == 0:
        return _words("the", animal, "is", rng.choice(COLORS), ".")
    if kind == 1:
        return _words("the", animal, "eats", rng.choice(FOODS), ".")
    if kind == 2:
        return _words(rng.choice(PEOPLE), "lives in", rng.choice(PLACES), ".")
    if kind == 3:
        n, things = rng.choice(NUMBER_WORDS[2:]), rng.choice(PLURALS)
        return _words("there are", n, things, "in", rng.choice(PLACES), ".")
    who, verb = rng.choice(PEOPLE), rng.choice(VERBS_PAST)
    return _words(who, verb, "the", rng.choice(ADJECTIVES), animal, ".")


def copying(rng: random.Random) -> Sentence:
    pool = ANIMALS + COLORS + FOODS + ADJECTIVES
    words = [rng.choice(pool) for _ in range(rng.randint(2, 4))]
    return _words(*words, ", again :", *words, ".")


TEMPLATE_WEIGHTS: dict[str, tuple[float, Callable[[random.Random], Sentence]]] = {
    "gt_lasted": (0.20, gt_lasted),
    "gt_started": (0.05, gt_started),
    "gt_born": (0.04, gt_born),
    "gt_after": (0.04, gt_after),
    "gt_list": (0.08, gt_list),
    "lt_ended": (0.04, lt_ended),
    "lt_died": (0.04, lt_died),
    "lt_before": (0.04, lt_before),
    "lt_until": (0.04, lt_until),
    "lt_list": (0.06, lt_list),
    "eq_same": (0.03, eq_same),
    "year_sequence": (0.05, year_sequence),
    "neutral_year": (0.03, neutral_year),
    "counting": (0.04, counting),
    "small_sum": (0.03, small_sum),
    "fact": (0.10, fact),
    "copying": (0.05, copying),
}


def sentence(rng: random.Random) -> Sentence:
    """One sentence from the template mixture."""
    weights = [w for w, _ in TEMPLATE_WEIGHTS.values()]
    (name,) = rng.choices(list(TEMPLATE_WEIGHTS), weights=weights)
    return TEMPLATE_WEIGHTS[name][1](rng)


def sequence_text(rng: random.Random, max_words: int) -> str:
    """Whole sentences packed up to `max_words` tokens (BOS not counted)."""
    words = sentence(rng)[:max_words]
    for _ in range(4):
        nxt = sentence(rng)
        if len(words) + len(nxt) <= max_words:
            words += nxt
    return " ".join(words)


def generate_texts(seed: int, n: int, n_ctx: int = 32) -> list[str]:
    """`n` packed training texts, the same for the same seed."""
    rng = random.Random(seed)
    return [sequence_text(rng, n_ctx - 1) for _ in range(n)]


def encode_texts(texts: list[str], tokenizer: Any, n_ctx: int = 32) -> Int[Tensor, "batch pos"]:
    """BOS + token ids, right-padded with the pad token to `n_ctx`."""
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
    tokens = torch.full((len(texts), n_ctx), int(tokenizer.pad_token_id), dtype=torch.long)
    tokens[:, 0] = int(tokenizer.bos_token_id)
    for i, ids in enumerate(encoded):
        ids = ids[: n_ctx - 1]
        tokens[i, 1 : 1 + len(ids)] = torch.tensor(ids, dtype=torch.long)
    return tokens


def token_batches(
    tokenizer: Any, seed: int, batch_size: int, n_ctx: int = 32
) -> Iterator[Int[Tensor, "batch pos"]]:
    """An endless, seeded stream of training batches."""
    rng = random.Random(seed)
    while True:
        texts = [sequence_text(rng, n_ctx - 1) for _ in range(batch_size)]
        yield encode_texts(texts, tokenizer, n_ctx)
