"""The optional explainer (ingest/explain.py) against a small OpenAI-compatible server of the
test's own on 127.0.0.1: the explanation is stored with its prompts, model and time, scored by
detection on held-out contexts, shown, and a label still wins."""

from __future__ import annotations

import json
import re
import shutil
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from circuitcat.catalog import open_store
from circuitcat.cli.main import app
from circuitcat.ingest.explain import detection_score

runner = CliRunner()
FEATURE = "toy-years/tc-v1/L0/156"
MODEL = "fake-explainer-1"


def _fake_answer(prompt: str) -> str:
    """The explainer names the token marked most often; the scorer picks the excerpts that
    hold that token as a word."""
    if "what does the feature detect" in prompt:
        marked = Counter(re.findall(r"<<(.+?)>>", prompt)).most_common(1)[0][0]
        return f'the token "{marked}" in a year\nignored second line'
    token = re.search(r'the token "(.+?)"', prompt)
    assert token is not None
    lines = re.findall(r"^(\d+)\. (.*)$", prompt, re.M)
    return json.dumps([int(n) for n, text in lines if token.group(1) in text.split()])


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        assert self.path == "/v1/chat/completions" and body["model"] == MODEL
        content = _fake_answer(body["messages"][0]["content"])
        out = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(out.encode())

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def fake_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def catalog(toy_catalog: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("explained") / "catalog"
    shutil.copytree(toy_catalog, path)
    return str(path)


def test_detection_score_is_balanced_accuracy() -> None:
    truth = [True, True, False, False, False, True]
    assert detection_score(truth, {1, 2, 6}) == 1.0
    assert detection_score(truth, set()) == 0.5
    assert detection_score(truth, {1, 3}) == pytest.approx((1 / 3 + 2 / 3) / 2)


def test_explain_round_trip(fake_server: str, catalog: str) -> None:
    env = {"CIRCUITCAT_STORE": catalog}
    done = runner.invoke(
        app, ["feature", "explain", FEATURE, "--url", fake_server, "--model", MODEL], env=env
    )
    assert done.exit_code == 0, done.output
    with open_store(catalog, read_only=True) as s:
        f = s.query("feature", uid=FEATURE)[0]
    meta = json.loads(f["explanation_meta"])
    assert f["explanation"].startswith('the token "') and "second line" not in f["explanation"]
    assert meta["model"] == MODEL and meta["endpoint"].startswith("127.0.0.1:")
    assert meta["created_at"] and "<<" in meta["explain_prompt"]
    # Held-out positives are the odd-ranked top contexts; negatives never fire on the model.
    contexts = json.loads(f["top_contexts"])
    positives = [e["text"] for e in meta["excerpts"] if e["fires"]]
    assert sorted(positives) == sorted(" ".join(c["tokens"]) for c in contexts[1::2][:5])
    negatives = [e["text"] for e in meta["excerpts"] if not e["fires"]]
    assert negatives and _max_activation(negatives[0]) == 0.0
    # The score is what the scorer's answer gets against the truth.
    token = f["explanation"].split('"')[1]
    chosen = {i for i, e in enumerate(meta["excerpts"], 1) if token in e["text"].split()}
    expected = detection_score([e["fires"] for e in meta["excerpts"]], chosen)
    assert f["explanation_score"] == pytest.approx(expected)
    assert json.loads(meta["answer"]) == sorted(chosen)
    shown = runner.invoke(app, ["feature", "show", FEATURE], env=env).stdout
    assert f"explanation: {f['explanation']}" in shown and "detection score" in shown

    from circuitcat.cli.web.reads import feature_page

    with open_store(catalog, read_only=True) as s:
        page = feature_page(s, FEATURE)
        assert page["description"] == f["explanation"] and page["explanation_score"] == expected
    runner.invoke(app, ["feature", "label", FEATURE, "start years, checked by hand"], env=env)
    as_json = runner.invoke(app, ["feature", "show", FEATURE, "--format", "json"], env=env)
    assert json.loads(as_json.stdout)["description"] == "start years, checked by hand"


def test_explainer_that_does_not_answer(catalog: str) -> None:
    done = runner.invoke(
        app,
        ["feature", "explain", FEATURE, "--url", "http://127.0.0.1:9/v1", "--model", "m"],
        env={"CIRCUITCAT_STORE": catalog},
    )
    assert done.exit_code == 1 and "did not answer" in done.stderr, done.output


def _max_activation(text: str) -> float:
    from circuitcat.ingest.models import load_model
    from circuitcat.ingest.transcoders.load import load_transcoders

    loaded = load_model("toy-years")
    tset = load_transcoders("toy-years", loaded)
    assert loaded.model.tokenizer is not None
    ids = loaded.model.tokenizer.encode(text, add_special_tokens=False)
    with torch.no_grad():
        _, cache = loaded.model.run_with_cache(torch.tensor([ids]))
        z = tset[0].encode(cache[tset[0].cfg.input_hook][0])
    return float(z[:, 156].max())
