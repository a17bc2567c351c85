"""`ingest features` (the corpus pass): pure merges, stats against a dense computation, resume,
corpus formats and errors, on a tiny random model with the toy word-level tokenizer."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig
from typer.testing import CliRunner

from circuitcat.catalog import CatalogStore, open_store
from circuitcat.catalog.errors import IngestError
from circuitcat.ingest import feature_stats as fs
from circuitcat.ingest import features as ft
from circuitcat.ingest.corpus import Corpus, open_corpus, tokenize
from circuitcat.ingest.models import LoadedModel
from circuitcat.ingest.register import register
from circuitcat.ingest.toy.tokenizer import load_tokenizer, save_tokenizer
from circuitcat.ingest.transcoders.transcoder import Transcoder, TranscoderConfig, TranscoderSet

N_LAYERS, D_MODEL, D_TC, N_CTX = 2, 16, 24, 16
KW: dict[str, Any] = {"batch_size": 4, "top_k_contexts": 3, "hist_bins": 10}


class Interrupted(Exception):
    pass


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    tokenizer = load_tokenizer(save_tokenizer(tmp_path_factory.mktemp("tok")))
    cfg = HookedTransformerConfig(
        n_layers=N_LAYERS, d_model=D_MODEL, n_ctx=N_CTX, d_head=8, n_heads=2,
        d_vocab=len(tokenizer), act_fn="gelu", seed=0,
    )  # fmt: skip
    model = HookedTransformer(cfg, tokenizer=tokenizer, move_to_device=False)
    return LoadedModel(model, "tiny", "test", {"fold_ln": False})


@pytest.fixture(scope="module")
def tset() -> TranscoderSet:
    gen = torch.Generator().manual_seed(1)
    tcs = {}
    for layer in range(N_LAYERS):
        hooks = f"blocks.{layer}.ln2.hook_normalized", f"blocks.{layer}.hook_mlp_out"
        tc = Transcoder(TranscoderConfig(D_MODEL, D_MODEL, D_TC, layer, *hooks))
        with torch.no_grad():
            tc.W_enc.copy_(torch.randn(D_MODEL, D_TC, generator=gen) * 0.5)
            tc.b_enc.copy_(torch.randn(D_TC, generator=gen) - 1.0)  # sparse-ish firing
            tc.W_dec.copy_(torch.randn(D_TC, D_MODEL, generator=gen))
        tc.b_enc.data[-1] = -100.0  # one dead feature per layer
        tcs[layer] = tc
    return TranscoderSet("tc", "tiny", "circuitcat", "/tmp/tc", tcs, {}, "a" * 64)


@pytest.fixture
def store(tmp_path: Path, loaded: LoadedModel, tset: TranscoderSet) -> Iterator[CatalogStore]:
    with open_store(str(tmp_path / "cat")) as s:
        register(s, loaded, tset)
        yield s


def toy(n_docs: int = 40) -> Corpus:
    return open_corpus("toy", n_docs=n_docs, seed=3, n_ctx=N_CTX)


def run(store: CatalogStore, loaded: LoadedModel, tset: TranscoderSet, tmp: Path, **kw: Any):
    return ft.run_features(
        store, loaded, tset, kw.pop("corpus", toy()), checkpoint_dir=tmp, **KW | kw
    )


# ---- pure functions --------------------------------------------------------------------------


def dense_top(rows: list[tuple[int, torch.Tensor, torch.Tensor]], k: int, window=(8, 2)):
    """Per feature: [(value, seq, pos, tokens, acts)] from all activations, one row at a time.

    `rows` holds (window index, activations [pos, d_transcoder], tokens [pos])."""
    before, after = window
    out = []
    for f in range(rows[0][1].shape[1]):
        found = []
        for seq, acts, tokens in rows:
            a = acts[:, f]
            v, p = float(a.max()), int(np.argmax(a.numpy()))  # numpy: first max position
            if v > 0:
                lo, hi = max(0, p - before), min(len(a), p + after + 1)
                found.append((v, seq, p, tokens[lo:hi].tolist(), a[lo:hi].tolist()))
        out.append(sorted(found, key=lambda r: (-r[0], r[1]))[:k])
    return out


def rows_of(acts: torch.Tensor, tokens: torch.Tensor, first: int = 0):
    return [(first + i, acts[i], tokens[i]) for i in range(acts.shape[0])]


def as_rows(top: fs.TopContexts) -> list[list[Any]]:
    out = []
    for f in range(top.value.shape[0]):
        rows = []
        for j in range(top.value.shape[1]):
            if top.value[f, j] == -torch.inf:
                continue
            keep = top.tokens[f, j] >= 0
            rows.append(
                (float(top.value[f, j]), int(top.seq[f, j]), int(top.pos[f, j]),
                 top.tokens[f, j][keep].tolist(), top.acts[f, j][keep].tolist())
            )  # fmt: skip
        out.append(rows)
    return out


def random_acts(seed: int, shape=(12, 10, 7)) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    acts = torch.relu(torch.randn(*shape, generator=gen) - 0.8)
    acts[:, :, 3] = 0.0  # a dead feature
    acts[2:5, 4, 5] = 9.0  # exact ties across rows: the lower row wins
    acts[7, 1:3, 6] = 9.0  # ties within a row: the first position wins
    tokens = torch.randint(0, 50, shape[:2], generator=gen)
    return acts, tokens


def test_streaming_top_contexts_equal_dense_topk() -> None:
    acts, tokens = random_acts(0)
    k = 4
    whole = fs.batch_top_contexts(acts, tokens, 0, k)
    running = fs.empty_top_contexts(acts.shape[2], k, 11)
    for lo, hi in ((0, 3), (3, 4), (4, 12)):  # batches smaller and larger than k
        part = fs.batch_top_contexts(acts[lo:hi], tokens[lo:hi], lo, k)
        running = fs.merge_top_contexts(running, part, k)
    for x, y in zip(fs._fields(running), fs._fields(whole), strict=True):
        assert torch.equal(x, y)
    assert as_rows(running) == dense_top(rows_of(acts, tokens), k)
    assert as_rows(running)[3] == []
    assert [r[1:3] for r in as_rows(running)[5][:3]] == [(2, 4), (3, 4), (4, 4)]
    assert as_rows(running)[6][0][1:3] == (7, 1)


def test_layer_stats_merge_equals_one_pass_and_histogram_sums_to_fires() -> None:
    acts, tokens = random_acts(1)
    edges = fs.hist_edges(10)
    kw: dict[str, Any] = {"k": 3, "edges": edges}
    whole = fs.batch_layer_stats(acts, tokens, None, 0, **kw)
    a = fs.batch_layer_stats(acts[:5], tokens[:5], None, 0, **kw)
    b = fs.batch_layer_stats(acts[5:], tokens[5:], None, 5, **kw)
    merged = fs.merge_layer_stats(a, b)
    for x, y in zip(ft.flat_layer(merged).values(), ft.flat_layer(whole).values(), strict=True):
        assert (
            torch.allclose(x, y, rtol=1e-12, atol=0) if x.is_floating_point() else torch.equal(x, y)
        )
    flat = acts.reshape(-1, acts.shape[2]).numpy()
    assert merged.fires.tolist() == (flat > 0).sum(0).tolist()
    assert torch.equal(merged.hist.sum(1), merged.fires)
    bins = np.digitize(flat, edges.numpy(), right=False)  # edges[i-1] <= a < edges[i] -> i
    for f in range(flat.shape[1]):
        firing = bins[flat[:, f] > 0, f].clip(max=len(edges) - 1)
        assert merged.hist[f].tolist() == np.bincount(firing, minlength=len(edges)).tolist()


# ---- the pass against a dense computation ------------------------------------------------------


@torch.no_grad()
def dense_stats(loaded: LoadedModel, tset: TranscoderSet, layer: int) -> dict[str, Any]:
    """Activations of every token, from the same batches the pass runs (so bit-identical)."""
    stream = tokenize(toy(), loaded.model.tokenizer, n_ctx=N_CTX)
    acts, scales, rows = [], [], []
    for first, tokens in stream.batches(KW["batch_size"]):
        _, cache = loaded.model.run_with_cache(tokens)
        z = tset[layer].encode(cache[f"blocks.{layer}.ln2.hook_normalized"])
        acts.append(z.reshape(-1, D_TC))
        scales.append(cache[f"blocks.{layer}.ln2.hook_scale"].flatten())
        rows += rows_of(z, tokens, first)
    assert rows[-1][1].shape[0] < N_CTX  # the short tail window is covered too
    scale = torch.cat(scales).double().mean()
    return {"acts": torch.cat(acts), "scale": scale, "top": dense_top(rows, 3)}


def test_stats_equal_a_dense_computation(
    store: CatalogStore, loaded: LoadedModel, tset: TranscoderSet, tmp_path: Path
) -> None:
    stats = run(store, loaded, tset, tmp_path)
    assert stats.tokens == tokenize(toy(), loaded.model.tokenizer, n_ctx=N_CTX).n_tokens
    for layer in tset.layers:
        d = dense_stats(loaded, tset, layer)
        acts = d["acts"]
        fires = (acts > 0).sum(0)
        assert torch.equal(stats.layers[layer].fires, fires)
        assert 0 < stats.live(layer) < D_TC
        assert torch.equal(stats.layers[layer].act_max, acts.max(0).values)
        mean = acts.double().sum(0) / fires
        assert torch.allclose(stats.act_mean(layer), mean, equal_nan=True)
        assert torch.equal(stats.layers[layer].hist.sum(1), fires)
        assert stats.ln2_scale_mean(layer) == pytest.approx(float(d["scale"]), rel=1e-9)
        assert as_rows(stats.layers[layer].top) == d["top"]
    check_written(store, stats, tset)


def check_written(store: CatalogStore, stats: fs.FeatureStats, tset: TranscoderSet) -> None:
    for layer in tset.layers:
        st = stats.layers[layer]
        for i in (0, 5, D_TC - 1):
            row = store.query("feature", uid=f"tiny/tc/L{layer}/{i}")[0]
            assert row["density"] == pytest.approx(float(stats.density(layer)[i]))
            assert row["act_max"] == pytest.approx(float(st.act_max[i]), rel=1e-6)
            assert sum(row["act_hist"]) == int(st.fires[i])
            assert (row["act_mean"] is None) == (int(st.fires[i]) == 0)
            contexts, logits = json.loads(row["top_contexts"]), json.loads(row["top_logits"])
            assert len(contexts) == min(3, int((st.top.value[i] > -torch.inf).sum()))
            for c in contexts:
                assert len(c["tokens"]) == len(c["acts"]) and max(c["acts"]) == c["value"]
            assert len(logits) == 20 and logits[0]["w"] > 0 > logits[-1]["w"]
    scales = store.run_cypher("MATCH (s:TranscoderSet) RETURN s.ln2_scale_mean AS x").rows
    assert scales[0][0] == pytest.approx([stats.ln2_scale_mean(la) for la in tset.layers])
    runs = store.run_cypher(
        "MATCH (r:Run) WHERE r.kind = 'features' RETURN r.status, r.params, r.uid"
    ).rows
    assert [r[0] for r in runs] == ["done"] * len(runs)
    assert stats.run_uid in [r[2] for r in runs]


def test_rerun_rewrites_the_same_values(
    store: CatalogStore, loaded: LoadedModel, tset: TranscoderSet, tmp_path: Path
) -> None:
    run(store, loaded, tset, tmp_path)
    query = "MATCH (f:Feature) RETURN f.uid, f.density, f.act_hist, f.top_contexts ORDER BY f.uid"
    first, nodes = store.run_cypher(query).rows, store.info().nodes
    assert not list(tmp_path.glob("*.pt"))  # the checkpoint is removed after the write
    run(store, loaded, tset, tmp_path)
    assert store.run_cypher(query).rows == first
    again = store.info().nodes
    assert again["Feature"] == nodes["Feature"] and again["Run"] == nodes["Run"] + 1


# ---- resume -----------------------------------------------------------------------------------


def interrupt_after(n_tokens: int, seen: list[int]):
    def progress(done: int, total: int | None) -> None:
        seen.append(done)
        if done >= n_tokens:
            raise Interrupted

    return progress


def test_resumed_run_equals_an_uninterrupted_one(
    store: CatalogStore, loaded: LoadedModel, tset: TranscoderSet, tmp_path: Path
) -> None:
    per_batch = KW["batch_size"] * N_CTX
    with open_store(str(tmp_path / "clean")) as clean_store:
        register(clean_store, loaded, tset)
        clean = run(clean_store, loaded, tset, tmp_path / "clean-ckpt")
    seen: list[int] = []
    with pytest.raises(Interrupted):
        run(
            store,
            loaded,
            tset,
            tmp_path,
            checkpoint_every=2,
            progress=interrupt_after(5 * per_batch, seen),
        )
    assert len(list(tmp_path.glob("*.pt"))) == 1
    assert store.run_cypher("MATCH (r:Run) WHERE r.kind = 'features' RETURN r").rows == []
    seen.clear()
    resumed = run(
        store, loaded, tset, tmp_path, checkpoint_every=2, progress=interrupt_after(10**9, seen)
    )
    assert seen[0] == 4 * per_batch and resumed.resumed_batches == 4  # batch 5 is redone
    assert (resumed.tokens, resumed.batches) == (clean.tokens, clean.batches)
    for layer in tset.layers:
        a, b = resumed.layers[layer], clean.layers[layer]
        for x, y in zip(ft.flat_layer(a).values(), ft.flat_layer(b).values(), strict=True):
            assert torch.equal(x, y)
    check_written(store, resumed, tset)


def test_a_mismatched_checkpoint_is_ignored(
    store: CatalogStore, loaded: LoadedModel, tset: TranscoderSet, tmp_path: Path
) -> None:
    per_batch = KW["batch_size"] * N_CTX
    with pytest.raises(Interrupted):
        run(
            store,
            loaded,
            tset,
            tmp_path,
            checkpoint_every=1,
            progress=interrupt_after(2 * per_batch, []),
        )
    (path,) = tmp_path.glob("*.pt")
    state = torch.load(path, weights_only=True)
    torch.save({**state, "fingerprint": "0" * 64}, path)
    seen: list[int] = []
    stats = run(store, loaded, tset, tmp_path, progress=interrupt_after(10**9, seen))
    assert seen[0] == 0 and stats.resumed_batches == 0
    path.write_bytes(b"not a checkpoint")  # a corrupt file is ignored too
    seen.clear()
    run(store, loaded, tset, tmp_path, progress=interrupt_after(10**9, seen))
    assert seen[0] == 0 and not path.exists()
    with pytest.raises(Interrupted):  # other parameters: another fingerprint, another file
        run(
            store,
            loaded,
            tset,
            tmp_path,
            checkpoint_every=1,
            progress=interrupt_after(per_batch, []),
        )
    seen.clear()
    run(store, loaded, tset, tmp_path, top_k_contexts=2, progress=interrupt_after(10**9, seen))
    assert seen[0] == 0


# ---- corpora and errors --------------------------------------------------------------------------


def test_corpus_formats(tmp_path: Path, loaded: LoadedModel) -> None:
    (tmp_path / "a.txt").write_text("the cat is red .\n\n  \nthe dog eats fish .\n")
    (tmp_path / "b.jsonl").write_text(
        '{"text": "the cat"}\n\n{"text": "", "id": 2}\n{"text": "a dog"}\n'
    )
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "z.txt").write_text("last one\n")
    (folder / "sub" / "a.txt").write_text("first\nstill first\n")
    (folder / "skip.md").write_text("not a txt")
    assert list(open_corpus(str(tmp_path / "a.txt")).documents()) == [
        "the cat is red .", "the dog eats fish ."
    ]  # fmt: skip
    assert list(open_corpus(str(tmp_path / "b.jsonl")).documents()) == ["the cat", "a dog"]
    assert list(open_corpus(str(folder)).documents()) == ["first\nstill first\n", "last one\n"]
    assert (
        list(toy(5).documents()) == list(toy(5).documents()) and len(list(toy(5).documents())) == 5
    )
    tok = loaded.model.tokenizer
    stream = tokenize(open_corpus(str(tmp_path / "a.txt")), tok, n_ctx=4)
    words = tok.convert_ids_to_tokens(stream.ids.tolist())
    assert words == [
        "<|bos|>",
        "the",
        "cat",
        "is",
        "red",
        ".",
        "<|bos|>",
        "the",
        "dog",
        "eats",
        "fish",
        ".",
    ]
    batches = list(stream.batches(2))
    assert [(first, tuple(t.shape)) for first, t in batches] == [(0, (2, 4)), (2, (1, 4))]
    assert tokenize(open_corpus(str(tmp_path / "a.txt")), tok, n_ctx=5).n_batches(2) == 2
    assert list(tokenize(open_corpus(str(tmp_path / "a.txt")), tok, n_ctx=5).batches(2))[1][
        1
    ].shape == (1, 2)
    assert tokenize(toy(), tok, n_ctx=N_CTX, max_tokens=50).n_tokens == 50


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("empty.txt", "\n  \n", "no documents"),
        ("broken.jsonl", '{"text": "the cat"}\n{"text": oops}\n', "line 2: not valid JSON"),
        ("notext.jsonl", '{"text": "the cat"}\n\n["x"]\n', "line 3: no string 'text'"),
        ("unknown.txt", "zzyzx qwerty\nblorp\n", "no token the model's tokenizer knows"),
        ("latin1.txt", b"caf\xe9\n", "not UTF-8"),
        ("missing.txt", None, "no corpus at"),
    ],
)
def test_bad_corpus_errors_and_writes_nothing(
    store: CatalogStore, loaded: LoadedModel, tset: TranscoderSet, tmp_path: Path,
    name: str, content: str | bytes | None, match: str,
) -> None:  # fmt: skip
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(IngestError, match=match):
        run(store, loaded, tset, tmp_path, corpus=open_corpus(str(path)))
    assert store.run_cypher("MATCH (r:Run) WHERE r.kind = 'features' RETURN r").rows == []
    assert store.run_cypher("MATCH (f:Feature) WHERE f.density IS NOT NULL RETURN f").rows == []


def test_unregistered_set_errors(loaded: LoadedModel, tset: TranscoderSet, tmp_path: Path) -> None:
    with open_store(str(tmp_path / "empty")) as empty:
        with pytest.raises(IngestError, match="run `circuitcat ingest register`"):
            run(empty, loaded, tset, tmp_path)
        assert empty.info().nodes["Run"] == 0


# ---- end to end on the toy model ----------------------------------------------------------


def test_cli_features_command(
    loaded: LoadedModel, tset: TranscoderSet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from circuitcat.cli.main import app
    from circuitcat.ingest import inputs

    # the tiny model lives in memory only: stand in for loading it from its recorded files
    monkeypatch.setattr(inputs, "load_pair", lambda *a, **kw: (loaded, tset))
    cat = str(tmp_path / "cat")
    with open_store(cat) as s:
        register(s, loaded, tset)
    (tmp_path / "c.txt").write_text("the cat is red .\nthe dog eats fish .\n" * 20)
    args = ["--model", "tiny", "--transcoders", "x", "--corpus", str(tmp_path / "c.txt")]
    more = ["--store", cat, "--checkpoint-dir", str(tmp_path), "--batch-size", "2", "--ctx", "8"]
    result = CliRunner().invoke(app, ["ingest", "features", *args, *more, "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "features: tiny/tc: 240 tokens in" in result.output and "L1 " in result.output
    bad = CliRunner().invoke(app, ["ingest", "features", *args, *more, "--ctx", "99"])
    assert bad.exit_code == 1 and "longer than the model's context" in bad.output


def test_cli_on_the_toy_model(tmp_path: Path) -> None:
    from circuitcat.cli.main import app
    from circuitcat.ingest.toy.model import CONFIG_FILE, WEIGHTS_DIR

    if not (WEIGHTS_DIR / CONFIG_FILE).is_file():
        pytest.skip("toy weights not trained yet (ingest/toy/weights/config.json missing)")
    cat, runner = str(tmp_path / "cat"), CliRunner()
    common = ["--transcoders", "toy-years", "--store", cat]
    result = runner.invoke(
        app, ["ingest", "features", "--model", "toy-years", *common, "--corpus", "toy"]
    )
    assert result.exit_code == 1 and "ingest register" in result.output
    assert runner.invoke(app, ["ingest", "register", "toy-years", *common]).exit_code == 0
    args = ["--corpus", "toy", "--n-docs", "64", "--checkpoint-dir", str(tmp_path / "ck")]
    result = runner.invoke(app, ["ingest", "features", "--model", "toy-years", *common, *args])
    assert result.exit_code == 0, result.output
    assert "tokens/s" in result.output and "live features L0" in result.output
    with open_store(cat) as s:
        missing = s.run_cypher("MATCH (f:Feature) WHERE f.density IS NULL RETURN count(f)").rows
        assert missing == [[0]]
        live = s.run_cypher("MATCH (f:Feature) WHERE f.density > 0 RETURN count(f)").rows[0][0]
        assert live > 0
        (scales,) = s.run_cypher("MATCH (t:TranscoderSet) RETURN t.ln2_scale_mean").rows[0]
        assert len(scales) == len(s.query("transcoder_sets")[0]["layers"])
