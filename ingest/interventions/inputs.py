"""What an intervention reads from the catalog: prompts (text, stored uid or task), feature
uids, means, max activations and circuit members; and saving the result."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from circuitcat.catalog import CatalogStore, InterventionRecord
from circuitcat.catalog.errors import InterventionError, QueryError
from circuitcat.catalog.interventions import save_intervention
from circuitcat.catalog.schema import feature_uid

from ..faithfulness import circuit_members, resolve_means
from ..models import LoadedModel
from ..tasks import BUILTIN_TASKS, Split, TaskPrompt, load_task, single_token_id
from ..transcoders.transcoder import TranscoderSet
from .core import InterventionResult
from .edits import Intervention

FEATURE = re.compile(r"^(?:(?P<set>.+)/)?L?(?P<layer>\d+)/(?P<index>\d+)$")


@dataclass(frozen=True)
class PromptSet:
    """The prompts an intervention runs on, their metric, and what the record calls them."""

    prompts: tuple[TaskPrompt, ...]
    metric: str
    task: str = ""
    prompt: str = ""  # a stored prompt's uid, or the text of a text prompt


def parse_feature(text: str, set_uid: str) -> tuple[int, int]:
    """'L3/17', '3/17' or a full uid of this set -> (layer, index)."""
    match = FEATURE.fullmatch(text.strip())
    if match is None:
        raise InterventionError(
            f"feature {text!r} is not a feature: write L<layer>/<index> (e.g. L3/17) or a full "
            f"uid such as {set_uid}/L3/17"
        )
    if match.group("set") and match.group("set") != set_uid:
        raise InterventionError(
            f"feature {text!r} belongs to set {match.group('set')!r}, not {set_uid!r}: pass "
            "--set to pick that set"
        )
    return int(match.group("layer")), int(match.group("index"))


def text_prompt(
    loaded: LoadedModel, text: str, correct: Sequence[str], incorrect: Sequence[str]
) -> PromptSet:
    """A text prompt: logit difference of the given tokens, or the logit of the clean run's
    top next token when none are given."""
    from ..tasks import _encode

    tok = loaded.model.tokenizer
    if tok is None:
        raise InterventionError("this model has no tokenizer: give a stored prompt or a task")
    ids = tuple(_encode(tok, text))
    n_ctx = int(loaded.model.cfg.n_ctx)
    if len(ids) > n_ctx:
        raise InterventionError(
            f"prompt {text[:40]!r} is {len(ids)} tokens; the model reads at most {n_ctx}: "
            "shorten it"
        )
    good = tuple(single_token_id(tok, t) for t in correct)
    bad = tuple(single_token_id(tok, t) for t in incorrect)
    if bad and not good:
        raise InterventionError("--incorrect needs --correct tokens too")
    if not good:
        with torch.no_grad():
            logits = loaded.model(torch.tensor([ids], device=loaded.model.cfg.device))
        top = int(logits[0, -1].argmax())
        prompt = TaskPrompt(text, ids, str(tok.decode([top])), (top,), ())
        return PromptSet((prompt,), "logit", prompt=text)
    metric = "logit_diff" if bad else "logit"
    return PromptSet((TaskPrompt(text, ids, correct[0], good, bad),), metric, prompt=text)


def stored_prompt(store: CatalogStore, loaded: LoadedModel, uid: str) -> PromptSet:
    """A stored prompt with its task's answer sets (built-in tasks), else its text alone."""
    rows = store.query("prompt", uid=uid)
    if not rows:
        raise QueryError(
            f"no prompt {uid!r} in the catalog; list them with `circuitcat prompt list`"
        )
    row = rows[0]
    task_name, text = str(row["task"] or ""), str(row["text"])
    if task_name in BUILTIN_TASKS:
        found = task_text_prompt(loaded, task_name, text)
    else:
        found = text_prompt(loaded, text, [], [])
    return PromptSet(found.prompts, found.metric, task=task_name, prompt=uid)


def task_text_prompt(loaded: LoadedModel, task_name: str, text: str) -> PromptSet:
    """A text prompt of a built-in task, with the answer sets and metric the task gives it
    (ingest/task_text.py); TaskError when the task cannot read the text."""
    from ..task_text import task_from_text

    task = task_from_text(task_name, loaded.model.tokenizer, [text])
    return PromptSet(task.prompts, task.metric, task=task_name, prompt=text)


def task_prompts(
    loaded: LoadedModel, task: str, n: int | None, seed: int, split: Split | None
) -> PromptSet:
    t = load_task(task, loaded.model.tokenizer, n=n, seed=seed, split=split)
    return PromptSet(t.prompts, t.metric, task=t.name)


def feature_means(
    store: CatalogStore, loaded: LoadedModel, tset: TranscoderSet, set_uid: str
) -> dict[int, Tensor]:
    return resolve_means(store, loaded, tset, set_uid).means


def feature_max(store: CatalogStore, tset: TranscoderSet, set_uid: str) -> dict[int, Tensor]:
    """Each feature's max activation from the corpus pass; InterventionError without one."""
    rows = store.query("set_feature_max", set_uid=set_uid)
    if not rows:
        raise InterventionError(
            f"set {set_uid!r} has no max activations: run `circuitcat ingest features` first, "
            "or clamp to a value instead of a multiple of max"
        )
    out = {layer: torch.zeros(tset.d_transcoder) for layer in tset.layers}
    for r in rows:
        if r["layer"] in out:
            out[r["layer"]][int(r["feature_index"])] = float(r["act_max"] or 0.0)
    return out


def circuit_features(store: CatalogStore, uid: str) -> list[tuple[int, int]]:
    members = circuit_members(store, uid)
    if not members:
        raise InterventionError(f"circuit {uid!r} has no features")
    return members


def save(
    store: CatalogStore,
    result: InterventionResult,
    iv: Intervention,
    tset: TranscoderSet,
    set_uid: str,
    where: PromptSet,
    author: str,
) -> dict[str, Any]:
    """Store `result` as an Intervention node joined to the features it edited."""
    from .edits import feature_masks

    features = [
        feature_uid(set_uid, layer, int(i))
        for layer, mask in feature_masks(iv, tset).items()
        for i in mask.nonzero().flatten().tolist()
    ]
    record = InterventionRecord(
        set=set_uid,
        op=iv.op,
        spec=result.spec,
        prompt=where.prompt,
        task=where.task,
        n_prompts=result.n_prompts,
        metric=result.metric,
        metric_before=result.before,
        metric_after=result.after,
        frozen=result.frozen,
        predicted=result.predicted,
        flagged=int(result.flagged),
        author=author,
    )
    return save_intervention(store, record, features, iv.value, iv.positions)
