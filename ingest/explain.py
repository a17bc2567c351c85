"""The optional explainer: a language model behind an OpenAI-compatible endpoint writes a
feature's explanation from its top contexts, and the explanation is scored by detection, as
automatic interpretability scores them (Bills et al. 2023; Paulo et al. 2024, "detection").

Off by default: only `circuitcat feature explain --url URL --model NAME` calls it, and nothing
else in circuitcat needs it. The key, if the endpoint wants one, comes from the environment
(CIRCUITCAT_EXPLAINER_KEY), never from the command line.

- Explain: the even-ranked top contexts (up to N_EXPLAIN), the firing token marked <<so>>, go
  to the model with EXPLAIN_PROMPT; its first line is the explanation.
- Detect: held-out positives (the odd-ranked top contexts) and as many negatives (top contexts
  of other features of the set on which this feature, run on the model, never fires) are
  shuffled with a fixed seed, numbered and sent with the explanation (DETECT_PROMPT); the model
  answers with the numbers of the excerpts it thinks fire. The score is balanced accuracy:
  (true positive rate + true negative rate) / 2; 0.5 is chance.

Stored on the feature: `explanation`, `explanation_score`, and `explanation_meta` (JSON: model,
endpoint host, time, both prompts, the excerpts with their truth and the answer), so a score
can be checked; the best description a reader sees is label > explanation > automatic one.
"""

from __future__ import annotations

import json
import random
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

import torch

from circuitcat.catalog import CatalogStore, NodeBatch, NodeKind
from circuitcat.catalog.errors import IngestError
from circuitcat.catalog.records import now_iso

from .models import LoadedModel
from .transcoders.transcoder import TranscoderSet

N_EXPLAIN, N_HOLDOUT = 6, 5
EXPLAIN_PROMPT = (
    "These are text excerpts on which one feature of a language model fires; the token it "
    "fires on most is marked <<like this>>.\n\n{excerpts}\n\nIn one short phrase, what does "
    "the feature detect? Answer with the phrase only."
)
DETECT_PROMPT = (
    'A feature of a language model is described as: "{explanation}".\n\nExcerpts:\n'
    "{excerpts}\n\nWhich excerpts would the feature fire on? Answer with a JSON list of their "
    "numbers only, e.g. [1, 4]."
)


@dataclass(frozen=True)
class Explainer:
    """An OpenAI-compatible chat endpoint: `url` up to /v1 (…/v1/chat/completions is called)."""

    url: str
    model: str
    api_key: str | None = None
    timeout_s: float = 60.0

    def chat(self, prompt: str) -> str:
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": prompt}],
            "temperature": 0,
        }
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(
            self.url.rstrip("/") + "/chat/completions",
            data=json.dumps(body).encode(),
            headers=headers,
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                answer = json.loads(response.read())
            return str(answer["choices"][0]["message"]["content"])
        except (urllib.error.URLError, OSError, ValueError, KeyError, IndexError) as e:
            raise IngestError(
                f"the explainer at {self.host} did not answer as an OpenAI-compatible chat "
                f"endpoint ({type(e).__name__}: {e}); check --url and --model"
            ) from e

    @property
    def host(self) -> str:
        return urllib.parse.urlsplit(self.url).netloc or self.url


def _text(tokens: list[str]) -> str:
    joined = "".join(tokens) if any(t[:1].isspace() for t in tokens) else " ".join(tokens)
    return joined.replace("\n", "⏎").strip()


def _marked(ctx: dict[str, Any]) -> str:
    tokens, acts = list(ctx["tokens"]), list(ctx["acts"])
    peak = max(range(len(acts)), key=lambda i: (acts[i], -i))
    lead = tokens[peak][: len(tokens[peak]) - len(tokens[peak].lstrip())]
    tokens[peak] = f"{lead}<<{tokens[peak].lstrip()}>>"
    return _text(tokens)


@torch.no_grad()
def _fires_on(
    loaded: LoadedModel, tset: TranscoderSet, layer: int, index: int, tokens: list[str]
) -> bool:
    """Whether the feature fires anywhere in the excerpt, re-encoded and run on the model."""
    tokenizer = loaded.model.tokenizer
    ids = tokenizer.encode(_text(tokens), add_special_tokens=False)  # type: ignore[union-attr]
    if not ids:
        return False
    hook = tset[layer].cfg.input_hook
    _, cache = loaded.model.run_with_cache(
        torch.tensor([ids]), names_filter=lambda n: n == hook, stop_at_layer=layer + 1
    )
    acts = tset[layer].encode(cache[hook][0].to(tset[layer].W_enc.dtype))
    return bool((acts[:, index] > 0).any())


def _negatives(
    store: CatalogStore,
    loaded: LoadedModel,
    tset: TranscoderSet,
    f: dict[str, Any],
    n: int,
) -> list[str]:
    """Up to n excerpts the feature never fires on: other features' top contexts, checked."""
    others = store.query("features_in_layer", set_uid=f["set_uid"], layer=f["layer"], limit=64)
    found: list[str] = []
    for other in others:
        if other["uid"] == f["uid"] or len(found) >= n:
            continue
        rows = store.query("feature", uid=other["uid"])
        for ctx in json.loads(rows[0]["top_contexts"] or "[]")[:2]:
            text = _text(list(ctx["tokens"]))
            fires = _fires_on(loaded, tset, f["layer"], f["feature_index"], list(ctx["tokens"]))
            if not fires and text not in found and len(found) < n:
                found.append(text)
    return found


def detection_score(truth: list[bool], chosen: set[int]) -> float:
    """Balanced accuracy of the chosen (1-based) excerpt numbers against the truth."""
    pos = [i + 1 for i, t in enumerate(truth) if t]
    neg = [i + 1 for i, t in enumerate(truth) if not t]
    tpr = sum(i in chosen for i in pos) / len(pos) if pos else 0.0
    tnr = sum(i not in chosen for i in neg) / len(neg) if neg else 0.0
    return (tpr + tnr) / 2


def explain_feature(
    store: CatalogStore,
    loaded: LoadedModel,
    tset: TranscoderSet,
    uid: str,
    explainer: Explainer,
    seed: int = 0,
) -> dict[str, Any]:
    """Explain and score one feature and store the result on it (see the module doc)."""
    rows = store.query("feature", uid=uid)
    if not rows:
        raise IngestError(f"no feature {uid!r} in the catalog; nothing was explained")
    f = rows[0]
    contexts = [c for c in json.loads(f["top_contexts"] or "[]") if c.get("tokens")]
    shown, held = contexts[0::2][:N_EXPLAIN], contexts[1::2][:N_HOLDOUT]
    if not shown or not held:
        raise IngestError(
            f"feature {uid} has {len(contexts)} top contexts; explaining and scoring need at "
            "least 2 (run `circuitcat ingest features`)"
        )
    prompt = EXPLAIN_PROMPT.format(excerpts="\n".join(f"- {_marked(c)}" for c in shown))
    explanation = explainer.chat(prompt).strip().splitlines()[0].strip().strip('"')[:500]
    if not explanation:
        raise IngestError(f"the explainer returned no explanation for {uid}")
    excerpts = [(_text(list(c["tokens"])), True) for c in held]
    excerpts += [(t, False) for t in _negatives(store, loaded, tset, f, len(held))]
    random.Random(seed).shuffle(excerpts)
    numbered = "\n".join(f"{i}. {t}" for i, (t, _) in enumerate(excerpts, start=1))
    detect = DETECT_PROMPT.format(explanation=explanation, excerpts=numbered)
    answer = explainer.chat(detect)
    chosen = {int(x) for x in re.findall(r"\d+", answer.split("]")[0])}
    score = detection_score([t for _, t in excerpts], chosen)
    meta = {
        "model": explainer.model,
        "endpoint": explainer.host,
        "created_at": now_iso(),
        "method": "detection (balanced accuracy)",
        "explain_prompt": prompt,
        "detect_prompt": detect,
        "excerpts": [{"text": t, "fires": fires} for t, fires in excerpts],
        "answer": answer,
    }
    store.write_nodes(
        NodeBatch(
            NodeKind.FEATURE,
            {
                "uid": [uid],
                "explanation": [explanation],
                "explanation_score": [score],
                "explanation_meta": [json.dumps(meta)],
            },
        )
    )
    return {"uid": uid, "explanation": explanation, "score": score, **meta}
