"""The local replacement model of one prompt, its forward pass and its batched adjoint.

On one prompt, attention patterns and normalisation scales are frozen at their values on that
prompt; each MLP is replaced by its transcoder's active features, whose activations are frozen
constants (whatever the activation function: a ReLU or JumpReLU gate, a TopK selection are
frozen alike), plus the transcoder's skip connection where it has one (a linear map of the MLP
input, so it stays in the linear model: paths run through it), plus an error term (the real
`hook_mlp_out` minus what the kept features, the skip and `b_dec_out` write), also a constant.
A cross-layer transcoder's feature encoded at layer l writes into every MLP output m >= l it
decodes to ("writes" below). What is left is affine in the sources: token embeddings,
feature writes, errors and the constant terms (biases). Attribution is then exact: a source's
effect on a readout is (d readout / d source) . source, and the effects add up to the readout.
capture.py records a prompt from the real model (`freeze`); this module is the linear model.

A normalisation with its scale s frozen is affine: LN(r) = (r - mean(r)) / s * w + b (RMSNorm
drops the centring and b). Transcoders read `blocks.L.ln2.hook_normalized`, which transformer_lens
3.x records before the affine (w, b), so a feature's pre-activation is
center(resid) / s . W_enc[:, j] + b_enc[j] - b_dec . W_enc[:, j].

Block shapes, as transformer_lens 3.9 `TransformerBlock` runs them (nonlinear parts of the
pattern, such as rotary positions, q/k norms, query-key biases, attention soft-capping and
local windows, are frozen with the pattern):
    sequential (GPT-2, Llama, Qwen, Gemma):  resid_mid = resid_pre + attn_out,
        resid_post = resid_mid + hook_mlp_out; the layer's ln2 reads resid_mid
    parallel (`parallel_attn_mlp`, GPT-NeoX / Pythia, GPT-J): attention and MLP both read
        resid_pre, resid_post = resid_pre + attn_out + hook_mlp_out; ln2 reads resid_pre
    attn_out = ln1_post(z W_O + b_O) with `use_normalization_before_and_after` (Gemma-2/3):
        an RMSNorm whose frozen scale makes it the diagonal map w / s (`ln1_post_w`,
        `post_scale`); elsewhere w / s = 1. Gemma's ln2_post sits inside `hook_mlp_out`: a
        set writing hook_mlp_out writes after it, so it needs nothing here; a set writing the
        MLP module's output (circuit-tracer's `mlp.hook_out`) writes before it, and everything
        that layer's MLP replacement writes (features, b_dec_out, skip, error) reaches the
        residual stream through the diagonal map w / s of its frozen scale (`out_gain`).

Residual levels: level k is `blocks.k.hook_resid_pre` (level n_layers is the final residual).
A layer-l MLP writes at level l + 1. Row `site` is where a readout reads: l for a layer-l
feature (after attention l in sequential blocks, at level l itself in parallel ones), n_layers
for the final residual (logits and directions).

Dimension names (beyond those in ingest/transcoders/transcoder.py):
    n_layers, n_heads, d_head   as in HookedTransformer (n_heads counts query heads: with
                grouped-query attention `attn.W_V` / `attn.b_V` repeat each key-value head's
                weights for the query heads that share it, which is how its `hook_v` is used)
    dst_pos, src_pos    query and key positions of an attention pattern
    n_feat      kept active features of the prompt, all layers, ordered by (layer, pos, index)
    n_write     their writes: one per feature and layer it decodes to (n_feat for per-layer
                transcoders), ordered by (layer written, pos, feature)
    rows        readouts of one batched adjoint pass (features' pre-activations or targets)
    n_nodes, n_src, n_edges     nodes, source nodes and edges of a PromptGraph
    n_bias      bias nodes: one per layer, plus one for the final constants (n_layers + 1)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from einops import einsum
from jaxtyping import Bool, Float, Int64
from torch import Tensor

from circuitcat.catalog.errors import IngestError


@dataclass
class FrozenPrompt:
    """Everything the local replacement model of one prompt needs, fp32 on one device.

    Run values (`emb`, `pattern`, scales, `mlp_in`, `mlp_out`, `final_in`, `logits`) were
    recorded from the real model; weights were copied from it. `errors` = `mlp_out` minus the
    kept features' writes, the skip output and `b_dec_out` (the whole `mlp_out` where a layer has no
    transcoder; with `max_features` the dropped features' writes land here too). `logits` are
    the model's output (after `output_logits_soft_cap` where the model has one); targets read
    the logits before the soft cap (see graph.py).
    """

    tokens: Int64[Tensor, " pos"]
    emb: Float[Tensor, "pos d_model"]  # blocks.0.hook_resid_pre: every embedding term
    pattern: Float[Tensor, "n_layers n_heads dst_pos src_pos"]
    attn_scale: Float[Tensor, "n_layers pos 1"]  # blocks.L.ln1.hook_scale
    post_scale: Float[Tensor, "n_layers pos 1"]  # blocks.L.ln1_post.hook_scale, else ones
    mlp_scale: Float[Tensor, "n_layers pos 1"]  # blocks.L.ln2.hook_scale
    final_scale: Float[Tensor, "pos 1"]  # ln_final.hook_scale
    center: bool  # block norms: LayerNorm (True) or RMSNorm (False)
    final_center: bool  # ln_final: LayerNorm (True) or RMSNorm (False, e.g. `final_rms`)
    parallel: bool  # parallel_attn_mlp: ln2 reads resid_pre
    # per layer: the transcoder reads ln2's normalised input (False: the raw residual,
    # `hook_mlp_in`, which Gemma Scope 2 sets read; its mlp_scale is then 1)
    mlp_normalized: Bool[Tensor, " n_layers"]
    mlp_in: Float[Tensor, "n_layers pos d_model"]  # the transcoders' input hook
    # what the transcoders replace: blocks.L.hook_mlp_out, or for layers in `out_gain` the MLP
    # module's output before ln2_post
    mlp_out: Float[Tensor, "n_layers pos d_model"]
    final_in: Float[Tensor, "pos d_model"]  # ln_final.hook_normalized
    logits: Float[Tensor, "pos d_vocab"]
    ln1_w: Float[Tensor, "n_layers d_model"]
    ln1_b: Float[Tensor, "n_layers d_model"]
    ln1_post_w: Float[Tensor, "n_layers d_model"]  # ones without ln1_post
    lnf_w: Float[Tensor, " d_model"]
    lnf_b: Float[Tensor, " d_model"]
    W_V: Float[Tensor, "n_layers n_heads d_model d_head"]
    b_V: Float[Tensor, "n_layers n_heads d_head"]
    W_O: Float[Tensor, "n_layers n_heads d_head d_model"]
    b_O: Float[Tensor, "n_layers d_model"]
    W_U: Float[Tensor, "d_model d_vocab"]
    b_U: Float[Tensor, " d_vocab"]
    W_enc: dict[int, Float[Tensor, "d_model d_transcoder"]]
    enc_bias: dict[int, Float[Tensor, " d_transcoder"]]  # b_enc - b_dec @ W_enc
    b_dec_out: Float[Tensor, "n_layers d_model"]  # zeros where a layer has no transcoder
    feat_layer: Int64[Tensor, " n_feat"]
    feat_pos: Int64[Tensor, " n_feat"]
    feat_index: Int64[Tensor, " n_feat"]
    feat_act: Float[Tensor, " n_feat"]
    write_feat: Int64[Tensor, " n_write"]  # the feature (row of feat_*) that writes
    write_layer: Int64[Tensor, " n_write"]  # the MLP output it writes into
    write_dec: Float[Tensor, "n_write d_model"]  # its decoder row into that layer
    # x @ skip[l] is what layer l's skip connection adds to hook_mlp_out (W_skip.T; ln2's w
    # folded in where the set reads the post-affine input, like the encoders)
    skip: dict[int, Float[Tensor, "d_model d_model"]]
    errors: Float[Tensor, "n_layers pos d_model"]
    n_active: int  # active features before max_features
    # per layer whose set writes before the post-MLP norm: ln2_post's w / its frozen scale,
    # the diagonal map from what the layer's replacement writes to the residual stream
    out_gain: dict[int, Float[Tensor, "pos d_model"]]

    @property
    def n_layers(self) -> int:
        return int(self.pattern.shape[0])

    @property
    def n_heads(self) -> int:
        return int(self.pattern.shape[1])

    @property
    def n_pos(self) -> int:
        return int(self.emb.shape[0])

    @property
    def device(self) -> torch.device:
        return self.emb.device

    def scale_at(self, site: int) -> Float[Tensor, "pos 1"]:
        """The frozen normalisation scale read by a row at `site`."""
        return self.final_scale if site == self.n_layers else self.mlp_scale[site]

    @property
    def write_pos(self) -> Int64[Tensor, " n_write"]:
        return self.feat_pos[self.write_feat]

    def writes_into(self, acts: Float[Tensor, " n_feat"]) -> Float[Tensor, "n_layers pos d_model"]:
        """What features with activations `acts` add to each hook_mlp_out (no bias, no skip)."""
        return torch.zeros_like(self.mlp_out).index_put(
            (self.write_layer, self.write_pos),
            acts[self.write_feat, None] * self.write_dec,
            accumulate=True,
        )

    def to_resid(self, layer: int, x: Tensor) -> Tensor:
        """`x` (... pos d_model), written by layer `layer`'s MLP replacement, as it reaches the
        residual stream: through ln2_post's frozen map where the set writes before it, else
        `x` itself. The map is diagonal, so it is its own transpose: on gradients at the
        residual it gives the gradients at the replacement's output."""
        gain = self.out_gain.get(layer)
        return x if gain is None else x * gain

    def resid_errors(self) -> Float[Tensor, "n_layers pos d_model"]:
        """The error terms as they reach the residual stream (see `to_resid`)."""
        if not self.out_gain:
            return self.errors
        return torch.stack([self.to_resid(layer, e) for layer, e in enumerate(self.errors)])

    def skip_out(self, layer: int, resid: Float[Tensor, "pos d_model"]) -> Tensor | None:
        """Layer `layer`'s skip output on the residual its ln2 reads (None without a skip)."""
        if layer not in self.skip:
            return None
        return normalize(resid, self.mlp_scale[layer], self.center_at(layer)) @ self.skip[layer]

    def center_at(self, site: int) -> bool:
        """Whether the normalisation read by a row at `site` centres its input."""
        if site == self.n_layers:
            return self.final_center
        return self.center and bool(self.mlp_normalized[site])


@dataclass(frozen=True)
class Rows:
    """Readouts, each value = center(resid at `site`)[pos] / scale[pos] . read + const.

    The whole const belongs to bias node `site` (a feature's encoder bias; for final rows the
    ln_final bias, b_U and any offset).
    """

    site: Int64[Tensor, " rows"]
    pos: Int64[Tensor, " rows"]
    read: Float[Tensor, "rows d_model"]
    const: Float[Tensor, " rows"]

    def __len__(self) -> int:
        return int(self.site.shape[0])

    def take(self, idx: Int64[Tensor, " k"]) -> Rows:
        return Rows(self.site[idx], self.pos[idx], self.read[idx], self.const[idx])


@dataclass(frozen=True)
class FrozenRun:
    """One forward pass of the local replacement model."""

    mlp_resid: Float[Tensor, "n_layers pos d_model"]  # what each ln2 reads (see module doc)
    resid_final: Float[Tensor, "pos d_model"]
    bias: Float[Tensor, " n_bias"]  # the scale each layer's constant terms were run with


@dataclass(frozen=True)
class AdjointStep:
    """The gradient of a batch of rows at one residual level.

    `grad` is d row / d resid_pre[level]; `bias` is d row / d (scale of the constant terms of
    attention layer `level`: ln1 b, b_V, b_O), zero for the step that only seeds the rows;
    `heads[:, h]` is the part of `grad` that flows through head (level, h) (first attention
    hop), when asked for; `skip` the part of the gradient at the residual ln2 of layer `level`
    reads (resid_mid, or resid_pre in parallel blocks) that flows through that layer's skip
    connection, when it has one and the rows read above it.
    """

    level: int
    grad: Float[Tensor, "rows pos d_model"]
    bias: Float[Tensor, " rows"]
    heads: Float[Tensor, "rows n_heads pos d_model"] | None
    skip: Float[Tensor, "rows pos d_model"] | None = None


# --------------------------------------------------------------------------------------------
# forward


def normalize(x: Tensor, scale: Tensor, center: bool) -> Tensor:
    """x centred (LayerNorm; not RMSNorm) and divided by the frozen scale, without w and b.

    Centring is a symmetric projection and the scale a constant, so this map is its own
    transpose: the adjoint uses it on gradients too.
    """
    return ((x - x.mean(-1, keepdim=True)) if center else x) / scale


def attention_out(
    fp: FrozenPrompt, a: int, resid_pre: Float[Tensor, "pos d_model"], bias: Tensor
) -> Float[Tensor, "pos d_model"]:
    """`blocks.a.hook_attn_out` of the frozen model: ln1, values, pattern, W_O, ln1_post."""
    ln = normalize(resid_pre, fp.attn_scale[a], fp.center) * fp.ln1_w[a] + bias * fp.ln1_b[a]
    v = einsum(ln, fp.W_V[a], "pos d_model, n_heads d_model d_head -> n_heads pos d_head")
    v = v + bias * fp.b_V[a][:, None, :]
    z = einsum(fp.pattern[a], v, "n_heads dst src, n_heads src d_head -> n_heads dst d_head")
    out = einsum(z, fp.W_O[a], "n_heads pos d_head, n_heads d_head d_model -> pos d_model")
    return (out + bias * fp.b_O[a]) * fp.ln1_post_w[a] / fp.post_scale[a]


def frozen_forward(
    fp: FrozenPrompt,
    *,
    acts: Float[Tensor, " n_feat"] | None = None,
    errors: Float[Tensor, "n_layers pos d_model"] | None = None,
    emb: Float[Tensor, "pos d_model"] | None = None,
    bias: Float[Tensor, " n_bias"] | None = None,
) -> FrozenRun:
    """Run the local replacement model, optionally with sources changed.

    `acts` replaces the frozen feature activations, `errors` the error terms, `emb` the token
    embeddings, and `bias[l]` scales the constant terms of layer l (ln1 b, b_V, b_O, b_dec_out,
    and in `readout` the encoder bias of layer-l features; `bias[n_layers]` the final ones).
    With nothing changed it reproduces the real model's residual stream.
    """
    acts = fp.feat_act if acts is None else acts
    errors = fp.errors if errors is None else errors
    bias = torch.ones(fp.n_layers + 1, device=fp.device) if bias is None else bias
    writes = fp.writes_into(acts)
    r = fp.emb if emb is None else emb
    reads = []
    for a in range(fp.n_layers):
        attn = attention_out(fp, a, r, bias[a])
        if fp.parallel:
            reads.append(r)
            r = r + attn
        else:
            r = r + attn
            reads.append(r)
        skip = fp.skip_out(a, reads[-1])
        if a in fp.out_gain:  # the layer's replacement writes before ln2_post
            out = writes[a] + bias[a] * fp.b_dec_out[a] + errors[a]
            r = r + fp.to_resid(a, out if skip is None else out + skip)
            continue
        r = r + writes[a] + bias[a] * fp.b_dec_out[a] + errors[a]
        r = r if skip is None else r + skip
    return FrozenRun(mlp_resid=torch.stack(reads), resid_final=r, bias=bias)


def _normalize_rows(
    fp: FrozenPrompt, rows: Rows, x: Float[Tensor, "rows d_model"]
) -> Float[Tensor, "rows d_model"]:
    """x normalised as each row's site normalises (ln2, or ln_final for final rows)."""
    scale = torch.cat([fp.mlp_scale, fp.final_scale[None]])[rows.site, rows.pos]
    is_final = rows.site == fp.n_layers
    block = fp.mlp_normalized[rows.site.clamp(max=fp.n_layers - 1)] & fp.center
    center: Bool[Tensor, " rows"] = (is_final & fp.final_center) | (~is_final & block)
    centred = torch.where(center[:, None], x - x.mean(-1, keepdim=True), x)
    return centred / scale


def readout(fp: FrozenPrompt, rows: Rows, run: FrozenRun) -> Float[Tensor, " rows"]:
    """The rows' values on a frozen run (the whole const scaled by `run.bias[site]`)."""
    resid = torch.cat([run.mlp_resid, run.resid_final[None]])  # indexed by site
    x = _normalize_rows(fp, rows, resid[rows.site, rows.pos])
    return (x * rows.read).sum(-1) + run.bias[rows.site] * rows.const


def real_values(fp: FrozenPrompt, rows: Rows) -> Float[Tensor, " rows"]:
    """The rows' values from the real model's recorded normalised residuals."""
    normalized = torch.cat([fp.mlp_in, fp.final_in[None]])
    return (normalized[rows.site, rows.pos] * rows.read).sum(-1) + rows.const


# --------------------------------------------------------------------------------------------
# adjoint


def adjoint(fp: FrozenPrompt, rows: Rows, *, heads: bool = False) -> Iterator[AdjointStep]:
    """Backpropagate a batch of rows, all at one site, down the frozen model.

    Yields one AdjointStep per residual level, from the rows' site down to level 0: level
    n_layers for final rows, level l for layer-l rows (after attention l in sequential blocks,
    whose first step is that attention hop; resid_pre of l itself in parallel blocks). Explicit
    transposed products, batched over rows: no autograd, no Python loop over rows.
    """
    site = int(rows.site[0])
    if bool((rows.site != site).any()):
        raise IngestError("adjoint: all rows of one batch must read at the same site")
    n_rows, n_pos = len(rows), fp.n_pos
    seed = torch.zeros(n_rows, n_pos, fp.emb.shape[1], device=fp.device)
    scale = fp.scale_at(site)[rows.pos]
    seed[torch.arange(n_rows, device=fp.device), rows.pos] = normalize(
        rows.read, scale, fp.center_at(site)
    )
    g = seed
    top = site
    if site == fp.n_layers or fp.parallel:  # the rows read a residual level itself
        yield AdjointStep(site, g, torch.zeros(n_rows, device=fp.device), None)
        top = site - 1
    for a in range(top, -1, -1):
        # MLP a lies between resid_pre[a] and the rows unless a sequential row reads resid_mid[a]
        g, step = _attention_adjoint(fp, a, g, heads, skip=a < site)
        yield step


def _skip_adjoint(fp: FrozenPrompt, a: int, g_post: Tensor) -> Tensor | None:
    """The gradient at the residual ln2 of layer `a` reads, through its skip connection only."""
    if a not in fp.skip:
        return None
    return normalize(fp.to_resid(a, g_post) @ fp.skip[a].T, fp.mlp_scale[a], fp.center_at(a))


def _attention_adjoint(
    fp: FrozenPrompt, a: int, g_post: Tensor, heads: bool, *, skip: bool = False
) -> tuple[Tensor, AdjointStep]:
    """The gradient at resid_pre[a] from the gradient at resid_post[a] (`skip`: through MLP
    a's skip connection too), or at the level attention `a` writes to (not `skip`)."""
    g_skip = _skip_adjoint(fp, a, g_post) if skip else None
    if g_skip is not None and not fp.parallel:  # sequential: the skip reads resid_mid[a]
        g_post = g_post + g_skip
    g_out = g_post * (fp.ln1_post_w[a] / fp.post_scale[a])  # through ln1_post (or ones)
    g_z = einsum(
        g_out, fp.W_O[a], "rows dst d_model, n_heads d_head d_model -> rows n_heads dst d_head"
    )
    g_v = einsum(
        fp.pattern[a], g_z, "n_heads dst src, rows n_heads dst d_head -> rows n_heads src d_head"
    )
    bias = einsum(g_out, fp.b_O[a], "rows pos d_model, d_model -> rows")
    bias = bias + einsum(g_v, fp.b_V[a], "rows n_heads pos d_head, n_heads d_head -> rows")
    scale = fp.attn_scale[a]
    if heads:
        g_ln_h = einsum(
            g_v,
            fp.W_V[a],
            "rows n_heads pos d_head, n_heads d_model d_head -> rows n_heads pos d_model",
        )
        g_ln = g_ln_h.sum(1)
        per_head = normalize(g_ln_h * fp.ln1_w[a], scale, fp.center)
    else:
        g_ln = einsum(
            g_v, fp.W_V[a], "rows n_heads pos d_head, n_heads d_model d_head -> rows pos d_model"
        )
        per_head = None
    bias = bias + einsum(g_ln, fp.ln1_b[a], "rows pos d_model, d_model -> rows")
    g_pre = g_post + normalize(g_ln * fp.ln1_w[a], scale, fp.center)
    if g_skip is not None and fp.parallel:  # parallel: the skip reads resid_pre[a]
        g_pre = g_pre + g_skip
    return g_pre, AdjointStep(a, g_pre, bias, per_head, g_skip)
