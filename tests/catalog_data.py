"""A small hand-built catalog with every node and relationship kind, for store tests."""

from __future__ import annotations

import numpy as np

from circuitcat.catalog import (
    CircuitRecord,
    EdgeBatch,
    InterventionRecord,
    LabelRecord,
    ModelRecord,
    NodeBatch,
    NodeKind,
    PromptRecord,
    RelKind,
    RunRecord,
    TaskRecord,
    TranscoderSetRecord,
    records_to_batch,
    schema,
)

MODEL = "tiny"
RUN = RunRecord(kind="test", started_at="2026-01-01T00:00:00")
SET = TranscoderSetRecord(
    name="tc-v1",
    model=MODEL,
    source="/tmp/tc",
    format="circuitcat",
    d_transcoder=6,
    layers=[0, 1],
    input_hook="blocks.{layer}.ln2.hook_normalized",
    output_hook="blocks.{layer}.hook_mlp_out",
    sha256="ab" * 32,
    run=RUN.uid,
)
N_FEATURES, N_TOKENS = 6, 5
LABEL = LabelRecord(
    feature=schema.feature_uid(SET.uid, 1, 0),
    text="year after 32",
    author="alice",
    created_at="2026-01-02T00:00:00+00:00",
    run=RUN.uid,
)
INTERVENTION = InterventionRecord(
    set=SET.uid,
    op="mean",
    spec={"features": ["L1/0", "L2/1"], "value": None, "positions": [-1]},
    prompt=schema.prompt_uid("greater-than", "The war lasted from the year 1732 to the year 17"),
    task="greater-than",
    metric="prob_diff",
    metric_before=0.8,
    metric_after=0.6,
    frozen=0.62,
    predicted=0.65,
    author="alice",
    created_at="2026-01-03T00:00:00+00:00",
    run=RUN.uid,
)


def feature_uids(layer: int) -> list[str]:
    return [schema.feature_uid(SET.uid, layer, i) for i in range(N_FEATURES)]


def token_uids() -> list[str]:
    return [schema.token_uid(MODEL, t) for t in range(N_TOKENS)]


def node_batches() -> list[NodeBatch]:
    rng = np.random.default_rng(0)
    uids = feature_uids(0) + feature_uids(1) + feature_uids(2)
    features = NodeBatch(
        NodeKind.FEATURE,
        {
            "uid": uids,
            "set": [SET.uid] * len(uids),
            "layer": np.repeat([0, 1, 2], N_FEATURES),
            "index": np.tile(np.arange(N_FEATURES), 3),
            "density": rng.uniform(0, 0.2, len(uids)),
            "act_max": rng.uniform(1, 5, len(uids)),
            "act_hist": [list(rng.uniform(0, 1, 4)) for _ in uids],
            "run": [RUN.uid] * len(uids),
        },
    )
    tokens = NodeBatch(
        NodeKind.TOKEN,
        {
            "uid": token_uids(),
            "model": [MODEL] * N_TOKENS,
            "token_id": np.arange(N_TOKENS),
            "text": [f"{10 + t}" for t in range(N_TOKENS)],
        },
    )
    heads = NodeBatch(
        NodeKind.HEAD,
        {
            "uid": [schema.head_uid(MODEL, 0, h) for h in range(2)],
            "model": [MODEL] * 2,
            "layer": [0, 0],
            "head": [0, 1],
        },
    )
    task = TaskRecord(name="greater-than", metric="prob_diff", description="years", run=RUN.uid)
    prompts = [
        PromptRecord(
            task=task.name,
            text=f"from the year 17 {yy} to the year 17",
            tokens=["from", "the", "year", "17", str(yy)],
            answer=f"{yy + 1}..99",
            start_year=str(yy),
            metric_value=0.5 + yy / 100,
            run=RUN.uid,
        )
        for yy in (32, 45)
    ]
    model = ModelRecord(
        name=MODEL,
        source="built-in",
        n_layers=2,
        d_model=8,
        n_heads=2,
        d_vocab=N_TOKENS,
        arch="gpt2",
        processing={"fold_ln": False},
        run=RUN.uid,
    )
    circuit = CircuitRecord(
        name="gt",
        task=task.name,
        set=SET.uid,
        method="mean",
        n_features=2,
        faithfulness={"circuit": 0.8},
        run=RUN.uid,
    )
    error = NodeBatch(
        NodeKind.ERROR,
        {
            "uid": [
                schema.error_uid(SET.uid, 1, "transcoder_error"),
                schema.error_uid(SET.uid, -1, "remainder"),
            ],
            "set": [SET.uid] * 2,
            "layer": [1, -1],
            "kind": ["transcoder_error", "remainder"],
        },
    )
    target = NodeBatch(
        NodeKind.TARGET,
        {
            "uid": [schema.target_uid("greater-than", "prob_diff")],
            "task": ["greater-than"],
            "name": ["prob_diff"],
            "kind": ["metric"],
        },
    )
    return [
        error,
        target,
        records_to_batch([RUN]),
        records_to_batch([model]),
        records_to_batch([SET]),
        features,
        tokens,
        heads,
        records_to_batch([task]),
        records_to_batch(prompts),
        records_to_batch([circuit]),
        records_to_batch([LABEL]),
        records_to_batch([INTERVENTION]),
    ]


def edge_batches() -> list[EdgeBatch]:
    rng = np.random.default_rng(1)
    F, T, H = NodeKind.FEATURE, NodeKind.TOKEN, NodeKind.HEAD
    # Layer 0 -> 1 all pairs, then 1 -> 2 for two targets, so two-hop paths exist.
    src = np.concatenate([np.repeat(feature_uids(0), N_FEATURES), np.repeat(feature_uids(1), 2)])
    dst = np.concatenate([np.tile(feature_uids(1), N_FEATURES), np.tile(feature_uids(2)[:2], 6)])
    n = len(src)
    # Distinct magnitudes so "ORDER BY abs(w)" has one answer on every store.
    w = rng.permutation(np.linspace(0.1, 3.0, n)) * rng.choice([-1.0, 1.0], n)
    run = [RUN.uid]
    prompt = schema.prompt_uid("greater-than", "from the year 17 32 to the year 17")
    circuit = CircuitRecord(name="gt", task="greater-than", set=SET.uid, method="mean").uid
    tok = token_uids()
    return [
        EdgeBatch(
            RelKind.VIRTUAL_WEIGHT,
            F,
            F,
            src,
            dst,
            {
                "w": w,
                "w_raw": w * 2,
                "rank": np.zeros(n, dtype=np.int64),
                "via": ["resid"] * n,
                "run": run * n,
            },
        ),
        EdgeBatch(
            RelKind.DEEMBEDS,
            T,
            F,
            np.repeat(tok, 2),
            feature_uids(0)[:2] * N_TOKENS,
            {
                "w": np.linspace(-1, 1, 2 * N_TOKENS),
                "rank": np.arange(2 * N_TOKENS),
                "via": ["direct"] * (2 * N_TOKENS),
                "run": run * (2 * N_TOKENS),
            },
        ),
        EdgeBatch(
            RelKind.PROMOTES,
            F,
            T,
            [feature_uids(1)[0]] * N_TOKENS,
            tok,
            {"w": np.linspace(2, -2, N_TOKENS), "rank": np.arange(N_TOKENS), "run": run * N_TOKENS},
        ),
        # A layer-0 feature that reads tokens (DEEMBEDS above) and promotes one.
        EdgeBatch(
            RelKind.PROMOTES,
            F,
            T,
            feature_uids(0)[:1],
            tok[4:],
            {"w": [1.5], "rank": [0], "run": run},
        ),
        EdgeBatch(
            RelKind.ATTRIBUTES,
            F,
            F,
            feature_uids(0)[:2],
            feature_uids(1)[:2],
            {
                "prompt": [prompt] * 2,
                "w": [0.3, -0.2],
                "src_pos": [3, 4],
                "dst_pos": [5, 5],
                "via": ["resid"] * 2,
                "run": run * 2,
            },
        ),
        EdgeBatch(
            RelKind.ATTRIBUTES,
            T,
            F,
            tok[:1],
            feature_uids(0)[:1],
            {
                "prompt": [prompt],
                "w": [0.7],
                "src_pos": [4],
                "dst_pos": [4],
                "via": ["embed"],
                "run": run,
            },
        ),
        EdgeBatch(
            RelKind.ATTRIBUTES,
            H,
            T,
            [schema.head_uid(MODEL, 0, 1)],
            tok[1:2],
            {
                "prompt": [prompt],
                "w": [0.1],
                "src_pos": [2],
                "dst_pos": [5],
                "via": ["attn:0.1"],
                "run": run,
            },
        ),
        EdgeBatch(
            RelKind.CONTAINS,
            NodeKind.CIRCUIT,
            F,
            [circuit] * 2,
            feature_uids(1)[:2],
            {"score": [0.9, 0.4], "run": run * 2},
        ),
        EdgeBatch(
            RelKind.CONTAINS,
            NodeKind.CIRCUIT,
            H,
            [circuit],
            [schema.head_uid(MODEL, 0, 1)],
            {"score": [0.2], "run": run},
        ),
        EdgeBatch(
            RelKind.OF_TASK,
            NodeKind.PROMPT,
            NodeKind.TASK,
            [prompt, schema.prompt_uid("greater-than", "from the year 17 45 to the year 17")],
            ["greater-than"] * 2,
            {"run": run * 2},
        ),
        EdgeBatch(
            RelKind.IN_SET,
            F,
            NodeKind.TRANSCODER_SET,
            feature_uids(0) + feature_uids(1) + feature_uids(2),
            [SET.uid] * (3 * N_FEATURES),
            {"run": run * (3 * N_FEATURES)},
        ),
        EdgeBatch(RelKind.HAS_LABEL, F, NodeKind.LABEL, [LABEL.feature], [LABEL.uid], {"run": run}),
        EdgeBatch(
            RelKind.EDITS,
            NodeKind.INTERVENTION,
            F,
            [INTERVENTION.uid] * 2,
            [feature_uids(1)[0], feature_uids(2)[1]],
            {"positions": ["[-1]"] * 2, "run": run * 2},
        ),
        EdgeBatch(
            RelKind.FOR_MODEL,
            NodeKind.TRANSCODER_SET,
            NodeKind.MODEL,
            [SET.uid],
            [MODEL],
            {"run": run},
        ),
        EdgeBatch(
            RelKind.ATTRIBUTES,
            NodeKind.ERROR,
            NodeKind.TARGET,
            [schema.error_uid(SET.uid, 1, "transcoder_error")],
            [schema.target_uid("greater-than", "prob_diff")],
            {
                "prompt": [prompt],
                "w": [-0.05],
                "src_pos": [5],
                "dst_pos": [5],
                "via": ["resid"],
                "run": run,
            },
        ),
        # A prompt graph's path year token -> layer-0 feature -> layer-1 feature -> target,
        # a direct token -> layer-1 feature edge, and the remainder edge that marks it stored.
        EdgeBatch(
            RelKind.ATTRIBUTES,
            T,
            F,
            [tok[2], tok[2]],
            [feature_uids(0)[0], feature_uids(1)[0]],
            {
                "prompt": [prompt] * 2,
                "w": [0.4, 0.25],
                "src_pos": [3, 3],
                "dst_pos": [3, 5],
                "via": ["resid", "attn:0.1"],
                "run": run * 2,
            },
        ),
        EdgeBatch(
            RelKind.ATTRIBUTES,
            F,
            NodeKind.TARGET,
            feature_uids(1)[:1],
            [schema.target_uid("greater-than", "prob_diff")],
            {
                "prompt": [prompt],
                "w": [0.6],
                "src_pos": [5],
                "dst_pos": [5],
                "via": ["resid"],
                "run": run,
            },
        ),
        EdgeBatch(
            RelKind.ATTRIBUTES,
            NodeKind.ERROR,
            NodeKind.TARGET,
            [schema.error_uid(SET.uid, -1, "remainder")],
            [schema.target_uid("greater-than", "prob_diff")],
            {
                "prompt": [prompt],
                "w": [0.02],
                "src_pos": [5],
                "dst_pos": [5],
                "via": ["all"],
                "run": run,
            },
        ),
        EdgeBatch(
            RelKind.CONTAINS,
            NodeKind.CIRCUIT,
            F,
            [circuit],
            feature_uids(0)[:1],
            {"score": [0.5], "run": run},
        ),
        EdgeBatch(
            RelKind.CONTAINS,
            NodeKind.CIRCUIT,
            T,
            [circuit],
            tok[2:3],
            {"score": [0.3], "run": run},
        ),
    ]


def write_all(store: object) -> None:
    for nb in node_batches():
        store.write_nodes(nb)  # type: ignore[attr-defined]
    for eb in edge_batches():
        store.write_edges(eb)  # type: ignore[attr-defined]


EXPECTED_NODES = {
    "Model": 1,
    "TranscoderSet": 1,
    "Feature": 18,
    "Token": 5,
    "Head": 2,
    "Task": 1,
    "Prompt": 2,
    "Run": 1,
    "Circuit": 1,
    "Error": 2,
    "Target": 1,
    "Label": 1,
    "Intervention": 1,
}
EXPECTED_RELS = {
    "VIRTUAL_WEIGHT": 48,
    "DEEMBEDS": 10,
    "PROMOTES": 6,
    "ATTRIBUTES": 9,
    "CONTAINS": 5,
    "OF_TASK": 2,
    "IN_SET": 18,
    "FOR_MODEL": 1,
    "HAS_LABEL": 1,
    "EDITS": 2,
}
