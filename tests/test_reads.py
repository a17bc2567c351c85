"""Reading is only reading (issue 22): every read command opens the embedded catalog read-only,
changes no byte of its files, works while a writer (a label-writing `circuitcat serve` in
another process) holds it, and on a path without a catalog says so in one line, exits 1 and
creates nothing. The server never logs a query-string value."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from circuitcat.catalog import ladybug_store, open_store
from circuitcat.catalog.errors import StoreUnavailableError
from circuitcat.catalog.labels import add_label
from circuitcat.cli.main import app
from circuitcat.cli.web import ServeConfig, create_app
from circuitcat.cli.web.logs import without_query_values

from .test_serve_support import FEATURE, TOKEN, copy_toy, free_port

CLI = Path(sys.executable).with_name("circuitcat")
SECRET = "s3cret-token-in-a-url-0123456789"

# Every command that only reads; {out} is a scratch folder, {prompt} a stored prompt's uid.
READS = [
    ["circuit", "show", "greater-than"],
    ["circuit", "show", "greater-than", "-f", "json"],
    ["circuit", "export", "greater-than", "--out", "{out}/circuit.json"],
    ["circuit", "render", "greater-than", "--out", "{out}/circuit.svg"],
    ["feature", "show", "L0/156"],
    ["feature", "show", "L0/156", "-f", "json"],
    ["prompt", "list", "--limit", "3"],
    ["prompt", "export", "{prompt}", "--out", "{out}/prompt.json"],
    ["query", "named", "models"],
    ["query", "cypher", "MATCH (f:Feature) RETURN count(f) AS n"],
    ["store", "info"],
]


def _files(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def first_prompt(store: str) -> str:
    with open_store(store, read_only=True) as s:
        rows = s.query("attributed_prompts", set_uid="toy-years/tc-v1", task="greater-than")
    return str(rows[0]["uid"])


def fill(command: list[str], out: Path, prompt: str) -> list[str]:
    """A READS entry with its scratch folder and prompt uid filled in."""
    return [a.replace("{out}", str(out)).replace("{prompt}", prompt) for a in command]


def _read(store: str, command: list[str], out: Path, prompt: str) -> str:
    args = fill(command, out, prompt)
    done = CliRunner().invoke(app, [*args, "--store", store])
    assert done.exit_code == 0, f"{' '.join(args)}\n{done.output}"
    return done.stdout


def test_reads_change_no_byte(toy_catalog: str, tmp_path: Path) -> None:
    store = copy_toy(toy_catalog, tmp_path / "toy")
    prompt = first_prompt(store)
    before = _files(Path(store))
    for command in READS:
        _read(store, command, tmp_path, prompt)
        assert _files(Path(store)) == before, f"{' '.join(command)} changed the catalog's files"


def _serve(store: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "CIRCUITCAT_SERVE_TOKENS": f"alice:{TOKEN}"}
    with log.open("wb") as sink:
        return subprocess.Popen(
            [str(CLI), "serve", "--store", store, "--port", str(port)],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
        )


def test_reads_beside_a_label_writing_server_which_logs_no_query_value(
    toy_catalog: str, tmp_path: Path
) -> None:
    store = copy_toy(toy_catalog, tmp_path / "toy")
    prompt = first_prompt(store)
    log = tmp_path / "serve.log"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = _serve(store, port, log)
    try:
        for _ in range(600):
            try:
                assert httpx.get(f"{base}/api/health", timeout=1).json()["writable"] is True
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        auth = {"Authorization": f"Bearer {TOKEN}"}
        body = {"feature": FEATURE, "text": "written while others read"}
        assert httpx.post(f"{base}/api/labels", json=body, headers=auth).status_code == 200
        # A secret in a query string, on every kind of route: refused or ignored, never logged.
        for path in ("/api/health", "/api/features", f"/feature/{FEATURE}", "/static/none.js"):
            httpx.get(f"{base}{path}?token={SECRET}&q=x")
        assert httpx.post(f"{base}/api/labels?token={SECRET}", json=body).status_code == 401
        # The server holds the catalog for writing: a second writer is refused ...
        label = CliRunner().invoke(app, ["feature", "label", "L0/156", "x", "--store", store])
        assert label.exit_code == 1 and "holds it open" in label.stderr
        # ... and every read works, and sees what the server committed.
        for command in READS:
            _read(store, command, tmp_path, prompt)
        shown = json.loads(_read(store, ["feature", "show", "L0/156", "-f", "json"], tmp_path, ""))
        assert shown["label"] == "written while others read"
    finally:
        server.terminate()
        server.wait(timeout=30)
    text = log.read_text()
    assert SECRET not in text
    assert "/api/labels?token=*** HTTP" in text and f"/feature/{FEATURE}?token=***&q=*** " in text


def test_a_read_only_server_shows_what_a_writer_wrote_since(
    toy_catalog: str, tmp_path: Path
) -> None:
    store = copy_toy(toy_catalog, tmp_path / "toy")
    before = _files(Path(store))
    with TestClient(create_app(ServeConfig(store=store))) as client:
        assert client.get(f"/api/features/{FEATURE}").json()["labels"] == []
        assert _files(Path(store)) == before  # reading changed nothing
        with open_store(store) as writer:  # e.g. `circuitcat feature label` in another shell
            add_label(writer, FEATURE, "labelled meanwhile", "bob")
        assert client.get(f"/api/features/{FEATURE}").json()["label"] == "labelled meanwhile"


def test_a_mistyped_path_is_not_a_catalog(tmp_path: Path) -> None:
    writes = [
        ["feature", "label", "L0/156", "x"],
        ["query", "cypher", "RETURN 1", "--write"],
        ["circuit", "find", "--task", "greater-than"],
        ["circuit", "verify", "greater-than", "--device", "cpu"],
    ]
    for where in ("typo_folder", "catalg.lbug"):
        store = str(tmp_path / where)
        for command in [*READS, *writes]:
            args = [
                a.replace("{out}", str(tmp_path / "out")).replace("{prompt}", "p/1")
                for a in command
            ]
            done = CliRunner().invoke(app, [*args, "--store", store])
            assert done.exit_code == 1, f"{' '.join(args)}\n{done.output}"
            assert done.stderr.count("\n") == 1 and "there is no catalog at" in done.stderr
            assert list(tmp_path.iterdir()) == [], f"{' '.join(args)} created a file"
        for tokens in ({}, {"alice": TOKEN}):  # `serve`, read-only and label-writing
            with pytest.raises(StoreUnavailableError, match="there is no catalog at"):
                create_app(ServeConfig(store=store, tokens=tokens)).state.catalog.open()
            assert list(tmp_path.iterdir()) == []


def test_query_values_are_left_out_of_the_access_log() -> None:
    assert without_query_values("/api/x") == "/api/x"
    assert without_query_values("/api/x?token=abc&q=1") == "/api/x?token=***&q=***"
    assert without_query_values("/a?abc123&=x&t=1=2") == "/a?***&***&t=***"


HOLD_CHECKPOINT = """
import fcntl, os, sys, time
path = sys.argv[1]
with open(path, "a+") as f:
    fcntl.lockf(f, fcntl.LOCK_EX)
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
os.remove(path)
"""


def _checkpointing(store: str, seconds: float) -> subprocess.Popen[str]:
    """Another process holding the lock a writer holds while it checkpoints the file."""
    lock = Path(store) / "catalog.lbug.checkpoint.intent.lock"
    args = [sys.executable, "-c", HOLD_CHECKPOINT, str(lock), str(seconds)]
    holder = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    return holder


def test_a_read_waits_for_a_writers_checkpoint(
    toy_catalog: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = copy_toy(toy_catalog, tmp_path / "toy")
    holder = _checkpointing(store, 3)
    done = CliRunner().invoke(app, ["feature", "show", "L0/156", "--store", store])
    holder.wait(timeout=30)
    assert done.exit_code == 0, done.output
    assert "waiting: a writer is checkpointing" in done.stderr
    monkeypatch.setattr(ladybug_store, "CHECKPOINT_WAIT_S", 0.5)
    holder = _checkpointing(store, 5)
    try:
        done = CliRunner().invoke(app, ["feature", "show", "L0/156", "--store", store])
    finally:
        holder.kill()
    assert done.exit_code == 1 and "has been checkpointing" in done.stderr.splitlines()[-1]
