"""Feature labels as team knowledge: every label a person gives a feature is a `Label` node
(text, author, time) joined to its feature by `HAS_LABEL`, and the newest text is also the
feature's `label` property, which the other read commands show.

Labels go through the store writer like everything else, so `store copy` carries them; ingest
never writes Label nodes or `Feature.label`, so re-ingesting a model keeps them.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from .batches import EdgeBatch, NodeBatch
from .errors import InvalidRowsError, QueryError
from .protocol import CatalogStore
from .records import LabelRecord, RunRecord, now_iso, records_to_batch
from .schema import NodeKind, RelKind

MAX_LABEL_CHARS = 500
AUTHOR = re.compile(r"[\w.@+-]{1,64}")


def clean_label(text: str) -> str:
    """The label as stored: whitespace runs made one space, ends trimmed; empty, too long or
    containing control characters is an InvalidRowsError."""
    cleaned = " ".join(text.split())
    if not cleaned:
        raise InvalidRowsError("a label needs some text")
    if len(cleaned) > MAX_LABEL_CHARS:
        raise InvalidRowsError(
            f"a label is at most {MAX_LABEL_CHARS} characters; this one has {len(cleaned)}"
        )
    if any(unicodedata.category(c).startswith("C") for c in cleaned):
        raise InvalidRowsError("a label cannot contain control or invisible format characters")
    return cleaned


def login_name() -> str:
    """The default author: the login name, or 'unknown' where there is none (containers)."""
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no USER variable and no password-file entry
        return "unknown"


def check_author(author: str) -> str:
    if not AUTHOR.fullmatch(author):
        raise InvalidRowsError(
            f"author {author!r} is not a user name: 1-64 letters, digits or . @ + - _"
        )
    return author


def add_label(store: CatalogStore, feature_uid: str, text: str, author: str) -> dict[str, Any]:
    """Record a label for a feature and make it the feature's current label; returns the
    stored label (uid, text, author, created_at). QueryError when the feature is not stored."""
    label = LabelRecord(feature=feature_uid, text=clean_label(text), author=check_author(author))
    if not store.query("feature", uid=feature_uid):
        raise QueryError(f"no feature {feature_uid!r} in the catalog; nothing was labelled")
    run = RunRecord(
        kind="label",
        started_at=label.created_at,
        finished_at=now_iso(),
        status="done",
        params={"feature": feature_uid, "author": author},
    )
    label = label.model_copy(update={"run": run.uid})
    store.write_nodes(records_to_batch([run]))
    store.write_nodes(records_to_batch([label]))
    store.write_edges(
        EdgeBatch(
            RelKind.HAS_LABEL,
            NodeKind.FEATURE,
            NodeKind.LABEL,
            [feature_uid],
            [label.uid],
            {"run": [run.uid]},
        )
    )
    store.write_nodes(NodeBatch(NodeKind.FEATURE, {"uid": [feature_uid], "label": [label.text]}))
    return {
        "uid": label.uid,
        "text": label.text,
        "author": label.author,
        "created_at": label.created_at,
    }


def label_history(store: CatalogStore, feature_uid: str, limit: int = 50) -> list[dict[str, Any]]:
    """A feature's labels, newest first."""
    return store.query("web_feature_labels", uid=feature_uid, limit=limit)
