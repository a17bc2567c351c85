"""What every job loads first: a model and its transcoder set, processed the way the set needs.

A transcoder set is trained on a model loaded one way (SAELens records it in
`model_from_pretrained_kwargs`, circuit-tracer sets are unprocessed, the paper's GPT-2 set
matches transformer_lens's defaults). `load_pair` reads the set first, then loads the model
with the processing the set records, so no job needs a flag for it. `load_registered` loads
the pair a catalog's TranscoderSet node points at, from any working directory.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from circuitcat.catalog import CatalogStore
from circuitcat.catalog.errors import IngestError, ModelLoadError, TranscoderLoadError

from .models import TOY_NAMES, LoadedModel, load_model
from .transcoders.formats import PROCESSING_FLAGS
from .transcoders.load import adapt_to_model, load_transcoders
from .transcoders.transcoder import TranscoderSet

# --processing values besides a comma list of flags
PROCESSING_PRESETS: dict[str, dict[str, bool]] = {
    "none": dict.fromkeys(PROCESSING_FLAGS, False),
    "default": dict.fromkeys(PROCESSING_FLAGS, True),  # transformer_lens from_pretrained
}
# a set that records nothing is loaded like transformer_lens's from_pretrained
UNRECORDED_DEFAULT = "default"


def pick_device(device: str = "auto") -> str:
    """`auto` -> cuda when torch sees a GPU, else cpu; anything else is returned as given."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def default_threads() -> int:
    """Half the cores, at most 8: torch's own choice (all cores) runs several times slower
    on shared, busy machines (measured: `ingest features` 59.5 s vs 5.8 s on 2 cores)."""
    return max(1, min(8, (os.cpu_count() or 1) // 2))


def set_threads(threads: int | None = None) -> int:
    """Set torch's CPU threads (`None`: `default_threads()`); returns the number set."""
    import torch

    n = threads if threads is not None else default_threads()
    if n < 1:
        raise IngestError(f"--threads must be at least 1, got {n}")
    torch.set_num_threads(n)
    return n


def parse_processing(text: str | None) -> dict[str, bool] | None:
    """`None`/"auto" -> None (what the set records); "none", "default", or a comma list of
    processing flags that are on (e.g. "fold_ln,center_writing_weights")."""
    if text is None or text == "auto":
        return None
    if text in PROCESSING_PRESETS:
        return dict(PROCESSING_PRESETS[text])
    flags = [f.strip() for f in text.split(",") if f.strip()]
    unknown = [f for f in flags if f not in PROCESSING_FLAGS]
    if unknown:
        raise TranscoderLoadError(
            f"--processing {text!r}: unknown flag {unknown[0]!r}; use auto, none, default, or "
            f"a comma list of {', '.join(PROCESSING_FLAGS)}"
        )
    return {flag: flag in flags for flag in PROCESSING_FLAGS}


def _recorded(tset: TranscoderSet) -> dict[str, bool]:
    return {k: bool(v) for k, v in tset.processing.items() if k in PROCESSING_FLAGS}


def needed_processing(tset: TranscoderSet, forced: dict[str, bool] | None) -> dict[str, bool]:
    """The processing to load the model with: what the set records, else `forced`, else the
    transformer_lens defaults. Forcing what contradicts the set's record is refused."""
    recorded = _recorded(tset)
    if forced is not None and recorded and any(recorded[k] != forced[k] for k in recorded):
        wanted = ", ".join(f"{k}={v}" for k, v in recorded.items())
        raise TranscoderLoadError(
            f"transcoder set '{tset.name}' ({tset.source}) records that its model is loaded with "
            f"{wanted}; --processing asks otherwise. Drop --processing: the set was trained on "
            "the model processed as it records"
        )
    if recorded and len(recorded) == len(PROCESSING_FLAGS):
        return recorded
    base = forced if forced is not None else PROCESSING_PRESETS[UNRECORDED_DEFAULT]
    return base | recorded


def load_pair(
    model: str,
    transcoders: str,
    *,
    device: str = "cpu",
    processing: dict[str, bool] | None = None,
    allow_pickle: bool = False,
    model_name: str | None = None,
    activation: str | None = None,
) -> tuple[LoadedModel, TranscoderSet]:
    """The transcoder set at `transcoders`, and `model` loaded with the processing it needs
    (`processing` only for a set that records none), encoders adapted to that model.
    `activation` declares what the files cannot carry ('topk:K'; see load_transcoders)."""
    tset = load_transcoders(
        transcoders, allow_pickle=allow_pickle, device=device, activation=activation
    )
    flags = needed_processing(tset, processing)
    loaded = load_model(
        model,
        device,
        fold_ln=flags["fold_ln"],
        center_writing_weights=flags["center_writing_weights"],
        center_unembed=flags["center_unembed"],
        model_name=model_name,
    )
    tset.processing = tset.processing | flags
    adapt_to_model(tset, loaded)
    return loaded, tset


@dataclass(frozen=True)
class RegisteredSet:
    """Where a registered set and its model were loaded from, to load them again."""

    set_uid: str
    name: str
    model_name: str
    model_source: str
    transcoders_source: str
    processing: dict[str, bool]
    activation: str | None = None  # as registered ('relu', 'jumprelu', 'topk:K'); None: unknown


def registered_set(store: CatalogStore, set_uid: str | None = None) -> RegisteredSet:
    """The set `set_uid`, or the only registered set when none is named."""
    uids = [str(r["uid"]) for r in store.query("transcoder_sets")]
    if set_uid is None and len(uids) == 1:
        set_uid = uids[0]
    rows = store.query("transcoder_set", uid=set_uid) if set_uid is not None else []
    if not rows:
        known = ", ".join(uids) or "none"
        what = f"no transcoder set {set_uid!r}" if set_uid else f"{len(uids)} transcoder sets"
        hint = (
            "pick one with --set UID"
            if len(uids) > 1
            else "run `circuitcat ingest register MODEL --transcoders PATH` first"
        )
        raise IngestError(f"{what} registered in this catalog (registered: {known}); {hint}")
    row = rows[0]
    processing = json.loads(row["processing"]) if row.get("processing") else {}
    return RegisteredSet(
        set_uid=str(row["uid"]),
        name=str(row["name"]),
        model_name=str(row["model_name"]),
        model_source=str(row["model_source"]),
        transcoders_source=str(row["source"]),
        processing={k: bool(v) for k, v in processing.items() if k in PROCESSING_FLAGS},
        activation=str(row["activation"]) if row.get("activation") else None,
    )


def set_uid_for_name(store: CatalogStore, name: str) -> str:
    """The uid of the registered set called `name` (the old --name/--set-name spelling)."""
    uids = [str(r["uid"]) for r in store.query("transcoder_sets") if r["name"] == name]
    if len(uids) != 1:
        raise IngestError(
            f"{len(uids)} registered transcoder sets are named {name!r}: pick one with --set UID"
        )
    return uids[0]


def model_argument(source: str) -> str:
    """What `load_model` takes for a recorded model source (`builtin:`, `local:`, `hub:`)."""
    kind, sep, rest = source.partition(":")
    if sep and kind in ("builtin", "local", "hub"):
        return rest
    return source


def _check_still_there(reg: RegisteredSet, model: str | None, transcoders: str | None) -> None:
    if model is None and reg.model_source.startswith("local:"):
        folder = Path(model_argument(reg.model_source))
        if not folder.is_dir():
            raise ModelLoadError(
                f"set {reg.set_uid!r} was registered with the model folder {folder}, which is "
                "gone: pass its new place with --model PATH (or move it back)"
            )
    source = reg.transcoders_source
    builtin = source in TOY_NAMES or source.startswith("builtin:")
    if transcoders is None and not builtin and not Path(source).exists():
        raise TranscoderLoadError(
            f"set {reg.set_uid!r} was registered with the transcoders at {source}, which are "
            "gone: pass their new place with --transcoders PATH (or move them back)"
        )


def load_registered(
    store: CatalogStore,
    set_uid: str | None = None,
    *,
    device: str = "cpu",
    model: str | None = None,
    transcoders: str | None = None,
    allow_pickle: bool = False,
) -> tuple[LoadedModel, TranscoderSet]:
    """The model and transcoders of a registered set (or the files given in their place),
    loaded with the processing the catalog recorded at `register`."""
    reg = registered_set(store, set_uid)
    _check_still_there(reg, model, transcoders)
    loaded, tset = load_pair(
        model or model_argument(reg.model_source),
        transcoders or reg.transcoders_source,
        device=device,
        processing=reg.processing or None,
        allow_pickle=allow_pickle,
        model_name=reg.model_name,
        activation=reg.activation,
    )
    tset.name = reg.name
    return loaded, tset
