"""`circuitcat serve` runs interventions: POST /api/interventions with a write token, a cap on
prompts and a time limit; saved under the token's user and listed on the feature and circuit
data; nothing saved when refused or out of time."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from circuitcat.cli.web import interventions as web_interventions
from circuitcat.cli.web.app import create_app
from circuitcat.cli.web.config import ServeConfig

from .test_serve_support import CIRCUIT, FEATURE, TOKEN, copy_toy

AUTH = {"Authorization": f"Bearer {TOKEN}"}
BODY = {"op": "zero", "features": [FEATURE], "task": "greater-than", "n": 8, "positions": [-1]}


@pytest.fixture(scope="module")
def client(toy_catalog: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    store = copy_toy(toy_catalog, tmp_path_factory.mktemp("serve-iv") / "toy")
    with TestClient(create_app(ServeConfig(store=store, tokens={"alice": TOKEN}))) as c:
        yield c


def _saved(client: TestClient) -> list[dict[str, object]]:
    got = client.get("/api/interventions")
    assert got.status_code == 200
    return list(got.json())


def test_refused_and_bad_requests_save_nothing(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert client.post("/api/interventions", json=BODY).status_code == 401
    wrong = {"Authorization": "Bearer not-the-token-0123456789"}
    assert client.post("/api/interventions", json=BODY, headers=wrong).status_code == 401
    too_many = client.post("/api/interventions", json={**BODY, "n": 41}, headers=AUTH)
    assert too_many.status_code == 422
    bad = client.post("/api/interventions", json={**BODY, "op": "clamp", "value": "inf"},
                      headers=AUTH)  # fmt: skip
    assert bad.status_code == 400 and "finite" in bad.json()["detail"]
    monkeypatch.setattr(web_interventions, "TIME_LIMIT_S", 1e-4)
    late = client.post("/api/interventions", json=BODY, headers=AUTH)
    assert late.status_code == 504 and "not saved" in late.json()["detail"]
    monkeypatch.undo()
    web_interventions._pool.submit(lambda: None).result()  # the late run has finished
    assert _saved(client) == []


def test_a_run_is_saved_under_the_token_user_and_listed(client: TestClient) -> None:
    got = client.post("/api/interventions", json=BODY, headers=AUTH)
    assert got.status_code == 200, got.text
    result = got.json()
    assert result["n_prompts"] == 8 and result["saved"]
    assert {"before", "after", "frozen", "predicted", "flagged"} <= set(result)
    shown = client.get(f"/api/interventions/{result['saved']}").json()
    assert shown["author"] == "alice" and shown["features"][0]["feature"] == FEATURE
    feature = client.get(f"/api/features/{FEATURE}").json()
    assert [i["uid"] for i in feature["interventions"]] == [result["saved"]]
    circuit = client.get(f"/api/circuits/{CIRCUIT}").json()
    assert [i["uid"] for i in circuit["interventions"]] == [result["saved"]]
