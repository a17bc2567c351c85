"""`split_by_head`: a PromptGraph's edges split by the attention head they first pass through.

An edge's paths are grouped by their first hop off the residual stream: none (RESID, along the
residual stream at one position), head (a, h), which reads the source at src_pos, or the skip
connection of MLP m (`skip:m`, at src_pos). Which heads can carry a path follows the block
shape (see frozen.py): a head at layer a reads what layer l1 wrote when l1 < a, and feeds a
layer-l2 feature when a <= l2 in sequential blocks, a < l2 in parallel ones; the skip of layer
m reads what l1 wrote when l1 < m. A cross-layer feature's writes into several layers each
take their own routes; parts of the same route are added. Shapes: see the glossary in
ingest/attribution/frozen.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
from einops import einsum
from jaxtyping import Float, Int64
from torch import Tensor
from transformer_lens import HookedTransformer

from circuitcat.catalog.errors import IngestError
from circuitcat.ingest.attribution.capture import freeze
from circuitcat.ingest.attribution.frozen import FrozenPrompt, Rows, adjoint, normalize
from circuitcat.ingest.attribution.graph import DEFAULT_BATCH, NodeKind, PromptGraph, target_row
from circuitcat.ingest.models import LoadedModel
from circuitcat.ingest.transcoders.transcoder import TranscoderSet

RESID = -1  # HeadEdges.via for the direct residual path


def skip_via(layer: int) -> int:
    """HeadEdges.via for the skip connection of MLP `layer` (-2, -3, ...)."""
    return -2 - layer


@dataclass(frozen=True)
class HeadEdges:
    """Graph edges split by route (first attention hop), parts of one edge sum to its w.

    `edge` indexes the PromptGraph's edges; `via` is RESID (-1) for the path along the residual
    stream at one position, `skip_via(m)` (-2 - m) for paths whose first hop is MLP m's skip
    connection, else layer * n_heads + head for paths whose first hop is that head (read at
    `src_pos`). One row per (edge, via).
    """

    edge: Int64[Tensor, " n"]
    src: Int64[Tensor, " n"]
    dst: Int64[Tensor, " n"]
    src_pos: Int64[Tensor, " n"]
    dst_pos: Int64[Tensor, " n"]
    via: Int64[Tensor, " n"]
    w: Float[Tensor, " n"]
    n_heads: int

    def via_names(self) -> list[str]:
        """'resid', 'skip:L' or 'attn:L.H' per row, as stored on ATTRIBUTES relationships."""
        return [
            "resid"
            if v == RESID
            else f"skip:{-2 - v}"
            if v < RESID
            else f"attn:{v // self.n_heads}.{v % self.n_heads}"
            for v in self.via.tolist()
        ]


def split_by_head(
    model: HookedTransformer | LoadedModel,
    tset: TranscoderSet,
    tokens: Sequence[int] | Int64[Tensor, " pos"],
    graph: PromptGraph,
    edges: Int64[Tensor, " k"] | None = None,
    *,
    batch_size: int = DEFAULT_BATCH,
    device: str | torch.device | None = None,
) -> HeadEdges:
    """Split `edges` of `graph` (default: all from features, tokens and errors) by route.

    An edge's paths are grouped by their first attention hop: RESID (along the residual stream
    at one position, only when src_pos == dst_pos) or head (a, h), which reads the source at
    src_pos and moves it to some position. Parts of one edge sum to its w. Works on pruned
    graphs too: the prompt is re-frozen with the graph's `max_features`. Bias edges have no
    single entry point and are refused.
    """
    fp = freeze(model, tset, tokens, max_features=graph.max_features, device=device)
    if not torch.equal(fp.tokens.cpu(), graph.tokens) or fp.n_active != graph.n_active:
        raise IngestError("split_by_head: the graph was built from another prompt or set")
    src_kind = graph.kind[graph.src]
    splittable = src_kind != NodeKind.BIAS
    if edges is None:
        edges = torch.nonzero(splittable).flatten()
    elif not bool(splittable[edges].all()):
        raise IngestError("split_by_head: edges from bias nodes cannot be split by head")
    sources, owner = _source_vectors(fp, graph, graph.src[edges])
    dst_nodes, edge_row = torch.unique(graph.dst[edges], return_inverse=True)
    entry_row, entry_edge = edge_row[owner], edges[owner]
    rows = _graph_rows(fp, graph, dst_nodes)
    parts: list[tuple[Tensor, Tensor, Tensor]] = []
    for site in rows.site.unique().tolist():
        for chunk in torch.nonzero(rows.site == site).flatten().split(batch_size):
            sel = torch.nonzero(torch.isin(entry_row, chunk.cpu())).flatten()
            local = torch.searchsorted(chunk.cpu(), entry_row[sel])
            picked = _Sources(*(t[sel] for t in sources))
            parts += _split_chunk(fp, rows.take(chunk), picked, local, entry_edge[sel])
    edge, via, w = _add_parts(parts)
    return HeadEdges(
        edge=edge,
        src=graph.src[edge],
        dst=graph.dst[edge],
        src_pos=graph.pos[graph.src[edge]],
        dst_pos=graph.pos[graph.dst[edge]],
        via=via,
        w=w,
        n_heads=fp.n_heads,
    )


class _Sources(NamedTuple):
    """Source nodes as what they write into the residual stream, where and at which level."""

    vector: Float[Tensor, "e d_model"]
    pos: Int64[Tensor, " e"]
    level: Int64[Tensor, " e"]


def _source_vectors(
    fp: FrozenPrompt, graph: PromptGraph, nodes: Tensor
) -> tuple[_Sources, Int64[Tensor, " e"]]:
    """What each source node (feature, token, error) writes, at which position and level: one
    entry per node, and per further layer a cross-layer feature writes to; and each entry's
    node (its position in `nodes`)."""
    kind, layer, pos = graph.kind[nodes], graph.layer[nodes], graph.pos[nodes]
    vector = torch.zeros(len(nodes), fp.emb.shape[1])
    is_tok, is_err, is_feat = (
        kind == k for k in (NodeKind.TOKEN, NodeKind.ERROR, NodeKind.FEATURE)
    )
    vector[is_tok] = fp.emb[pos[is_tok].to(fp.device)].cpu()
    errors = fp.resid_errors()
    vector[is_err] = errors[layer[is_err].to(fp.device), pos[is_err].to(fp.device)].cpu()
    found = _find_features(fp, layer[is_feat], pos[is_feat], graph.index[nodes][is_feat]).cpu()
    level = torch.where(is_tok, 0, layer + 1)
    owner = torch.nonzero(~is_feat).flatten()
    feat_owner, writes = _feature_writes(fp, found)
    w_feat = fp.write_feat.cpu()[writes]
    w_vec = fp.feat_act.cpu()[w_feat, None] * fp.write_dec.cpu()[writes]
    w_layer, w_pos = fp.write_layer.cpu()[writes], fp.feat_pos.cpu()[w_feat]
    for out_layer, gain in fp.out_gain.items():  # writes before ln2_post: through its map
        at = w_layer == out_layer
        w_vec[at] = w_vec[at] * gain.cpu()[w_pos[at]]
    return (
        _Sources(
            torch.cat([vector[~is_feat], w_vec]),
            torch.cat([pos[~is_feat], w_pos]),
            torch.cat([level[~is_feat], w_layer + 1]),
        ),
        torch.cat([owner, torch.nonzero(is_feat).flatten()[feat_owner]]),
    )


def _feature_writes(fp: FrozenPrompt, rows: Tensor) -> tuple[Tensor, Tensor]:
    """For feature rows `rows` (repeats allowed): (position in `rows`, write index) of every
    write of each (one per layer it decodes to)."""
    wf = fp.write_feat.cpu()
    by_feat = torch.argsort(wf, stable=True)
    counts = torch.bincount(wf, minlength=int(fp.feat_act.shape[0]))
    ptr = torch.cumsum(counts, 0) - counts
    n = counts[rows]
    owner = torch.arange(len(rows)).repeat_interleave(n)
    offset = torch.arange(int(n.sum())) - (torch.cumsum(n, 0) - n).repeat_interleave(n)
    return owner, by_feat[ptr[rows].repeat_interleave(n) + offset]


def _find_features(fp: FrozenPrompt, layer: Tensor, pos: Tensor, index: Tensor) -> Tensor:
    """Rows of fp's kept features with these (layer, pos, index); IngestError if one is absent."""
    both = torch.cat([fp.feat_index.cpu(), index.cpu(), torch.zeros(1, dtype=torch.long)])
    n_index = int(both.max()) + 1

    def key(la: Tensor, po: Tensor, ix: Tensor) -> Tensor:
        return (la.cpu() * fp.n_pos + po.cpu()) * n_index + ix.cpu()

    keys = key(fp.feat_layer, fp.feat_pos, fp.feat_index)  # sorted: features are ordered
    wanted = key(layer, pos, index)
    found = torch.searchsorted(keys, wanted).clamp(max=max(len(keys) - 1, 0))
    if len(wanted) and (not len(keys) or not torch.equal(keys[found], wanted)):
        raise IngestError("split_by_head: a feature of the graph is not active on this prompt")
    return found.to(fp.device)


def _graph_rows(fp: FrozenPrompt, graph: PromptGraph, nodes: Tensor) -> Rows:
    """Rows (site, pos, read, const) of destination nodes of `graph`."""
    target_rank = torch.cumsum(graph.kind == NodeKind.TARGET, 0) - 1
    site, read, const = [], [], []
    for node in nodes.tolist():
        if graph.kind[node] == NodeKind.TARGET:
            s, r, c = target_row(fp, graph.targets[int(target_rank[node])])
        else:
            s = int(graph.layer[node])
            idx = int(graph.index[node])
            r, c = fp.W_enc[s][:, idx], fp.enc_bias[s][idx]
        site.append(s)
        read.append(r)
        const.append(c.reshape(()))
    dev = fp.device
    return Rows(
        torch.tensor(site, device=dev),
        graph.pos[nodes].to(dev),
        torch.stack(read),
        torch.stack(const),
    )


def _split_chunk(
    fp: FrozenPrompt, rows: Rows, src: _Sources, local: Int64[Tensor, " e"], edge_ids: Tensor
) -> list[tuple[Tensor, Tensor, Tensor]]:
    """(edge, via, w) parts of the edges whose destinations are `rows` (one site).

    `local[e]` is source entry e's row within `rows`; an entry reaches a hop through the
    residual stream alone when it is written at or below the hop's level.
    """
    dev, n_heads = fp.device, fp.n_heads
    x, src_pos, level, r = src.vector.to(dev), src.pos.to(dev), src.level.to(dev), local.to(dev)
    site = int(rows.site[0])
    seed = normalize(rows.read, fp.scale_at(site)[rows.pos], fp.center_at(site))
    direct = (x * seed[r]).sum(-1) * (src_pos == rows.pos[r]) * (level <= site)
    out = [(edge_ids, torch.full_like(edge_ids, RESID), direct.cpu())]
    for step in adjoint(fp, rows, heads=True):
        below = level <= step.level
        if step.skip is not None:
            w_skip = ((step.skip[r, src_pos] * x).sum(-1) * below).cpu()
            out.append((edge_ids, torch.full_like(edge_ids, skip_via(step.level)), w_skip))
        if step.heads is None:
            continue
        w = einsum(step.heads[r, :, src_pos], x, "e n_heads d_model, e d_model -> e n_heads")
        w = (w * below[:, None]).cpu()
        via = step.level * n_heads + torch.arange(n_heads).expand_as(w)
        out.append((edge_ids[:, None].expand_as(w).reshape(-1), via.reshape(-1), w.reshape(-1)))
    return [(e[w != 0], v[w != 0], w[w != 0]) for e, v, w in out]


def _add_parts(parts: list[tuple[Tensor, Tensor, Tensor]]) -> tuple[Tensor, Tensor, Tensor]:
    """(edge, via, w) with the parts of one (edge, via) added (a cross-layer feature's writes
    can share a route), ordered by edge then via."""
    edge, via, w = (torch.cat([p[i] for p in parts]) for i in range(3))
    if not len(edge):
        return edge, via, w
    keys, inverse = torch.unique(torch.stack([edge, via], 1), dim=0, return_inverse=True)
    total = torch.zeros(len(keys), dtype=w.dtype).index_add_(0, inverse, w)
    return keys[:, 0], keys[:, 1], total
