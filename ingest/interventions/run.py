"""Running an intervention: the clean pass, the edited pass live and with attention frozen, and
the attribution graph's prediction, on a batch of prompts in three forward passes.

1. clean: the model as it is (transcoder errors kept, or every MLP replaced by its transcoder
   without `keep_error`). Attention patterns and normalisation scales are recorded and enter
   the pass detached, and each MLP's output is rewritten as (error, a constant) + (what its
   transcoders write, live): the value is unchanged, and the gradient of the metric is the one
   of the linear replacement model attribution builds its graph from. One backward pass gives
   every active feature's total influence on the metric (the graph's edges summed over all
   paths, before pruning); `predicted` = sum over edited (prompt, position, feature) of
   (z' - z) x that influence, averaged over prompts. The source prompts of a patch ride along
   in this batch.
2. actual: the edited model, everything live (attention, normalisation, the error recomputed
   on the new input, every gate and TopK selection).
3. frozen: the edited model with attention patterns, normalisation scales and errors frozen at
   the clean pass's values; feature gates and TopK re-selection stay live.

Where a set writes the MLP module's output before the block's post-MLP norm (Gemma-2/3 sets
writing `mlp.hook_out`), the error and the transcoders' writes are taken before that norm, and
their sum goes through it: with its scale detached in pass 1 (the replacement's own scale,
recorded for pass 3), live in pass 2, frozen in pass 3 when `Freeze.norm`.

What pass 3 holds is a `Freeze`; the default is the above. `Freeze.circuit_tracer` gives
circuit-tracer's `feature_intervention` modes (attention only; or `constrained_layers`, whose
transcoder activations and errors are also held), checked against it in
tests/test_interventions_reference.py.

actual - frozen is what moved through attention, normalisation and error terms; frozen -
predicted is what feature nonlinearity (features switching on or off) adds. An intervention is
flagged when the graph's prediction misses most of the actual change (see `flag`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..tasks import TaskPrompt, batch_tokens, score
from ..transcoders.transcoder import TranscoderSet
from .edits import ResolvedEdit

Hook = tuple[str, Callable[..., Any]]
POST_SCALE, POST_NORMALIZED = "ln2_post.hook_scale", "ln2_post.hook_normalized"
Metric = str  # 'prob_diff' | 'logit_diff' | 'logit' (the correct tokens' mean logit)

# The documented tolerance of the illusion check (docs/concepts.md): flagged when the graph's
# prediction misses more than half of the actual change, and by more than 0.01 metric units.
FLAG_FRACTION = 0.5
FLAG_FLOOR = 0.01


def flag(actual: float, predicted: float, fraction: float = FLAG_FRACTION,
         floor: float = FLAG_FLOOR) -> bool:  # fmt: skip
    """True when the graph's paths do not carry the change: |actual - predicted| exceeds both
    `fraction` x |actual| and `floor`."""
    miss = abs(actual - predicted)
    return miss > fraction * abs(actual) and miss > floor


def metric_values(metric: Metric, logits_last: Tensor, prompts: Sequence[TaskPrompt]) -> Tensor:
    """Per prompt: the task metric, or the correct tokens' mean logit for 'logit'."""
    if metric == "logit":
        ids = torch.tensor([p.correct[0] for p in prompts], device=logits_last.device)
        return logits_last.float().gather(-1, ids[:, None])[:, 0]
    return score(metric, logits_last, prompts)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Freeze:
    """What the frozen pass (3) holds at the clean pass's values; the default is circuitcat's
    frozen model (module doc). `attention`: attention patterns; `norm`: normalisation scales;
    `error`: each transcoder's error and the output of every MLP without a transcoder.
    `constrained`: layers whose output is also held, transcoder activations included, so the
    edit's effect does not pass through their features (the skip stays live); the edit then
    writes only into these layers, and the other layers run unedited."""

    attention: bool = True
    norm: bool = True
    error: bool = True
    constrained: tuple[int, ...] | None = None

    @classmethod
    def circuit_tracer(
        cls, n_layers: int, freeze_attention: bool = True,
        constrained_layers: Sequence[int] | None = None,
    ) -> Freeze:  # fmt: skip
        """circuit-tracer 0.5's `ReplacementModel.feature_intervention` modes: attention
        patterns frozen (with `freeze_attention` or `constrained_layers`); normalisation scales
        only when `constrained_layers` spans every layer; errors live outside it."""
        layers = tuple(constrained_layers) if constrained_layers else None
        return cls(
            attention=freeze_attention or layers is not None,
            norm=layers is not None and set(range(n_layers)) <= set(layers),
            error=False,
            constrained=layers,
        )


FROZEN = Freeze()


@dataclass
class CleanRun:
    """What the clean pass recorded: logits, each layer's activations, frozen values, and each
    active feature's influence on the metric (d metric / d z)."""

    logits: Tensor  # [batch, pos, d_vocab]
    z: dict[int, Tensor]  # layer -> [batch, pos, d_transcoder]
    grad: dict[int, Tensor]  # layer -> [batch, pos, d_transcoder]
    frozen: dict[str, Tensor] = field(default_factory=dict)  # hook name -> recorded value
    errors: dict[int, Tensor] = field(default_factory=dict)  # output layer -> error term


class _Replacement:
    """Hooks of one pass: each transcoder's activations computed at its input hook (and
    edited), each replaced layer's output rewritten as error + transcoder writes."""

    def __init__(
        self, model: Any, tset: TranscoderSet, keep_error: bool,
        held: CleanRun | None = None, constrained: tuple[int, ...] = (),
    ) -> None:  # fmt: skip
        self.model, self.tset, self.keep_error = model, tset, keep_error
        self.z: dict[int, Tensor] = {}
        self.writes: dict[int, Tensor] = {}
        self.inputs: dict[int, Tensor] = {}
        # Freeze.constrained: writes into these layers come from `held`'s activations
        self.held, self.constrained = held, set(constrained)
        # ln2_post.hook_normalized and the scale it was divided by, where the set writes
        # before the post-MLP norm (`post_norm_hooks`)
        self.normalized: dict[int, Tensor] = {}
        self.post_scale: dict[int, Tensor] = {}

    def mlp_output(self, layer: int, out: Tensor) -> Tensor:
        """What the transcoders of `layer` replace, from `out` (hook_mlp_out): `out` itself,
        or the MLP module's output before the post-MLP norm where the set writes there."""
        if layer not in self.tset.post_norm:
            return out
        return self.normalized.pop(layer) * self.post_scale.pop(layer)

    def post_norm_hooks(self) -> list[Hook]:
        """Recorders of the post-MLP norm's input, for layers whose set writes before it. They
        go last in a pass's hooks, so they see the scale the pass used (frozen or live)."""
        hooks: list[Hook] = []
        for layer in self.tset.post_norm:
            hooks.append((f"blocks.{layer}.{POST_SCALE}", _bind(self._keep_scale, layer)))
            hooks.append((f"blocks.{layer}.{POST_NORMALIZED}", _bind(self._keep_normalized, layer)))
        return hooks

    def _keep_scale(self, t: Tensor, layer: int) -> None:
        self.post_scale[layer] = t.detach()

    def _keep_normalized(self, t: Tensor, layer: int) -> None:
        self.normalized[layer] = t.detach()

    def encode(self, x: Tensor, layer: int, edit: ResolvedEdit | None,
               leaf: dict[int, Tensor] | None) -> None:  # fmt: skip
        if layer == self.tset.layers[0]:
            self.writes.clear()
        tc = self.tset[layer]
        x = x.to(tc.W_enc.dtype)
        self.inputs[layer] = x
        z = tc.encode(x)
        self.z[layer] = z
        if leaf is not None:
            leaf[layer] = torch.zeros_like(z, requires_grad=True)
            z = z + leaf[layer]
        z_out = edit.apply(layer, z) if edit is not None else z
        for m in tc.out_layers:
            if m in self.tset.transcoders:
                w = self._source(layer, m, z, z_out, edit) @ tc.decoder(m)
                self.writes[m] = self.writes[m] + w if m in self.writes else w

    def _source(self, layer: int, m: int, z: Tensor, z_out: Tensor,
                edit: ResolvedEdit | None) -> Tensor:  # fmt: skip
        """The activations of `layer` that write into layer `m`: edited, or with
        Freeze.constrained the held ones (edited) into a constrained layer and the unedited
        live ones elsewhere."""
        if self.held is None:
            return z_out
        if m not in self.constrained:
            return z
        held = self.held.z[layer][: z.shape[0]].to(z)
        return edit.apply(layer, held) if edit is not None else held

    def output(self, layer: int) -> Tensor:
        """The transcoders' output at `layer`: writes + b_dec_out + skip of its own input."""
        tc = self.tset[layer]
        return self.writes.pop(layer) + tc.b_dec_out + tc.skip(self.inputs[layer])


def _freeze_names(model: Any, tset: TranscoderSet, freeze: Freeze = FROZEN) -> list[str]:
    """What frozen mode holds at the clean pass's values: attention patterns, normalisation
    scales, and the output of every MLP without a transcoder (all error, as in attribution),
    each as `freeze` says."""
    mlps = {f"blocks.{layer}.hook_mlp_out" for layer in range(model.cfg.n_layers)}
    mlps -= {tset[layer].cfg.output_hook for layer in tset.layers}
    return [
        name
        for name in model.hook_dict
        if (freeze.attention and name.endswith("attn.hook_pattern"))
        or (freeze.norm and name.endswith("hook_scale"))
        or (freeze.error and name in mlps)
    ]


def _bind(fn: Callable[..., Any], key: Any) -> Callable[..., Any]:
    def hook(t: Tensor, hook: Any) -> Any:
        return fn(t, key)

    return hook


def clean_pass(
    model: Any, tset: TranscoderSet, tokens: Tensor, last: Tensor,
    prompts: Sequence[TaskPrompt], metric: Metric, keep_error: bool = True,
) -> CleanRun:  # fmt: skip
    """Pass 1 (module doc): the clean logits, activations, frozen values and influences.
    Rows of `tokens` past len(prompts) (patch sources) are run but not scored."""
    rep = _Replacement(model, tset, keep_error)
    leaf: dict[int, Tensor] = {}
    frozen: dict[str, Tensor] = {}
    errors: dict[int, Tensor] = {}

    def record(t: Tensor, name: str) -> Tensor:
        frozen[name] = t.detach()
        return t.detach()

    def out_hook(out: Tensor, layer: int) -> Tensor:
        tc_out = rep.output(layer)
        real = rep.mlp_output(layer, out)
        err = (real - tc_out).detach() if keep_error else torch.zeros_like(real)
        errors[layer] = err
        y = err + tc_out
        if layer in tset.post_norm:  # the replacement's own scale, held for pass 3
            scale = tset.post_norm[layer].scale(y).detach()
            frozen[f"blocks.{layer}.{POST_SCALE}"] = scale
            y = tset.to_output_hook(layer, y, scale)
        return y.to(out.dtype)

    hooks = _transcoder_hooks(tset, lambda x, layer: rep.encode(x, layer, None, leaf), out_hook)
    hooks += [(name, _bind(record, name)) for name in _freeze_names(model, tset)]
    hooks += rep.post_norm_hooks()
    with torch.enable_grad(), model.hooks(fwd_hooks=hooks):
        logits = model(tokens.to(model.cfg.device), return_type="logits")
        rows = torch.arange(len(prompts), device=logits.device)
        values = metric_values(metric, logits[rows, last[: len(prompts)].to(logits.device)],
                               prompts)  # fmt: skip
        # Gradients of the leaves only: the model's parameters keep no .grad.
        layers = list(leaf)
        found = torch.autograd.grad(
            values.sum(), [leaf[layer] for layer in layers], allow_unused=True
        )
    grads = {
        layer: (g if g is not None else torch.zeros_like(leaf[layer])).detach()
        for layer, g in zip(layers, found, strict=True)
    }
    z = {layer: t.detach() for layer, t in rep.z.items()}
    return CleanRun(logits.detach(), z, grads, frozen, errors)


def edited_pass(
    model: Any, tset: TranscoderSet, tokens: Tensor, edit: ResolvedEdit,
    clean: CleanRun | None = None, keep_error: bool = True, freeze: Freeze = FROZEN,
) -> Tensor:  # fmt: skip
    """Pass 2 (actual, `clean` None) or 3 (frozen at `clean`'s values, what `freeze` names:
    by default patterns, scales and errors): the logits of the edited model."""
    constrained = (freeze.constrained or ()) if clean is not None else ()
    held = clean if clean is not None and freeze.constrained is not None else None
    rep = _Replacement(model, tset, keep_error, held, constrained)

    def out_hook(out: Tensor, layer: int) -> Tensor:
        tc_out = rep.output(layer)
        real = rep.mlp_output(layer, out)
        if clean is not None and (freeze.error or layer in rep.constrained):
            err = clean.errors[layer][: out.shape[0]]
        elif keep_error:
            # the error on this pass's input: the MLP minus what the unedited features write
            err = real - tset.output(layer, rep.z, rep.inputs[layer])
        else:
            err = torch.zeros_like(real)
        scale = None  # the post-MLP norm's, where the set writes before it: live unless frozen
        if clean is not None and freeze.norm and layer in tset.post_norm:
            scale = clean.frozen[f"blocks.{layer}.{POST_SCALE}"][: out.shape[0]]
        return tset.to_output_hook(layer, err + tc_out, scale).to(out.dtype)

    hooks = _transcoder_hooks(tset, lambda x, layer: rep.encode(x, layer, edit, None), out_hook)
    if clean is not None:
        hooks += [
            (name, _bind(lambda t, n: clean.frozen[n][: t.shape[0]], name))
            for name in _freeze_names(model, tset, freeze)
        ]
    hooks += rep.post_norm_hooks()
    with torch.no_grad(), model.hooks(fwd_hooks=hooks):
        return model(tokens.to(model.cfg.device), return_type="logits")


def _transcoder_hooks(
    tset: TranscoderSet,
    on_input: Callable[[Tensor, int], None],
    on_output: Callable[[Tensor, int], Tensor],
) -> list[Hook]:
    hooks: list[Hook] = []
    for layer in tset.layers:
        tc = tset[layer]
        hooks.append((tc.cfg.input_hook, _bind(lambda x, key: on_input(x, key), layer)))
        hooks.append((tc.cfg.output_hook, _bind(on_output, layer)))
    return hooks


def pad_batch(
    prompts: Sequence[TaskPrompt], pad_id: int, extra: Sequence[TaskPrompt] = ()
) -> tuple[Tensor, Tensor]:
    """Right-padded tokens of `prompts` then `extra` (patch sources), and each row's last
    position."""
    return batch_tokens([*prompts, *extra], pad_id=pad_id)
