"""`circuitcat demo` as a new user runs it: a subprocess, a fresh embedded store."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import networkx as nx

from circuitcat.catalog import open_store
from circuitcat.cli.demo import TRY_NEXT
from circuitcat.ingest.demo import DEMO_TASKS

from .conftest import DemoRun

CLI = Path(sys.executable).with_name("circuitcat")


def run_demo(store: Path, out: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "120", "CIRCUITCAT_STORE": str(store)}
    return subprocess.run(
        [str(CLI), "demo", "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )


def test_demo_end_to_end_and_rerun(toy_demo: DemoRun, tmp_path: Path) -> None:
    # The first run is the one the toy_catalog fixture shares (tests/conftest.py): run once
    # per test run, on a fresh store in a subprocess; the re-run goes to a copy of its catalog.
    first = toy_demo
    assert first.returncode == 0, first.stderr[-2000:]
    store, picture = tmp_path / "catalog", tmp_path / "circuit.png"
    shutil.copytree(first.catalog, store)
    shutil.copyfile(first.picture, picture)
    out = first.stdout
    match = re.search(r"greater-than circuit on toy-years: (\d+) of (\d+) live features", out)
    assert match, out
    n, live = int(match.group(1)), int(match.group(2))
    assert 0 < n <= 0.05 * live
    kept = re.search(r"circuit only +[-\d.]+ +\((-?\d+)% of transcoders\)", out)
    control = re.search(r"random, same size +[-\d.]+ +\((-?\d+)% of transcoders\)", out)
    assert kept and control, out
    assert int(kept.group(1)) >= 80 and int(control.group(1)) < int(kept.group(1)) - 30
    for task in DEMO_TASKS:  # one line per built-in task's circuit, beating random
        line = re.search(
            rf"^  {task}: (\d+) features.*circuit (-?[\d.]+) .*random (-?[\d.]+) \+- ([\d.]+)",
            out,
            re.M,
        )
        assert line, (task, out)
        circuit, rand, spread = (float(line.group(i)) for i in (2, 3, 4))
        assert circuit > rand + 5 * spread, line.group(0)
    assert "Try next" in out and "MATCH (c:Circuit" in out
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open_store(str(store)) as s:
        counts = s.info()
        for what, query in TRY_NEXT:  # the queries the demo suggests must answer
            assert s.run_cypher(query).rows, what
    assert counts.nodes["Circuit"] == len(DEMO_TASKS) and counts.relationships["ATTRIBUTES"] > 0

    # The catalog the demo leaves answers the other read commands.
    env = {**os.environ, "CIRCUITCAT_STORE": str(store)}
    first_feature = re.search(r"^│ (L\d+/\d+) ", out, re.M)
    assert first_feature, out
    uid = f"toy-years/tc-v1/{first_feature.group(1)}"
    shown = subprocess.run(
        [str(CLI), "feature", "show", uid], capture_output=True, text=True, env=env, check=False
    )
    assert shown.returncode == 0 and "top contexts" in shown.stdout and "promotes" in shown.stdout
    html = tmp_path / "circuit.html"
    drawn = subprocess.run(
        [str(CLI), "circuit", "render", "greater-than", "--out", str(html)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert drawn.returncode == 0 and "<svg" in html.read_text()
    graphml = tmp_path / "circuit.graphml"
    exported = subprocess.run(
        [str(CLI), "circuit", "export", "greater-than", "--out", str(graphml)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert exported.returncode == 0, exported.stderr
    g = nx.read_graphml(graphml)
    assert sum(1 for _, d in g.nodes(data=True) if d["kind"] == "feature") == n
    assert g.number_of_edges() > 0

    again = run_demo(store, picture)
    assert again.returncode == 0, again.stderr[-2000:]
    with open_store(str(store)) as s:
        after = s.info()
    # Reused, nothing added twice (a re-run may record new Run nodes: provenance).
    assert after.relationships == counts.relationships
    assert {k: v for k, v in after.nodes.items() if k != "Run"} == {
        k: v for k, v in counts.nodes.items() if k != "Run"
    }
