"""`circuitcat ingest ...`: jobs that load a model and transcoders and write into the catalog.

Heavy imports (torch, transformer_lens) happen inside the commands, so the rest of the CLI
starts fast.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from circuitcat.catalog import CatalogStore, open_store

from .common import (
    AllowPickleOption,
    DeviceOption,
    ModelOption,
    PartsOption,
    ProcessingOption,
    SetOption,
    ShardOption,
    StoreOption,
    ThreadsOption,
    TranscodersOption,
    handle_errors,
    job_store,
    pick_device,
    progress_bar,
)

if TYPE_CHECKING:  # torch-heavy types, only for the checker
    from circuitcat.ingest.models import LoadedModel
    from circuitcat.ingest.tasks import Task
    from circuitcat.ingest.transcoders.transcoder import TranscoderSet

app = typer.Typer(
    help="Ingest models, transcoders and circuits into the catalog.", no_args_is_help=True
)


@app.command("register")
@handle_errors
def register(
    model: Annotated[
        str, typer.Argument(help="'toy-years', a local Hugging Face folder, or a hub name.")
    ],
    transcoders: Annotated[str, typer.Option(help="Transcoder folder/file, or 'toy-years'.")],
    name: Annotated[
        str | None, typer.Option(help="Register the set under this name (a version).")
    ] = None,
    processing: ProcessingOption = None,
    activation: Annotated[
        str | None,
        typer.Option(
            help="Declare the activation the files cannot carry: 'topk:K' for a circuit-tracer "
            "TopK set (stored like a ReLU one). Recorded with the set. Default: the files'."
        ),
    ] = None,
    allow_pickle: AllowPickleOption = False,
    device: DeviceOption = "auto",
    threads: ThreadsOption = None,
    store: StoreOption = None,
) -> None:
    """Write the model, its vocabulary and heads, and one Feature node per transcoder feature.

    The model is loaded the way the transcoders were trained (the processing the set records:
    SAELens model_from_pretrained_kwargs, circuit-tracer unprocessed, ...); later jobs reload
    both from what the catalog records, from any working directory."""
    from circuitcat.ingest import inputs
    from circuitcat.ingest.register import register as register_job
    from circuitcat.ingest.transcoders.load import set_name

    dev = inputs.pick_device(device)
    inputs.set_threads(threads)
    loaded, tset = inputs.load_pair(
        model,
        transcoders,
        device=dev,
        processing=inputs.parse_processing(processing),
        allow_pickle=allow_pickle,
        activation=activation,
    )
    tset.name = set_name(name) if name else tset.name
    with open_store(store) as catalog:
        report = register_job(catalog, loaded, tset)
    verb = "already registered" if report.already_registered else "registered"
    typer.echo(
        f"{verb}: {report.set_uid} ({report.n_features} features, {report.n_tokens} "
        f"tokens, {report.n_heads} heads) in {catalog.uri}"
    )


def load_inputs(
    store: CatalogStore,
    set_uid: str | None,
    model: str | None,
    transcoders: str | None,
    device: str,
    threads: int | None = None,
    allow_pickle: bool = False,
) -> tuple[LoadedModel, TranscoderSet]:
    """The registered set's model and transcoders (or the files given in their place)."""
    from circuitcat.ingest import inputs

    inputs.set_threads(threads)
    return inputs.load_registered(
        store,
        set_uid,
        device=device,
        model=model,
        transcoders=transcoders,
        allow_pickle=allow_pickle,
    )


@app.command("features")
@handle_errors
def features(  # over 60 lines: one typer option a line; the body is ~20
    corpus: Annotated[
        str | None,
        typer.Option(help="Text file (a document a line), .jsonl ('text'), folder, or 'toy'."),
    ] = None,
    set_uid: SetOption = None,
    model: ModelOption = None,
    transcoders: TranscodersOption = None,
    n_docs: Annotated[int, typer.Option(help="Documents generated for --corpus toy.")] = 2000,
    max_tokens: Annotated[int | None, typer.Option(help="Stop after this many tokens.")] = None,
    batch_size: Annotated[int, typer.Option(help="Windows per batch.")] = 32,
    ctx: Annotated[int | None, typer.Option(help="Window length (default: model n_ctx).")] = None,
    allow_pickle: AllowPickleOption = False,
    device: DeviceOption = "auto",
    checkpoint_dir: Annotated[
        Path | None, typer.Option(help="Checkpoint folder (default: per-user cache).")
    ] = None,
    threads: ThreadsOption = None,
    shard: ShardOption = None,
    parts: PartsOption = None,
    merge: Annotated[
        Path | None,
        typer.Option(help="Merge the shards' statistics in this --parts folder and write them."),
    ] = None,
    store: StoreOption = None,
) -> None:
    """Stream a corpus through the model and transcoders and record per-feature statistics
    (density, activations, histogram, top contexts, top logits). Resumes a killed run.
    --shard i/N --parts DIR runs corpus batches b % N == i into DIR; then --merge DIR."""
    from circuitcat.catalog.parts import parse_shard
    from circuitcat.ingest.corpus import open_corpus
    from circuitcat.ingest.features import merge_features, run_features

    dev = pick_device(device)
    if (corpus is None) == (merge is None):
        raise typer.BadParameter("pass --corpus (a pass) or --merge (shards of one pass)")
    with open_store(store) as catalog, _token_progress() as progress:
        loaded, tset = load_inputs(catalog, set_uid, model, transcoders, dev, threads, allow_pickle)
        if merge is not None:
            stats = merge_features(catalog, loaded, tset, merge)
            typer.echo(f"features: merged {stats.tokens:,} tokens from {merge} into {catalog.uri}")
            return
        source = open_corpus(corpus or "", n_docs=n_docs, n_ctx=ctx or loaded.model.cfg.n_ctx)
        stats = run_features(
            catalog,
            loaded,
            tset,
            source,
            batch_size=batch_size,
            max_tokens=max_tokens,
            ctx=ctx,
            checkpoint_dir=checkpoint_dir,
            device=dev,
            progress=progress,
            shard=parse_shard(shard),
            parts=parts,
        )
    live = ", ".join(f"L{layer} {stats.live(layer)}/{tset.d_transcoder}" for layer in tset.layers)
    resumed = f" (resumed after {stats.resumed_batches} batches)" if stats.resumed_batches else ""
    typer.echo(
        f"features: {stats.set_uid}: {stats.tokens:,} tokens in {stats.seconds:.1f} s "
        f"({stats.tokens / max(stats.seconds, 1e-9):,.0f} tokens/s){resumed}; live features {live}"
    )


@app.command("weights")
@handle_errors
def weights(
    set_uid: SetOption = None,
    model: ModelOption = None,
    transcoders: TranscodersOption = None,
    top_k: Annotated[int, typer.Option(help="Sources kept per target feature.")] = 32,
    heads_per_feature: Annotated[int, typer.Option(help="Top heads kept per target.")] = 4,
    top_k_tokens: Annotated[int, typer.Option(help="Tokens kept per feature (DEEMBEDS).")] = 16,
    top_k_logits: Annotated[int, typer.Option(help="Logits kept per sign (PROMOTES).")] = 16,
    budget: Annotated[
        str,
        typer.Option(
            help="per-target: top-k sources per target over all earlier layers and routes "
            "(O(features x k) edges); per-pair: top-k per layer pair and per head (~L x heads "
            "times more)."
        ),
    ] = "per-target",
    device: DeviceOption = "auto",
    threads: ThreadsOption = None,
    shard: ShardOption = None,
    parts: PartsOption = None,
    store: StoreOption = None,
) -> None:
    """Write input-invariant connections: VIRTUAL_WEIGHT (residual, through heads and skips),
    DEEMBEDS and PROMOTES. Resumes a killed run after its last finished unit (a target layer;
    a layer pair and path with --budget per-pair). --shard i/N runs units u % N == i."""

    from circuitcat.ingest.weights_job import WeightsParams, count_units, run_weights

    params = WeightsParams(top_k, heads_per_feature, top_k_tokens, top_k_logits, budget)
    with open_store(store) as catalog:
        loaded, tset = load_inputs(
            catalog, set_uid, model, transcoders, pick_device(device), threads
        )
        target, which = job_store(catalog, shard, parts)
        with progress_bar() as bar:
            task = bar.add_task("weights", total=count_units(tset, params))
            report = run_weights(
                target,
                loaded,
                tset,
                params,
                lambda unit, done: bar.update(task, completed=done),
                shard=which,
            )
    edges = ", ".join(f"{n:,} {rel}" for rel, n in sorted(report.edges.items()))
    note = "" if report.scaled else " (unscaled: run `ingest features` first for LN scales)"
    skipped = f", resumed after {report.units_skipped} units" if report.units_skipped else ""
    typer.echo(f"weights: {edges or 'nothing new'}{skipped}{note}")


@contextmanager
def _token_progress() -> Iterator[Callable[[int, int | None], None]]:
    """A rich progress bar on stderr, fed as `progress(tokens_done, tokens_total)`."""
    from rich.progress import BarColumn, TextColumn, TimeRemainingColumn

    columns = (
        TextColumn("tokens"),
        BarColumn(),
        TextColumn("{task.fields[count]} {task.fields[rate]}"),
        TimeRemainingColumn(),
    )
    with progress_bar(*columns) as bar:
        task = bar.add_task("tokens", total=None, count="", rate="")
        t0, first = time.perf_counter(), -1

        def update(done: int, total: int | None) -> None:
            nonlocal first
            first = done if first < 0 else first  # a resumed run starts part-way
            rate = (done - first) / max(time.perf_counter() - t0, 1e-9)
            count = f"{done:,}/{total:,}" if total is not None else f"{done:,}"
            bar.update(task, completed=done, total=total, count=count, rate=f"{rate:,.0f} tok/s")

        yield update


@app.command("prompts")
@handle_errors
def prompts(
    task: Annotated[
        str, typer.Option(help="greater-than, less-than, counting, or a name for --prompts.")
    ],
    n: Annotated[
        int | None, typer.Option(help="Prompts (built-in: 100, counting 40; file: all).")
    ] = None,
    prompts_file: Annotated[
        Path | None, typer.Option("--prompts", help="JSONL: prompt, correct, incorrect.")
    ] = None,
    text: Annotated[
        list[str] | None,
        typer.Option(
            help="Your own text for a built-in task (repeatable); it builds the task's answer "
            'sets, e.g. "The war lasted from the year 1745 to the year 17".'
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed that picks a built-in task's prompts.")] = 0,
    method: Annotated[str, typer.Option(help="graph (pruned) or paths (beam search).")] = "graph",
    node_threshold: Annotated[float, typer.Option(help="Influence share of kept nodes.")] = 0.8,
    edge_threshold: Annotated[float, typer.Option(help="Score share of kept edges.")] = 0.98,
    depth: Annotated[int, typer.Option(help="--method paths: edges per path.")] = 3,
    branches: Annotated[int, typer.Option(help="--method paths: beam width.")] = 3,
    max_features: Annotated[
        int | None, typer.Option(help="Strongest active features kept per prompt (all).")
    ] = None,
    heads: Annotated[bool, typer.Option(help="Write Head -> node edges (by first hop).")] = True,
    split_edges: Annotated[
        bool, typer.Option(help="Store edges split by route instead (~7x rows).")
    ] = False,
    set_uid: SetOption = None,
    model: ModelOption = None,
    transcoders: TranscodersOption = None,
    name: Annotated[str | None, typer.Option(hidden=True)] = None,  # old spelling of --set
    device: DeviceOption = "auto",
    threads: ThreadsOption = None,
    shard: ShardOption = None,
    parts: PartsOption = None,
    store: StoreOption = None,
) -> None:
    """Write per-prompt attribution graphs of a task into the catalog.

    Each prompt is attributed to its logit-difference direction (greater-than: years > YY
    against years <= YY), the graph is pruned and written as Prompt, Target, Error nodes and
    ATTRIBUTES edges. Prompts already stored for this set are skipped. With --text, your own
    text is the prompt and the built-in task's rules give its answers (greater-than: the years
    after the text's start year are correct)."""
    from circuitcat.ingest.inputs import set_uid_for_name
    from circuitcat.ingest.prompts import PromptParams, parse_method, run_prompts

    dev = pick_device(device)
    with open_store(store) as catalog:
        set_uid = set_uid or (set_uid_for_name(catalog, name) if name else None)
        loaded, tset = load_inputs(catalog, set_uid, model, transcoders, dev, threads)
        spec = _task(task, loaded.model.tokenizer, n, seed, prompts_file, text)
        params = PromptParams(
            method=parse_method(method),
            node_threshold=node_threshold, edge_threshold=edge_threshold, depth=depth,
            branches=branches, max_features=max_features, heads=heads, split_edges=split_edges,
        )  # fmt: skip
        target, which = job_store(catalog, shard, parts)
        with _count_progress("prompts") as progress:
            r = run_prompts(target, loaded, tset, spec, params, progress=progress, shard=which)
    typer.echo(
        f"prompts: {r.task} on {r.set_uid}: {r.written} written, {r.skipped} already stored; "
        f"{r.edges:,} ATTRIBUTES rows, {r.features_per_prompt:.0f} features/prompt kept; mean "
        f"{spec.metric} {r.metric_mean:.3f}; {r.seconds:.1f} s (attribution "
        f"{r.timings['attribute']:.1f} s, writing {r.timings['write']:.1f} s)"
    )


def _task(
    name: str, tokenizer: Any, n: int | None, seed: int, file: Path | None, text: list[str] | None
) -> Task:
    """The task: ad-hoc --text (answer sets from the built-in task), a file, or built-in."""
    from circuitcat.catalog.errors import TaskError
    from circuitcat.ingest.task_text import task_from_text
    from circuitcat.ingest.tasks import load_task

    if text:
        if file is not None or n is not None:
            raise TaskError("--text gives the prompts itself: leave out --prompts and --n")
        return task_from_text(name, tokenizer, text)
    return load_task(name, tokenizer, n=n, seed=seed, prompts=file)


@contextmanager
def _count_progress(what: str) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar on stderr, fed as `progress(done, total)`."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        TextColumn,
        TimeRemainingColumn,
    )

    columns = (TextColumn(what), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with progress_bar(*columns) as bar:
        task = bar.add_task(what, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update
