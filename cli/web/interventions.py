"""Interventions in the service: POST /api/interventions runs one (a write token, a cap on
prompts, a time limit) and saves it under the token's user; GET lists and shows saved ones.

The model and transcoders load on the first run and stay loaded; runs take turns (one model,
hooks are per-process), and a run past the time limit answers 504 and is not saved."""

from __future__ import annotations

import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from circuitcat.catalog.errors import QueryTimeoutError
from circuitcat.catalog.interventions import get_intervention, list_interventions

from .api import Catalog, Limit, read, writer
from .state import ServedCatalog

router = APIRouter(prefix="/api")
MAX_PROMPTS = 40
TIME_LIMIT_S = 60.0
_lock = threading.Lock()
_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="intervention")
# per served catalog: set uid (or '' for the only set) -> (loaded model, transcoders, set uid)
_loaded: weakref.WeakKeyDictionary[ServedCatalog, dict[str, Any]] = weakref.WeakKeyDictionary()


class InterventionRequest(BaseModel):
    """The body of POST /api/interventions: as `circuitcat intervention run` takes it."""

    op: str = Field(description="zero, mean, clamp, scale, steer or patch.")
    features: list[str] = Field(default_factory=list, max_length=10_000)
    value: str | None = Field(None, max_length=40, description="e.g. 5, -2.5 or 3xmax.")
    positions: list[int] | None = Field(None, max_length=64)
    circuit: str | None = Field(None, max_length=500)
    complement: bool = False
    prompt: str | None = Field(None, max_length=2_000)
    prompt_uid: str | None = Field(None, max_length=500)
    task: str | None = Field(None, max_length=200)
    n: int = Field(MAX_PROMPTS, ge=1, le=MAX_PROMPTS)
    source: str | None = Field(None, max_length=2_000)
    source_uid: str | None = Field(None, max_length=500)
    keep_error: bool = True
    set_uid: str | None = Field(None, max_length=500)
    save: bool = True


def _model(catalog: ServedCatalog, set_uid: str | None) -> tuple[Any, Any, str]:
    from circuitcat.catalog.schema import model_uid, transcoder_set_uid
    from circuitcat.ingest import inputs

    key, cache = set_uid or "", _loaded.setdefault(catalog, {})
    if key not in cache:
        with catalog.use() as store:
            loaded, tset = inputs.load_registered(store, set_uid, device="cpu")
        cache[key] = (loaded, tset, transcoder_set_uid(model_uid(loaded.name), tset.name))
    return cache[key]  # type: ignore[no-any-return]


def _run(catalog: ServedCatalog, body: InterventionRequest, user: str,
         cancelled: threading.Event) -> dict[str, Any]:  # fmt: skip
    from circuitcat.cli.intervention import parse_value
    from circuitcat.ingest.interventions.request import RunRequest, run_request

    loaded, tset, set_uid = _model(catalog, body.set_uid)
    req = RunRequest(
        op=body.op, features=body.features, value=parse_value(body.value),
        positions=body.positions, circuit=body.circuit, complement=body.complement,
        prompt=body.prompt, prompt_uid=body.prompt_uid, task=body.task, n=body.n,
        source=body.source, source_uid=body.source_uid, keep_error=body.keep_error, author=user,
    )  # fmt: skip
    with _lock, catalog.use() as store:
        return run_request(
            store, loaded, tset, set_uid, req, save=body.save, max_prompts=MAX_PROMPTS,
            still_wanted=lambda: not cancelled.is_set(),
        )  # fmt: skip


@router.post("/interventions", summary="Run an intervention (needs a write token)")
def run(
    catalog: Catalog, body: InterventionRequest, user: Annotated[str, Depends(writer)]
) -> dict[str, Any]:
    """Runs on at most 40 prompts within 60 s; saved under the token's user unless
    `save` is false. A run past the limit is answered 504 and not saved."""
    cancelled = threading.Event()
    future = _pool.submit(_run, catalog, body, user, cancelled)
    try:
        return future.result(timeout=TIME_LIMIT_S)
    except FutureTimeout:
        cancelled.set()
        raise QueryTimeoutError(
            f"the intervention ran past {TIME_LIMIT_S:g} s and was not saved: use fewer prompts "
            "or the CLI (`circuitcat intervention run`)"
        ) from None


@router.get("/interventions", summary="Saved interventions, newest first")
def interventions(
    catalog: Catalog,
    feature: Annotated[str | None, Query(max_length=500)] = None,
    limit: Limit = 50,
) -> list[dict[str, Any]]:
    return read(catalog, list_interventions, feature, limit)


@router.get("/interventions/{uid:path}", summary="One saved intervention")
def intervention(catalog: Catalog, uid: str) -> dict[str, Any]:
    return read(catalog, get_intervention, uid)
