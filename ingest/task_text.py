"""A built-in task's answer sets for ad-hoc text: `ingest prompts --task greater-than --text
"The war lasted from the year 1745 to the year 17"` attributes that text with the correct and
incorrect tokens the task defines, instead of a hand-written JSONL file.

- greater-than / less-than: the text names a four-digit year <C><YY> and ends with its century
  <C>; the answers are the year tokens "00".."99" split at YY as the task splits them
  (greater-than: correct > YY, incorrect <= YY; less-than: correct < YY, incorrect >= YY).
- counting: the text ends with number words in order ("count : three four five"); the answer
  is the next one, every other number word is incorrect.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from circuitcat.catalog.errors import TaskError

from .tasks import (
    BUILTIN_TASKS,
    GREATER_THAN_FRAME,
    LESS_THAN_FRAME,
    NUMBER_WORDS,
    Task,
    TaskPrompt,
    _encode,
    single_token_id,
    year_answer,
    year_token_ids,
)

YEAR = re.compile(r"(?<!\d)(\d\d)(\d\d)(?!\d)")
FRAMES = {f.name: f for f in (GREATER_THAN_FRAME, LESS_THAN_FRAME)}


def _year_prompt(name: str, tokenizer: Any, text: str) -> TaskPrompt:
    years = YEAR.findall(text)
    if not years:
        raise TaskError(
            f"{name} --text needs a four-digit year <C><YY> and to end with its century <C>, "
            f'e.g. "The war lasted from the year 1745 to the year 17"; got {text!r}'
        )
    century, yy = years[-1][0], int(years[-1][1])
    if not text.rstrip().endswith(century):
        raise TaskError(
            f"{name} --text must end with the century {century} of its year {century}{yy:02d} "
            f"(the model then predicts the year's last two digits); got {text!r}"
        )
    ids = year_token_ids(tokenizer).tolist()
    tokens = _encode(tokenizer, text)
    if ids[yy] not in tokens:
        raise TaskError(
            f"the tokenizer does not split {century}{yy:02d} into {century} + {yy:02d} in "
            f"{text!r}; write the year so that it does"
        )
    later, earlier = tuple(ids[yy + 1 :]), tuple(ids[: yy + 1])
    if not FRAMES[name].later:
        later, earlier = tuple(ids[yy:]), tuple(ids[:yy])
    correct, incorrect = (later, earlier) if FRAMES[name].later else (earlier, later)
    answer = year_answer(yy, FRAMES[name].later)
    return TaskPrompt(text, tuple(tokens), answer, correct, incorrect, start_year=f"{yy:02d}")


def _counting_prompt(tokenizer: Any, text: str) -> TaskPrompt:
    words = text.split()
    last = words[-1] if words else ""
    if last not in NUMBER_WORDS or last == NUMBER_WORDS[-1]:
        raise TaskError(
            f"counting --text must end with a number word from {NUMBER_WORDS[0]!r} to "
            f'{NUMBER_WORDS[-2]!r}, e.g. "count : three four five"; got {text!r}'
        )
    ids = [single_token_id(tokenizer, w) for w in NUMBER_WORDS]
    answer = NUMBER_WORDS.index(last) + 1
    others = tuple(i for j, i in enumerate(ids) if j != answer)
    tokens = tuple(_encode(tokenizer, text))
    return TaskPrompt(text, tokens, NUMBER_WORDS[answer], (ids[answer],), others)


def task_from_text(name: str, tokenizer: Any, texts: Sequence[str]) -> Task:
    """The built-in task `name` with the given texts as its prompts, each with the answer sets
    the task defines; TaskError for a text the task cannot read or a task without text rules."""
    if name not in BUILTIN_TASKS:
        raise TaskError(
            f"--text builds answer sets for the built-in tasks ({', '.join(BUILTIN_TASKS)}); "
            f"for task {name!r} write a JSONL file and pass --prompts"
        )
    prompts = []
    for text in texts:
        if not text.strip():
            raise TaskError("--text is empty; pass the prompt's text")
        if name in FRAMES:
            prompts.append(_year_prompt(name, tokenizer, text))
        else:
            prompts.append(_counting_prompt(tokenizer, text))
    spec = BUILTIN_TASKS[name]
    return Task(name, spec.metric, spec.description, tuple(prompts))
