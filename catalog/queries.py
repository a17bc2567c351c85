"""Named Cypher queries, loaded once by name from the .cypher files beside this module.

`common.cypher` and every other `<topic>.cypher` file (web, interventions, ...) hold the queries
both stores accept as written; `neo4j.cypher` and `ladybug.cypher` (optional for a backend)
override a name only where the engines must differ.
Each query starts with a `// name: <name>` line and is always parameterised, so it can be pasted
into Neo4j Browser.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

from .errors import QueryError

_BACKEND_FILES = frozenset({"neo4j.cypher", "ladybug.cypher"})
_NAME = re.compile(r"^//\s*name:\s*(\S+)\s*$")


def parse_query_file(text: str) -> dict[str, str]:
    """Split a query file into {name: cypher}; comment lines inside a query are kept."""
    queries: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        match = _NAME.match(line.strip())
        if match:
            current = queries.setdefault(match.group(1), [])
        elif current is not None:
            current.append(line)
    return {name: "\n".join(lines).strip().rstrip(";").strip() for name, lines in queries.items()}


@cache
def load_queries(backend: str) -> dict[str, str]:
    """The common queries (common.cypher, then the topic files such as web.cypher, by name)
    with the backend's overrides on top. A name defined twice is a QueryError."""
    folder = resources.files("circuitcat.catalog") / "queries"
    topics = sorted(
        f.name
        for f in folder.iterdir()
        if f.name.endswith(".cypher") and f.name not in _BACKEND_FILES | {"common.cypher"}
    )
    queries: dict[str, str] = {}
    for name in ["common.cypher", *topics]:
        for key, cypher in parse_query_file((folder / name).read_text("utf-8")).items():
            if key in queries:
                raise QueryError(f"named query {key!r} is defined twice (again in {name})")
            queries[key] = cypher
    overrides = folder / f"{backend}.cypher"  # optional: a backend that needs none has none
    if overrides.is_file():
        queries.update(parse_query_file(overrides.read_text("utf-8")))
    return queries


def get_query(backend: str, name: str) -> str:
    queries = load_queries(backend)
    if name not in queries:
        raise QueryError(f"no named query {name!r}; known queries: {', '.join(sorted(queries))}")
    return queries[name]
