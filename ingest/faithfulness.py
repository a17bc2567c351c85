"""Faithfulness of a circuit: `circuitcat circuit verify` and the metric-vs-size curve.

Every MLP is replaced by its transcoder; the circuit's features keep their activations and every
other feature is set to its mean activation over all tokens (act_mean x density from the corpus
pass when the store has it, else measured on a held-out sample of the toy corpus, or on random
tokens for a model without a tokenizer). The task metric is reported for the full model, the
transcoder-replaced model, the circuit, every feature at its mean ("empty"), and random circuits
with the circuit's per-layer feature counts drawn from the live features (seeded, averaged over
draws). `verify_circuit` stores the result on the Circuit node as `faithfulness` JSON.
`transfer_circuit` (`circuitcat circuit transfer A --task B`) measures circuit A the same way on
another task's prompts, beside that task's own circuit; it stores nothing.
Hooks live only inside `model.hooks(...)`.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from circuitcat.catalog import CatalogStore, NodeBatch, NodeKind, schema
from circuitcat.catalog.circuits import get_circuit
from circuitcat.catalog.errors import TaskError

from .corpus import open_corpus, tokenize
from .models import LoadedModel
from .tasks import Task, batch_tokens, score
from .transcoders.replace import replacement_hooks
from .transcoders.transcoder import TranscoderSet

Hook = tuple[str, Callable[..., Any]]
Members = list[tuple[int, int]]  # (layer, index) of the circuit's features, strongest first
SAMPLE_SEED = 9_001  # the held-out toy corpus sample for feature means (training uses 0..2)
SAMPLE_DOCS = 400


@dataclass(frozen=True)
class FeatureMeans:
    """Per layer: each feature's mean activation over all tokens, and which features fire."""

    means: dict[int, Tensor]
    live: dict[int, Tensor]
    source: str


def stored_means(store: CatalogStore, set_uid: str, tset: TranscoderSet) -> FeatureMeans | None:
    """act_mean x density from the corpus pass, or None when the store has not measured them."""
    rows = store.query("set_feature_means", set_uid=set_uid)
    if not rows:
        return None
    means = {layer: torch.zeros(tset.d_transcoder) for layer in tset.layers}
    live = {layer: torch.zeros(tset.d_transcoder, dtype=torch.bool) for layer in tset.layers}
    for r in rows:
        if r["layer"] in means:
            density = float(r["density"] or 0.0)
            means[r["layer"]][r["feature_index"]] = float(r["act_mean"] or 0.0) * density
            live[r["layer"]][r["feature_index"]] = density > 0
    return FeatureMeans(means, live, "corpus pass (act_mean x density)")


def _sample_batches(loaded: LoadedModel, n_docs: int, seed: int) -> list[Tensor]:
    model = loaded.model
    n_ctx = int(model.cfg.n_ctx)
    if model.tokenizer is None:
        gen = torch.Generator().manual_seed(seed)
        return list(torch.randint(0, model.cfg.d_vocab, (n_docs, n_ctx), generator=gen).split(64))
    stream = tokenize(open_corpus("toy", n_docs=n_docs, seed=seed, n_ctx=n_ctx), model.tokenizer,
                      n_ctx=n_ctx)  # fmt: skip
    return [batch for _, batch in stream.batches(64)]


def sample_means(
    loaded: LoadedModel, tset: TranscoderSet, n_docs: int = SAMPLE_DOCS, seed: int = SAMPLE_SEED
) -> FeatureMeans:
    """Mean activations measured on a held-out sample of the toy corpus (random tokens for a
    model without a tokenizer)."""
    model = loaded.model
    sums = {layer: torch.zeros(tset.d_transcoder, dtype=torch.float64) for layer in tset.layers}
    names = {tset[layer].cfg.input_hook: layer for layer in tset.layers}
    n_tokens = 0
    with torch.no_grad():
        for batch in _sample_batches(loaded, n_docs, seed):
            _, cache = model.run_with_cache(
                batch.to(model.cfg.device), names_filter=lambda n: n in names
            )
            for name, layer in names.items():
                tc = tset[layer]
                z = tc.encode(cache[name].to(tc.W_enc.dtype)).reshape(-1, tset.d_transcoder)
                sums[layer] += z.double().sum(0).cpu()
            n_tokens += batch.numel()
    means = {layer: (sums[layer] / max(n_tokens, 1)).float() for layer in tset.layers}
    live = {layer: means[layer] > 0 for layer in tset.layers}
    source = "random tokens" if model.tokenizer is None else f"toy corpus sample (seed {seed})"
    return FeatureMeans(means, live, f"{source}, {n_tokens} tokens")


def ablation_hooks(
    tset: TranscoderSet, keep: dict[int, Tensor], means: dict[int, Tensor]
) -> list[Hook]:
    """Every MLP replaced by its transcoder; features not in `keep` set to their mean.

    The activation is set before decoding, so a cross-layer feature is ablated in every layer
    it writes to. The replaced model runs live: a ReLU or JumpReLU gate and a TopK selection
    are recomputed on each pass (TopK re-selection is not frozen), as any transcoder runs;
    freezing happens only in per-prompt attribution (see ingest/attribution/frozen.py)."""

    def edit(layer: int, z: Tensor) -> Tensor:
        return torch.where(keep[layer].to(z.device), z, means[layer].to(z))

    return replacement_hooks(tset, tset.layers, edit)


def task_metric(model: Any, task: Task, hooks: Sequence[Hook] = (), batch_size: int = 100) -> float:
    """The task metric averaged over the task's prompts, `hooks` active during the passes."""
    pad = getattr(model.tokenizer, "pad_token_id", None) or 0
    values = []
    with torch.no_grad(), model.hooks(fwd_hooks=list(hooks)):
        for start in range(0, len(task.prompts), batch_size):
            prompts = task.prompts[start : start + batch_size]
            tokens, last = batch_tokens(prompts, pad_id=int(pad))
            logits = model(tokens.to(model.cfg.device), return_type="logits")
            logits_last = logits[torch.arange(len(prompts)), last.to(logits.device)]
            values.append(score(task.metric, logits_last, prompts).cpu())
    return float(torch.cat(values).mean())


def keep_masks(tset: TranscoderSet, members: Members) -> dict[int, Tensor]:
    keep = {layer: torch.zeros(tset.d_transcoder, dtype=torch.bool) for layer in tset.layers}
    for layer, index in members:
        keep[layer][index] = True
    return keep


def random_members(live: dict[int, Tensor], members: Members, rng: random.Random) -> Members:
    """As many live features per layer as `members` has, drawn at random."""
    out: Members = []
    for layer in sorted(live):
        k = sum(1 for m in members if m[0] == layer)
        pool = [int(i) for i in live[layer].nonzero().flatten().tolist()]
        out += [(layer, i) for i in rng.sample(pool, min(k, len(pool)))]
    return out


@dataclass(frozen=True)
class Faithfulness:
    """The task metric of the full model, the transcoder-replaced model, the circuit alone
    (other features at their means), no feature at all ("empty"), and random circuits."""

    metric: str
    n_prompts: int
    n_features: int
    n_live: int
    full: float
    replaced: float
    circuit: float
    empty: float
    random: float
    random_draws: list[float]
    kept: float  # circuit / replaced
    random_kept: float  # random / replaced
    means_from: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _ratio(a: float, b: float) -> float:
    return a / b if b != 0 else float("nan")


def measure_faithfulness(
    model: Any,
    tset: TranscoderSet,
    task: Task,
    members: Members,
    means: FeatureMeans,
    n_random: int = 5,
    seed: int = 0,
) -> Faithfulness:
    """Run the model as is, transcoder-replaced, and with only `members` (or random circuits of
    the same per-layer size, `n_random` seeded draws) kept; see the module doc."""

    def with_kept(kept: Members) -> float:
        return task_metric(model, task, ablation_hooks(tset, keep_masks(tset, kept), means.means))

    rng = random.Random(seed)
    draws = [with_kept(random_members(means.live, members, rng)) for _ in range(n_random)]
    replaced = task_metric(model, task, replacement_hooks(tset, tset.layers))
    circuit = with_kept(members)
    rand = float(np.mean(draws)) if draws else float("nan")
    return Faithfulness(
        metric=task.metric,
        n_prompts=len(task.prompts),
        n_features=len(members),
        n_live=int(sum(int(v.sum()) for v in means.live.values())),
        full=task_metric(model, task),
        replaced=replaced,
        circuit=circuit,
        empty=with_kept([]),
        random=rand,
        random_draws=draws,
        kept=_ratio(circuit, replaced),
        random_kept=_ratio(rand, replaced),
        means_from=means.source,
    )


def circuit_members(store: CatalogStore, uid: str) -> Members:
    return [(r["layer"], r["feature_index"]) for r in store.query("circuit_features", uid=uid)]


def _checked_circuit(
    store: CatalogStore, loaded: LoadedModel, tset: TranscoderSet, name: str, task: str
) -> tuple[dict[str, Any], Members]:
    set_uid = schema.transcoder_set_uid(schema.model_uid(loaded.name), tset.name)
    circuit = get_circuit(store, name, set_uid, task)
    return circuit, circuit_members(store, circuit["uid"])


def resolve_means(
    store: CatalogStore, loaded: LoadedModel, tset: TranscoderSet, set_uid: str
) -> FeatureMeans:
    """The corpus pass's means when stored, else a held-out sample's."""
    return stored_means(store, set_uid, tset) or sample_means(loaded, tset)


def verify_circuit(
    store: CatalogStore,
    loaded: LoadedModel,
    tset: TranscoderSet,
    task: Task,
    name: str,
    *,
    n_random: int = 5,
    seed: int = 0,
) -> Faithfulness:
    """Measure circuit `name` (of this set and task) on `task`'s prompts; store the result on
    its Circuit node as `faithfulness` JSON."""
    circuit, members = _checked_circuit(store, loaded, tset, name, task.name)
    means = resolve_means(store, loaded, tset, circuit["set_uid"])
    result = measure_faithfulness(loaded.model, tset, task, members, means, n_random, seed)
    store.write_nodes(
        NodeBatch(
            NodeKind.CIRCUIT,
            {"uid": [circuit["uid"]], "faithfulness": [json.dumps(result.as_dict())]},
        )
    )
    return result


# --------------------------------------------------------------------------------------------
# the curve: metric against circuit size


@dataclass(frozen=True)
class Curve:
    """The metric with the first k circuit features kept, against k random live features
    (the circuit's per-layer counts; one row per draw)."""

    sizes: list[int]
    circuit: list[float]
    random: list[list[float]]
    full: float
    replaced: float
    n_live: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def curve_sizes(n: int, points: int = 16) -> list[int]:
    """0 to n in about `points` even steps."""
    return sorted({round(n * i / points) for i in range(points + 1)})


def faithfulness_curve(
    model: Any,
    tset: TranscoderSet,
    task: Task,
    members: Members,
    means: FeatureMeans,
    n_random: int = 3,
    seed: int = 0,
) -> Curve:
    """The metric as the circuit grows in its score order, and for random circuits."""

    def metric(kept: Members) -> float:
        return task_metric(model, task, ablation_hooks(tset, keep_masks(tset, kept), means.means))

    sizes = curve_sizes(len(members))
    rng = random.Random(seed)
    return Curve(
        sizes=sizes,
        circuit=[metric(members[:k]) for k in sizes],
        random=[
            [metric(random_members(means.live, members[:k], rng)) for k in sizes]
            for _ in range(n_random)
        ],
        full=task_metric(model, task),
        replaced=task_metric(model, task, replacement_hooks(tset, tset.layers)),
        n_live=int(sum(int(v.sum()) for v in means.live.values())),
    )


def circuit_curve(
    store: CatalogStore,
    loaded: LoadedModel,
    tset: TranscoderSet,
    task: Task,
    name: str,
    n_random: int = 3,
    seed: int = 0,
) -> Curve:
    """`faithfulness_curve` for stored circuit `name`."""
    circuit, members = _checked_circuit(store, loaded, tset, name, task.name)
    means = resolve_means(store, loaded, tset, circuit["set_uid"])
    return faithfulness_curve(loaded.model, tset, task, members, means, n_random, seed)


def plot_curve(curve: Curve, path: Path, title: str = "") -> Path:
    """The curve as a PNG (matplotlib, Agg backend): circuit order vs random draws."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    for i, row in enumerate(curve.random):
        ax.plot(curve.sizes, row, color="0.6", lw=1, label="random features" if i == 0 else None)
    ax.plot(curve.sizes, curve.circuit, "o-", color="C0", label="circuit order")
    ax.axhline(curve.replaced, color="C1", ls="--", label="all transcoder features")
    ax.axhline(curve.full, color="C2", ls=":", label="original model")
    ax.set_xlim(0, max(curve.sizes[-1], 1))
    ax.set_xlabel(f"features kept (of {curve.n_live} live; the rest at their mean)")
    ax.set_ylabel("task metric")
    ax.set_title(title)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------------------------
# transfer: one circuit's features on another task's prompts


@dataclass(frozen=True)
class Transfer:
    """Circuit A's faithfulness on task B's prompts (A's features kept, every other feature at
    its mean), against random circuits of A's per-layer size, beside B's own circuit when the
    catalog holds one for the same set (`own`: its metric on the same prompts)."""

    circuit: str
    circuit_task: str
    task: str
    faithfulness: Faithfulness
    own_circuit: str | None
    own: float | None
    own_n_features: int | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def transfer_circuit(
    store: CatalogStore,
    loaded: LoadedModel,
    tset: TranscoderSet,
    circuit_ref: str,
    task: Task,
    *,
    n_random: int = 20,
    seed: int = 0,
) -> Transfer:
    """Measure circuit `circuit_ref` (name or uid) on `task`'s prompts; see `Transfer`. Nothing is
    stored."""
    from circuitcat.catalog.compare import resolve_circuit

    circuit = resolve_circuit(store, circuit_ref)
    set_uid = schema.transcoder_set_uid(schema.model_uid(loaded.name), tset.name)
    if circuit["set_uid"] != set_uid:
        raise TaskError(
            f"circuit {circuit['name']!r} is on set {circuit['set_uid']!r}, the loaded one is "
            f"{set_uid!r}; pass --set {circuit['set_uid']}"
        )
    means = resolve_means(store, loaded, tset, set_uid)
    members = circuit_members(store, circuit["uid"])
    result = measure_faithfulness(loaded.model, tset, task, members, means, n_random, seed)
    own = [r for r in store.query("circuits_of_task", task=task.name) if r["set_uid"] == set_uid]
    own_value = own_n = None
    if own:
        own_members = circuit_members(store, own[0]["uid"])
        keep = keep_masks(tset, own_members)
        own_value = task_metric(loaded.model, task, ablation_hooks(tset, keep, means.means))
        own_n = len(own_members)
    return Transfer(
        circuit["uid"], circuit["task"], task.name, result,
        own[0]["uid"] if own else None, own_value, own_n,
    )  # fmt: skip
