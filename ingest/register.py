"""`ingest register`: put a model and its transcoder set into the catalog.

Writes Model, TranscoderSet, Head, Token (the whole vocabulary) and one Feature per transcoder
feature, linked by IN_SET and FOR_MODEL, all stamped with the Run that wrote them. Processing is
recorded both ways: the set's `processing` holds the flags it asks for (fold_ln, ...; what the
later jobs load the model with) and `<flag>_applied`, what transformer_lens applied; the model's
holds the applied flags and `<flag>_requested`. Registering
the same files again is a no-op; different files under a registered name are refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import version

import numpy as np

from circuitcat.catalog import CatalogStore, EdgeBatch, NodeBatch, NodeKind, RelKind, schema
from circuitcat.catalog.errors import IngestError
from circuitcat.catalog.records import ModelRecord, RunRecord, TranscoderSetRecord
from circuitcat.catalog.records import records_to_batch as batch_of
from circuitcat.catalog.runs import finish_run, start_run

from .models import LoadedModel
from .transcoders.transcoder import TranscoderSet


@dataclass(frozen=True)
class RegisterReport:
    model_uid: str
    set_uid: str
    run_uid: str
    n_features: int
    n_tokens: int
    n_heads: int
    already_registered: bool


def model_record(loaded: LoadedModel, run: str) -> ModelRecord:
    cfg = loaded.model.cfg
    return ModelRecord(
        name=loaded.name,
        source=loaded.source,
        n_layers=cfg.n_layers,
        d_model=cfg.d_model,
        n_heads=cfg.n_heads,
        d_vocab=cfg.d_vocab,
        arch=str(cfg.original_architecture or "custom"),
        processing=model_processing(loaded),
        run=run,
    )


def model_processing(loaded: LoadedModel) -> dict[str, bool]:
    """The flags transformer_lens applied, and as `<flag>_requested` those asked for where a
    request was made (transformer_lens drops some per architecture: see `applied_processing`)."""
    requested = {f"{k}_requested": bool(v) for k, v in loaded.requested.items()}
    return dict(loaded.processing) | requested


def set_record(tset: TranscoderSet, model_name: str, run: str) -> TranscoderSetRecord:
    first = tset[tset.layers[0]].cfg
    return TranscoderSetRecord(
        name=tset.name,
        model=schema.model_uid(model_name),
        source=tset.source,
        format=tset.format,
        d_transcoder=tset.d_transcoder,
        layers=tset.layers,
        input_hook=first.input_hook.replace(f".{first.layer}.", ".{layer}."),
        # A set writing before Gemma's post-MLP norm writes the MLP module's output, which no
        # transformer_lens hook holds: recorded under circuit-tracer's name for it.
        output_hook=(
            "blocks.{layer}.mlp.hook_out"
            if tset.post_norm
            else first.output_hook.replace(f".{first.layer}.", ".{layer}.")
        ),
        sha256=tset.sha256,
        processing=tset.processing,
        activation=tset.activation,
        run=run,
    )


def _registered_sha(store: CatalogStore, set_uid: str) -> str | None:
    rows = [r for r in store.query("transcoder_sets") if r["uid"] == set_uid]
    return str(rows[0]["sha256"]) if rows else None


def _n_features(store: CatalogStore, set_uid: str) -> int:
    return int(store.query("set_feature_count", set_uid=set_uid)[0]["n"])


def _complete(store: CatalogStore, set_uid: str, n_features: int) -> bool:
    return _n_features(store, set_uid) == n_features


def require_registered(store: CatalogStore, set_uid: str, tset: TranscoderSet) -> None:
    """The jobs after `register` need every Feature node of the set in the catalog."""
    expected = len(tset.layers) * tset.d_transcoder
    found = _n_features(store, set_uid)
    if found < expected:
        raise IngestError(
            f"transcoder set {set_uid!r} has {found} of its {expected} Feature nodes in the "
            "catalog: run `circuitcat ingest register` with the same model and transcoders first"
        )


def _vocabulary(loaded: LoadedModel, run: str) -> NodeBatch:
    model_uid = schema.model_uid(loaded.name)
    d_vocab = loaded.model.cfg.d_vocab
    tokenizer = loaded.model.tokenizer
    ids = list(range(d_vocab))
    texts = tokenizer.convert_ids_to_tokens(ids) if tokenizer is not None else [""] * d_vocab
    return NodeBatch(
        NodeKind.TOKEN,
        {
            "uid": [schema.token_uid(model_uid, i) for i in ids],
            "model": [model_uid] * d_vocab,
            "token_id": np.arange(d_vocab),
            "text": [t if t is not None else "" for t in texts],
            "run": [run] * d_vocab,
        },
    )


def _heads(loaded: LoadedModel, run: str) -> NodeBatch:
    cfg, model_uid = loaded.model.cfg, schema.model_uid(loaded.name)
    pairs = [(layer, h) for layer in range(cfg.n_layers) for h in range(cfg.n_heads)]
    return NodeBatch(
        NodeKind.HEAD,
        {
            "uid": [schema.head_uid(model_uid, layer, h) for layer, h in pairs],
            "model": [model_uid] * len(pairs),
            "layer": [p[0] for p in pairs],
            "head": [p[1] for p in pairs],
            "run": [run] * len(pairs),
        },
    )


def _features(tset: TranscoderSet, set_uid: str, run: str) -> NodeBatch:
    layers = np.repeat(tset.layers, tset.d_transcoder)
    index = np.tile(np.arange(tset.d_transcoder), len(tset.layers))
    uids = [
        schema.feature_uid(set_uid, int(layer), int(i))
        for layer, i in zip(layers, index, strict=True)
    ]
    return NodeBatch(
        NodeKind.FEATURE,
        {
            "uid": uids,
            "set": [set_uid] * len(uids),
            "layer": layers,
            "index": index,
            "run": [run] * len(uids),
        },
    )


def register(store: CatalogStore, loaded: LoadedModel, tset: TranscoderSet) -> RegisterReport:
    """Write the model, its vocabulary and heads, and the set's features (see module doc)."""
    run = RunRecord(
        kind="register",
        params={"model": loaded.name, "transcoders": tset.source},
        code_version=version("circuitcat"),
    )
    model = model_record(loaded, run.uid)
    tset_rec = set_record(tset, loaded.name, run.uid)
    known = _registered_sha(store, tset_rec.uid)
    if known is not None and known != tset.sha256:
        raise IngestError(
            f"transcoder set {tset_rec.uid!r} is already registered from different files or "
            f"with another --activation (sha256 {known[:12]}... vs {tset.sha256[:12]}...); "
            "register these under a new name with --name (e.g. a version suffix)"
        )
    features = _features(tset, tset_rec.uid, run.uid)
    report = RegisterReport(
        model.uid,
        tset_rec.uid,
        run.uid,
        len(features),
        loaded.model.cfg.d_vocab,
        loaded.model.cfg.n_layers * loaded.model.cfg.n_heads,
        already_registered=known is not None and _complete(store, tset_rec.uid, len(features)),
    )
    if report.already_registered:
        return report
    # Nodes and edges are MERGEd, so a run that died half-way is finished by running it again.
    start_run(store, run)
    for batch in (
        batch_of([model]),
        batch_of([tset_rec]),
        _heads(loaded, run.uid),
        _vocabulary(loaded, run.uid),
        features,
    ):
        store.write_nodes(batch)
    store.write_edges(
        EdgeBatch(
            RelKind.IN_SET,
            NodeKind.FEATURE,
            NodeKind.TRANSCODER_SET,
            features.uids,
            [tset_rec.uid] * len(features),
            {"run": [run.uid] * len(features)},
        )
    )
    store.write_edges(
        EdgeBatch(
            RelKind.FOR_MODEL,
            NodeKind.TRANSCODER_SET,
            NodeKind.MODEL,
            [tset_rec.uid],
            [model.uid],
            {"run": [run.uid]},
        )
    )
    finish_run(store, run)
    return report
