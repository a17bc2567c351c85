"""Everyday research questions, each answered by named queries (catalog/queries/research.cypher)
without hand-written Cypher:

- the features at one position of a prompt, and what drives its metric (`prompt_position`);
- the features two prompts share (`compare_prompts`);
- features by the tokens they read and the logits they promote (`find_features`).

Plain functions over a CatalogStore returning JSON-ready dicts; the CLI (`prompt show`,
`prompt compare`, `feature find`) and the service (cli/web) print or serve them.
"""

from __future__ import annotations

import re
from typing import Any

from .errors import QueryError
from .graph_json import pick_prompt_set
from .protocol import CatalogStore

RANGE = re.compile(r"(\d+)\.\.(\d+)")
MAX_TOKENS = 10_000  # tokens one --reads-token/--promotes may name


def token_list(spec: str) -> list[str]:
    """Token texts from a spec: `46..99` (numbers, zero-padded to the first bound's width,
    both ends included), or texts separated by commas (`Paris, Rome`; spaces trimmed). A
    QueryError for an empty or reversed spec."""
    spec = spec.strip()
    match = RANGE.fullmatch(spec)
    if match:
        lo, hi = int(match.group(1)), int(match.group(2))
        if lo > hi or hi - lo >= MAX_TOKENS:
            raise QueryError(
                f"token range {spec!r} is reversed or too long: write LOW..HIGH, e.g. 46..99"
            )
        width = len(match.group(1))
        return [f"{i:0{width}d}" for i in range(lo, hi + 1)]
    texts = [t.strip() for t in spec.split(",") if t.strip()]
    if not texts:
        raise QueryError(f"no tokens in {spec!r}: write a token, a list a,b,c or a range 46..99")
    return texts


def prompt_row(store: CatalogStore, prompt_uid: str) -> dict[str, Any]:
    rows = store.query("prompt", uid=prompt_uid)
    if not rows:
        raise QueryError(
            f"no prompt {prompt_uid!r} in the catalog; list them with `circuitcat prompt list`"
        )
    return rows[0]


def prompt_position(
    store: CatalogStore,
    prompt_uid: str,
    pos: int | None = None,
    set_uid: str | None = None,
    limit: int = 20,
) -> dict[str, Any]:
    """A prompt with its tokens, what drives its metric directly (strongest first) and, with
    `pos`, the features active at that position (negative counts from the end)."""
    prompt = prompt_row(store, prompt_uid)
    set_uid = pick_prompt_set(store, prompt_uid, set_uid)
    tokens = list(prompt["tokens"] or [])
    found: dict[str, Any] = {
        "prompt": prompt_uid,
        "text": prompt["text"],
        "set": set_uid,
        "answer": prompt["answer"],
        "start_year": prompt.get("start_year"),
        "metric_value": prompt["metric_value"],
        "tokens": tokens,
    }
    if pos is not None:
        at = pos + len(tokens) if pos < 0 else pos
        if not 0 <= at < len(tokens):
            raise QueryError(
                f"position {pos} is outside prompt {prompt_uid} ({len(tokens)} tokens: "
                f"0..{len(tokens) - 1}, or -1 for the last)"
            )
        found["position"], found["token"] = at, tokens[at]
        features = store.query(
            "prompt_position_features", prompt=prompt_uid, pos=at, set_uid=set_uid
        )
        found["features"] = features[:limit]
        found["n_features"] = len(features)
    found["metric_inputs"] = store.query(
        "prompt_metric_inputs", prompt=prompt_uid, set_uid=set_uid, limit=limit
    )
    return found


def compare_prompts(
    store: CatalogStore, a: str, b: str, set_uid: str | None = None, limit: int = 50
) -> dict[str, Any]:
    """The features the stored graphs of prompts a and b share (one transcoder set, which both
    must have), strongest first, with how many each has in all."""
    for uid in (a, b):
        prompt_row(store, uid)
    set_a = pick_prompt_set(store, a, set_uid)
    set_b = pick_prompt_set(store, b, set_a)
    n_a = len(store.query("prompt_features", prompt=a, set_uid=set_a))
    n_b = len(store.query("prompt_features", prompt=b, set_uid=set_b))
    shared = store.query("prompt_shared_features", prompt_a=a, prompt_b=b, set_uid=set_a)
    return {
        "a": a,
        "b": b,
        "set": set_a,
        "n_features_a": n_a,
        "n_features_b": n_b,
        "n_shared": len(shared),
        "shared": shared[:limit],
    }


def find_features(
    store: CatalogStore,
    reads: str | None = None,
    promotes: str | None = None,
    layer: int | None = None,
    set_uid: str | None = None,
    limit: int = 20,
) -> list[dict[str, Any]]:
    """Features that read the tokens of `reads` (de-embedding) and/or promote those of
    `promotes` (top logits); specs as `token_list` reads them."""
    if reads is None and promotes is None:
        raise QueryError("say what to find: --reads-token TOKEN and/or --promotes A..B")
    where = {"set_uid": set_uid or "", "layer": -1 if layer is None else layer, "limit": limit}
    if reads is not None and promotes is not None:
        return store.query(
            "features_reading_and_promoting",
            reads=token_list(reads),
            promotes=token_list(promotes),
            **where,
        )
    if reads is not None:
        return store.query("features_reading_tokens", tokens=token_list(reads), **where)
    return store.query("features_promoting_tokens", tokens=token_list(str(promotes)), **where)
