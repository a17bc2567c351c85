"""Bring a catalog written by an older circuitcat to this one's meaning of its properties.

Runs on every writable open (catalog/store.py), after `init_schema` has added any property the
catalog lacks; a read-only open changes nothing. Each step finds only what is still old, so a
second run does nothing.

- Year-task prompts: before the `start_year` property, a greater-than or less-than prompt's
  `answer` held its start year YY ("23"). Now `start_year` holds it and `answer` the correct
  years ("24..99"), as for every new prompt (docs/circuits.md, the schema table)."""

from __future__ import annotations

from .batches import NodeBatch
from .protocol import CatalogStore
from .schema import YEAR_TASKS, NodeKind, year_answer


def upgrade(store: CatalogStore) -> int:
    """Rewrite what an older circuitcat wrote; returns the number of nodes changed."""
    old = [
        r
        for r in store.query("year_prompts_to_upgrade")
        if isinstance(r["answer"], str) and len(r["answer"]) == 2 and r["answer"].isdigit()
    ]
    if not old:
        return 0
    columns = {
        "uid": [r["uid"] for r in old],
        "answer": [year_answer(int(r["answer"]), YEAR_TASKS[r["task"]]) for r in old],
        "start_year": [r["answer"] for r in old],
    }
    store.write_nodes(NodeBatch(NodeKind.PROMPT, columns))
    return len(old)
