"""Evaluate a model and its transcoder set on a task.

Reported: the model's task metric; each transcoder's FVU, mean L0 and dead fraction on a corpus
sample; the metric with every MLP replaced by its transcoder, and with each single layer replaced.
A replaced MLP's output (`blocks.L.hook_mlp_out`) is the transcoder's output computed from that
layer's MLP input (`blocks.L.ln2.hook_normalized`); hooks live only inside `model.hooks(...)`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens import HookedTransformer

from circuitcat.catalog.errors import ModelLoadError, TranscoderLoadError
from circuitcat.ingest.tasks import Task, batch_tokens, score
from circuitcat.ingest.transcoders import replace
from circuitcat.ingest.transcoders.training import collect_activations, measure_transcoder
from circuitcat.ingest.transcoders.transcoder import TranscoderSet

Hook = tuple[str, Callable[..., Any]]


@dataclass(frozen=True)
class LayerReport:
    """One layer's transcoder: reconstruction on the corpus sample, and the task metric with
    only this layer's MLP replaced."""

    layer: int
    fvu: float
    l0: float
    dead_fraction: float
    metric_replaced: float


@dataclass(frozen=True)
class EvalReport:
    """The task metric of the model, of the model with all MLPs replaced, and per layer."""

    model_name: str
    set_name: str
    task: str
    metric_name: str
    n_prompts: int
    metric: float
    metric_all_replaced: float
    kept_fraction: float
    layers: tuple[LayerReport, ...]
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def replacement_hooks(tset: TranscoderSet, layers: Sequence[int]) -> list[Hook]:
    """Forward hooks that swap each listed layer's MLP output for its transcoder's output
    (every kind: skip connections, cross-layer decoders; see transcoders/replace.py)."""
    return replace.replacement_hooks(tset, layers)


def require_tokenizer(model: HookedTransformer) -> Any:
    """The model's tokenizer; ModelLoadError when it was built without one."""
    if model.tokenizer is None:
        raise ModelLoadError(
            f"model {model.cfg.model_name!r} has no tokenizer; load it with its tokenizer"
        )
    return model.tokenizer


def task_scores(
    model: HookedTransformer, task: Task, hooks: Sequence[Hook] = (), batch_size: int = 100
) -> Float[Tensor, " n_prompts"]:
    """The task metric of every prompt, with `hooks` active during the forward passes."""
    pad = require_tokenizer(model).pad_token_id
    values = []
    with torch.no_grad(), model.hooks(fwd_hooks=list(hooks)):
        for start in range(0, len(task.prompts), batch_size):
            prompts = task.prompts[start : start + batch_size]
            tokens, last = batch_tokens(prompts, pad_id=int(pad or 0))
            logits = model(tokens.to(model.cfg.device), return_type="logits")
            logits_last = logits[torch.arange(len(prompts)), last.to(logits.device)]
            values.append(score(task.metric, logits_last, prompts).cpu())
    return torch.cat(values)


def _check_fits(model: HookedTransformer, tset: TranscoderSet) -> None:
    for layer in tset.layers:
        cfg = tset[layer].cfg
        if layer >= model.cfg.n_layers or cfg.d_in != model.cfg.d_model:
            raise TranscoderLoadError(
                f"transcoder set {tset.name!r} layer {layer}: d_in {cfg.d_in} does not fit model "
                f"{model.cfg.model_name!r} (n_layers {model.cfg.n_layers}, d_model "
                f"{model.cfg.d_model}); load the set made for this model"
            )


def evaluate(
    model: HookedTransformer,
    tset: TranscoderSet,
    task: Task,
    corpus_tokens: Int[Tensor, "batch pos"],
    pad_id: int | None = None,
) -> EvalReport:
    """Score `task` with the model as is, with all MLPs replaced, and with each one replaced;
    transcoder metrics come from `corpus_tokens` (pad positions dropped)."""
    started = time.perf_counter()
    _check_fits(model, tset)
    base = float(task_scores(model, task).mean())
    all_replaced = float(task_scores(model, task, replacement_hooks(tset, tset.layers)).mean())
    batches = torch.split(corpus_tokens.to(model.cfg.device), 64)
    acts = collect_activations(model, batches, tset.layers, pad_id)
    layers = []
    for layer in tset.layers:
        m = measure_transcoder(tset[layer], acts[layer])
        single = float(task_scores(model, task, replacement_hooks(tset, [layer])).mean())
        layers.append(LayerReport(layer, m.fvu, m.l0, m.dead_fraction, single))
    return EvalReport(
        model_name=str(model.cfg.model_name),
        set_name=tset.name,
        task=task.name,
        metric_name=task.metric,
        n_prompts=len(task.prompts),
        metric=base,
        metric_all_replaced=all_replaced,
        kept_fraction=all_replaced / base if base != 0 else float("nan"),
        layers=tuple(layers),
        seconds=time.perf_counter() - started,
    )
