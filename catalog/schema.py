"""The graph schema: a closed set of node kinds, relationship kinds and property names.

Everything a store puts into Cypher as a label, a relationship type or a property key comes from
here, never from user input. Uids are deterministic strings built by one constructor per node kind,
so re-ingesting the same thing MERGEs onto the same node.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum


class PropType(StrEnum):
    """Property types, named as Ladybug spells them; Neo4j stores the same values untyped."""

    STRING = "STRING"
    INT = "INT64"
    FLOAT = "DOUBLE"
    FLOAT_LIST = "DOUBLE[]"
    INT_LIST = "INT64[]"
    STRING_LIST = "STRING[]"


class NodeKind(StrEnum):
    MODEL = "Model"
    TRANSCODER_SET = "TranscoderSet"
    FEATURE = "Feature"
    TOKEN = "Token"
    HEAD = "Head"
    TASK = "Task"
    PROMPT = "Prompt"
    RUN = "Run"
    CIRCUIT = "Circuit"
    ERROR = "Error"  # per-prompt error/bias terms: transcoder error, bias, pruned remainder
    TARGET = "Target"  # what a prompt graph explains: a logit, a metric direction, a feature
    LABEL = "Label"  # one label a person gave a feature; the latest is also Feature.label
    INTERVENTION = "Intervention"  # one saved intervention and its result (ingest/interventions)


class GraphNode(IntEnum):
    """The kind of a node in a prompt graph, in memory (ingest/attribution) and as read back
    from the catalog (catalog/circuits.py). BIAS nodes are stored as `Error` nodes; HEAD occurs
    only in stored graphs (Head -> node edges decompose the others by attention head)."""

    FEATURE = 0
    TOKEN = 1
    ERROR = 2
    BIAS = 3
    TARGET = 4
    HEAD = 5


class RelKind(StrEnum):
    VIRTUAL_WEIGHT = "VIRTUAL_WEIGHT"
    DEEMBEDS = "DEEMBEDS"
    PROMOTES = "PROMOTES"
    ATTRIBUTES = "ATTRIBUTES"
    CONTAINS = "CONTAINS"
    OF_TASK = "OF_TASK"
    IN_SET = "IN_SET"
    FOR_MODEL = "FOR_MODEL"
    HAS_LABEL = "HAS_LABEL"
    EDITS = "EDITS"


S, INT, F = PropType.STRING, PropType.INT, PropType.FLOAT

# Every node has `uid` (the key) and `run` (the Run that last wrote it). Dict-valued properties
# (params, processing, top_logits, top_contexts) are stored as JSON strings: Neo4j cannot hold maps.
NODE_PROPS: dict[NodeKind, dict[str, PropType]] = {
    NodeKind.MODEL: {
        "name": S,
        "source": S,
        "n_layers": INT,
        "d_model": INT,
        "n_heads": INT,
        "d_vocab": INT,
        "arch": S,
        "processing": S,
    },
    NodeKind.TRANSCODER_SET: {
        "name": S,
        "model": S,
        "source": S,
        "format": S,
        "d_transcoder": INT,
        "layers": PropType.INT_LIST,
        "input_hook": S,
        "output_hook": S,
        "sha256": S,
        "processing": S,
        # 'relu', 'jumprelu' or 'topk:K' (declared at register where files cannot say, as
        # for circuit-tracer TopK sets); every job reloads the set with it
        "activation": S,
        # Mean ln2 scale per layer over the corpus (index = position in `layers`): the weights
        # job divides raw virtual weights by it so magnitudes compare across layers.
        "ln2_scale_mean": PropType.FLOAT_LIST,
    },
    NodeKind.FEATURE: {
        "set": S,
        "layer": INT,
        "index": INT,
        "density": F,
        "act_mean": F,
        "act_max": F,
        "act_hist": PropType.FLOAT_LIST,
        "top_logits": S,
        "top_contexts": S,
        "label": S,  # the newest human label (catalog/labels.py); ingest never writes it
        # Deterministic, from the fields above (catalog/descriptions.py); never a label
        "auto_description": S,
        # The optional explainer's (ingest/explain.py): its text, detection score, provenance
        "explanation": S,
        "explanation_score": F,
        "explanation_meta": S,
    },
    NodeKind.TOKEN: {"model": S, "token_id": INT, "text": S},
    NodeKind.HEAD: {"model": S, "layer": INT, "head": INT},
    NodeKind.TASK: {"name": S, "metric": S, "description": S},
    NodeKind.PROMPT: {
        "task": S,
        "text": S,
        "tokens": PropType.STRING_LIST,
        "answer": S,  # the correct tokens as text: "24..99" (greater-than), "four", " Paris"
        "metric_value": F,
        "start_year": S,  # greater-than and less-than only: the start year YY ("23")
    },
    NodeKind.RUN: {
        "kind": S,
        "started_at": S,
        "finished_at": S,
        "status": S,
        "params": S,
        "code_version": S,
        # Written by a live job's store every runs.HEARTBEAT_S; set by catalog/runs.py only.
        "heartbeat_at": S,
        "error": S,  # why a failed run failed (the error's class and first line)
    },
    NodeKind.CIRCUIT: {
        "name": S,
        "task": S,
        "set": S,
        "method": S,
        "params": S,
        "n_features": INT,
        "faithfulness": S,
    },
    # One node per (set, layer, kind); the prompt and position live on the ATTRIBUTES edges.
    NodeKind.ERROR: {"set": S, "layer": INT, "kind": S},
    NodeKind.TARGET: {"task": S, "name": S, "kind": S},
    # Label history (catalog/labels.py): written by people, never by ingest, so it survives
    # re-ingest; `created_at` is ISO 8601 UTC.
    NodeKind.LABEL: {"feature": S, "text": S, "author": S, "created_at": S},
    # A saved intervention (docs/concepts.md): what was done (`op`, `spec` JSON), on what
    # (`prompt` uid or text, or `task` with `n_prompts`), and the task metric before and after,
    # live (`metric_after`), with attention and normalisation frozen (`frozen`), and as the
    # prompt's attribution graph predicts it (`predicted`); `flagged` when the graph's paths do
    # not carry the change. Written only on request (--save), never by ingest.
    NodeKind.INTERVENTION: {
        "set": S,
        "op": S,
        "spec": S,
        "prompt": S,
        "task": S,
        "n_prompts": INT,
        "metric": S,
        "metric_before": F,
        "metric_after": F,
        "frozen": F,
        "predicted": F,
        "flagged": INT,
        "author": S,
        "created_at": S,
    },
}
for _props in NODE_PROPS.values():
    _props["run"] = S


@dataclass(frozen=True)
class RelSpec:
    """A relationship kind: which node kinds it joins, its properties, and the properties that
    (with the two endpoints) identify one relationship, so re-writing MERGEs instead of adding."""

    pairs: tuple[tuple[NodeKind, NodeKind], ...]
    props: dict[str, PropType]
    key: tuple[str, ...] = ()


_WEIGHT = {"w": F, "w_raw": F, "rank": INT, "via": S, "run": S}
REL_SPECS: dict[RelKind, RelSpec] = {
    RelKind.VIRTUAL_WEIGHT: RelSpec(((NodeKind.FEATURE, NodeKind.FEATURE),), _WEIGHT, ("via",)),
    RelKind.DEEMBEDS: RelSpec(((NodeKind.TOKEN, NodeKind.FEATURE),), _WEIGHT, ("via",)),
    RelKind.PROMOTES: RelSpec(
        ((NodeKind.FEATURE, NodeKind.TOKEN),), {"w": F, "w_raw": F, "rank": INT, "run": S}
    ),
    RelKind.ATTRIBUTES: RelSpec(
        tuple(
            (src, dst)
            for src in (NodeKind.FEATURE, NodeKind.TOKEN, NodeKind.HEAD, NodeKind.ERROR)
            for dst in (NodeKind.FEATURE, NodeKind.TOKEN, NodeKind.TARGET)
        ),
        {"prompt": S, "w": F, "src_pos": INT, "dst_pos": INT, "via": S, "run": S},
        ("prompt", "src_pos", "dst_pos", "via"),
    ),
    RelKind.CONTAINS: RelSpec(
        tuple(
            (NodeKind.CIRCUIT, dst)
            for dst in (NodeKind.FEATURE, NodeKind.HEAD, NodeKind.TOKEN, NodeKind.ERROR)
        ),
        {"score": F, "run": S},
    ),
    RelKind.OF_TASK: RelSpec(((NodeKind.PROMPT, NodeKind.TASK),), {"run": S}),
    RelKind.IN_SET: RelSpec(((NodeKind.FEATURE, NodeKind.TRANSCODER_SET),), {"run": S}),
    RelKind.FOR_MODEL: RelSpec(((NodeKind.TRANSCODER_SET, NodeKind.MODEL),), {"run": S}),
    RelKind.HAS_LABEL: RelSpec(((NodeKind.FEATURE, NodeKind.LABEL),), {"run": S}),
    # (:Intervention)-[:EDITS {value, positions}]->(:Feature): `value` is the op's value (the
    # clamp value, the scale, the steering coefficient; absent for zero, mean and patch),
    # `positions` the edited positions as JSON ("all" when every position).
    RelKind.EDITS: RelSpec(
        ((NodeKind.INTERVENTION, NodeKind.FEATURE),), {"value": F, "positions": S, "run": S}
    ),
}


def quote(name: str) -> str:
    """A property key as generated Cypher spells it: always backticked, because some keys
    (`index`, `set`, `rank`) are reserved words on one engine or the other."""
    return f"`{name}`"


# ---- uid constructors: the one place each kind of identifier is spelled -------------------


def model_uid(name: str) -> str:
    return name


def transcoder_set_uid(model: str, name: str) -> str:
    return f"{model}/{name}"


def feature_uid(set_uid: str, layer: int, index: int) -> str:
    return f"{set_uid}/L{layer}/{index}"


def token_uid(model: str, token_id: int) -> str:
    return f"{model}/tok/{token_id}"


def head_uid(model: str, layer: int, head: int) -> str:
    return f"{model}/L{layer}/H{head}"


def task_uid(name: str) -> str:
    return name


# The built-in year tasks, each with whether its correct years come after the start year.
YEAR_TASKS: dict[str, bool] = {"greater-than": True, "less-than": False}


def year_answer(yy: int, later: bool) -> str:
    """A year-task prompt's `answer` with start year `yy`: its correct two-digit years, those
    after it for greater-than ("24..99"), those before it for less-than ("00..22")."""
    first, last = (yy + 1, 99) if later else (0, yy - 1)
    return f"{first:02d}" if first == last else f"{first:02d}..{last:02d}"


def prompt_uid(task: str, text: str) -> str:
    """Prompts are keyed by content, so the same prompt text under one task is one node."""
    import hashlib

    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
    return f"{task}/{digest}"


def run_uid(kind: str, started_at: str) -> str:
    return f"run/{kind}/{started_at}"


def circuit_uid(set_uid: str, task: str, name: str) -> str:
    return f"{set_uid}/circuit/{task}/{name}"


def error_uid(set_uid: str, layer: int, kind: str) -> str:
    """kind: "transcoder_error", "bias" or "remainder"; layer -1 for terms after the last layer."""
    return f"{set_uid}/L{layer}/{kind}"


def target_uid(task: str, name: str) -> str:
    return f"{task}/target/{name}"


def label_uid(feature: str, created_at: str) -> str:
    return f"{feature}/label/{created_at}"


def intervention_uid(set_uid: str, created_at: str) -> str:
    return f"{set_uid}/intervention/{created_at}"
