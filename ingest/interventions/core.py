"""`intervene`: the front door. One intervention on a batch of prompts, with the metric
before, after (live), frozen and predicted, the illusion flag, the top next tokens and an
optional greedy continuation. See run.py for the passes and docs/concepts.md for the numbers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from circuitcat.catalog.errors import InterventionError

from ..tasks import TaskPrompt
from ..transcoders.load import validate_against_model
from ..transcoders.transcoder import TranscoderSet
from .edits import Intervention, ResolvedEdit, check_intervention, resolve
from .run import (
    FLAG_FLOOR,
    FLAG_FRACTION,
    FROZEN,
    Freeze,
    Metric,
    clean_pass,
    edited_pass,
    flag,
    metric_values,
    pad_batch,
)

TOP_K = 5


@dataclass(frozen=True)
class InterventionResult:
    """The outcome of one intervention (means over the prompts; `per_prompt` has each)."""

    spec: dict[str, Any]
    metric: str
    n_prompts: int
    before: float
    after: float  # actual: attention, normalisation and errors live
    frozen: float  # attention, normalisation and errors frozen at the clean pass (`freeze`)
    predicted: float  # the attribution graph's first-order prediction
    flagged: bool
    tolerance: dict[str, float]
    per_prompt: list[dict[str, float]]
    top_before: list[dict[str, Any]]
    top_after: list[dict[str, Any]]
    generated_before: str | None = None
    generated_after: str | None = None

    @property
    def change(self) -> float:
        return self.after - self.before

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["change"] = {
            "actual": self.after - self.before,
            "frozen": self.frozen - self.before,
            "predicted": self.predicted - self.before,
        }
        return out


def _pad_id(model: Any) -> int:
    return int(getattr(model.tokenizer, "pad_token_id", None) or 0)


def _check_fits(model: Any, prompts: Sequence[TaskPrompt], extra: int = 0) -> None:
    n_ctx = int(model.cfg.n_ctx)
    for p in prompts:
        if len(p.tokens) + extra > n_ctx:
            raise InterventionError(
                f"prompt {p.text[:40]!r} is {len(p.tokens)} tokens"
                + (f" (+{extra} generated)" if extra else "")
                + f"; the model reads at most {n_ctx}: shorten it"
            )


def _aligned_source(
    iv: Intervention, z: Mapping[int, Tensor], dst_lengths: Sequence[int], src_len: int,
    src_row: int, width: int,
) -> dict[int, Tensor]:  # fmt: skip
    """Patch: per layer, [batch, width, d_transcoder] holding, at each destination position
    edited, the source's activation at the matching position (same index; negative positions
    count from each prompt's own end)."""
    out: dict[int, Tensor] = {}
    for layer, zl in z.items():
        src = zl[src_row]
        aligned = torch.zeros(len(dst_lengths), width, zl.shape[-1])
        for row, length in enumerate(dst_lengths):
            if iv.positions is None:
                if length != src_len:
                    raise InterventionError(
                        f"patching every position needs prompts of one length: the source has "
                        f"{src_len} tokens, a destination {length}; give --pos"
                    )
                pairs = [(p, p) for p in range(length)]
            else:
                pairs = []
                for p in iv.positions:
                    if not -src_len <= p < src_len:
                        raise InterventionError(
                            f"position {p} is past the end of the source prompt ({src_len} tokens)"
                        )
                    pairs.append((p % length, p % src_len))
            for dst, s in pairs:
                aligned[row, dst] = src[s].float().cpu()
        out[layer] = aligned
    return out


def _top(model: Any, logits_last: Tensor, k: int) -> list[dict[str, Any]]:
    mean = logits_last.float().mean(0)
    probs = torch.softmax(logits_last.float(), -1).mean(0)
    idx = torch.topk(probs, min(k, probs.shape[0])).indices.tolist()
    tok = model.tokenizer
    return [
        {
            "token": tok.decode([i]) if tok is not None else str(i),
            "token_id": i,
            "logit": float(mean[i]),
            "prob": float(probs[i]),
        }
        for i in idx
    ]


def intervene(
    model: Any,
    tset: TranscoderSet,
    prompts: Sequence[TaskPrompt],
    metric: Metric,
    iv: Intervention,
    *,
    means: Mapping[int, Tensor] | None = None,
    act_max: Mapping[int, Tensor] | None = None,
    source: TaskPrompt | None = None,
    generate: int = 0,
    top_k: int = TOP_K,
    freeze: Freeze = FROZEN,
) -> InterventionResult:
    """Run `iv` on `prompts` (one batch) and compare with the clean run and the graph.

    `metric`: 'prob_diff' or 'logit_diff' over each prompt's correct and incorrect tokens, or
    'logit' (the first correct token's logit). `means` is needed by the mean op (layer ->
    [d_transcoder]), `act_max` by a clamp in multiples of max, `source` by patch. `freeze` is
    what the frozen number holds at the clean run (by default attention patterns,
    normalisation scales and errors; `Freeze.circuit_tracer(...)` for circuit-tracer's modes).
    The model runs on its own device; results are fp32 means over the prompts."""
    check_intervention(iv, tset)
    validate_against_model(tset, model)  # e.g. a set writing before ln2_post loaded without it
    if not prompts:
        raise InterventionError("an intervention needs at least one prompt")
    if iv.op == "patch" and source is None:
        raise InterventionError("patch needs a source prompt (--source)")
    _check_fits(model, [*prompts, *([source] if source else [])])
    _check_fits(model, prompts[:1], generate)
    extra = [source] if source is not None else []
    tokens, last = pad_batch(prompts, _pad_id(model), extra)
    lengths = [len(p.tokens) for p in prompts]
    n, width = len(prompts), tokens.shape[1]
    clean = clean_pass(model, tset, tokens, last, prompts, metric, iv.keep_error)
    source_z = None
    if source is not None:
        source_z = _aligned_source(iv, clean.z, lengths, len(source.tokens), n, width)
    edit = resolve(iv, tset, lengths, width, means=means, act_max=act_max, source_z=source_z)
    rows = torch.arange(n)
    last_n = last[:n]

    def score_of(logits: Tensor) -> Tensor:
        return metric_values(metric, logits[rows, last_n.to(logits.device)], prompts).cpu()

    before = score_of(clean.logits)
    live = edited_pass(model, tset, tokens[:n], edit, None, iv.keep_error)
    after = score_of(live)
    frozen = score_of(edited_pass(model, tset, tokens[:n], edit, clean, iv.keep_error, freeze))
    predicted = before + _first_order(edit, clean, n)
    per_prompt = [
        {"before": float(b), "after": float(a), "frozen": float(f), "predicted": float(p)}
        for b, a, f, p in zip(before, after, frozen, predicted, strict=True)
    ]
    mean_before, mean_after = float(before.mean()), float(after.mean())
    mean_predicted = float(predicted.mean())
    gen = (
        _generate(model, tset, prompts[0], iv, edit, generate, means, act_max) if generate else None
    )
    return InterventionResult(
        spec=iv.spec(),
        metric=metric,
        n_prompts=n,
        before=mean_before,
        after=mean_after,
        frozen=float(frozen.mean()),
        predicted=mean_predicted,
        flagged=flag(mean_after - mean_before, mean_predicted - mean_before),
        tolerance={"fraction": FLAG_FRACTION, "floor": FLAG_FLOOR},
        per_prompt=per_prompt,
        top_before=_top(model, clean.logits[rows, last_n.to(clean.logits.device)], top_k),
        top_after=_top(model, live[rows, last_n.to(live.device)], top_k),
        generated_before=gen[0] if gen else None,
        generated_after=gen[1] if gen else None,
    )


def _first_order(edit: ResolvedEdit, clean: Any, n: int) -> Tensor:
    """Per prompt: sum over edited (position, feature) of (z' - z) x d metric / d z."""
    total = torch.zeros(n)
    for layer in edit.layers:
        z = clean.z[layer][:n]
        delta = edit.delta(layer, z)
        total += (delta * clean.grad[layer][:n]).flatten(1).sum(1).cpu()
    return total


def _generate(
    model: Any, tset: TranscoderSet, prompt: TaskPrompt, iv: Intervention, edit: ResolvedEdit,
    n_new: int, means: Mapping[int, Tensor] | None, act_max: Mapping[int, Tensor] | None,
) -> tuple[str, str]:  # fmt: skip
    """Greedy continuations of `prompt` without and with the edit (live). Edits at every
    position also act on the generated tokens; edits at given positions (and patches) stay
    at those positions of the prompt."""
    outs = []
    for edited in (False, True):
        ids = list(prompt.tokens)
        for _ in range(n_new):
            tokens = torch.tensor([ids])
            if edited:
                step = _extend(edit, iv, tset, len(ids), means, act_max)
                logits = edited_pass(model, tset, tokens, step, None, iv.keep_error)
            else:
                with torch.no_grad():
                    logits = model(tokens.to(model.cfg.device), return_type="logits")
            ids.append(int(logits[0, -1].argmax()))
        new = ids[len(prompt.tokens) :]
        outs.append(model.tokenizer.decode(new) if model.tokenizer is not None else str(new))
    return outs[0], outs[1]


def _extend(
    edit: ResolvedEdit, iv: Intervention, tset: TranscoderSet, length: int,
    means: Mapping[int, Tensor] | None, act_max: Mapping[int, Tensor] | None,
) -> ResolvedEdit:  # fmt: skip
    """The first prompt's edit widened to `length` positions (see `_generate`)."""
    if iv.positions is None and iv.op != "patch":
        return resolve(iv, tset, [length], length, means=means, act_max=act_max)
    out = ResolvedEdit({}, dict(edit.factor), {}, list(edit.layers))
    for layer in edit.layers:
        m = edit.mask[layer][:1]
        out.mask[layer] = torch.nn.functional.pad(m, (0, 0, 0, length - m.shape[1]))
        off = edit.offset[layer]
        if off.dim() == 3:
            off = torch.nn.functional.pad(off[:1], (0, 0, 0, length - off.shape[1]))
        out.offset[layer] = off
    return out
