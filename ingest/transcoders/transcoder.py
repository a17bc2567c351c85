"""The transcoder: a sparse, wide replacement for one MLP layer, of every kind in use.

Dimension names used across ingest/ (jaxtyping + beartype check them under pytest, for the
modules listed in pyproject.toml's addopts):
    batch       prompts in a batch
    pos         token positions
    d_model     residual stream width
    d_in        transcoder input width (d_model for MLP transcoders)
    d_out       transcoder output width (d_model)
    d_transcoder  number of transcoder features
    d_vocab     vocabulary size
    n_after     later layers a cross-layer feature also writes to
    n_layers, n_heads, d_head   attention shapes as in HookedTransformer: `model.W_V` is
                [n_layers, n_heads, d_model, d_head], `model.W_O` [n_layers, n_heads, d_head,
                d_model]
    k           entries kept per row by a top-k
    n           the length of one flat list (edges, tokens, kept heads), local to a signature
    n_tokens    a token stream (corpus.py); n_prompts: a task's prompts (evaluate.py)
A module names its own dimensions in its docstring (weights.py, topk.py, feature_stats.py,
attribution/frozen.py). A leading underscore (`_d`) documents a dimension that jaxtyping leaves
unchecked because the function checks it itself with a clearer IngestError (topk.py).

One `Transcoder` per layer l, its kind set by `TranscoderConfig`:

    pre = (x - b_dec) @ W_enc + b_enc
    z   = activation(pre)       relu:      max(pre, 0)
                                jumprelu:  pre * (pre > threshold)   (per feature)
                                topk:K     pre where pre is among the K largest of its row, else 0
    out_l = z @ W_dec + b_dec_out [+ x @ W_skip.T]

Conventions of the libraries, and how they map here (see docs/concepts.md):
- circuit-tracer's JumpReLU is `pre * (pre > threshold)`, as here; SAELens's is
  `ReLU(pre) * (pre > threshold)`, which equals it with the threshold raised to 0 where it is
  negative, so the SAELens loader stores max(threshold, 0).
- circuit-tracer's TopK keeps the K largest pre-activations whatever their sign (as here).
- `W_skip` is [d_out, d_in] applied as x @ W_skip.T, as both SAELens and circuit-tracer store it:
  a linear route from the MLP's input to its output that no feature owns.
- Cross-layer transcoders (`n_outputs` > 1): a feature encoded at layer l also writes to the
  layers l + 1 .. l + n_outputs - 1 through `W_dec_after[m - l - 1]`; the output of MLP m is
  then the sum over every layer l <= m whose features write to m (`TranscoderSet.output`).
Loaders fold an input-side b_dec into b_enc when a format has one, so b_dec is usually zero.
- Where a set writes the MLP module's own output (circuit-tracer's `mlp.hook_out`) on a model
  whose blocks normalise that output before the residual stream (Gemma-2/3's RMSNorm
  `ln2_post`, inside `hook_mlp_out`), out_l passes through ln2_post: what reaches hook_mlp_out is
  out_l / s * w, s = sqrt(mean(out_l^2) + eps) live or frozen (`PostNorm`, attached by
  load.py's `adapt_to_model` from the model).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import torch
from jaxtyping import Float
from torch import Tensor, nn

from circuitcat.catalog.errors import TranscoderLoadError

RELU, JUMPRELU, TOPK = "relu", "jumprelu", "topk"
_TOPK = re.compile(r"topk:(\d+)")


def parse_activation(spec: str) -> tuple[str, int]:
    """('relu' | 'jumprelu' | 'topk', k) from 'relu', 'jumprelu' or 'topk:K' (k = 0 unless TopK)."""
    if spec in (RELU, JUMPRELU):
        return spec, 0
    match = _TOPK.fullmatch(spec)
    if match is None or int(match.group(1)) < 1:
        raise TranscoderLoadError(
            f"activation {spec!r} is not one of 'relu', 'jumprelu' or 'topk:K' (K >= 1, the "
            "features kept per token)"
        )
    return TOPK, int(match.group(1))


@dataclass(frozen=True)
class TranscoderConfig:
    """What a transcoder reads, writes, how wide it is, and its kind.

    `activation`: 'relu', 'jumprelu' (a per-feature `threshold`) or 'topk:K'; `skip`: it has a
    `W_skip`; `n_outputs`: the layers its features write to, from its own (1: per-layer);
    `mlp_module_out`: it writes the MLP module's output (circuit-tracer's `mlp.hook_out`),
    which on blocks with a post-MLP norm (`ln2_post`) lies before that norm, while
    `output_hook` (`hook_mlp_out`) lies after it.
    """

    d_in: int
    d_out: int
    d_transcoder: int
    layer: int
    input_hook: str
    output_hook: str
    activation: str = RELU
    metrics: dict[str, float] = field(default_factory=dict)
    skip: bool = False
    n_outputs: int = 1
    mlp_module_out: bool = False

    def __post_init__(self) -> None:
        kind, k = parse_activation(self.activation)
        if kind == TOPK and k > self.d_transcoder:
            raise TranscoderLoadError(
                f"layer {self.layer}: activation {self.activation!r} keeps more features than "
                f"the transcoder has ({self.d_transcoder})"
            )
        if self.n_outputs < 1:
            raise TranscoderLoadError(f"layer {self.layer}: n_outputs must be at least 1")


class Transcoder(nn.Module):
    """One transcoder layer (fp32 by default); optional tensors exist only for its kind."""

    threshold: nn.Parameter | None
    W_skip: nn.Parameter | None
    W_dec_after: nn.Parameter | None

    def __init__(self, cfg: TranscoderConfig, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.cfg = cfg
        self.kind, self.k = parse_activation(cfg.activation)
        d_in, d_out, d_tc = cfg.d_in, cfg.d_out, cfg.d_transcoder

        def zeros(*shape: int) -> nn.Parameter:
            return nn.Parameter(torch.zeros(*shape, dtype=dtype))

        self.W_enc = zeros(d_in, d_tc)
        self.b_enc = zeros(d_tc)
        self.W_dec = zeros(d_tc, d_out)
        self.b_dec = zeros(d_in)
        self.b_dec_out = zeros(d_out)
        self.threshold = zeros(d_tc) if self.kind == JUMPRELU else None
        self.W_skip = zeros(d_out, d_in) if cfg.skip else None
        self.W_dec_after = zeros(cfg.n_outputs - 1, d_tc, d_out) if cfg.n_outputs > 1 else None

    @property
    def out_layers(self) -> range:
        """The layers this transcoder's features write to (its own first)."""
        return range(self.cfg.layer, self.cfg.layer + self.cfg.n_outputs)

    def pre_acts(self, x: Float[Tensor, "... d_in"]) -> Float[Tensor, "... d_transcoder"]:
        return (x - self.b_dec) @ self.W_enc + self.b_enc

    def activate(self, pre: Float[Tensor, "... d_transcoder"]) -> Float[Tensor, "... d_transcoder"]:
        """The activation function on pre-activations (see the module docstring)."""
        if self.kind == JUMPRELU:
            assert self.threshold is not None  # built with the kind
            return pre * (pre > self.threshold)
        if self.kind == TOPK:
            idx = torch.topk(pre, self.k, dim=-1).indices
            return torch.zeros_like(pre).scatter_(-1, idx, pre.gather(-1, idx))
        return torch.relu(pre)

    def encode(self, x: Float[Tensor, "... d_in"]) -> Float[Tensor, "... d_transcoder"]:
        return self.activate(self.pre_acts(x))

    def decoder(self, out_layer: int) -> Float[Tensor, "d_transcoder d_out"]:
        """W_dec into `out_layer` (this layer's own W_dec, or a cross-layer decoder)."""
        if out_layer not in self.out_layers:
            raise TranscoderLoadError(
                f"layer {self.cfg.layer} features do not write to layer {out_layer}"
            )
        if out_layer == self.cfg.layer:
            return self.W_dec
        assert self.W_dec_after is not None  # n_outputs > 1
        return self.W_dec_after[out_layer - self.cfg.layer - 1]

    def decoder_norms(self) -> Float[Tensor, " d_transcoder"]:
        """Per feature: the norm of everything it writes per unit of activation (all layers)."""
        sq = self.W_dec.pow(2).sum(-1)
        if self.W_dec_after is not None:
            sq = sq + self.W_dec_after.pow(2).sum((0, 2))
        return sq.sqrt()

    def skip(self, x: Float[Tensor, "... d_in"]) -> Float[Tensor, "... d_out"]:
        """The skip connection's output x @ W_skip.T (zeros without one)."""
        if self.W_skip is None:
            return x.new_zeros(*x.shape[:-1], self.cfg.d_out)
        return x @ self.W_skip.T

    def decode(self, z: Float[Tensor, "... d_transcoder"]) -> Float[Tensor, "... d_out"]:
        """This layer's own decoder and output bias (no skip, no earlier layers' writes)."""
        return z @ self.W_dec + self.b_dec_out

    def forward(self, x: Float[Tensor, "... d_in"]) -> Float[Tensor, "... d_out"]:
        """The MLP replacement of a per-layer transcoder; for a cross-layer one, only its own
        decoder's part: `TranscoderSet.output` adds what earlier layers write."""
        return self.decode(self.encode(x)) + self.skip(x)


@dataclass(frozen=True)
class PostNorm:
    """A block's post-MLP RMSNorm (`ln2_post`, Gemma-2/3), which the output of a set writing
    before it passes through: y / s * w with s = sqrt(mean(y^2) + eps), as transformer_lens
    3.9's RMSNorm computes it; `scale` given, s is frozen at it."""

    w: Float[Tensor, " d_out"]
    eps: float

    def scale(self, y: Float[Tensor, "... d_out"]) -> Float[Tensor, "... 1"]:
        return (y.pow(2).mean(-1, keepdim=True) + self.eps).sqrt()

    def apply(
        self, y: Float[Tensor, "... d_out"], scale: Float[Tensor, "... 1"] | None = None
    ) -> Float[Tensor, "... d_out"]:
        s = self.scale(y) if scale is None else scale
        return y / s * self.w.to(y)


@dataclass
class TranscoderSet:
    """One transcoder per MLP layer of one model, plus where they came from.

    `processing` records the HookedTransformer flags (fold_ln, center_writing_weights,
    center_unembed) the set was trained against: published transcoders only match a model
    processed the same way. `post_norm`: per layer whose transcoder writes before the model's
    post-MLP norm, that norm (filled by load.py's `adapt_to_model`; empty otherwise).
    """

    name: str
    model_name: str
    format: str
    source: str
    transcoders: dict[int, Transcoder]
    processing: dict[str, bool] = field(default_factory=dict)
    sha256: str = ""
    post_norm: dict[int, PostNorm] = field(default_factory=dict)

    @property
    def layers(self) -> list[int]:
        return sorted(self.transcoders)

    @property
    def d_transcoder(self) -> int:
        return next(iter(self.transcoders.values())).cfg.d_transcoder

    def __getitem__(self, layer: int) -> Transcoder:
        return self.transcoders[layer]

    @property
    def activation(self) -> str:
        """The activation of every layer ('relu', 'jumprelu' or 'topk:K')."""
        return self[self.layers[0]].cfg.activation

    @property
    def cross_layer(self) -> bool:
        return any(tc.cfg.n_outputs > 1 for tc in self.transcoders.values())

    @property
    def has_skip(self) -> bool:
        return any(tc.cfg.skip for tc in self.transcoders.values())

    @property
    def kind(self) -> str:
        """e.g. 'relu', 'jumprelu+skip', 'topk:8', 'relu+cross-layer'."""
        parts = [self.activation]
        parts += ["skip"] if self.has_skip else []
        parts += ["cross-layer"] if self.cross_layer else []
        return "+".join(parts)

    def decoder_sum(self, layer: int, below: int | None = None) -> Float[Tensor, "d_tc d_out"]:
        """What layer `layer`'s features write into the residual stream through every layer
        m < `below` (all layers when None), per unit of activation: W_dec for a per-layer
        transcoder whose layer is below, the sum of the decoders W_dec[layer -> m] for a
        cross-layer one; each times layer m's post-MLP norm weight where the set writes before
        that norm (`resid_gain`; its input-dependent scale is left out, as for ln1_post)."""
        tc = self[layer]
        outs = [m for m in tc.out_layers if below is None or m < below]
        if not outs:
            return torch.zeros_like(tc.W_dec)
        total = self.resid_gain(outs[0], tc.decoder(outs[0]))
        for m in outs[1:]:
            total = total + self.resid_gain(m, tc.decoder(m))
        return total

    def resid_gain(self, out_layer: int, y: Float[Tensor, "... d_out"]) -> Tensor:
        """`y`, written in place of MLP `out_layer`, times that block's post-MLP norm weight
        where the set writes before the norm (else `y`): the input-invariant part of the map
        into the residual stream, used by the weights job and the top logits."""
        norm = self.post_norm.get(out_layer)
        return y if norm is None else y * norm.w.to(y)

    def writers(self, out_layer: int) -> list[int]:
        """The layers whose features write to `out_layer` (itself included when in the set)."""
        return [layer for layer in self.layers if out_layer in self[layer].out_layers]

    def output(
        self,
        out_layer: int,
        acts: Mapping[int, Float[Tensor, "... d_transcoder"]],
        x: Float[Tensor, "... d_in"],
    ) -> Float[Tensor, "... d_out"]:
        """What replaces MLP `out_layer`: every writer's z @ W_dec[l -> out_layer], the layer's
        b_dec_out and its skip of `x` (its own input). `acts[l]` are layer l's activations."""
        tc = self[out_layer]
        out = tc.b_dec_out + tc.skip(x)
        for layer in self.writers(out_layer):
            out = out + acts[layer] @ self[layer].decoder(out_layer)
        return out

    def to_output_hook(
        self,
        out_layer: int,
        y: Float[Tensor, "... d_out"],
        scale: Float[Tensor, "... 1"] | None = None,
    ) -> Float[Tensor, "... d_out"]:
        """`y`, what replaces MLP `out_layer` (`output`), as it reaches the layer's
        output_hook: through the post-MLP norm where the set writes before it (its scale live,
        or frozen at `scale`), else unchanged."""
        norm = self.post_norm.get(out_layer)
        return y if norm is None else norm.apply(y, scale)

    def with_activation(self, spec: str) -> None:
        """Declare the activation the files cannot carry (circuit-tracer writes a TopK set
        exactly like a ReLU one): 'topk:K' on ReLU files; the file's own activation is a
        no-op; anything else is refused. The declaration enters `sha256`."""
        kind, _ = parse_activation(spec)
        if spec == self.activation:
            return
        if kind != TOPK or self.activation != RELU:
            raise TranscoderLoadError(
                f"transcoder set '{self.name}' ({self.source}): its files say activation "
                f"{self.activation!r}, which --activation {spec!r} cannot override (only ReLU "
                "files can be declared TopK, as circuit-tracer writes TopK sets like ReLU ones)"
            )
        for layer, tc in self.transcoders.items():
            state = tc.state_dict()
            new = Transcoder(replace(tc.cfg, activation=spec)).to(tc.W_enc.device)
            new.load_state_dict(state)
            self.transcoders[layer] = new
        self.sha256 = hashlib.sha256(f"{self.sha256}\nactivation={spec}".encode()).hexdigest()
