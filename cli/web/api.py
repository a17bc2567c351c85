"""The JSON API under /api: thin routes over cli/web/reads.py, documented by OpenAPI at
/api/openapi.json (and browsable at /api/docs). Everything is a read except POST /api/labels,
which needs a write token."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Concatenate, ParamSpec, TypeVar

from fastapi import APIRouter, Depends, Header, Query, Request
from pydantic import BaseModel, Field

from circuitcat.catalog import CatalogStore, research
from circuitcat.catalog.errors import ReadOnlyViolationError
from circuitcat.catalog.graph_json import GraphFile, prompt_graph_json
from circuitcat.catalog.labels import MAX_LABEL_CHARS, add_label

from . import models, reads
from .errors import AuthError
from .state import ServedCatalog

P = ParamSpec("P")
R = TypeVar("R")

router = APIRouter(prefix="/api")
Uid = Annotated[str, Field(max_length=500)]
Limit = Annotated[int, Query(ge=1, le=500)]


def served(request: Request) -> ServedCatalog:
    catalog: ServedCatalog = request.app.state.catalog
    return catalog


Catalog = Annotated[ServedCatalog, Depends(served)]


def read(
    catalog: ServedCatalog,
    fn: Callable[Concatenate[CatalogStore, P], R],
    *args: P.args,
    **kwargs: P.kwargs,
) -> R:
    """`fn(store, *args, **kwargs)` on the served store: one route's read."""
    with catalog.use() as store:
        return fn(store, *args, **kwargs)


def writer(
    catalog: Catalog,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> str:
    """The user a request's `Authorization: Bearer <token>` belongs to; 401 otherwise."""
    if not catalog.config.writable:
        raise AuthError("this server is read-only: it was started without write tokens")
    scheme, _, token = (authorization or "").partition(" ")
    user = catalog.config.user_of(token.strip()) if scheme.lower() == "bearer" else None
    if user is None:
        raise AuthError("writing needs a valid token in an `Authorization: Bearer` header")
    return user


class CypherRequest(BaseModel):
    query: str = Field(max_length=20_000, description="Cypher; $name for parameters.")
    params: dict[str, Any] = Field(default_factory=dict)
    limit: int | None = Field(
        default=None, ge=1, description="Rows returned [default and maximum: the server's limit]."
    )


class CypherResult(BaseModel):
    columns: list[str]
    rows: list[list[Any]]
    truncated: bool = Field(description="More rows matched than were returned.")
    limit: int
    timeout_s: float


class LabelRequest(BaseModel):
    feature: Uid
    text: str = Field(max_length=MAX_LABEL_CHARS * 2)


@router.get(
    "/health",
    summary="Which store the server reads and whether it takes labels",
    response_model=models.Health,
)
def health(catalog: Catalog) -> dict[str, Any]:
    with catalog.use() as store:
        version = store.query("store_version")[0]["version"]
    return {"backend": catalog.backend, "version": version, "writable": catalog.config.writable}


@router.get("/catalog", summary="Models, transcoder sets, tasks and circuits")
def overview(catalog: Catalog) -> dict[str, Any]:
    return read(catalog, reads.catalog_overview)


@router.get(
    "/features",
    summary="Features: filtered, sorted, paged; or by token",
    response_model=models.FeatureList,
    response_model_exclude_unset=True,
)
def features(
    catalog: Catalog,
    set_uid: Annotated[str, Query(alias="set", max_length=500)] = "",
    layer: Annotated[int, Query(ge=-1, le=10_000)] = -1,
    label: Annotated[str, Query(max_length=200)] = "",
    token: Annotated[str, Query(max_length=200)] = "",
    sort: reads.SortKey = reads.SortKey.density,
    order: Annotated[str, Query(pattern="^(asc|desc)$")] = "desc",
    limit: Limit = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> dict[str, Any]:
    """`layer` -1 is every layer. With `token`, the features the token excites most
    (de-embedding) and those that promote it most (logits) replace the sorted list."""
    flt = reads.FeatureFilter(
        set_uid=set_uid,
        layer=layer,
        label=label,
        token=token,
        sort=sort,
        descending=order == "desc",
        limit=limit,
        offset=offset,
    )
    return read(catalog, reads.list_features, flt)


@router.get(
    "/features/{uid:path}",
    summary="One feature: statistics, contexts, connections",
    response_model=models.FeaturePage,
)
def feature(catalog: Catalog, uid: str, k: Annotated[int, Query(ge=1, le=100)] = 12) -> Any:
    return read(catalog, reads.feature_page, uid, k)


@router.post(
    "/labels", summary="Label a feature (needs a write token)", response_model=models.Label
)
def label(catalog: Catalog, body: LabelRequest, user: Annotated[str, Depends(writer)]) -> Any:
    with catalog.use() as store:
        uid = reads.require_feature(store, body.feature)
        return add_label(store, uid, body.text, user)


@router.get("/circuits", summary="Every stored circuit")
def circuits(catalog: Catalog) -> list[dict[str, Any]]:
    return read(catalog, reads.circuit_list)


@router.get(
    "/circuits/{uid:path}",
    summary="One circuit as a layered graph",
    response_model=models.CircuitGraph,
)
def circuit(catalog: Catalog, uid: str) -> dict[str, Any]:
    return read(catalog, reads.circuit_graph, uid)


@router.get(
    "/compare",
    summary="Two circuits' shared features and heads, beside random circuits of their sizes",
)
def compare(
    catalog: Catalog,
    a: Annotated[str, Query(max_length=500, description="Circuit A: uid or name.")],
    b: Annotated[str, Query(max_length=500, description="Circuit B: uid or name.")],
    draws: Annotated[int, Query(ge=100, le=2000)] = 200,
) -> dict[str, Any]:
    from circuitcat.catalog.compare import compare_circuits

    return read(catalog, compare_circuits, a, b, draws=draws).as_dict()


@router.get("/tasks/{task}/prompts", summary="A task's prompts and which have stored graphs")
def prompts(catalog: Catalog, task: str, limit: Limit = 200) -> dict[str, Any]:
    return read(catalog, reads.task_prompts, task, limit)


@router.get(
    "/prompts/{uid:path}/graph",
    summary="One prompt's attribution graph as circuit-tracer / Neuronpedia graph JSON",
)
def prompt_graph(
    catalog: Catalog,
    uid: str,
    set_uid: Annotated[str | None, Query(alias="set", max_length=500)] = None,
) -> GraphFile:
    with catalog.use() as store:
        reads.prompt_info(store, uid)  # 404 before the exporter's own messages
        return prompt_graph_json(store, uid, set_uid)


@router.get(
    "/prompts/{uid:path}/position",
    summary="Features at one position of a prompt graph, and what drives its metric",
)
def prompt_position(
    catalog: Catalog,
    uid: str,
    pos: Annotated[int | None, Query(ge=-10_000, le=10_000)] = None,
    set_uid: Annotated[str | None, Query(alias="set", max_length=500)] = None,
    limit: Limit = 50,
) -> dict[str, Any]:
    """`prompt show UID --position POS`: without `pos`, the metric's direct inputs only."""
    with catalog.use() as store:
        reads.prompt_info(store, uid)  # 404 for a prompt that is not stored
        return research.prompt_position(store, uid, pos, set_uid, limit)


@router.get("/prompts/{uid:path}", summary="One prompt and the sets with its graph stored")
def prompt(catalog: Catalog, uid: str) -> dict[str, Any]:
    return read(catalog, reads.prompt_info, uid)


@router.get(
    "/search",
    summary="Features by label or token, a feature uid, circuits, prompts",
    response_model=models.Search,
    response_model_exclude_unset=True,
)
def search(
    catalog: Catalog, q: Annotated[str, Query(max_length=200)] = "", limit: Limit = 20
) -> dict[str, Any]:
    return read(catalog, reads.search, q, limit)


@router.get(
    "/pairs",
    summary="Every stored prompt graph where feature src feeds feature dst",
    response_model=models.Pair,
)
def pair(
    catalog: Catalog,
    src: Annotated[str, Query(max_length=500)],
    dst: Annotated[str, Query(max_length=500)],
    limit: Limit = 100,
) -> dict[str, Any]:
    return read(catalog, reads.feature_pair, src, dst, limit)


@router.get("/prompt-compare", summary="The features two prompts' stored graphs share")
def prompt_compare(
    catalog: Catalog,
    a: Annotated[str, Query(max_length=500)],
    b: Annotated[str, Query(max_length=500)],
    set_uid: Annotated[str | None, Query(alias="set", max_length=500)] = None,
    limit: Limit = 100,
) -> dict[str, Any]:
    """`prompt compare A B`."""
    with catalog.use() as store:
        for uid in (a, b):
            reads.prompt_info(store, uid)
        return research.compare_prompts(store, a, b, set_uid, limit)


@router.get("/find", summary="Features by the tokens they read and the logits they promote")
def find(
    catalog: Catalog,
    reads_token: Annotated[str | None, Query(alias="reads", max_length=200)] = None,
    promotes: Annotated[str | None, Query(max_length=200)] = None,
    layer: Annotated[int | None, Query(ge=0, le=10_000)] = None,
    set_uid: Annotated[str | None, Query(alias="set", max_length=500)] = None,
    limit: Limit = 50,
) -> list[dict[str, Any]]:
    """`feature find --reads-token T --promotes A..B --layer L`."""
    reading, promoting = reads_token or None, promotes or None  # an empty form field: not asked
    return read(catalog, research.find_features, reading, promoting, layer, set_uid, limit)


@router.post("/cypher", summary="Read-only Cypher with a row limit and a time limit")
def cypher(catalog: Catalog, body: CypherRequest) -> CypherResult:
    """Runs through the store's read-only path: on Neo4j a server-enforced read transaction,
    on the embedded store a checked single statement in a read-only transaction. The server
    stops a query that runs past its timeout."""
    cap = catalog.config.cypher_row_limit
    limit = min(body.limit or cap, cap)
    try:
        result = catalog.cypher(body.query, body.params)
    except ReadOnlyViolationError as e:
        raise ReadOnlyViolationError(
            f"the API only reads: {e}".replace("; pass --write to allow it", "")
        ) from e
    return CypherResult(
        columns=result.columns,
        rows=result.rows[:limit],
        truncated=len(result.rows) > limit,
        limit=limit,
        timeout_s=catalog.config.cypher_timeout_s,
    )
