"""The errors a new user meets first, through the CLI: one line naming the problem and the fix,
exit code 1, nothing written."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from circuitcat.cli.main import app
from circuitcat.ingest.transcoders.native import save_transcoder_set

from .tiny import make_set

runner = CliRunner()


def fails(env: dict[str, str], *args: str) -> str:
    result = runner.invoke(app, list(args), env=env)
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    return result.stderr


@pytest.fixture
def store(tmp_path: Path) -> dict[str, str]:
    return {"CIRCUITCAT_STORE": str(tmp_path / "catalog")}


def test_unknown_model_offline_names_the_local_folder(
    store: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "https://127.0.0.1:9")  # nothing listens there
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    start = time.monotonic()
    err = fails(store, "ingest", "register", "gpt2", "--transcoders", "toy-years")
    assert time.monotonic() - start < 30
    assert "hf download gpt2 --local-dir /path/to/gpt2" in err
    assert "circuitcat ingest register /path/to/gpt2" in err


def test_transcoders_for_another_model(store: dict[str, str], tmp_path: Path) -> None:
    save_transcoder_set(make_set(), tmp_path / "tc")  # d_model 16; the toy model has 128
    err = fails(store, "ingest", "register", "toy-years", "--transcoders", str(tmp_path / "tc"))
    assert "expected 128" in err and "load the model the set was trained on" in err


def test_empty_corpus_and_unknown_circuit(store: dict[str, str], tmp_path: Path) -> None:
    registered = runner.invoke(
        app, ["ingest", "register", "toy-years", "--transcoders", "toy-years"], env=store
    )
    assert registered.exit_code == 0, registered.output
    (tmp_path / "empty.txt").write_text("\n\n")
    err = fails(store, "ingest", "features", "--corpus", str(tmp_path / "empty.txt"))
    assert "has no documents" in err
    err = fails(store, "ingest", "features", "--corpus", str(tmp_path / "missing.txt"))
    assert "no corpus at" in err and "a .jsonl file" in err
    err = fails(store, "circuit", "show", "greater-thn")
    assert "no circuit named 'greater-thn'" in err and "circuit find" in err
