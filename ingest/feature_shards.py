"""A sharded corpus pass: each shard's accumulators as one file in the parts folder.

`ingest features --shard i/N --parts DIR` runs corpus batches b with b % N == i and saves its
accumulators (feature_stats.LayerStats per layer, token and batch counts, the run parameters)
as `DIR/<shard>-features.pt`, tagged with the fingerprint of the whole pass's inputs.
`ingest features --merge DIR` checks that the N files are the shards of one pass, merges them
with `merge_layer_stats` in shard order and writes the Feature statistics once. The files
hold tensors only (torch.load with weights_only), so a parts folder is safe to load.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import torch

from circuitcat.catalog.errors import IngestError
from circuitcat.catalog.parts import Shard

from .feature_stats import FeatureStats, LayerStats, flat_layer, merge_layer_stats, unflat_layer

SUFFIX = "-features.pt"


def shard_file(parts: Path, shard: Shard) -> Path:
    return parts / f"{shard.name}{SUFFIX}"


def save_shard(
    parts: Path, shard: Shard, stats: FeatureStats, whole: str, params: dict[str, object]
) -> Path:
    """Write one shard's accumulators atomically; `whole` fingerprints the unsharded inputs."""
    layers = {
        layer: {k: v.cpu() for k, v in flat_layer(st).items()} for layer, st in stats.layers.items()
    }
    state = {
        "whole": whole,
        "shard": [shard.index, shard.count],
        "tokens": stats.tokens,
        "params": json.dumps(params, sort_keys=True, default=str),
        "layers": layers,
    }
    parts.mkdir(parents=True, exist_ok=True)
    path = shard_file(parts, shard)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def _read(path: Path) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        return {k: state[k] for k in ("whole", "shard", "tokens", "params", "layers")}
    except (OSError, RuntimeError, EOFError, KeyError, TypeError, pickle.UnpicklingError) as e:
        raise IngestError(f"{path} is not a readable shard of `ingest features` ({e})") from e


def load_shards(
    parts: Path, set_uid: str, layers: list[int]
) -> tuple[FeatureStats, dict[str, object]]:
    """Every shard's accumulators in `parts` merged in shard order, and the run parameters
    (the whole pass's tokens). Raises IngestError unless the files are all N shards of one
    pass over this set."""
    files = sorted(parts.glob(f"*{SUFFIX}")) if parts.is_dir() else []
    if not files:
        raise IngestError(f"no `ingest features` shards (*{SUFFIX}) in {parts}")
    states = sorted((_read(f) for f in files), key=lambda st: st["shard"][0])
    count = states[0]["shard"][1]
    got = [st["shard"] for st in states]
    if got != [[i, count] for i in range(count)] or len({st["whole"] for st in states}) != 1:
        raise IngestError(
            f"{parts} holds shards {got}: expected shards 0..{count - 1} of {count}, all of one "
            "pass (same corpus, model, set and settings)"
        )
    params = json.loads(states[0]["params"])
    if params.get("set") != set_uid:
        raise IngestError(f"the shards in {parts} are of set {params.get('set')}, not {set_uid}")
    merged: dict[int, LayerStats] = {}
    for st in states:
        for layer in layers:
            part = unflat_layer(dict(st["layers"][layer]))
            merged[layer] = part if layer not in merged else merge_layer_stats(merged[layer], part)
    tokens = sum(int(st["tokens"]) for st in states)
    stats = FeatureStats(set_uid, merged, tokens=tokens, fingerprint=states[0]["whole"])
    return stats, params | {"tokens": tokens, "shards": count}
