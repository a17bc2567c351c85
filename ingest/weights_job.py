"""`ingest weights`: input-invariant connections from weights.py, written into the catalog.

VIRTUAL_WEIGHT (resid, through attention heads, and through skip connections where the set has
them), DEEMBEDS and PROMOTES, written through the store's batched write path. One unit of work
per target layer (the default per-target budget, weight_budget.py) or per (layer pair, path)
(the per-pair budget). The job's Run node records
the units it has finished, so a killed job resumes after the last unit it stored; writes MERGE,
so re-running a finished job adds nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from importlib.metadata import version
from typing import NamedTuple, cast

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor
from transformer_lens import HookedTransformer
from transformer_lens.utilities.architectures import POST_NORM_ARCHITECTURES

from circuitcat.catalog import CatalogStore, EdgeBatch, NodeKind, RelKind
from circuitcat.catalog import schema as s
from circuitcat.catalog.errors import IngestError
from circuitcat.catalog.parts import WHOLE, Shard
from circuitcat.catalog.records import RunRecord
from circuitcat.catalog.records import records_to_batch as batch_of
from circuitcat.catalog.runs import finish_run, start_run

from . import weights as wts
from .models import LoadedModel
from .register import require_registered
from .transcoders.transcoder import Transcoder, TranscoderSet
from .weight_budget import BudgetInputs, ProductCache, cache_budget, target_layer_edges

Progress = Callable[[str, int], None]


BUDGETS = ("per-target", "per-pair")


@dataclass(frozen=True)
class WeightsParams:
    """`budget` "per-target" (default): top_k sources per target feature over every earlier
    layer and route (weight_budget.py); "per-pair": top_k per layer pair and per head, as
    before (~L x heads_per_feature times more edges)."""

    top_k: int = 32
    heads_per_feature: int = 4
    top_k_tokens: int = 16
    top_k_logits: int = 16
    budget: str = "per-target"

    def __post_init__(self) -> None:
        if self.budget not in BUDGETS:
            raise IngestError(f"budget {self.budget!r}: expected one of {', '.join(BUDGETS)}")


@dataclass
class WeightsReport:
    run_uid: str
    edges: dict[str, int] = field(default_factory=dict)
    units_done: int = 0
    units_skipped: int = 0
    scaled: bool = False


def centered_writers(tset: TranscoderSet, normalization: str | None) -> TranscoderSet:
    """A copy whose decoder rows (every layer's, for a cross-layer set) and skip outputs are
    mean-centred when the model's LayerNorm centres its input: what a later LayerNorm reads of
    d_i is d_i - mean(d_i) (divided by the scale)."""
    if normalization not in ("LN", "LNPre"):
        return tset
    centred = {}
    for layer, tc in tset.transcoders.items():
        copy = Transcoder(tc.cfg)
        copy.load_state_dict(tc.state_dict())
        with torch.no_grad():
            copy.W_dec.sub_(copy.W_dec.mean(dim=-1, keepdim=True))
            if copy.W_dec_after is not None:
                copy.W_dec_after.sub_(copy.W_dec_after.mean(dim=-1, keepdim=True))
            if copy.W_skip is not None:  # [d_out, d_in]: centre each output over d_out
                copy.W_skip.sub_(copy.W_skip.mean(dim=0, keepdim=True))
        centred[layer] = copy
    return TranscoderSet(
        tset.name, tset.model_name, tset.format, tset.source, centred, tset.processing, tset.sha256
    )


def _centre(w: Tensor, normalization: str | None) -> Tensor:
    return w - w.mean(dim=-1, keepdim=True) if normalization in ("LN", "LNPre") else w


def _layer_scales(store: CatalogStore, set_uid: str, layers: list[int]) -> dict[int, float]:
    """1 / mean ln2 scale per layer from the corpus pass; empty if it has not run."""
    rows = store.query("set_ln_scales", uid=set_uid)
    if not rows or not rows[0]["scales"]:
        return {}
    return {layer: 1.0 / float(sc) for layer, sc in zip(layers, rows[0]["scales"], strict=True)}


class ModelWeights(NamedTuple):
    """The model's matrices as the weight math reads them (see weights.py)."""

    W_E: Float[Tensor, "d_vocab d_model"]  # Gemma's sqrt(d_model) is already in W_E
    W_V: Float[Tensor, "n_layers n_heads d_model d_head"]  # ln1.w folded in
    W_O: Float[Tensor, "n_layers n_heads d_head d_model"]  # ln1_post.w folded in (Gemma)
    W_U: Float[Tensor, "d_model d_vocab"]  # ln_final.w folded in; before any logit soft cap


def _norm_w(module: torch.nn.Module | None) -> Tensor | None:
    w = getattr(module, "w", None)
    return w.detach() if isinstance(w, Tensor) else None


def model_weights(loaded: LoadedModel) -> ModelWeights:
    """W_E, W_V, W_O, W_U as seen from and into the normalised residual stream.

    An unprocessed model (LayerNorm or RMSNorm) still applies ln1.w before W_V and
    ln_final.w before W_U (fold_ln already did this for processed ones); Gemma's ln1_post
    multiplies each head's output by its w (and divides by an input-dependent scale that the
    corpus pass does not measure). With LayerNorm, what a later norm reads of a write is its
    centred part, so W_O and W_E are centred. Grouped-query attention: `W_V` repeats each
    key-value head for the query heads that share it, as transformer_lens runs it.
    """
    m = loaded.model
    _check_model(m)
    W_V, W_O, W_U, W_E = (x.detach() for x in (m.W_V, m.W_O, m.W_U, m.W_E))
    blocks = list(m.blocks)
    ln1_w = [_norm_w(b.ln1) for b in blocks]
    if all(w is not None for w in ln1_w):
        W_V = W_V * torch.stack(cast(list[Tensor], ln1_w))[:, None, :, None]
    post_w = [_norm_w(getattr(b, "ln1_post", None)) for b in blocks]
    if all(w is not None for w in post_w):
        W_O = W_O * torch.stack(cast(list[Tensor], post_w))[:, None, None, :]
    lnf_w = _norm_w(getattr(m, "ln_final", None))
    if lnf_w is not None:
        W_U = W_U * lnf_w[:, None]
    norm = m.cfg.normalization_type
    return ModelWeights(_centre(W_E, norm), W_V, _centre(W_O, norm), W_U)


def _check_model(model: HookedTransformer) -> None:
    arch = model.cfg.original_architecture
    if arch in POST_NORM_ARCHITECTURES:
        raise IngestError(
            f"ingest weights does not support model '{model.cfg.model_name}': "
            f"original_architecture {arch!r} has post-norm blocks (ln1/ln2 after each sublayer)"
        )


Unit = tuple[str, Callable[[], Iterator[wts.WeightEdges]]]


def _units(
    loaded: LoadedModel, tset: TranscoderSet, p: WeightsParams, scales: dict[int, float]
) -> list[Unit]:
    """(unit name, edge generator) in a fixed order; a unit is the resume (and shard)
    granularity: one target layer, then one layer's logits, for the per-target budget."""
    mw = model_weights(loaded)
    parallel = bool(loaded.model.cfg.parallel_attn_mlp)
    if p.budget == "per-pair":
        return _pair_units(mw, tset, p, scales, parallel)
    cache = ProductCache(cache_budget(mw.W_E.device))
    inp = BudgetInputs(
        mw.W_E, mw.W_V, mw.W_O, p.heads_per_feature, scales, parallel=parallel, cache=cache
    )
    units: list[Unit] = [
        (f"target:{layer}", partial(target_layer_edges, tset, layer, p.top_k, p.top_k_tokens, inp))
        for layer in tset.layers
    ]
    units += [
        (f"logits:{layer}", partial(wts.logit_edges, tset, mw.W_U, p.top_k_logits, layers=[layer]))
        for layer in tset.layers
    ]
    return units


def _pair_units(
    mw: ModelWeights,
    tset: TranscoderSet,
    p: WeightsParams,
    scales: dict[int, float],
    parallel: bool,
) -> list[Unit]:
    """The per-pair budget: one unit per (layer pair, path), then DEEMBEDS and PROMOTES.
    Head rankings are computed once per target layer and shared by its units."""
    heads = (mw.W_V, mw.W_O)
    ranked: dict[int, Tensor] = {}
    units: list[Unit] = []
    for l1, l2 in [(a, b) for a in tset.layers for b in tset.layers if a < b]:
        resid = partial(wts.residual_edges, tset, p.top_k, scales, [(l1, l2)])
        attn = partial(
            wts.attention_edges,
            tset,
            *heads,
            p.top_k,
            p.heads_per_feature,
            scales,
            None,
            [(l1, l2)],
            parallel=parallel,
            ranked=ranked,
        )
        units += [(f"resid:{l1}-{l2}", resid), (f"attn:{l1}-{l2}", attn)]
        if wts.skip_layers(tset, l1, l2):
            skip = partial(wts.skip_edges, tset, p.top_k, scales, [(l1, l2)])
            units.append((f"skip:{l1}-{l2}", skip))
    deembeds = partial(_deembeds, tset, mw.W_E, p, scales, heads, parallel, ranked)
    units.append(("deembeds", deembeds))
    units.append(("logits", partial(wts.logit_edges, tset, mw.W_U, p.top_k_logits)))
    return units


def _deembeds(
    tset: TranscoderSet,
    W_E: Tensor,
    p: WeightsParams,
    scales: dict[int, float],
    heads: tuple[Tensor, Tensor],
    parallel: bool,
    ranked: dict[int, Tensor],
) -> Iterator[wts.WeightEdges]:
    """DEEMBEDS direct, through each feature's top heads, and through skip connections."""
    yield from wts.deembed_edges(
        tset,
        W_E,
        p.top_k_tokens,
        scales,
        heads,
        p.heads_per_feature,
        parallel=parallel,
        ranked=ranked,
    )
    yield from wts.skip_deembed_edges(tset, W_E, p.top_k_tokens, scales)


def to_batch(e: wts.WeightEdges, set_uid: str, model_uid: str, run: str) -> EdgeBatch:
    """Index columns to uid columns (vectorised per layer), plus the edge properties."""

    def uids(layer: int | None, index: torch.Tensor) -> np.ndarray:
        idx = index.numpy()
        if layer is None:
            return np.array([s.token_uid(model_uid, int(i)) for i in idx], dtype=object)
        table = np.array([s.feature_uid(set_uid, layer, i) for i in range(int(idx.max()) + 1)])
        return table[idx]

    def src_uids() -> np.ndarray:
        if e.route is None:
            return uids(e.src_layer, e.src_index)
        code_layer = np.array([-1 if r[0] is None else r[0] for r in e.routes], dtype=np.int64)
        layer_of = code_layer[e.route.numpy()]
        out = np.empty(len(e), dtype=object)
        for layer in np.unique(layer_of).tolist():
            rows = layer_of == layer
            out[rows] = uids(None if layer < 0 else layer, e.src_index[torch.from_numpy(rows)])
        return out

    n = len(e)
    cols: dict[str, object] = {
        "w": e.w.numpy().astype(np.float64),
        "rank": e.rank.numpy(),
        "run": [run] * n,
    }
    if e.w_raw is not None:
        cols["w_raw"] = e.w_raw.numpy().astype(np.float64)
    if e.rel != RelKind.PROMOTES:
        cols["via"] = e.row_routes()[1]
    src_kind = NodeKind.TOKEN if e.rel == RelKind.DEEMBEDS else NodeKind.FEATURE
    dst_kind = NodeKind.TOKEN if e.dst_layer is None else NodeKind.FEATURE
    return EdgeBatch(
        RelKind(e.rel),
        src_kind,
        dst_kind,
        src_uids(),
        uids(e.dst_layer, e.dst_index),
        cols,
    )  # type: ignore[arg-type]


def finished_run(store: CatalogStore, kind: str, params: dict[str, object]) -> str | None:
    """The uid of a finished run of this kind whose parameters include `params`, if any."""
    for row in store.query("runs", limit=1000):
        stored = json.loads(row["params"] or "{}")
        same = all(stored.get(k) == v for k, v in params.items())
        if row["kind"] == kind and row["status"] == "done" and same:
            return str(row["uid"])
    return None


def _resume_run(store: CatalogStore, params: dict[str, object]) -> tuple[RunRecord, list[str]]:
    """The newest unfinished weights run with the same parameters, or a new run."""
    for row in store.query("runs", limit=1000):
        if row["kind"] != "weights" or row["status"] == "done":
            continue
        stored = json.loads(row["params"] or "{}")
        if {k: v for k, v in stored.items() if k != "done"} == params:
            run = RunRecord(
                kind="weights",
                started_at=row["started_at"],
                params=stored,
                code_version=version("circuitcat"),
            )
            return run, list(stored.get("done", []))
    return RunRecord(kind="weights", params=params, code_version=version("circuitcat")), []


def run_weights(
    store: CatalogStore,
    loaded: LoadedModel,
    tset: TranscoderSet,
    params: WeightsParams = WeightsParams(),
    progress: Progress | None = None,
    *,
    force: bool = False,
    shard: Shard = WHOLE,
) -> WeightsReport:
    """Compute and write every unit not yet done by an unfinished run with the same inputs;
    nothing at all when a run with the same inputs already finished (unless `force`).

    With `shard` i/N only the units u with u % N == i run (a store that writes parts, see
    catalog/parts.py, keeps the shards apart until `store load`)."""
    model_uid = s.model_uid(loaded.name)
    set_uid = s.transcoder_set_uid(model_uid, tset.name)
    require_registered(store, set_uid, tset)
    scales = _layer_scales(store, set_uid, tset.layers)
    job_params: dict[str, object] = {"set": set_uid, **params.__dict__, "scaled": bool(scales)}
    if shard.count > 1:
        job_params["shard"] = f"{shard.index}/{shard.count}"
    done_uid = None if force else finished_run(store, "weights", job_params)
    if done_uid is not None:
        return WeightsReport(done_uid, scaled=bool(scales), units_skipped=count_units(tset, params))
    run, done = _resume_run(store, job_params)
    report = WeightsReport(run.uid, scaled=bool(scales), units_skipped=len(done))
    start_run(store, run)
    centred = centered_writers(tset, loaded.model.cfg.normalization_type)
    uids = (set_uid, model_uid, run.uid)
    with torch.no_grad():
        for i, (name, edges) in enumerate(_units(loaded, centred, params, scales)):
            if name in done or not shard.takes(i):
                continue
            for rel, n in _write_unit(store, edges(), *uids).items():
                report.edges[rel] = report.edges.get(rel, 0) + n
            done.append(name)
            report.units_done += 1
            run = run.model_copy(update={"params": {**job_params, "done": done}})
            store.write_nodes(batch_of([run]))
            if progress:
                progress(name, report.units_done + report.units_skipped)
    finish_run(store, run)
    return report


def _write_unit(
    store: CatalogStore, edges: Iterator[wts.WeightEdges], set_uid: str, model_uid: str, run: str
) -> dict[str, int]:
    """One write per relationship kind in a unit: fewer, larger batches keep the store on its
    bulk path. Returns edges written per kind."""
    groups: dict[str, list[EdgeBatch]] = {}
    for e in edges:
        if len(e):
            groups.setdefault(e.rel, []).append(to_batch(e, set_uid, model_uid, run))
    return {rel: store.write_edges(EdgeBatch.concat(b)) for rel, b in groups.items()}


def count_units(tset: TranscoderSet, params: WeightsParams = WeightsParams()) -> int:
    """Units of the whole job (a shard runs about 1/N of them)."""
    if params.budget == "per-target":
        return 2 * len(tset.layers)
    pairs = [(a, b) for a in tset.layers for b in tset.layers if a < b]
    return 2 * len(pairs) + sum(1 for a, b in pairs if wts.skip_layers(tset, a, b)) + 2
