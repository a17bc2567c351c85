"""Find a Neo4j 5.26 server for tests (see docs/neo4j.md).

The order is fixed: `NEO4J_URI` from the environment, then the Maven-built launcher in
docker/neo4j-local (when `java` and `mvn` are on PATH), then testcontainers (when a Docker engine
answers). Plain Python with no pytest import, so scripts and benchmarks can use it too;
tests/conftest.py wraps it in the `neo4j_server` fixture.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
LAUNCHER = REPO_ROOT / "docker" / "neo4j-local" / "neo4j-local.sh"
CONTAINER_IMAGE = "neo4j:5.26"
# A cold ~/.m2 build plus the launcher's own 120 s wait for the database.
LAUNCHER_START_TIMEOUT_S = 600
LAUNCHER_STOP_TIMEOUT_S = 90

Cleanup = Callable[[], None]

# Schema objects go one by one; their names are data, so they travel as parameters.
_SHOW_CONSTRAINTS = "SHOW CONSTRAINTS YIELD name RETURN name"
_DROP_CONSTRAINT = "DROP CONSTRAINT $name IF EXISTS"
# LOOKUP indexes are Neo4j's built-in label and type scans; indexes owned by a constraint
# are gone with their constraint.
_SHOW_INDEXES = "SHOW INDEXES YIELD name, type WHERE type <> 'LOOKUP' RETURN name"
_DROP_INDEX = "DROP INDEX $name IF EXISTS"
# CALL ... IN TRANSACTIONS keeps memory flat on big graphs; it needs an auto-commit
# transaction, hence session.run rather than driver.execute_query.
# Relationships first, in batches: deleting nodes with DETACH would take all the edges of
# 10k densely connected nodes into one transaction and exceed the server's memory pool.
_DELETE_RELS = "MATCH ()-[r]->() CALL (r) { DELETE r } IN TRANSACTIONS OF 10000 ROWS"
_DELETE_ALL = "MATCH (n) CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 10000 ROWS"


@dataclass(frozen=True)
class Neo4jServer:
    """Where a test Neo4j listens. `user` None means the server runs without auth."""

    uri: str
    user: str | None
    password: str | None
    origin: str  # "env" | "launcher" | "testcontainers"

    @property
    def auth(self) -> tuple[str, str] | None:
        """The `auth=` argument for `neo4j.GraphDatabase.driver`."""
        return None if self.user is None else (self.user, self.password or "")


def find_neo4j(state_dir: Path) -> tuple[Neo4jServer | None, Cleanup, str]:
    """Returns (server or None, a cleanup callable, a reason string when None).

    `state_dir` is where the launcher keeps its data, log, pid and uri. The cleanup callable
    stops whatever this call started (nothing for `NEO4J_URI`); call it exactly once.
    """
    uri = os.environ.get("NEO4J_URI")
    if uri:
        user = os.environ.get("NEO4J_USER") or None
        from_env = Neo4jServer(uri, user, os.environ.get("NEO4J_PASSWORD"), "env")
        return from_env, _nothing, ""

    reasons = []
    if shutil.which("java") and shutil.which("mvn"):
        server, cleanup, reason = _start_launcher(state_dir)
        if server is not None:
            return server, cleanup, ""
        reasons.append(reason)
    else:
        reasons.append("launcher: `java` and `mvn` are not both on PATH")

    server, cleanup, reason = _start_container()
    if server is not None:
        return server, cleanup, ""
    reasons.append(reason)
    return None, _nothing, "no Neo4j: NEO4J_URI is unset; " + "; ".join(reasons)


def empty_neo4j(server: Neo4jServer, *, drop_schema: bool = True) -> None:
    """Deletes every node and relationship, then (unless told not to) every constraint and
    non-LOOKUP index."""
    from neo4j import GraphDatabase  # imported here so find_neo4j works without the driver

    with (
        GraphDatabase.driver(server.uri, auth=server.auth) as driver,
        driver.session() as session,
    ):
        session.run(_DELETE_RELS).consume()
        session.run(_DELETE_ALL).consume()
        if not drop_schema:
            return
        for show, drop in ((_SHOW_CONSTRAINTS, _DROP_CONSTRAINT), (_SHOW_INDEXES, _DROP_INDEX)):
            for name in session.run(show).value("name"):
                session.run(drop, name=name).consume()


def _nothing() -> None:
    return None


def _start_launcher(
    state_dir: Path, env: dict[str, str] | None = None
) -> tuple[Neo4jServer | None, Cleanup, str]:
    """Starts docker/neo4j-local (building it first if needed); cleanup stops it. `env` adds
    launcher settings (e.g. NEO4J_LOCAL_PAGECACHE_MB)."""

    def stop() -> None:
        subprocess.run(
            ["bash", str(LAUNCHER), "stop", str(state_dir)],
            check=False,
            timeout=LAUNCHER_STOP_TIMEOUT_S,
        )

    # The launcher stops the server by itself if this process dies without cleaning up.
    # Auth on, as on a team server, with a fresh password.
    password = "test-" + secrets.token_hex(8)
    launcher_env = {
        **os.environ,
        **(env or {}),
        "NEO4J_LOCAL_OWNER_PID": str(os.getpid()),
        "NEO4J_LOCAL_PASSWORD": password,
    }
    try:
        done = subprocess.run(
            ["bash", str(LAUNCHER), "start", str(state_dir)],
            capture_output=True,
            text=True,
            env=launcher_env,
            timeout=LAUNCHER_START_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        stop()
        return None, _nothing, f"launcher: no answer in {LAUNCHER_START_TIMEOUT_S} s"
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        return None, _nothing, f"launcher: start failed (exit {done.returncode}):\n{tail}"
    uri = done.stdout.strip()
    return Neo4jServer(uri, "neo4j", password, "launcher"), stop, ""


def serve_imported(
    state_dir: Path, import_args: list[str]
) -> tuple[Neo4jServer | None, Cleanup, str]:
    """A launcher server of its own on a database that the real `neo4j-admin database import
    full` built (`import_args`: `ImportFiles.arguments()`): the bulk path, for a catalog that
    tests only read. (None, no-op, reason) when java, mvn or the launcher's jars are missing."""
    java = shutil.which("java")
    if not (java and shutil.which("mvn")):
        return None, _nothing, "import: `java` and `mvn` are not both on PATH"
    built = subprocess.run(
        ["bash", str(LAUNCHER), "build"],
        capture_output=True,
        text=True,
        timeout=LAUNCHER_START_TIMEOUT_S,
        check=False,
    )
    if built.returncode != 0:
        return None, _nothing, f"import: launcher build failed: {built.stderr.strip()[-2000:]}"
    home = state_dir / "data"  # the launcher serves database `neo4j` from STATE_DIR/data
    (home / "conf").mkdir(parents=True, exist_ok=True)
    (home / "conf" / "neo4j.conf").write_text("server.memory.pagecache.size=64m\n")
    lib = LAUNCHER.parent / "target" / "lib"
    admin = [java, "-Xmx512m", "-XX:TieredStopAtLevel=1", "-cp", f"{lib}/*"]
    admin += ["org.neo4j.cli.AdminTool", *import_args, "--threads=2"]
    admin += ["--max-off-heap-memory=256m"]
    env = {**os.environ, "NEO4J_HOME": str(home), "NEO4J_CONF": str(home / "conf")}
    done = subprocess.run(admin, capture_output=True, text=True, env=env, timeout=600)
    if done.returncode != 0 or "IMPORT DONE" not in done.stdout:
        tail = (done.stdout + done.stderr).strip()[-2000:]
        return None, _nothing, f"import: neo4j-admin failed (exit {done.returncode}):\n{tail}"
    return _start_launcher(state_dir, {"NEO4J_LOCAL_PAGECACHE_MB": "128"})


def _start_container() -> tuple[Neo4jServer | None, Cleanup, str]:
    """Starts `neo4j:5.26` with testcontainers when a Docker engine answers."""
    try:
        from testcontainers.core.docker_client import DockerClient

        DockerClient(timeout=5).client.ping()  # finds the engine the way testcontainers will
    except Exception as e:  # no library, no engine, no permission: all mean "unavailable"
        return None, _nothing, f"testcontainers: no Docker engine ({type(e).__name__})"
    container = None
    try:
        try:
            from testcontainers.community.neo4j import Neo4jContainer
        except ImportError:  # older testcontainers keep it at the top level
            from testcontainers.neo4j import Neo4jContainer
        container = Neo4jContainer(CONTAINER_IMAGE)
        container.start()
    except Exception as e:  # a pull or start failure makes the container unavailable
        if container is not None:
            with contextlib.suppress(Exception):
                container.stop()
        return None, _nothing, f"testcontainers: {type(e).__name__}: {e}"
    server = Neo4jServer(
        container.get_connection_url(), container.username, container.password, "testcontainers"
    )
    return server, container.stop, ""
