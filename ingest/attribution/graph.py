"""Per-prompt attribution graphs: `attribute` builds a PromptGraph (heads.py's `split_by_head`
resolves its edges by the attention head they pass through).

Nodes, in this order: features (kept active transcoder features, by layer, pos, index), tokens
(one per position: blocks.0.hook_resid_pre, the token embedding plus a positional one where
the model adds it; rotary models have none), errors (one per layer and position), biases
(one per layer: ln1 b, b_V, b_O, b_dec_out and the layer's encoder biases; one more, layer
n_layers, for ln_final b, b_U and target offsets), then targets. Features, tokens, errors and
biases are sources; features and targets are destinations.

An edge src -> dst carries w = the direct effect of src on dst's input (a feature's
pre-activation, a target's value) in the local replacement model (see frozen.py): every path
through residual stream, frozen attention and skip connections, none through another feature.
A cross-layer feature's edge sums its writes into every layer below the destination. For each
destination the incoming w add up to `in_total` exactly (up to fp32 rounding).

Targets read the final residual after ln_final, linearly, so they stay exact in the local
replacement model: a LogitTarget is the logit before `output_logits_soft_cap` (Gemma-2 caps
the logits as cap * tanh(logit / cap), a nonlinearity after the unembedding), that is
(lnf_w * W_U[:, t]) . ln_final.hook_normalized + lnf_b . W_U[:, t] + b_U[t]; a DirectionTarget
(e.g. `metric_direction`) is vector . ln_final(resid) + offset, before any soft cap too. The
capped logit is a monotone function of the target, so rankings of tokens agree.

Shapes: see the glossary in ingest/attribution/frozen.py.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeAlias, cast

import torch
from jaxtyping import Float, Int64
from torch import Tensor
from transformer_lens import HookedTransformer

from circuitcat.catalog.errors import IngestError
from circuitcat.catalog.schema import GraphNode
from circuitcat.ingest.attribution.capture import freeze
from circuitcat.ingest.attribution.frozen import (
    FrozenPrompt,
    Rows,
    adjoint,
    real_values,
)
from circuitcat.ingest.models import LoadedModel
from circuitcat.ingest.transcoders.transcoder import TranscoderSet

DEFAULT_BATCH = 64

log = logging.getLogger(__name__)


NodeKind: TypeAlias = GraphNode  # one enum for prompt-graph nodes: catalog/schema.py


@dataclass(frozen=True)
class LogitTarget:
    """The logit of `token` at `pos` (negative counts from the end), before any soft cap."""

    token: int
    pos: int = -1


@dataclass(frozen=True)
class DirectionTarget:
    """`vector` . ln_final(resid)[pos] + `offset`, e.g. a task's metric direction (no soft
    cap: linear in the final normalised residual)."""

    vector: Tensor
    pos: int = -1
    offset: float = 0.0
    name: str = "direction"


@dataclass(frozen=True)
class FeatureTarget:
    """The pre-activation of transcoder feature `index` of `layer` at `pos`."""

    layer: int
    pos: int
    index: int


Target: TypeAlias = LogitTarget | DirectionTarget | FeatureTarget
TargetLike: TypeAlias = Target | int | Tensor


@dataclass
class PromptGraph:
    """One prompt's attribution graph (CPU tensors, fp32); no model or store reference.

    Node columns: `kind` (NodeKind), `layer` (-1 for tokens; n_layers for the final bias and
    final-residual targets), `pos` (-1 for biases), `index` (feature index; token id for
    tokens and logit targets; -1 otherwise), `activation` (a feature's activation; ||vector||
    for tokens and errors; 1 for biases; a target's value), `in_total` (what incoming edges add
    up to: a feature's pre-activation, a target's value; NaN for sources).
    Edges: `src`, `dst` (node indices), `w`; `src_pos`/`dst_pos` read `pos` through them.
    `targets` holds the resolved targets (absolute positions), in target-node order.
    `max_features` is what `attribute` was given (`split_by_head` re-freezes with it);
    `n_active` counts active features before that cap. `influence` is set by `prune`, whose
    subgraphs keep the node order above.
    """

    tokens: Int64[Tensor, " pos"]
    n_layers: int
    kind: Int64[Tensor, " n_nodes"]
    layer: Int64[Tensor, " n_nodes"]
    pos: Int64[Tensor, " n_nodes"]
    index: Int64[Tensor, " n_nodes"]
    activation: Float[Tensor, " n_nodes"]
    in_total: Float[Tensor, " n_nodes"]
    src: Int64[Tensor, " n_edges"]
    dst: Int64[Tensor, " n_edges"]
    w: Float[Tensor, " n_edges"]
    targets: tuple[Target, ...]
    max_features: int | None = None
    n_active: int = 0
    influence: Float[Tensor, " n_nodes"] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_nodes(self) -> int:
        return int(self.kind.shape[0])

    @property
    def n_edges(self) -> int:
        return int(self.src.shape[0])

    @property
    def src_pos(self) -> Int64[Tensor, " n_edges"]:
        return self.pos[self.src]

    @property
    def dst_pos(self) -> Int64[Tensor, " n_edges"]:
        return self.pos[self.dst]

    @property
    def target_nodes(self) -> Int64[Tensor, " n_targets"]:
        return torch.nonzero(self.kind == NodeKind.TARGET).flatten()

    def node_key(self, node: int) -> tuple[int, int, int, int]:
        """(kind, layer, pos, index): the same node in a full and a pruned graph."""
        return (
            int(self.kind[node]),
            int(self.layer[node]),
            int(self.pos[node]),
            int(self.index[node]),
        )

    def incoming_totals(self) -> Float[Tensor, " n_nodes"]:
        """The sum of each node's incoming edge weights."""
        return torch.zeros(self.n_nodes, dtype=self.w.dtype).index_add_(0, self.dst, self.w)

    def dense(self) -> Float[Tensor, "n_nodes n_nodes"]:
        """The adjacency matrix, [dst, src] (small graphs only)."""
        adj = torch.zeros(self.n_nodes, self.n_nodes, dtype=self.w.dtype)
        return adj.index_put_((self.dst, self.src), self.w, accumulate=True)

    def subgraph(self, nodes: Tensor, edges: Tensor) -> PromptGraph:
        """The graph restricted to node mask `nodes` and edge mask `edges` (re-indexed)."""
        keep_edges = edges & nodes[self.src] & nodes[self.dst]
        new_id = torch.cumsum(nodes.long(), 0) - 1
        cols = ("kind", "layer", "pos", "index", "activation", "in_total")
        sub = {c: getattr(self, c)[nodes] for c in cols}
        infl = None if self.influence is None else self.influence[nodes]
        return replace(
            self,
            **sub,
            src=new_id[self.src[keep_edges]],
            dst=new_id[self.dst[keep_edges]],
            w=self.w[keep_edges],
            influence=infl,
            meta=dict(self.meta),
        )


def metric_direction(
    model: HookedTransformer | LoadedModel,
    positive: Sequence[int],
    negative: Sequence[int],
    *,
    pos: int = -1,
    name: str = "metric",
) -> DirectionTarget:
    """mean logit over `positive` tokens minus mean over `negative`, as a DirectionTarget
    (e.g. years > YY versus years <= YY for greater-than)."""
    ht = model.model if isinstance(model, LoadedModel) else model
    if not positive or not negative:
        raise IngestError("metric_direction needs at least one positive and one negative token")
    W_U, b_U = ht.W_U.detach().float().cpu(), ht.b_U.detach().float().cpu()
    pos_ids, neg_ids = torch.tensor(list(positive)), torch.tensor(list(negative))
    vector = W_U[:, pos_ids].mean(1) - W_U[:, neg_ids].mean(1)
    offset = float(b_U[pos_ids].mean() - b_U[neg_ids].mean())
    return DirectionTarget(vector=vector, pos=pos, offset=offset, name=name)


# --------------------------------------------------------------------------------------------
# rows


def _target(fp: FrozenPrompt, spec: TargetLike) -> Target:
    if isinstance(spec, int):
        spec = LogitTarget(spec)
    elif isinstance(spec, Tensor):
        spec = DirectionTarget(spec)
    pos = spec.pos + fp.n_pos if spec.pos < 0 else spec.pos
    if not 0 <= pos < fp.n_pos:
        raise IngestError(f"target position {spec.pos} is outside the prompt ({fp.n_pos} tokens)")
    if isinstance(spec, FeatureTarget) and spec.layer not in fp.W_enc:
        raise IngestError(f"target layer {spec.layer} has no transcoder in this set")
    if isinstance(spec, FeatureTarget) and not 0 <= spec.index < fp.W_enc[spec.layer].shape[1]:
        raise IngestError(f"target feature {spec.index} is not a feature of layer {spec.layer}")
    if isinstance(spec, LogitTarget) and not 0 <= spec.token < fp.W_U.shape[1]:
        raise IngestError(f"target token {spec.token} is outside the vocabulary")
    if isinstance(spec, DirectionTarget):
        vector = spec.vector.detach().float().cpu().reshape(-1)
        if vector.numel() != fp.emb.shape[1]:
            raise IngestError(f"a direction target needs {fp.emb.shape[1]} entries (d_model)")
        return replace(spec, pos=pos, vector=vector)
    return replace(spec, pos=pos)


def target_row(fp: FrozenPrompt, t: Target) -> tuple[int, Tensor, Tensor]:
    """(site, read, const) of one target."""
    if isinstance(t, FeatureTarget):
        return t.layer, fp.W_enc[t.layer][:, t.index], fp.enc_bias[t.layer][t.index]
    if isinstance(t, LogitTarget):
        v, offset = fp.W_U[:, t.token], fp.b_U[t.token]
    else:
        v, offset = t.vector.to(fp.device), torch.tensor(t.offset, device=fp.device)
    return fp.n_layers, fp.lnf_w * v, fp.lnf_b @ v + offset


def destination_rows(fp: FrozenPrompt, targets: Sequence[Target]) -> Rows:
    """Rows for every kept feature (its pre-activation), then every target."""
    reads, consts = [], []
    for layer in sorted(fp.W_enc):
        sel = fp.feat_layer == layer
        reads.append(fp.W_enc[layer][:, fp.feat_index[sel]].T)
        consts.append(fp.enc_bias[layer][fp.feat_index[sel]])
    site = [fp.feat_layer]
    for t in targets:
        s, read, const = target_row(fp, t)
        site.append(torch.tensor([s], device=fp.device))
        reads.append(read[None])
        consts.append(const.reshape(1))
    pos = [fp.feat_pos, torch.tensor([t.pos for t in targets], device=fp.device)]
    return Rows(torch.cat(site), torch.cat(pos).long(), torch.cat(reads), torch.cat(consts))


# --------------------------------------------------------------------------------------------
# attribute


@dataclass(frozen=True)
class _Columns:
    """Where each kind of source node starts among the n_src source columns."""

    n_feat: int
    n_pos: int
    n_layers: int

    @property
    def token(self) -> int:
        return self.n_feat

    @property
    def error(self) -> int:
        return self.n_feat + self.n_pos

    @property
    def bias(self) -> int:
        return self.error + self.n_layers * self.n_pos

    @property
    def n_src(self) -> int:
        return self.bias + self.n_layers + 1


def _columns(fp: FrozenPrompt) -> _Columns:
    return _Columns(int(fp.feat_act.shape[0]), fp.n_pos, fp.n_layers)


def attribute(
    model: HookedTransformer | LoadedModel,
    tset: TranscoderSet,
    tokens: Sequence[int] | Int64[Tensor, " pos"],
    target: TargetLike | Sequence[TargetLike],
    *,
    max_features: int | None = None,
    batch_size: int = DEFAULT_BATCH,
    device: str | torch.device | None = None,
) -> PromptGraph:
    """The attribution graph of one prompt for one or more targets.

    `target`: a token id or LogitTarget (a logit), a d_model vector or DirectionTarget (read
    after ln_final, e.g. `metric_direction(...)`), a FeatureTarget (a feature's pre-activation),
    or a sequence of them. Every kept active feature and every target is a destination row;
    rows are backpropagated `batch_size` at a time through the frozen model (fp32, on `device`,
    default the model's). `max_features` keeps the strongest active features (|activation| x
    the norm of their decoder rows) and folds the others into the error nodes.
    """
    t0 = time.perf_counter()
    fp = freeze(model, tset, tokens, max_features=max_features, device=device)
    specs = [*target] if isinstance(target, list | tuple) else [cast(TargetLike, target)]
    if not specs:
        raise IngestError("attribute needs at least one target")
    targets = tuple(_target(fp, t) for t in specs)
    rows = destination_rows(fp, targets)
    t1 = time.perf_counter()
    src, dst, w = _edges(fp, rows, batch_size)
    t2 = time.perf_counter()
    log.debug("attribute: freeze %.3fs, %d rows in %.3fs", t1 - t0, len(rows), t2 - t1)
    graph = _assemble(fp, targets, rows, src, dst, w)
    graph.max_features = max_features
    graph.meta.update(seconds=t2 - t0, set=tset.name, model=tset.model_name)
    return graph


def _edges(fp: FrozenPrompt, rows: Rows, batch_size: int) -> tuple[Tensor, Tensor, Tensor]:
    """All nonzero (src, dst, w) among the source columns and the destination rows."""
    cols = _columns(fp)
    srcs, dsts, ws = [], [], []
    for site in rows.site.unique().tolist():
        for chunk in torch.nonzero(rows.site == site).flatten().split(batch_size):
            block = _source_block(fp, rows.take(chunk), cols)
            r, c = torch.nonzero(block, as_tuple=True)
            row = chunk[r]
            dsts.append(torch.where(row < cols.n_feat, row, row + cols.n_src - cols.n_feat))
            srcs.append(c)
            ws.append(block[r, c])
    if not ws:
        empty = torch.zeros(0, dtype=torch.long)
        return empty, empty, torch.zeros(0)
    return torch.cat(srcs).cpu(), torch.cat(dsts).cpu(), torch.cat(ws).cpu()


def _source_block(fp: FrozenPrompt, rows: Rows, cols: _Columns) -> Float[Tensor, "rows n_src"]:
    """The direct effect of every source node on each row (all rows at one site)."""
    site = int(rows.site[0])
    out = torch.zeros(len(rows), cols.n_src, device=fp.device)
    out[:, cols.bias + site] += rows.const
    # writes are ordered by (layer, pos): those at (layer, pos) are [starts[i], starts[i + 1])
    cell = fp.write_layer * fp.n_pos + fp.write_pos
    starts = torch.searchsorted(cell, torch.arange(fp.n_layers * fp.n_pos + 1, device=fp.device))
    for step in adjoint(fp, rows):
        k, g = step.level, step.grad
        out[:, cols.bias + k] += step.bias
        if k == 0:
            out[:, cols.token : cols.error] = (g * fp.emb).sum(-1)
            continue
        layer = k - 1
        g = fp.to_resid(layer, g)  # the gradient at what MLP `layer`'s replacement writes
        lo = cols.error + layer * cols.n_pos
        out[:, lo : lo + cols.n_pos] = (g * fp.errors[layer]).sum(-1)
        out[:, cols.bias + layer] += g.sum(1) @ fp.b_dec_out[layer]
        bounds = starts[layer * fp.n_pos : (layer + 1) * fp.n_pos + 1].tolist()
        for p, (a, b) in enumerate(itertools.pairwise(bounds)):
            if b > a:  # z_i * (grad at the feature's position . its decoder row into `layer`)
                feat = fp.write_feat[a:b]  # a feature writes once per layer: no repeats
                out[:, feat] += (g[:, p] @ fp.write_dec[a:b].T) * fp.feat_act[feat]
    return out


def _assemble(
    fp: FrozenPrompt, targets: tuple[Target, ...], rows: Rows, src: Tensor, dst: Tensor, w: Tensor
) -> PromptGraph:
    """The node table (features, tokens, errors, biases, targets) around the edges."""
    L, P, dev, n_f = fp.n_layers, fp.n_pos, fp.device, int(fp.feat_act.shape[0])
    values = real_values(fp, rows)

    def full(n: int, fill: int) -> Tensor:
        return torch.full((n,), fill, dtype=torch.long, device=dev)

    def ar(n: int) -> Tensor:
        return torch.arange(n, device=dev)

    t_index = [
        t.index if isinstance(t, FeatureTarget) else t.token if isinstance(t, LogitTarget) else -1
        for t in targets
    ]
    blocks: list[tuple[NodeKind, Tensor, Tensor, Tensor, Tensor]] = [
        # kind, layer, pos, index, activation
        (NodeKind.FEATURE, fp.feat_layer, fp.feat_pos, fp.feat_index, fp.feat_act),
        (NodeKind.TOKEN, full(P, -1), ar(P), fp.tokens, fp.emb.norm(dim=-1)),
        (
            NodeKind.ERROR,
            ar(L).repeat_interleave(P),
            ar(P).repeat(L),
            full(L * P, -1),
            fp.resid_errors().norm(dim=-1).flatten(),
        ),
        (NodeKind.BIAS, ar(L + 1), full(L + 1, -1), full(L + 1, -1), torch.ones(L + 1, device=dev)),
        (NodeKind.TARGET, rows.site[n_f:], rows.pos[n_f:], torch.tensor(t_index), values[n_f:]),
    ]
    kind = torch.cat([full(len(b[1]), int(b[0])) for b in blocks])
    layer, pos, index, activation = (
        torch.cat([b[i].to(dev) for b in blocks])  # type: ignore[union-attr]
        for i in (1, 2, 3, 4)
    )
    in_total = torch.full_like(activation, float("nan"))
    in_total[kind == NodeKind.FEATURE] = values[:n_f]
    in_total[kind == NodeKind.TARGET] = values[n_f:]
    return PromptGraph(
        tokens=fp.tokens.cpu(),
        n_layers=L,
        kind=kind.cpu(),
        layer=layer.long().cpu(),
        pos=pos.long().cpu(),
        index=index.long().cpu(),
        activation=activation.float().cpu(),
        in_total=in_total.float().cpu(),
        src=src,
        dst=dst,
        w=w,
        targets=targets,
        n_active=fp.n_active,
    )
