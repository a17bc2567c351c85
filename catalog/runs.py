"""Honest run provenance: a Run node says "running" only while its job is alive.

- A store remembers the Run nodes it wrote as "running" (BaseStore.write_nodes). When the store
  is left by an exception (a failed job, Ctrl-C, SIGTERM turned into an exception), it marks them
  "failed", with the error, before it closes.
- A job killed outright (kill -9, a lost machine) cannot mark itself. The next run of the same
  kind finds it stale and marks it failed: on the embedded store at once (only one process can
  hold the file open for writing, so a "running" run that this store did not start is dead), on
  Neo4j when its heartbeat, written every HEARTBEAT_S by a thread of the job's store, is older
  than STALE_AFTER_S.

A run marked failed can still finish: a live job that writes "done" later wins.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from .batches import NodeBatch
from .errors import QueryError
from .protocol import QueryResult
from .records import RunRecord, now_iso, records_to_batch

HEARTBEAT_S = 30.0
STALE_AFTER_S = 120.0
RUNNING, DONE, FAILED, STALE = "running", "done", "failed", "stale"

MARK_FAILED = (
    "UNWIND $uids AS u MATCH (r:Run {uid: u}) WHERE r.status = 'running' "
    "SET r.status = 'failed', r.finished_at = $now, r.error = $error"
)
HEARTBEAT = "UNWIND $uids AS u MATCH (r:Run {uid: u}) SET r.heartbeat_at = $now"
REOPENED = "UNWIND $uids AS u MATCH (r:Run {uid: u}) SET r.heartbeat_at = $now, r.error = ''"


class _Store(Protocol):
    def query(self, name: str, /, **params: Any) -> list[dict[str, Any]]: ...
    def run_cypher(
        self, text: str, params: Mapping[str, Any] | None = None, *, write: bool = False
    ) -> QueryResult: ...


def run_rows(batch: NodeBatch) -> list[tuple[str, str, str]]:
    """(uid, kind, status) of each Run row in a batch; status "" when the batch leaves it."""
    n = len(batch)
    kinds = list(batch.columns.get("kind", [""] * n))
    statuses = list(batch.columns.get("status", [""] * n))
    return [
        (str(u), str(k or ""), str(st or ""))
        for u, k, st in zip(batch.uids, kinds, statuses, strict=True)
    ]


def age_s(row: Mapping[str, Any], now: datetime | None = None) -> float:
    """Seconds since the run's last heartbeat (or its start, before the first one)."""
    stamp = row.get("heartbeat_at") or row.get("started_at") or ""
    try:
        last = datetime.fromisoformat(str(stamp))
    except ValueError:
        return float("inf")
    if last.tzinfo is None:
        last = last.replace(tzinfo=UTC)
    return ((now or datetime.now(UTC)) - last).total_seconds()


def error_text(error: BaseException) -> str:
    """What a failed run records of its error: the class and the message's first line."""
    first = (str(error).strip().splitlines() or [""])[0]
    return f"{type(error).__name__}: {first}"[:500] if first else type(error).__name__


def mark_failed(store: _Store, uids: Iterable[str], error: str) -> None:
    store.run_cypher(
        MARK_FAILED, {"uids": sorted(uids), "now": now_iso(), "error": error}, write=True
    )


def mark_stale(
    store: _Store, kind: str, keep: set[str], is_stale: Callable[[Mapping[str, Any]], bool]
) -> list[str]:
    """Mark the running runs of `kind` that are stale (and not in `keep`) failed; their uids."""
    stale = [
        str(r["uid"])
        for r in store.query("running_runs")
        if r["kind"] == kind and r["uid"] not in keep and is_stale(r)
    ]
    if stale:
        mark_failed(store, stale, "stale: the job stopped without finishing (killed?)")
    return stale


def status_counts(
    store: _Store, is_stale: Callable[[Mapping[str, Any]], bool]
) -> dict[tuple[str, str], int]:
    """Runs per (kind, status), with running runs that look dead counted as "stale"."""
    counts = {(str(r["kind"]), str(r["status"])): int(r["n"]) for r in store.query("run_status")}
    try:
        running = store.query("running_runs")
    except QueryError:  # an older embedded catalog opened read-only has no heartbeat_at yet
        running = []
    for r in running:
        if is_stale(r):
            key = (str(r["kind"]), RUNNING)
            counts[key] -= 1
            counts[(key[0], STALE)] = counts.get((key[0], STALE), 0) + 1
    return {k: n for k, n in sorted(counts.items()) if n}


def start_run(store: Any, run: RunRecord) -> RunRecord:
    """Write `run` as running: every job starts with this (the store then tracks it and marks
    it failed if the job ends by an exception)."""
    store.write_nodes(records_to_batch([run]))
    return run


def finish_run(store: Any, run: RunRecord) -> RunRecord:
    """Write `run` as done, with its finishing time: every job ends with this."""
    done = run.model_copy(update={"status": DONE, "finished_at": now_iso()})
    store.write_nodes(records_to_batch([done]))
    return done
