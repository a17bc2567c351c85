"""`ingest prompts --task NAME --text "..."`: ad-hoc text gets the answer sets its built-in task
defines, the same ones the task's own prompts get."""

from __future__ import annotations

import pytest

from circuitcat.catalog.errors import TaskError
from circuitcat.ingest.models import load_model
from circuitcat.ingest.task_text import task_from_text
from circuitcat.ingest.tasks import load_task


@pytest.fixture(scope="module")
def tokenizer() -> object:
    return load_model("toy-years").model.tokenizer


@pytest.mark.parametrize("name", ["greater-than", "less-than", "counting"])
def test_text_gets_the_task_answer_sets(tokenizer: object, name: str) -> None:
    builtin = load_task(name, tokenizer, n=12)
    adhoc = task_from_text(name, tokenizer, [p.text for p in builtin.prompts])
    assert adhoc.prompts == builtin.prompts
    assert (adhoc.name, adhoc.metric) == (builtin.name, builtin.metric)


def test_the_issue_example(tokenizer: object) -> None:
    text = "The war lasted from the year 1745 to the year 17"
    (p,) = task_from_text("greater-than", tokenizer, [text]).prompts
    assert (p.answer, p.start_year) == ("46..99", "45")
    assert (len(p.correct), len(p.incorrect)) == (54, 46)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("greater-than", "no year here", "four-digit year"),
        ("greater-than", "from the year 1745 to the year 18", "must end with the century 17"),
        ("counting", "count : three four twenty", "must end with a number word"),
        ("my-task", "anything", "--prompts"),
        ("greater-than", "  ", "empty"),
    ],
)
def test_text_the_task_cannot_read(tokenizer: object, name: str, text: str, message: str) -> None:
    with pytest.raises(TaskError, match=message):
        task_from_text(name, tokenizer, [text])
