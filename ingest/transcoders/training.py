"""Train one ReLU transcoder per MLP layer from a model's own activations.

x = MLP input (`blocks.L.ln2.hook_normalized`), y = MLP output (`blocks.L.hook_mlp_out`).
Loss = normalised MSE (sum ||y - y_hat||^2 / sum ||y - mean y||^2) + l1_coeff * mean_t sum_j
z_j / s, with decoder rows kept at unit norm (so z_j is feature j's output norm) and s the RMS
norm of the centred output (so l1_coeff does not depend on the model's scale). b_dec_out starts
at the mean output; features that never fire are resampled towards badly reconstructed tokens.

Metrics: FVU (fraction of variance unexplained), mean L0 (active features per token), dead
fraction (features that never fire on an evaluation set). Dimension `n` counts tokens.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace

import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens import HookedTransformer

from circuitcat.catalog.errors import IngestError
from circuitcat.ingest.transcoders.transcoder import Transcoder, TranscoderConfig, TranscoderSet

INPUT_HOOK = "blocks.{layer}.ln2.hook_normalized"
OUTPUT_HOOK = "blocks.{layer}.hook_mlp_out"

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class TranscoderTrainConfig:
    """Hyper-parameters of transcoder training (one transcoder per layer)."""

    d_transcoder: int = 256
    l1_coeff: float = 0.02
    lr: float = 2e-3
    steps: int = 3000
    batch_size: int = 1024
    warmup_steps: int = 100
    resample_every: int = 400
    resample_until: float = 0.6
    seed: int = 0


@dataclass(frozen=True)
class TranscoderMetrics:
    """How well one transcoder stands in for its MLP on an evaluation set."""

    fvu: float
    l0: float
    dead_fraction: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass
class LayerActivations:
    """MLP input and output of one layer at every kept token position."""

    x: Float[Tensor, "n d_in"]
    y: Float[Tensor, "n d_out"]


def collect_activations(
    model: HookedTransformer,
    batches: Iterable[Int[Tensor, "batch pos"]],
    layers: list[int],
    pad_id: int | None = None,
) -> dict[int, LayerActivations]:
    """Run the model over `batches` and keep each layer's MLP input/output (pad positions
    dropped when `pad_id` is given)."""
    names = {INPUT_HOOK.format(layer=i) for i in layers} | {
        OUTPUT_HOOK.format(layer=i) for i in layers
    }
    xs: dict[int, list[Tensor]] = {i: [] for i in layers}
    ys: dict[int, list[Tensor]] = {i: [] for i in layers}
    with torch.no_grad():
        for tokens in batches:
            _, cache = model.run_with_cache(tokens, names_filter=lambda n: n in names)
            keep = (
                (tokens != pad_id)
                if pad_id is not None
                else torch.ones_like(tokens, dtype=torch.bool)
            )
            for i in layers:
                xs[i].append(cache[INPUT_HOOK.format(layer=i)][keep].float().cpu())
                ys[i].append(cache[OUTPUT_HOOK.format(layer=i)][keep].float().cpu())
    if not any(xs[i] for i in layers):
        raise IngestError("no token batches to collect activations from; pass a non-empty corpus")
    return {i: LayerActivations(torch.cat(xs[i]), torch.cat(ys[i])) for i in layers}


def init_transcoder(
    acts: LayerActivations, layer: int, d_transcoder: int, generator: torch.Generator
) -> Transcoder:
    """Random unit-norm decoder rows, encoder scaled so pre-activations start near unit size,
    b_dec_out at the mean output."""
    d_in, d_out = acts.x.shape[1], acts.y.shape[1]
    cfg = TranscoderConfig(
        d_in=d_in,
        d_out=d_out,
        d_transcoder=d_transcoder,
        layer=layer,
        input_hook=INPUT_HOOK.format(layer=layer),
        output_hook=OUTPUT_HOOK.format(layer=layer),
    )
    tc = Transcoder(cfg)
    x_norm = acts.x.norm(dim=-1).mean().clamp_min(1e-6)
    with torch.no_grad():
        w_dec = torch.randn(d_transcoder, d_out, generator=generator)
        tc.W_dec.copy_(w_dec / w_dec.norm(dim=-1, keepdim=True))
        w_enc = torch.randn(d_in, d_transcoder, generator=generator)
        tc.W_enc.copy_(w_enc / w_enc.norm(dim=0, keepdim=True) / x_norm * math.sqrt(d_in))
        tc.b_dec_out.copy_(acts.y.mean(0))
    tc.b_dec.requires_grad_(False)
    return tc


def transcoder_loss(
    tc: Transcoder,
    x: Float[Tensor, "n d_in"],
    y: Float[Tensor, "n d_out"],
    l1_coeff: float,
    scale: float,
) -> tuple[Tensor, Float[Tensor, "n d_transcoder"], Float[Tensor, " n"]]:
    """(loss, feature activations, per-token squared error)."""
    z = tc.encode(x)
    err = (tc.decode(z) - y).pow(2).sum(-1)
    variance = (y - y.mean(0)).pow(2).sum(-1).mean().clamp_min(1e-8)
    loss = err.mean() / variance + l1_coeff * z.sum(-1).mean() / scale
    return loss, z, err


def _lr_factor(step: int, cfg: TranscoderTrainConfig) -> float:
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress))


def resample_dead(
    tc: Transcoder,
    optimizer: torch.optim.Adam,
    dead: torch.Tensor,
    x: Float[Tensor, "n d_in"],
    y: Float[Tensor, "n d_out"],
    generator: torch.Generator,
) -> None:
    """Point dead features at tokens sampled by squared reconstruction error."""
    n_dead = int(dead.sum())
    if n_dead == 0:
        return
    with torch.no_grad():
        resid = y - tc(x)
        weights = resid.pow(2).sum(-1) + 1e-12
        picks = torch.multinomial(weights, n_dead, replacement=n_dead > len(x), generator=generator)
        alive_norm = tc.W_enc[:, ~dead].norm(dim=0).mean() if (~dead).any() else 1.0
        idx = dead.nonzero().squeeze(-1)
        direction = resid[picks] / resid[picks].norm(dim=-1, keepdim=True).clamp_min(1e-8)
        tc.W_dec[idx] = direction
        xin = x[picks] - tc.b_dec
        tc.W_enc[:, idx] = (xin / xin.norm(dim=-1, keepdim=True).clamp_min(1e-8)).T * (
            0.2 * alive_norm
        )
        tc.b_enc[idx] = 0.0
        for param, axis in ((tc.W_enc, 1), (tc.W_dec, 0), (tc.b_enc, 0)):
            state = optimizer.state.get(param, {})
            for key in ("exp_avg", "exp_avg_sq"):
                if key in state:
                    state[key].index_fill_(axis, idx, 0.0)


def train_transcoder(
    acts: LayerActivations,
    layer: int,
    cfg: TranscoderTrainConfig,
    progress: Progress | None = None,
) -> Transcoder:
    """Train one transcoder on `acts` (tokens sampled with replacement, seeded)."""
    generator = torch.Generator().manual_seed(cfg.seed * 1000 + layer)
    tc = init_transcoder(acts, layer, cfg.d_transcoder, generator)
    params = [tc.W_enc, tc.b_enc, tc.W_dec, tc.b_dec_out]
    optimizer = torch.optim.Adam(params, lr=cfg.lr, betas=(0.9, 0.999))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(s, cfg))
    scale = float((acts.y - acts.y.mean(0)).pow(2).sum(-1).mean().sqrt().clamp_min(1e-8))
    fired = torch.zeros(cfg.d_transcoder, dtype=torch.bool)
    n = acts.x.shape[0]
    for step in range(cfg.steps):
        idx = torch.randint(0, n, (cfg.batch_size,), generator=generator)
        loss, z, _ = transcoder_loss(tc, acts.x[idx], acts.y[idx], cfg.l1_coeff, scale)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        with torch.no_grad():
            tc.W_dec.div_(tc.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-8))
        fired |= (z > 0).any(0)
        if (step + 1) % cfg.resample_every == 0 and step < cfg.resample_until * cfg.steps:
            sample = torch.randint(0, n, (min(n, 8192),), generator=generator)
            resample_dead(tc, optimizer, ~fired, acts.x[sample], acts.y[sample], generator)
            fired.zero_()
        if progress is not None and (step + 1) % 100 == 0:
            progress(f"transcoder L{layer}", step + 1, cfg.steps)
    return tc


def measure_transcoder(
    tc: Transcoder, acts: LayerActivations, chunk: int = 8192
) -> TranscoderMetrics:
    """FVU, mean L0 and dead fraction of `tc` on `acts`."""
    err, l0 = 0.0, 0.0
    fired = torch.zeros(tc.cfg.d_transcoder, dtype=torch.bool, device=tc.W_enc.device)
    with torch.no_grad():
        for start in range(0, acts.x.shape[0], chunk):
            x = acts.x[start : start + chunk].to(tc.W_enc.device)
            y = acts.y[start : start + chunk].to(tc.W_enc.device)
            z = tc.encode(x)
            err += float((tc.decode(z) - y).pow(2).sum())
            l0 += float((z > 0).sum())
            fired |= (z > 0).any(0)
        total = float((acts.y - acts.y.mean(0)).pow(2).sum())
    n = acts.x.shape[0]
    return TranscoderMetrics(
        fvu=err / max(total, 1e-12),
        l0=l0 / max(n, 1),
        dead_fraction=float((~fired).float().mean()),
    )


def train_transcoder_set(
    model: HookedTransformer,
    train_batches: Iterable[Int[Tensor, "batch pos"]],
    eval_batches: Iterable[Int[Tensor, "eval_batch pos"]],
    cfg: TranscoderTrainConfig,
    name: str,
    pad_id: int | None = None,
    progress: Progress | None = None,
) -> TranscoderSet:
    """One transcoder per MLP layer of `model`, metrics measured on `eval_batches` and stored in
    each transcoder's `cfg.metrics`."""
    layers = list(range(model.cfg.n_layers))
    train_acts = collect_activations(model, train_batches, layers, pad_id)
    eval_acts = collect_activations(model, eval_batches, layers, pad_id)
    transcoders: dict[int, Transcoder] = {}
    for layer in layers:
        tc = train_transcoder(train_acts[layer], layer, cfg, progress)
        tc.cfg = replace(tc.cfg, metrics=measure_transcoder(tc, eval_acts[layer]).as_dict())
        tc.b_dec.requires_grad_(True)
        transcoders[layer] = tc.eval()
    return TranscoderSet(
        name=name,
        model_name=model.cfg.model_name,
        format="circuitcat",
        source="trained",
        transcoders=transcoders,
        processing={},
    )
