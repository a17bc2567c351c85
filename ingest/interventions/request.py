"""One intervention as the CLI and the service ask for it: resolve its prompts, features and
values from the catalog, run it, and save it on request."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from circuitcat.catalog import CatalogStore
from circuitcat.catalog.circuits import get_circuit
from circuitcat.catalog.errors import InterventionError
from circuitcat.catalog.labels import login_name

from ..models import LoadedModel
from ..transcoders.transcoder import TranscoderSet
from .core import intervene
from .edits import OPS, Intervention, Op
from .inputs import (
    PromptSet,
    circuit_features,
    feature_max,
    feature_means,
    parse_feature,
    save,
    stored_prompt,
    task_prompts,
    task_text_prompt,
    text_prompt,
)


@dataclass
class RunRequest:
    """What to do (op, features or circuit, value, positions) and on what (one of prompt,
    prompt_uid, task); `value` is (number, in multiples of max)."""

    op: str
    features: list[str] = field(default_factory=list)
    value: tuple[float | None, bool] = (None, False)
    positions: list[int] | None = None
    circuit: str | None = None
    complement: bool = False
    prompt: str | None = None
    prompt_uid: str | None = None
    task: str | None = None
    n: int = 40
    seed: int = 0
    source: str | None = None
    source_uid: str | None = None
    correct: list[str] = field(default_factory=list)
    incorrect: list[str] = field(default_factory=list)
    keep_error: bool = True
    generate: int = 0
    author: str | None = None


def _prompts(store: CatalogStore, loaded: LoadedModel, req: RunRequest) -> PromptSet:
    given = [x for x in (req.prompt, req.prompt_uid) if x is not None]
    if (
        len(given) > 1
        or (req.prompt_uid is not None and req.task is not None)
        or not (given or req.task)
    ):
        raise InterventionError(
            "give one of --prompt (with --task for a task's answers), --prompt-uid or --task"
        )
    if req.prompt is not None and req.task is not None:
        return task_text_prompt(loaded, req.task, req.prompt)
    if req.prompt is not None:
        return text_prompt(loaded, req.prompt, req.correct, req.incorrect)
    if req.prompt_uid is not None:
        return stored_prompt(store, loaded, req.prompt_uid)
    return task_prompts(loaded, str(req.task), req.n, req.seed, None)


def build_intervention(
    store: CatalogStore, req: RunRequest, set_uid: str
) -> tuple[Intervention, str | None]:
    """The Intervention the request describes, and the circuit uid it used (if any)."""
    if req.op not in OPS:
        raise InterventionError(f"unknown op {req.op!r}; use one of {', '.join(OPS)}")
    feats = [parse_feature(f, set_uid) for f in req.features]
    circuit_uid = None
    if req.circuit is not None:
        circuit_uid = str(get_circuit(store, req.circuit, set_uid)["uid"])
        feats += [f for f in circuit_features(store, circuit_uid) if f not in feats]
    if req.op == "patch" and (req.source is None) == (req.source_uid is None):
        raise InterventionError("patch needs one source: --source TEXT or --source-uid UID")
    value, of_max = req.value
    iv = Intervention(
        op=cast(Op, req.op),
        features=tuple(feats),
        value=value,
        of_max=of_max,
        positions=tuple(req.positions) if req.positions else None,
        complement=req.complement,
        keep_error=req.keep_error,
        source=req.source_uid or req.source or "",
    )
    return iv, circuit_uid


def run_request(
    store: CatalogStore,
    loaded: LoadedModel,
    tset: TranscoderSet,
    set_uid: str,
    req: RunRequest,
    *,
    save: bool = False,
    max_prompts: int | None = None,
    still_wanted: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Run the request; with `save`, store it (author: the request's, else the login name)
    unless `still_wanted` says otherwise by then (a caller that gave up waiting). Returns the
    result as a dict (plus `saved`: the stored uid, `circuit`, `task` and `prompt`)."""
    iv, circuit_uid = build_intervention(store, req, set_uid)
    where = _prompts(store, loaded, req)
    if max_prompts is not None and len(where.prompts) > max_prompts:
        raise InterventionError(
            f"at most {max_prompts} prompts here; asked for {len(where.prompts)}"
        )
    source = None
    if iv.op == "patch":
        src = (
            stored_prompt(store, loaded, req.source_uid)
            if req.source_uid
            else text_prompt(loaded, str(req.source), [], [])
        )
        source = src.prompts[0]
    means = feature_means(store, loaded, tset, set_uid) if iv.op == "mean" else None
    act_max = feature_max(store, tset, set_uid) if iv.of_max else None
    result = intervene(
        loaded.model, tset, where.prompts, where.metric, iv,
        means=means, act_max=act_max, source=source, generate=req.generate,
    )  # fmt: skip
    out = result.as_dict()
    out["circuit"] = circuit_uid
    out["task"] = where.task
    out["prompt"] = where.prompt
    if save and (still_wanted is None or still_wanted()):
        author = req.author or login_name()
        out["saved"] = _save(store, result, iv, tset, set_uid, where, author)
    return out


def _save(store: CatalogStore, result: Any, iv: Intervention, tset: TranscoderSet,
          set_uid: str, where: PromptSet, author: str) -> str:  # fmt: skip
    return str(save(store, result, iv, tset, set_uid, where, author)["uid"])
