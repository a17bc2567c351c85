"""Shared fixtures. Neo4j comes from tests/neo4j_server.py; docs/neo4j.md explains the order.

Built once per test run, shared by every pytest-xdist worker (`make test` runs two): the toy
demo catalog (`toy_demo`, copied per session as `toy_catalog`); once per session: its Neo4j
copy (`toy_neo4j`, on the one worker that runs the Neo4j tests). Under xdist, tests
that need Neo4j all run on one worker (one server, which `clean_neo4j` may empty), a module
with module-scoped fixtures runs on one worker (they are built once), and the tests that wait
for the toy catalog run last (it builds in the background meanwhile).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from circuitcat.catalog import CatalogStore
from circuitcat.ingest.models import LoadedModel

from .neo4j_server import Neo4jServer, _start_container, empty_neo4j, find_neo4j, serve_imported
from .tiny import tiny_model

CLI = Path(sys.executable).with_name("circuitcat")
TOY_FIXTURES = {"toy_demo", "toy_catalog", "toy_neo4j_server"}
NEO4J_GROUP = "neo4j"
DEMO_TIMEOUT_S = 900


# ---- the xdist schedule ----------------------------------------------------------------------


def _needs_neo4j(item: pytest.Item) -> bool:
    servers = {"neo4j_server", "toy_neo4j_server"} & set(getattr(item, "fixturenames", ()))
    return item.get_closest_marker("neo4j") is not None or bool(servers)


def _has_module_fixture(item: pytest.Item) -> bool:
    info = getattr(item, "_fixtureinfo", None)
    defs = getattr(info, "name2fixturedefs", {}) or {}
    return any(d and d[-1].scope in ("module", "class", "package") for d in defs.values())


def _group(item: pytest.Item) -> str | None:
    """The xdist group a test runs in (None: any worker): an xdist_group mark's, else every
    Neo4j test in one, else a module with module-scoped fixtures in one of its own."""
    mark = item.get_closest_marker("xdist_group")
    if mark is not None:
        return str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
    if _needs_neo4j(item):
        return NEO4J_GROUP
    if _has_module_fixture(item):
        return item.nodeid.split("::")[0]
    return None


def _groups_file(config: pytest.Config) -> Path:
    return _run_root(config) / "xdist-groups.json"


@pytest.hookimpl(trylast=True)  # after -k / -m deselection
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist: record each test's group for the scheduler below, start the toy
    demo build if any test needs it, and run the Neo4j tests and the slow tests first and the
    toy tests last. A plain `pytest` run keeps its order."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    needs_toy = {id(i) for i in items if TOY_FIXTURES & set(getattr(i, "fixturenames", ()))}
    if needs_toy:
        _start_toy_demo(_run_root(config))
    groups = {item.nodeid: _group(item) for item in items}
    path = _groups_file(config)
    part = path.with_suffix(f".{os.environ['PYTEST_XDIST_WORKER']}")
    part.write_text(json.dumps({k: v for k, v in groups.items() if v}))
    part.replace(path)  # every worker collects the same tests: any one file will do
    order = {id(item): n for n, item in enumerate(items)}

    def key(item: pytest.Item) -> tuple[int, int, int, int]:
        return (
            0 if groups[item.nodeid] == NEO4J_GROUP else 1,
            1 if id(item) in needs_toy else 0,
            0 if item.get_closest_marker("slow") else 1,
            order[id(item)],
        )

    items.sort(key=key)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """`--dist loadgroup`, with the groups above: xdist's own loadgroup reads a test's group
    from its node id, which pytest 9.2 no longer lets a plugin change."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    config.option.loadscopereorder = False  # keep the order above, not the biggest group first

    path = _groups_file(config)

    class GroupScheduling(LoadScopeScheduling):
        groups: dict[str, str] | None = None

        def _split_scope(self, nodeid: str) -> str:
            if self.groups is None:  # the workers wrote it before they reported collection
                self.groups = json.loads(path.read_text()) if path.exists() else {}
            return self.groups.get(nodeid, nodeid)

    return GroupScheduling(config, log)


# ---- built once per run, shared by the workers -----------------------------------------------


def _run_root(config: pytest.Config) -> Path:
    """A folder every worker of this run shares: the run's base temp (a worker's is below it)."""
    base = config._tmp_path_factory.getbasetemp()  # type: ignore[attr-defined]
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@dataclass(frozen=True)
class DemoRun:
    """`circuitcat demo` as a new user runs it: a subprocess on a fresh embedded store."""

    returncode: int
    stdout: str
    stderr: str
    catalog: Path  # the catalog it built
    picture: Path  # the circuit picture it wrote


def _demo_folder(root: Path) -> Path:
    return root / "shared-toy-demo"


def _start_toy_demo(root: Path) -> None:
    """Starts `circuitcat demo` in the background, once per run (the first caller starts it)."""
    folder = _demo_folder(root)
    try:
        folder.mkdir()
    except FileExistsError:
        return  # started by another worker (or earlier)
    env = {**os.environ, "COLUMNS": "120", "CIRCUITCAT_STORE": str(folder / "catalog")}
    script = (
        '"$0" demo --out "$1" > "$2"/stdout 2> "$2"/stderr; echo $? > "$2"/rc.tmp; '
        'mv "$2"/rc.tmp "$2"/rc'
    )
    subprocess.Popen(
        ["sh", "-c", script, str(CLI), str(folder / "circuit.png"), str(folder)],
        env=env,
        stdin=subprocess.DEVNULL,
    )


def _wait_for_demo(root: Path) -> Path:
    folder = _demo_folder(root)
    _start_toy_demo(root)
    deadline = time.monotonic() + DEMO_TIMEOUT_S
    while not (folder / "rc").exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"circuitcat demo did not finish in {DEMO_TIMEOUT_S} s ({folder})")
        time.sleep(0.5)
    return folder


@pytest.fixture(scope="session")
def toy_demo(pytestconfig: pytest.Config) -> DemoRun:
    """`circuitcat demo` run once per test run (not per xdist worker) in a subprocess on a fresh
    store: its exit code, output, catalog and picture. The files are shared: read them, or
    copy them before writing. Under xdist it starts in the background as soon as a collected
    test needs it."""
    shared = _wait_for_demo(_run_root(pytestconfig))
    return DemoRun(
        int((shared / "rc").read_text()),
        (shared / "stdout").read_text(),
        (shared / "stderr").read_text(),
        shared / "catalog",
        shared / "circuit.png",
    )


@pytest.fixture(scope="session")
def toy_catalog(toy_demo: DemoRun, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The catalog `make demo` builds (every built-in task's circuit), this session's own copy
    in a temporary folder. Read it, never write to it: copy it first (test_serve_support's
    copy_toy) to write."""
    if toy_demo.returncode != 0:
        pytest.fail(f"circuitcat demo failed:\n{toy_demo.stderr[-3000:]}", pytrace=False)
    path = tmp_path_factory.mktemp("toy") / "catalog"
    shutil.copytree(toy_demo.catalog, path)
    return str(path)


# ---- Neo4j ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def neo4j_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Neo4jServer]:
    """A Neo4j 5.26 server for the whole session: NEO4J_URI, the launcher or testcontainers.

    Each session gets its own launcher state dir, so parallel sessions never share a server;
    under xdist every test that needs Neo4j runs on one worker (pytest_collection_modifyitems).
    With CI=true a missing Neo4j fails the tests; elsewhere it skips them.
    """
    server, cleanup, reason = find_neo4j(tmp_path_factory.mktemp("neo4j-local"))
    if server is None:
        _missing(reason)
    try:
        yield server
    finally:
        cleanup()  # stops the launcher or container this session started; no-op for NEO4J_URI


def _missing(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def clean_neo4j(neo4j_server: Neo4jServer) -> Iterator[Neo4jServer]:
    """The session's server with no nodes or relationships. Constraints and indexes stay: the
    stores create the same ones idempotently, and rebuilding them costs seconds per test.

    Tests share one server, so each test that writes asks for this rather than neo4j_server.
    """
    empty_neo4j(neo4j_server, drop_schema=False)
    yield neo4j_server


@pytest.fixture(scope="session")
def toy_neo4j_server(
    toy_catalog: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Neo4jServer]:
    """A Neo4j server of its own (not `neo4j_server`, which tests empty) holding exactly the
    toy catalog, loaded once per session through the bulk path: `store import-files` and the
    real `neo4j-admin database import`, then served by the launcher. Without java and mvn: a
    second testcontainers server, filled by `store copy`. Read it only."""
    from circuitcat.catalog import open_store
    from circuitcat.catalog.copy import copy_catalog
    from circuitcat.catalog.neo4j_import import write_import_files

    work = tmp_path_factory.mktemp("toy-neo4j")
    with open_store(toy_catalog, read_only=True) as toy:
        files = write_import_files(work / "import", toy, None)
        want = toy.info()
    server, cleanup, reason = serve_imported(work / "state", files.arguments())
    copied = server is None
    if server is None:
        server, cleanup, container_reason = _start_container()
        if server is None:
            _missing(f"no Neo4j for the toy catalog: {reason}; {container_reason}")
    assert server is not None
    try:
        with open_store(server.uri, user=server.user, password=server.password) as neo:
            if copied:
                with open_store(toy_catalog, read_only=True) as toy:
                    copy_catalog(toy, neo)
            got = neo.info()
        assert (got.nodes, got.relationships) == (want.nodes, want.relationships)
        yield server
    finally:
        cleanup()


@pytest.fixture(scope="session")
def toy_neo4j(toy_neo4j_server: Neo4jServer) -> Iterator[CatalogStore]:
    """An open store on `toy_neo4j_server` (the toy catalog on Neo4j). Read it only."""
    from circuitcat.catalog import open_store

    server = toy_neo4j_server
    with open_store(server.uri, user=server.user, password=server.password) as neo:
        yield neo


# ---- models ---------------------------------------------------------------------------------


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
