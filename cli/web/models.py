"""The shapes the JSON API answers with, for its OpenAPI description (/api/openapi.json).

Rows straight from named queries keep their column names; `extra="allow"` lets a query gain a
column without breaking the API."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Health(BaseModel):
    backend: str = Field(description="ladybug or neo4j")
    version: str
    writable: bool = Field(description="Whether labels can be written (the server has tokens).")


class Label(BaseModel):
    uid: str
    text: str
    author: str
    created_at: str = Field(description="ISO 8601, UTC")


class FeatureRow(Open):
    uid: str
    layer: int | None = None
    feature_index: int | None = None
    label: str | None = None
    description: str | None = Field(None, description="The label, else the automatic one.")


class FeatureList(BaseModel):
    total: int | None = Field(None, description="Features matching the filters (no token).")
    offset: int | None = None
    limit: int | None = None
    features: list[FeatureRow] = Field(default_factory=list, description="One page, sorted.")
    token: str | None = None
    reading: list[FeatureRow] | None = Field(None, description="Features the token excites.")
    promoting: list[FeatureRow] | None = Field(None, description="Features promoting it.")


class Histogram(BaseModel):
    counts: list[float] = Field(description="counts[0]: 0 < a < edges[0]; then one per bin")
    edges: list[float] = Field(description="log-spaced bin edges")
    underflow_below: float | None = None


class Context(Open):
    tokens: list[str]
    acts: list[float]
    value: float


class Logit(Open):
    token: str
    w: float


class Connections(BaseModel):
    features: list[Open] = Field(description="Virtual weights (input-invariant), by route.")
    tokens: list[Open] = Field(default_factory=list, description="De-embedding tokens.")
    prompt_graphs: list[Open] = Field(description="Stored per-prompt edges, summed.")


class FeaturePage(BaseModel):
    uid: str
    set_uid: str | None
    model: str | None
    layer: int | None
    index: int | None
    density: float | None
    act_mean: float | None
    act_max: float | None
    label: str | None = Field(description="The newest label.")
    auto_description: str | None = Field(
        None, description="Built from the catalog (layer, contexts, logits, density)."
    )
    explanation: str | None = Field(None, description="The optional explainer's.")
    explanation_score: float | None = Field(
        None, description="Its detection score (balanced accuracy; 0.5 is chance)."
    )
    description: str | None = Field(
        None, description="The best there is: label, else explanation, else automatic."
    )
    histogram: Histogram
    top_contexts: list[Context]
    promoted: list[Logit]
    suppressed: list[Logit]
    inputs: Connections
    outputs: Connections
    circuits: list[Open]
    labels: list[Label] = Field(description="Label history, newest first.")
    interventions: list[Open] = Field(
        default_factory=list, description="Saved interventions that edited it, newest first."
    )


class GraphNode(Open):
    id: str
    kind: str = Field(description="token, feature or target")
    row: int = Field(description="-1 tokens, 0.. layers, n_layers the target")
    name: str | None
    score: float | None


class GraphLink(BaseModel):
    source: str
    target: str
    weight: float = Field(description="Mean attribution per prompt.")
    total: float = Field(description="Summed over the task's prompts.")
    n_prompts: int


class CircuitGraph(BaseModel):
    circuit: dict[str, Any]
    n_layers: int
    nodes: list[GraphNode]
    links: list[GraphLink]
    heads: list[Open]
    paths: list[Open]
    interventions: list[Open] = Field(
        default_factory=list, description="Saved interventions on its features, newest first."
    )


class Search(Open):
    query: str
    feature: str | None = None
    labelled: list[FeatureRow] = Field(default_factory=list)
    reading_token: list[FeatureRow] = Field(default_factory=list)
    promoting_token: list[FeatureRow] = Field(default_factory=list)
    layer: list[FeatureRow] | None = Field(None, description="For `L3`: that layer's features.")
    circuits: list[Open] = Field(default_factory=list)
    prompts: list[Open] = Field(default_factory=list)


class Pair(BaseModel):
    src: str
    dst: str
    prompts: list[Open] = Field(description="Prompt graphs where src feeds dst, strongest first.")
    virtual_weights: list[Open]
