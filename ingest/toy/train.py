"""Reproduce the toy model and its transcoders from a seed, on the CPU.

1. Train the toy HookedTransformer on the synthetic corpus (AdamW, linear warm-up then cosine
   decay); every `eval_every` steps score greater-than on the `val` start years and keep the best
   checkpoint (a run without a schedule can collapse late).
2. Train one transcoder per MLP layer on the model's activations over a fresh corpus sample.
3. Measure everything on the `eval` start years and a held-out corpus sample, and write the
   weights folder (see `circuitcat.ingest.toy.model`).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from transformer_lens import HookedTransformer

from circuitcat.ingest.evaluate import EvalReport, require_tokenizer, task_scores
from circuitcat.ingest.tasks import greater_than
from circuitcat.ingest.toy.corpus import encode_texts, generate_texts, token_batches
from circuitcat.ingest.toy.evaluation import evaluate_toy
from circuitcat.ingest.toy.model import (
    PROCESSING,
    TOKENIZER_DIR,
    TOY_MODEL_NAME,
    TRANSCODER_DIR,
    build_toy_model,
    save_toy_model,
)
from circuitcat.ingest.toy.tokenizer import load_tokenizer, save_tokenizer
from circuitcat.ingest.transcoders.native import save_transcoder_set
from circuitcat.ingest.transcoders.training import (
    Progress,
    TranscoderTrainConfig,
    train_transcoder_set,
)
from circuitcat.ingest.transcoders.transcoder import TranscoderSet

TRANSCODER_SET_NAME = "tc-v1"


@dataclass(frozen=True)
class ToyTrainConfig:
    """Everything `circuitcat toy train` needs; the defaults made the committed weights."""

    seed: int = 0
    steps: int = 2000
    batch_size: int = 32
    lr: float = 2e-3
    warmup_steps: int = 200
    weight_decay: float = 0.01
    eval_every: int = 250
    n_val_prompts: int = 200
    tc_train_sequences: int = 3000
    tc_eval_sequences: int = 500
    transcoders: TranscoderTrainConfig = field(
        default_factory=lambda: TranscoderTrainConfig(d_transcoder=256, l1_coeff=0.04)
    )


@dataclass(frozen=True)
class ToyTrainResult:
    """What a training run produced: the best validation step and the final evaluation."""

    best_step: int
    best_val_metric: float
    history: tuple[tuple[int, float, float], ...]
    report: EvalReport
    seconds: float


def _lr_factor(step: int, cfg: ToyTrainConfig) -> float:
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * progress))


def lm_loss(model: HookedTransformer, tokens: torch.Tensor, pad_id: int) -> torch.Tensor:
    """Next-token cross-entropy, pad targets ignored."""
    logits = model(tokens, return_type="logits")
    return F.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]),
        tokens[:, 1:].reshape(-1),
        ignore_index=pad_id,
    )


def train_model(
    model: HookedTransformer, cfg: ToyTrainConfig, progress: Progress | None = None
) -> tuple[int, float, list[tuple[int, float, float]]]:
    """Train in place; leaves the best checkpoint (by val greater-than) loaded.
    Returns (best step, best val metric, history of (step, loss, val metric))."""
    tokenizer = require_tokenizer(model)
    pad_id = int(tokenizer.pad_token_id)
    val_task = greater_than(tokenizer, n=cfg.n_val_prompts, seed=cfg.seed + 17, split="val")
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=cfg.lr, betas=(0.9, 0.98), weight_decay=cfg.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(s, cfg))
    batches = token_batches(tokenizer, cfg.seed, cfg.batch_size, model.cfg.n_ctx)
    best: tuple[int, float, dict[str, torch.Tensor]] = (0, -math.inf, {})
    history: list[tuple[int, float, float]] = []
    running = 0.0
    for step in range(1, cfg.steps + 1):
        model.train()
        loss = lm_loss(model, next(batches), pad_id)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        running += float(loss.detach())
        if step % cfg.eval_every == 0 or step == cfg.steps:
            model.eval()
            val = float(task_scores(model, val_task).mean())
            history.append((step, running / cfg.eval_every, val))
            running = 0.0
            if val > best[1]:
                best = (step, val, copy.deepcopy(model.state_dict()))
        if progress is not None and step % 50 == 0:
            progress("model", step, cfg.steps)
    if best[2]:
        model.load_state_dict(best[2])
    model.eval()
    return best[0], best[1], history


@contextmanager
def deterministic(seed: int) -> Iterator[None]:
    """Seed torch and turn on deterministic algorithms, restoring the previous mode after."""
    previous = torch.are_deterministic_algorithms_enabled()
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)


def train_toy_transcoders(
    model: HookedTransformer, cfg: ToyTrainConfig, progress: Progress | None = None
) -> TranscoderSet:
    """One transcoder per MLP layer, on fresh corpus samples (seeds cfg.seed + 1 and + 2)."""
    tokenizer = require_tokenizer(model)
    n_ctx = model.cfg.n_ctx
    train_texts = generate_texts(cfg.seed + 1, cfg.tc_train_sequences, n_ctx)
    eval_texts = generate_texts(cfg.seed + 2, cfg.tc_eval_sequences, n_ctx)
    tset = train_transcoder_set(
        model,
        torch.split(encode_texts(train_texts, tokenizer, n_ctx), 64),
        torch.split(encode_texts(eval_texts, tokenizer, n_ctx), 64),
        cfg.transcoders,
        name=TRANSCODER_SET_NAME,
        pad_id=int(tokenizer.pad_token_id),
        progress=progress,
    )
    tset.processing = dict(PROCESSING)
    return tset


def train_toy(
    out: Path, cfg: ToyTrainConfig | None = None, progress: Progress | None = None
) -> ToyTrainResult:
    """Train the toy model and its transcoders from `cfg.seed` and write them to `out`."""
    cfg = cfg or ToyTrainConfig()
    cfg = replace(cfg, transcoders=replace(cfg.transcoders, seed=cfg.seed))
    started = time.perf_counter()
    with deterministic(cfg.seed):
        tokenizer = load_tokenizer(save_tokenizer(out / TOKENIZER_DIR))
        model = build_toy_model(tokenizer, seed=cfg.seed)
        best_step, best_val, history = train_model(model, cfg, progress)
        tset = train_toy_transcoders(model, cfg, progress)
    report = evaluate_toy(model, tset)
    record: dict[str, Any] = {
        "training": {
            **asdict(cfg),
            "best_step": best_step,
            "best_val_metric": best_val,
            "torch_threads": torch.get_num_threads(),
            "seconds": time.perf_counter() - started,
        },
        "history": [list(h) for h in history],
        "metrics": report.as_dict(),
    }
    save_toy_model(model, out, record)
    save_transcoder_set(tset, out / TRANSCODER_DIR)
    return ToyTrainResult(
        best_step=best_step,
        best_val_metric=best_val,
        history=tuple(history),
        report=report,
        seconds=time.perf_counter() - started,
    )


__all__ = [
    "TOY_MODEL_NAME",
    "ToyTrainConfig",
    "ToyTrainResult",
    "train_model",
    "train_toy",
    "train_toy_transcoders",
]
