"""Exact top-k selection: the blocked product with a running top-k, and the merge of per-route
top-k lists into one per-target budget.

Ranking: entries are ranked per row by |w| (both signs kept); among exactly equal |w| the lower
id comes first (the column, or a global source id in a merge). Because that order is total, the
result is the same for every block size, device and merge order (torch.topk alone breaks exact
ties arbitrarily). rank 0 = largest |w|.

Merging is exact: the top-k of a row over every route is a subset of the union of each route's
own top-k, so a running [rows, k] list updated route by route ends equal to the top-k of the
full, never materialised, [rows, all sources x routes] matrix.

Dimension names: rows (targets), c (candidate columns), k (kept per row), n_src, d, t (a block
of targets); see weights.py for the rest. A leading underscore (`_d`) documents a dimension that
jaxtyping leaves unchecked because the function checks it itself, with an IngestError that says
which inputs do not fit (what a user sees: the shape checks run under pytest only).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int64
from torch import Tensor

from circuitcat.catalog.errors import IngestError

# Tuned on 2 CPU cores (bench/weights.py): big enough for BLAS to run at full speed and for
# torch's CPU topk to take its fast partial-sort path (row length >= 64 x (k + 1)), small enough
# that the two fp32 block buffers stay at 2 x 4096 x 4096 x 4 B = 128 MiB.
SRC_BLOCK = 4096
DST_BLOCK = 4096
# Logit blocks hold rows x d_vocab fp32 values.
LOGIT_BLOCK_ELEMS = 1 << 24


@dataclass(frozen=True)
class BlockSizes:
    """Block shape of the blocked products: `src` source rows x `dst` target columns."""

    src: int = SRC_BLOCK
    dst: int = DST_BLOCK


BLOCKS = BlockSizes()


# ---------------------------------------------------------------------------------------------
# selection helpers: exact top-k under (key, then lower index)


def _f32(x: Tensor) -> Tensor:
    return x.detach().to(torch.float32)


def _finite(w: Tensor, what: str) -> Tensor:
    # checked on the result, not the inputs, to stay O(result) in memory: topk and sort rank
    # NaN above every number, so a NaN or inf anywhere in a product reaches the result
    if not bool(torch.isfinite(w).all()):
        raise IngestError(f"{what} has NaN or infinite values; check the weight files")
    return w


def _check_k(k: int, n: int) -> int:
    if k < 1:
        raise IngestError(f"top-k must be at least 1, got {k}")
    return min(k, n)


def _top_set(
    key: Float[Tensor, "rows c"], k: int, largest: bool, ids: Int64[Tensor, "rows c"] | None = None
) -> Int64[Tensor, "rows k"]:
    """Columns of the k best entries of each row (any order); ties go to the lower id
    (`ids`, or the column itself when None)."""
    n_rows, n = key.shape
    if k >= n:
        return torch.arange(n, device=key.device).expand(n_rows, n)
    val, cols = torch.topk(key, k + 1, dim=1, largest=largest, sorted=True)
    cols = cols[:, :k]
    # the set is ambiguous only where the (k+1)-th value equals the k-th: rare, so those rows
    # alone take the slow exact path
    tied = (val[:, k] == val[:, k - 1]).nonzero().squeeze(1)
    if tied.numel():
        if ids is None:
            order = torch.sort(key[tied], dim=1, descending=largest, stable=True).indices
        else:
            order = _lex_first(key[tied], ids[tied], k, descending=largest)
        cols[tied] = order[:, :k]
    return cols


def _lex_first(
    key: Float[Tensor, "rows c"], idx: Int64[Tensor, "rows c"], k: int, descending: bool
) -> Int64[Tensor, "rows k"]:
    """Positions of the first k entries per row ordered by key, then by ascending idx."""
    by_idx = torch.argsort(idx, dim=1)
    by_key = torch.sort(key.gather(1, by_idx), dim=1, descending=descending, stable=True).indices
    return by_idx.gather(1, by_key[:, :k])


def _buffer_view(buf: Tensor, rows: int, cols: int) -> Tensor:
    """A contiguous [rows, cols] view at the start of a flat buffer (edge blocks are smaller)."""
    return buf[: rows * cols].view(rows, cols)


# ---------------------------------------------------------------------------------------------
# the blocked product with a running top-k


def _block_topk(
    src: Float[Tensor, "n_src d"],
    dst_t: Float[Tensor, "t d"],
    s0: int,
    k: int,
    src_block: int,
    bufs: tuple[Tensor, Tensor],
) -> tuple[Float[Tensor, "t k"], Int64[Tensor, "t k"]]:
    """Top-k (signed weight, source index) per target within source rows s0 .. s0 + src_block."""
    s = src[s0 : s0 + src_block]
    # targets on rows so the top-k runs along contiguous memory; both buffers are reused
    v = torch.matmul(dst_t, s.T, out=_buffer_view(bufs[0], dst_t.shape[0], s.shape[0]))
    a = torch.abs(v, out=_buffer_view(bufs[1], dst_t.shape[0], s.shape[0]))
    local = _top_set(a, k, largest=True)
    return v.gather(1, local), local + s0


def _topk_target_block(
    src: Float[Tensor, "n_src d"],
    dst_t: Float[Tensor, "t d"],
    k: int,
    src_block: int,
    bufs: tuple[Tensor, Tensor],
) -> tuple[Int64[Tensor, "t k"], Float[Tensor, "t k"]]:
    """Top-k sources for one block of targets, streaming over blocks of source rows."""
    run_w, run_i = _block_topk(src, dst_t, 0, k, src_block, bufs)
    for s0 in range(src_block, src.shape[0], src_block):
        blk_w, blk_i = _block_topk(src, dst_t, s0, k, src_block, bufs)
        cand_w, cand_i = torch.cat([run_w, blk_w], dim=1), torch.cat([run_i, blk_i], dim=1)
        keep = _top_set(cand_w.abs(), k, largest=True, ids=cand_i)
        run_w, run_i = cand_w.gather(1, keep), cand_i.gather(1, keep)
    # the running set is unordered; order it once: |w| descending, then source index
    pos = _lex_first(run_w.abs(), run_i, k, descending=True)
    return run_i.gather(1, pos), run_w.gather(1, pos)


@torch.no_grad()
def topk_virtual_weights(
    W_dec_src: Float[Tensor, "n_src _d"],
    W_enc_dst: Float[Tensor, "_d n_dst"],
    k: int,
    block_size: int = SRC_BLOCK,
    target_block_size: int = DST_BLOCK,
    scale: float = 1.0,
) -> tuple[Int64[Tensor, "n_dst k"], Float[Tensor, "n_dst k"]]:
    """Top-k sources per target column of V = W_dec_src @ W_enc_dst by |V|, signs kept.

    Computed in blocks of `block_size` source rows x `target_block_size` target columns with a
    running top-k merge; the full product is never held. k is clamped to n_src. Returns source
    indices and weights (x `scale`), rank 0 first, on the inputs' device, fp32.
    """
    src, dst = _f32(W_dec_src), _f32(W_enc_dst)
    if src.dim() != 2 or dst.dim() != 2 or src.shape[1] != dst.shape[0]:
        raise IngestError(f"cannot multiply {tuple(src.shape)} by {tuple(dst.shape)}")
    if block_size < 1 or target_block_size < 1:
        raise IngestError("block sizes must be positive")
    n_src, n_dst = src.shape[0], dst.shape[1]
    k = _check_k(k, n_src)
    idx = torch.empty(n_dst, k, dtype=torch.int64, device=src.device)
    w = torch.empty(n_dst, k, dtype=torch.float32, device=src.device)
    if k == 0 or n_dst == 0:
        return idx, w
    sb, tb = min(block_size, n_src), min(target_block_size, n_dst)
    bufs = (src.new_empty(sb * tb), src.new_empty(sb * tb))
    dst_t = dst.T
    for t0 in range(0, n_dst, tb):
        idx[t0 : t0 + tb], w[t0 : t0 + tb] = _topk_target_block(
            src, dst_t[t0 : t0 + tb], k, sb, bufs
        )
    return idx, _finite(w, "the product W_dec @ W_enc") * scale


# ---------------------------------------------------------------------------------------------
# merging per-route top-k lists into one budget per target

NO_SOURCE = torch.iinfo(torch.int64).max  # id of an empty slot: loses every tie


@dataclass(frozen=True)
class MergedTopK:
    """A merged budget flattened to one row per kept entry (CPU tensors)."""

    row: Int64[Tensor, " n"]
    route: Int64[Tensor, " n"]
    src: Int64[Tensor, " n"]
    w: Float[Tensor, " n"]
    w_raw: Float[Tensor, " n"]
    rank: Int64[Tensor, " n"]


class RunningTopK:
    """Per target row, the k entries with the largest |w| seen so far over any number of routes.

    Each entry carries a global id (route code x `n_src` + source index, so ties go to the
    earlier route, then the lower source) and its unscaled weight `w_raw`. Empty slots hold
    w = 0 and id NO_SOURCE; they are dropped by `result`.
    """

    def __init__(self, n_rows: int, k: int, n_src: int, device: torch.device | str = "cpu"):
        if k < 1:
            raise IngestError(f"top-k must be at least 1, got {k}")
        self.k, self.n_src = k, n_src
        self.w = torch.zeros(n_rows, k, device=device)
        self.w_raw = torch.zeros(n_rows, k, device=device)
        self.ids = torch.full((n_rows, k), NO_SOURCE, dtype=torch.int64, device=device)

    def add(
        self,
        rows: Int64[Tensor, " rows"] | None,
        route: int | Int64[Tensor, "rows c"],
        idx: Int64[Tensor, "rows c"],
        w_raw: Float[Tensor, "rows c"],
        factor: float = 1.0,
    ) -> None:
        """Merge candidates (source `idx` on route code `route`, weight `w_raw` x `factor`)
        into `rows` (None: every row, in order)."""
        if idx.shape[1] == 0:
            return
        sel = slice(None) if rows is None else rows.to(self.ids.device)
        route = route.to(self.ids.device) if isinstance(route, Tensor) else route
        ids = route * self.n_src + idx.to(self.ids.device)
        w_raw = w_raw.to(self.w.device)
        cand_w = torch.cat([self.w[sel], w_raw * factor], dim=1)
        cand_raw = torch.cat([self.w_raw[sel], w_raw], dim=1)
        cand_ids = torch.cat([self.ids[sel], ids], dim=1)
        keep = _top_set(cand_w.abs(), self.k, largest=True, ids=cand_ids)
        self.w[sel] = cand_w.gather(1, keep)
        self.w_raw[sel] = cand_raw.gather(1, keep)
        self.ids[sel] = cand_ids.gather(1, keep)

    def result(self) -> MergedTopK:
        """The kept entries in rank order (|w| descending, then id), empty slots dropped."""
        pos = _lex_first(self.w.abs(), self.ids, self.k, descending=True)
        w, w_raw, ids = (x.gather(1, pos).cpu() for x in (self.w, self.w_raw, self.ids))
        rows = torch.arange(w.shape[0])[:, None].expand_as(w)
        rank = torch.arange(w.shape[1])[None, :].expand_as(w)
        keep = (ids != NO_SOURCE) & (w != 0)
        ids = ids[keep]
        route, src = ids // self.n_src, ids % self.n_src
        return MergedTopK(rows[keep], route, src, w[keep], w_raw[keep], rank[keep])
