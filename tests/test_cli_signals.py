"""A job stopped by SIGTERM (a scheduler cancelling it, `kill`) marks its Run failed at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from circuitcat.catalog import open_store
from circuitcat.catalog.errors import StoreUnavailableError

CLI = Path(sys.executable).parent / "circuitcat"


@pytest.mark.slow
def test_sigterm_marks_the_run_failed(tmp_path: Path) -> None:
    store = str(tmp_path / "catalog")
    env = {**os.environ, "CIRCUITCAT_STORE": store}
    register = [str(CLI), "ingest", "register", "toy-years", "--transcoders", "toy-years"]
    subprocess.run(register, env=env, check=True, capture_output=True)
    job = subprocess.Popen([str(CLI), "ingest", "weights"], env=env, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and job.poll() is None:
        time.sleep(0.5)
        try:
            with open_store(store, read_only=True) as catalog:
                query = "MATCH (r:Run {kind: 'weights'}) RETURN count(r)"
                if catalog.run_cypher(query).rows[0][0]:
                    break
        except StoreUnavailableError:  # the job is checkpointing: look again
            continue
    assert job.poll() is None, "the job ended before it could be stopped"
    job.send_signal(signal.SIGTERM)
    assert job.wait(timeout=60) == 128 + signal.SIGTERM
    with open_store(store) as catalog:
        rows = catalog.run_cypher("MATCH (r:Run {kind: 'weights'}) RETURN r.status").rows
    assert rows == [["failed"]]
