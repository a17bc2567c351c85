"""Saved interventions: what was tried, on which prompts and features, and what happened.

An `Intervention` node holds the op, its spec (JSON), the prompt (uid or text) or task, the
metric before and after (live, frozen, predicted) and the illusion flag; `EDITS` joins it to
every feature it edited, with the value and positions. Written only on request (`--save`),
through the store writer like labels, so `store copy` carries them and re-ingest keeps them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from .batches import EdgeBatch
from .errors import QueryError
from .labels import check_author
from .protocol import CatalogStore
from .records import InterventionRecord, RunRecord, now_iso, records_to_batch
from .schema import NodeKind, RelKind


def save_intervention(
    store: CatalogStore,
    record: InterventionRecord,
    features: Sequence[str],
    value: float | None,
    positions: Sequence[int] | None,
) -> dict[str, Any]:
    """Write `record`, its Run and an EDITS edge to each of `features` (uids); returns the
    stored intervention. QueryError when a feature is not in the catalog (nothing written)."""
    check_author(record.author)
    missing = [uid for uid in features if not store.query("feature", uid=uid)][:3]
    if missing:
        raise QueryError(
            f"feature {missing[0]!r} is not in the catalog (run the features job first); "
            "nothing was saved"
        )
    run = RunRecord(
        kind="intervention",
        started_at=record.created_at,
        finished_at=now_iso(),
        status="done",
        params={"op": record.op, "set": record.set, "author": record.author},
    )
    record = record.model_copy(update={"run": run.uid})
    store.write_nodes(records_to_batch([run]))
    store.write_nodes(records_to_batch([record]))
    n = len(features)
    where = json.dumps(list(positions)) if positions is not None else "all"
    store.write_edges(
        EdgeBatch(
            RelKind.EDITS,
            NodeKind.INTERVENTION,
            NodeKind.FEATURE,
            [record.uid] * n,
            list(features),
            {
                **({"value": [float(value)] * n} if value is not None else {}),
                "positions": [where] * n,
                "run": [run.uid] * n,
            },
        )
    )
    return get_intervention(store, record.uid)


def get_intervention(store: CatalogStore, uid: str, limit: int = 1000) -> dict[str, Any]:
    """One saved intervention with its parsed spec and edited features."""
    rows = store.query("intervention", uid=uid)
    if not rows:
        raise QueryError(
            f"no intervention {uid!r} in the catalog; list them with `circuitcat intervention list`"
        )
    out = dict(rows[0])
    out["spec"] = json.loads(out["spec"] or "{}")
    out["flagged"] = bool(out["flagged"])
    out["features"] = store.query("intervention_features", uid=uid, limit=limit)
    return out


def list_interventions(
    store: CatalogStore, feature: str | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    """Saved interventions, newest first; with `feature`, those that edited it."""
    if feature is not None:
        rows = store.query("feature_interventions", uid=feature, limit=limit)
    else:
        rows = store.query("interventions", limit=limit)
    return [{**r, "flagged": bool(r["flagged"])} for r in rows]
