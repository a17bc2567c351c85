"""Bad input never half-writes and always reads as one line: each case is refused before the
job's Run starts (the catalog's checksum is unchanged), and the CLI prints one red line with
exit code 1 and no secret."""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from circuitcat.catalog import CatalogStore, open_store
from circuitcat.catalog.errors import IngestError, TaskError, TranscoderLoadError
from circuitcat.cli.main import app
from circuitcat.ingest.models import LoadedModel
from circuitcat.ingest.prompts import PromptParams, run_prompts
from circuitcat.ingest.register import register
from circuitcat.ingest.tasks import Task, TaskPrompt, load_jsonl_task, load_task
from circuitcat.ingest.transcoders.formats import LayerTensors, to_transcoder
from circuitcat.ingest.transcoders.native import load_transcoder_set

from .content import checksum
from .neo4j_server import Neo4jServer
from .tiny import make_set

TOY_TRANSCODERS = Path(__file__).resolve().parents[1] / "ingest" / "toy" / "weights" / "transcoders"


def cli(env: dict[str, str], *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env=env)
    return result.exit_code, result.stderr


def one_line(code: int, err: str, *words: str) -> bool:
    return code == 1 and err.count("\n") == 1 and all(w in err for w in words)


# ---- transcoder weights ----------------------------------------------------------------------


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_native_weights_are_refused_at_load(tmp_path: Path, bad: float) -> None:
    folder = tmp_path / "tc"
    shutil.copytree(TOY_TRANSCODERS, folder)
    layer = sorted(folder.glob("*.safetensors"))[0]
    tensors = load_file(str(layer))
    tensors["W_dec"][3, 5] = bad
    save_file(tensors, str(layer))
    with pytest.raises(TranscoderLoadError, match="'W_dec' has 1 NaN or infinite"):
        load_transcoder_set(folder)
    store = tmp_path / "catalog"
    code, err = cli({}, "ingest", "register", "toy-years", "--transcoders", str(folder),
                    "--threads", "1", "--store", str(store))  # fmt: skip
    assert one_line(code, err, "NaN or infinite") and not store.exists()


def test_non_finite_foreign_weights_are_refused(tmp_path: Path) -> None:
    d_in, d_tc = 4, 6
    W_enc = torch.randn(d_in, d_tc)
    W_enc[1, 2] = float("inf")
    t = LayerTensors(0, tmp_path / "layer_0.safetensors", W_enc, torch.zeros(d_tc),
                     torch.randn(d_tc, d_in), torch.zeros(d_in), "in", "out",
                     keys={"W_enc": "encoder.weight"})  # fmt: skip
    with pytest.raises(TranscoderLoadError, match=r"'encoder.weight' has 1 NaN .* \[1, 2\]"):
        to_transcoder(t)


# ---- tasks -----------------------------------------------------------------------------------


class WordTokenizer:
    """Whitespace words as tokens: enough for the task-file checks (no model needed)."""

    bos_token_id, unk_token_id, unk_token = 0, 1, "<unk>"

    def __init__(self) -> None:
        self.vocab: dict[str, int] = {}

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [self.vocab.setdefault(w, len(self.vocab) + 2) for w in text.split()]


def line(prompt: str = "the capital is", correct: str = "Paris", wrong: str = "Rome") -> str:
    return f'{{"prompt": "{prompt}", "correct": ["{correct}"], "incorrect": ["{wrong}"]}}\n'


def test_task_files_are_checked_line_by_line(tmp_path: Path) -> None:
    tok, path = WordTokenizer(), tmp_path / "task.jsonl"
    path.write_bytes(line().encode() + b'{"prompt": "caf\xe9"}\n')
    with pytest.raises(TaskError, match=r"task.jsonl:2: not UTF-8"):
        load_jsonl_task(path, tok)
    path.write_text(line() + line(correct="Paris", wrong="Paris"))
    with pytest.raises(TaskError, match=r"task.jsonl:2: \['Paris'\] is both correct and"):
        load_jsonl_task(path, tok)
    with pytest.raises(TaskError, match="--n must be at least 1"):
        load_task("x", tok, n=0, prompts=path)
    with pytest.raises(TaskError, match="--n must be at least 1"):
        load_task("greater-than", tok, n=0)


def test_a_large_task_file_is_read_only_as_far_as_n(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    with path.open("w") as f:
        f.write(line() * 3 + "not json\n")
        f.write(line() * 100_000)
    t0 = time.perf_counter()
    task = load_task("big", WordTokenizer(), n=3, prompts=path)
    assert len(task.prompts) == 3 and time.perf_counter() - t0 < 1.0
    with pytest.raises(TaskError, match=r"big\.jsonl:4: not valid JSON"):
        load_task("big", WordTokenizer(), n=4, prompts=path)


@pytest.fixture(params=["ladybug", pytest.param("neo4j", marks=pytest.mark.neo4j)])
def registered(request: pytest.FixtureRequest, tmp_path: Path, loaded: LoadedModel) -> Any:
    if request.param == "ladybug":
        store = open_store(str(tmp_path / "catalog"))
    else:
        server: Neo4jServer = request.getfixturevalue("clean_neo4j")
        store = open_store(server.uri, user=server.user, password=server.password)
    with store:
        register(store, loaded, make_set())
        yield store


def _task(n_tokens: int, name: str = "bad") -> Task:
    toks = tuple(range(2, 2 + n_tokens))
    return Task(name, "logit_diff", "", (TaskPrompt("p", toks, "a", (1,), (2,)),))


@pytest.mark.parametrize(
    ("task", "params", "error"),
    [
        (_task(12), PromptParams(), "is 12 tokens; the model reads at most 8"),
        (_task(4), PromptParams(node_threshold=1.5), "0 < --node-threshold <= 1"),
        (_task(4), PromptParams(edge_threshold=0.0), "0 < --edge-threshold <= 1"),
        (_task(4), PromptParams(max_features=0), "--max-features must be at least 1"),
        (_task(4), PromptParams(method="beam"), "unknown method"),  # type: ignore[arg-type]
    ],
)
def test_bad_prompts_jobs_write_nothing(
    registered: CatalogStore,
    loaded: LoadedModel,
    task: Task,
    params: PromptParams,
    error: str,
) -> None:
    before = checksum(registered)
    with pytest.raises((TaskError, IngestError), match=error):
        run_prompts(registered, loaded, make_set(), task, params)
    assert checksum(registered) == before  # no Run, no Task, no Prompt


# ---- where the store is ----------------------------------------------------------------------


def test_store_locations_that_cannot_work_are_one_line(tmp_path: Path) -> None:
    code, err = cli({}, "store", "info", "--store", "")
    assert one_line(code, err, "store location is empty")
    code, err = cli({}, "store", "info", "--store", "bolt://host:notaport")
    assert one_line(code, err, "not a valid Neo4j URI", "bolt://HOST:PORT")
    code, err = cli({}, "store", "info", "--store", "bolt://neo4j:s3cret-pw@127.0.0.1:9")
    assert one_line(code, err, "cannot reach Neo4j at bolt://127.0.0.1:9")
    assert "s3cret" not in err
    code, err = cli({}, "store", "info", "--store", "gopher://neo4j:s3cret-pw@host/x")
    assert one_line(code, err, "unknown store URI scheme") and "s3cret" not in err
    text = tmp_path / "notes.lbug"
    text.write_text("not a database\n")
    code, err = cli({}, "store", "init", "--store", str(text))
    assert one_line(code, err, "is not a circuitcat catalog")
    assert text.read_text() == "not a database\n"


@pytest.mark.neo4j
def test_neo4j_addresses_and_driver_noise(
    neo4j_server: Neo4jServer, capfd: pytest.CaptureFixture[str]
) -> None:
    host = neo4j_server.uri.split("://", 1)[1]
    env = {
        "CIRCUITCAT_NEO4J_USER": neo4j_server.user or "",
        "CIRCUITCAT_NEO4J_PASSWORD": neo4j_server.password or "",
    }
    code, err = cli(env, "store", "info", "--store", f"bolt+s://{host}")
    assert one_line(code, err, "cannot set up TLS", "use bolt://")
    if neo4j_server.user:  # credentials in the URI work, and are never shown
        url = f"bolt://{neo4j_server.user}:{neo4j_server.password}@{host}"
        result = CliRunner().invoke(app, ["store", "info", "--store", url])
        assert result.exit_code == 0 and str(neo4j_server.password) not in result.stdout
    with open_store(neo4j_server.uri, user=neo4j_server.user, password=neo4j_server.password):
        capfd.readouterr()
        logging.getLogger("neo4j.session").warning("Transaction failed and will be retried")
    assert capfd.readouterr().err == ""  # the driver's retries go to the debug log


def test_an_older_catalog_opened_read_only_says_how_to_upgrade(tmp_path: Path) -> None:
    import ladybug

    path = tmp_path / "old.lbug"
    db = ladybug.Database(str(path))
    conn = ladybug.Connection(db)  # an earlier circuitcat's Run table: no heartbeat or error
    conn.execute("CREATE NODE TABLE Run(uid STRING PRIMARY KEY, kind STRING, status STRING)")
    conn.execute("CREATE (:Run {uid: 'r', kind: 'weights', status: 'done'})")
    conn.close()
    db.close()
    code, err = cli({}, "query", "cypher", "MATCH (r:Run) RETURN r.error", "--store", str(path))
    assert one_line(code, err, "older circuitcat", "store init")
    code, err = cli({}, "store", "init", "--store", str(path))
    assert code == 0
    code, err = cli({}, "query", "cypher", "MATCH (r:Run) RETURN r.error", "--store", str(path))
    assert code == 0
