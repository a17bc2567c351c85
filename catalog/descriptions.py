"""Automatic feature descriptions, built only from what the catalog holds.

Every feature the corpus pass has measured gets a deterministic one-line description,
`Feature.auto_description`, from its layer, its density, the tokens it fires on most (each with
the context of its strongest example) and the logits it promotes and suppresses, e.g.

    L0 · fires on "45" (the year 17 «45» to), "44", "46" · promotes 46 47 48 · suppresses 00 01
    02 · density 3.1%

It is a property of its own: a human label (`Feature.label`, catalog/labels.py) is never
overwritten by it, and the best description a reader sees is the first of label, explanation
(the optional explainer's) and automatic description that a feature has (`best_description`;
the named queries spell the same order as
`coalesce(f.label, f.explanation, f.auto_description)`).

The features job writes descriptions with the statistics (ingest/features.py); `describe_set`
(`circuitcat feature describe`) writes them for features measured before descriptions existed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from .batches import NodeBatch
from .errors import QueryError
from .protocol import CatalogStore
from .records import RunRecord
from .runs import finish_run, start_run
from .schema import NodeKind

MAX_TOKENS = 3  # distinct activating tokens named
MAX_LOGITS = 3  # promoted and suppressed tokens named
BEFORE, AFTER = 3, 1  # context tokens around the peak in the quoted example


def _show(token: str) -> str:
    """A token as a description quotes it: control characters made visible."""
    return token.replace("\n", "⏎").replace("\t", "→").replace("\r", "↵")


def _peak(acts: list[float]) -> int:
    return max(range(len(acts)), key=lambda i: (acts[i], -i)) if acts else 0


def _snippet(tokens: list[str], peak: int) -> str:
    """A few tokens around the peak, the peak in «». Subword pieces that carry their
    own spaces (GPT-2's " year") are joined as they are; whole words with one space."""
    lo, hi = max(peak - BEFORE, 0), min(peak + AFTER + 1, len(tokens))
    words = [_show(t) for t in tokens[lo:hi]]
    word = words[peak - lo]
    lead = word[: len(word) - len(word.lstrip())]
    words[peak - lo] = f"{lead}«{word.lstrip()}»"
    if any(t[:1].isspace() for t in tokens):
        return "".join(words).strip()
    return " ".join(words)


def activating_tokens(contexts: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(token, snippet of its best context) for the distinct tokens at the contexts' peaks, in
    the contexts' order (strongest first)."""
    seen: dict[str, str] = {}
    for ctx in contexts:
        tokens, acts = list(ctx.get("tokens") or []), list(ctx.get("acts") or [])
        if not tokens or len(tokens) != len(acts):
            continue
        peak = _peak(acts)
        seen.setdefault(tokens[peak], _snippet(tokens, peak))
    return list(seen.items())


def _percent(density: float) -> str:
    share = 100 * density
    if share >= 10:
        return f"{share:.0f}%"
    return f"{share:.2g}%" if share >= 0.01 else "<0.01%"


def auto_description(
    layer: int, density: float | None, top_contexts: str | None, top_logits: str | None
) -> str:
    """The description of one feature from its stored fields (the JSON strings as stored)."""
    parts = [f"L{layer}"]
    contexts = json.loads(top_contexts) if top_contexts else []
    tokens = activating_tokens(contexts)
    if tokens:
        first, snippet = tokens[0]
        named = [f'"{_show(first)}" ({snippet})']
        named += [f'"{_show(t)}"' for t, _ in tokens[1:MAX_TOKENS]]
        parts.append("fires on " + ", ".join(named))
    elif density == 0:
        parts.append("never fired in the corpus pass")
    logits = json.loads(top_logits) if top_logits else []
    ups = [_show(str(x["token"])) for x in logits if x["w"] > 0][:MAX_LOGITS]
    downs = [_show(str(x["token"])) for x in sorted(logits, key=lambda x: x["w"]) if x["w"] < 0]
    if ups:
        parts.append("promotes " + " ".join(ups))
    if downs[:MAX_LOGITS]:
        parts.append("suppresses " + " ".join(downs[:MAX_LOGITS]))
    if density is not None and density > 0:
        parts.append(f"density {_percent(density)}")
    return " · ".join(parts)


def best_description(row: dict[str, Any]) -> str | None:
    """The description a reader sees: the label, else the explanation, else the automatic
    description (None when a feature has none of them)."""
    for key in ("label", "explanation", "auto_description"):
        text = row.get(key)
        if text:
            return str(text)
    return None


def description_rows(rows: Iterable[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """(uids, descriptions) of rows with uid, layer, density, top_contexts, top_logits."""
    uids, texts = [], []
    for r in rows:
        uids.append(str(r["uid"]))
        texts.append(
            auto_description(int(r["layer"]), r["density"], r["top_contexts"], r["top_logits"])
        )
    return uids, texts


def describe_set(store: CatalogStore, set_uid: str | None = None) -> dict[str, int]:
    """Write `auto_description` for every feature the corpus pass has measured, of one set or
    of every set; labels are not touched. Returns {set uid: features described}. QueryError
    for a set that is not stored."""
    sets = [str(r["uid"]) for r in store.query("transcoder_sets")]
    if set_uid is not None and set_uid not in sets:
        raise QueryError(
            f"no transcoder set {set_uid!r} in the catalog (it has: {', '.join(sets) or 'none'})"
        )
    chosen = [set_uid] if set_uid is not None else sets
    run = RunRecord(kind="describe", params={"sets": chosen})
    start_run(store, run)
    done: dict[str, int] = {}
    for uid in chosen:
        done[uid] = 0
        layers = store.query("transcoder_set_layers", uid=uid)
        for layer in (layers[0]["layers"] or []) if layers else []:
            rows = store.query("feature_description_inputs", set_uid=uid, layer=int(layer))
            uids, texts = description_rows(rows)
            if uids:
                store.write_nodes(
                    NodeBatch(NodeKind.FEATURE, {"uid": uids, "auto_description": texts})
                )
            done[uid] += len(uids)
    finish_run(store, run)
    return done
