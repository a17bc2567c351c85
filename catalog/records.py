"""Pydantic records for the small node kinds, and their conversion to store rows.

Big things (features, edges) travel as columnar batches (batches.py), never one object each.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from . import schema
from .batches import NodeBatch
from .schema import NodeKind


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


class Record(BaseModel):
    """A node written as one row: fields are its properties, dicts become JSON strings."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    node_kind: ClassVar[NodeKind]
    run: str = ""

    @property
    def uid(self) -> str:
        raise NotImplementedError

    def to_row(self) -> dict[str, Any]:
        row: dict[str, Any] = {"uid": self.uid}
        for key, value in self.model_dump().items():
            row[key] = json.dumps(value, sort_keys=True) if isinstance(value, dict) else value
        return row


def records_to_batch(records: list[Record]) -> NodeBatch:
    """Rows of one node kind as a columnar batch."""
    kinds = {r.node_kind for r in records}
    if len(kinds) != 1:
        raise ValueError(f"records_to_batch needs records of one kind, got {sorted(kinds)}")
    rows = [r.to_row() for r in records]
    return NodeBatch.from_rows(kinds.pop(), rows)


class ModelRecord(Record):
    node_kind: ClassVar[NodeKind] = NodeKind.MODEL
    name: str
    source: str
    n_layers: int
    d_model: int
    n_heads: int
    d_vocab: int
    arch: str
    processing: dict[str, bool] = Field(default_factory=dict)

    @property
    def uid(self) -> str:
        return schema.model_uid(self.name)


class TranscoderSetRecord(Record):
    node_kind: ClassVar[NodeKind] = NodeKind.TRANSCODER_SET
    name: str
    model: str
    source: str
    format: str
    d_transcoder: int
    layers: list[int]
    input_hook: str
    output_hook: str
    sha256: str
    processing: dict[str, bool] = Field(default_factory=dict)
    activation: str = "relu"

    @property
    def uid(self) -> str:
        return schema.transcoder_set_uid(self.model, self.name)


class RunRecord(Record):
    node_kind: ClassVar[NodeKind] = NodeKind.RUN
    run: str = ""
    kind: str  # the job: register, features, weights, prompts, circuit, label, ...
    started_at: str = Field(default_factory=now_iso)
    finished_at: str = ""
    status: str = "running"
    params: dict[str, Any] = Field(default_factory=dict)
    code_version: str = ""

    @property
    def uid(self) -> str:
        return schema.run_uid(self.kind, self.started_at)

    def to_row(self) -> dict[str, Any]:
        row = super().to_row()
        row["run"] = self.uid
        return row


class TaskRecord(Record):
    node_kind: ClassVar[NodeKind] = NodeKind.TASK
    name: str
    metric: str
    description: str = ""

    @property
    def uid(self) -> str:
        return schema.task_uid(self.name)


class PromptRecord(Record):
    node_kind: ClassVar[NodeKind] = NodeKind.PROMPT
    task: str
    text: str
    tokens: list[str]
    answer: str  # the correct tokens as text ("24..99", "four", " Paris| London")
    metric_value: float | None = None
    start_year: str | None = None  # the year tasks' start year YY; None for other tasks

    @property
    def uid(self) -> str:
        return schema.prompt_uid(self.task, self.text)


class CircuitRecord(Record):
    node_kind: ClassVar[NodeKind] = NodeKind.CIRCUIT
    name: str
    task: str
    set: str
    method: str
    params: dict[str, Any] = Field(default_factory=dict)
    n_features: int = 0
    faithfulness: dict[str, float] = Field(default_factory=dict)

    @property
    def uid(self) -> str:
        return schema.circuit_uid(self.set, self.task, self.name)


class LabelRecord(Record):
    node_kind: ClassVar[NodeKind] = NodeKind.LABEL
    feature: str
    text: str
    author: str
    created_at: str = Field(default_factory=now_iso)

    @property
    def uid(self) -> str:
        return schema.label_uid(self.feature, self.created_at)


class InterventionRecord(Record):
    """A saved intervention (schema.NodeKind.INTERVENTION); `flagged` is stored as 0/1."""

    node_kind: ClassVar[NodeKind] = NodeKind.INTERVENTION
    set: str
    op: str
    spec: dict[str, Any] = Field(default_factory=dict)
    prompt: str = ""
    task: str = ""
    n_prompts: int = 1
    metric: str = ""
    metric_before: float = 0.0
    metric_after: float = 0.0
    frozen: float = 0.0
    predicted: float = 0.0
    flagged: int = 0
    author: str = ""
    created_at: str = Field(default_factory=now_iso)

    @property
    def uid(self) -> str:
        return schema.intervention_uid(self.set, self.created_at)
