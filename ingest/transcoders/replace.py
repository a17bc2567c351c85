"""Forward hooks that replace MLPs by a transcoder set, for every kind of set.

At each transcoder's input hook its features are encoded (and optionally edited, e.g. ablated
to their means); what they write is added to a pending output for every replaced layer they
decode to (a cross-layer feature writes to several); at a replaced layer's output hook the
pending output (writes + b_dec_out + the skip of the layer's own input) replaces the MLP's,
through the block's post-MLP norm (live) where the set writes before it (Gemma-2/3 sets that
write `mlp.hook_out`: `TranscoderSet.to_output_hook`).
Transformer_lens fires the hooks in layer order, input before output, so every write reaches
its layer. The model runs live: every gate (ReLU, JumpReLU threshold, TopK selection) sees
this pass's inputs. Use hooks only inside `model.hooks(...)`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from torch import Tensor

from circuitcat.ingest.transcoders.transcoder import TranscoderSet

Hook = tuple[str, Callable[..., Any]]
Edit = Callable[[int, Tensor], Tensor]  # (layer, activations) -> activations


def replacement_hooks(
    tset: TranscoderSet, layers: Iterable[int], edit: Edit | None = None
) -> list[Hook]:
    """Hooks that swap each of `layers`' MLP output for what the set writes there, with every
    layer's activations passed through `edit` first when given."""
    replaced = set(layers)
    needed = sorted(replaced | {w for m in replaced for w in tset.writers(m)})
    pending: dict[int, Tensor] = {}

    def read_input(x: Tensor, hook: Any, layer: int) -> None:
        if layer == needed[0]:
            pending.clear()  # a new forward pass
        tc = tset[layer]
        x = x.to(tc.W_enc.dtype)
        z = tc.encode(x)
        z = edit(layer, z) if edit is not None else z
        if layer in replaced:
            _add(pending, layer, tc.b_dec_out + tc.skip(x))
        for m in tc.out_layers:
            if m in replaced:
                _add(pending, m, z @ tc.decoder(m))

    def write_output(out: Tensor, hook: Any, layer: int) -> Tensor:
        return tset.to_output_hook(layer, pending.pop(layer)).to(out.dtype)

    hooks: list[Hook] = []
    for layer in needed:
        tc = tset[layer]
        hooks.append((tc.cfg.input_hook, _bind(read_input, layer)))
        if layer in replaced:
            hooks.append((tc.cfg.output_hook, _bind(write_output, layer)))
    return hooks


def _add(pending: dict[int, Tensor], layer: int, value: Tensor) -> None:
    pending[layer] = value + pending[layer] if layer in pending else value


def _bind(fn: Callable[..., Any], layer: int) -> Callable[..., Any]:
    def hook(t: Tensor, hook: Any) -> Any:
        return fn(t, hook, layer)

    return hook
