"""Shared fixtures. Neo4j comes from tests/neo4j_server.py; docs/neo4j.md explains the order."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from circuitcat.ingest.models import LoadedModel

from .neo4j_server import Neo4jServer, empty_neo4j, find_neo4j
from .tiny import tiny_model


@pytest.fixture(scope="session")
def neo4j_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Neo4jServer]:
    """A Neo4j 5.26 server for the whole session: NEO4J_URI, the launcher or testcontainers.

    Each session gets its own launcher state dir, so parallel sessions never share a server.
    With CI=true a missing Neo4j fails the tests; elsewhere it skips them.
    """
    server, cleanup, reason = find_neo4j(tmp_path_factory.mktemp("neo4j-local"))
    if server is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and {reason}", pytrace=False)
        pytest.skip(reason)
    try:
        yield server
    finally:
        cleanup()  # stops the launcher or container this session started; no-op for NEO4J_URI


@pytest.fixture
def clean_neo4j(neo4j_server: Neo4jServer) -> Iterator[Neo4jServer]:
    """The session's server with no nodes or relationships. Constraints and indexes stay: the
    stores create the same ones idempotently, and rebuilding them costs seconds per test.

    Tests share one server, so each test that writes asks for this rather than neo4j_server.
    """
    empty_neo4j(neo4j_server, drop_schema=False)
    yield neo4j_server


@pytest.fixture(scope="session", autouse=True)
def one_thread() -> Iterator[None]:
    """The tests' tensors are tiny: on 2 shared cores one torch thread is 10-100x faster."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def loaded() -> LoadedModel:
    """A tiny random HookedTransformer (see tests/tiny.py)."""
    return tiny_model()


@pytest.fixture(scope="session")
def toy_catalog(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The catalog `make demo` builds, in a temporary folder. Read it, never write to it."""
    from circuitcat.catalog import open_store
    from circuitcat.ingest.demo import run_demo

    path = str(tmp_path_factory.mktemp("toy") / "catalog")
    with open_store(path) as s:
        run_demo(s)
    return path
