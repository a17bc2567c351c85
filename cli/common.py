"""What every command shares: the --store option, the --format option, `read_store` (how every
command that only reads opens the catalog), and the one place where library errors become a red
line on stderr and exit code 1."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, ProgressColumn

from circuitcat.catalog import CatalogStore, open_store
from circuitcat.catalog.errors import CircuitcatError

P = ParamSpec("P")
R = TypeVar("R")

err_console = Console(stderr=True)


def progress_bar(*columns: str | ProgressColumn) -> Progress:
    """A transient progress bar on stderr. Off where stderr is not a terminal: there rich
    draws nothing useful, only a blank line when it stops."""
    return Progress(
        *columns, console=err_console, transient=True, disable=not err_console.is_terminal
    )


class Format(StrEnum):
    table = "table"
    json = "json"
    jsonl = "jsonl"
    csv = "csv"


SetOption = Annotated[
    str | None,
    typer.Option("--set", help="Transcoder set uid, e.g. toy-years/tc-v1 (default: the only one)."),
]
ModelOption = Annotated[
    str | None,
    typer.Option(help="Model to load in place of the registered one (a moved folder)."),
]
TranscodersOption = Annotated[
    str | None,
    typer.Option(help="Transcoders to load in place of the registered ones (a moved folder)."),
]
DeviceOption = Annotated[str, typer.Option(help="torch device: auto, cpu, cuda, cuda:1 ...")]
ThreadsOption = Annotated[
    int | None,
    typer.Option(help="torch CPU threads (default: half the cores, at most 8; 1 on 2 cores)."),
]
ProcessingOption = Annotated[
    str | None,
    typer.Option(
        help="Model processing, only for a set that records none: none, default "
        "(transformer_lens from_pretrained), or flags such as fold_ln,center_writing_weights "
        "(default: what the set records)."
    ),
]
AllowPickleOption = Annotated[bool, typer.Option(help="Allow .pt pickles (trusted files only).")]
ShardOption = Annotated[
    str | None,
    typer.Option(help="Run shard i of N (e.g. 0/3): one part of the work, for one GPU or task."),
]
PartsOption = Annotated[
    Path | None,
    typer.Option(
        help="Write to this folder as Parquet parts instead of the catalog; load them later "
        "with `circuitcat store load`."
    ),
]
StoreOption = Annotated[
    str | None,
    typer.Option(
        "--store",
        envvar="CIRCUITCAT_STORE",
        help="Catalog location: a folder or .lbug file for the embedded store, or a "
        "bolt:// / neo4j:// URI (credentials from CIRCUITCAT_NEO4J_USER/_PASSWORD). "
        "Default: a per-user data folder.",
        show_default=False,
    ),
]
FormatOption = Annotated[Format, typer.Option("--format", "-f", help="Output format.")]


def read_store(store: str | None) -> CatalogStore:
    """The catalog for a command that only reads, opened read-only: `with read_store(store) as
    catalog: ...`. No byte of an embedded file changes; it opens while a writer (an ingest job,
    a label-writing `serve`) holds it, waiting with a message while the writer checkpoints; a
    location without a catalog is one error line, never a new catalog. Every command that only
    reads opens the catalog through here; commands that write use `open_store(store)`."""
    return open_store(store, read_only=True, on_wait=_say_waiting)


def existing_store(store: str | None) -> CatalogStore:
    """The catalog for a command that writes into one that must exist already (a label, a
    `--write` query): like `open_store(store)`, but a location without a catalog is one error
    line, never a new catalog. Only `store init` and the ingest jobs create catalogs."""
    from circuitcat.catalog.ladybug_store import database_file, require_catalog
    from circuitcat.catalog.store import resolve_settings

    settings = resolve_settings(store)
    if not settings.is_neo4j:
        require_catalog(database_file(settings.uri))
    return open_store(store)


def _say_waiting(message: str) -> None:
    err_console.print(f"[yellow]{escape(message)}[/yellow]", highlight=False, soft_wrap=True)


def handle_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn a CircuitcatError into one red line and exit code 1 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except CircuitcatError as e:
            err_console.print(
                f"[red]error:[/red] {escape(str(e))}", highlight=False, soft_wrap=True
            )
            raise typer.Exit(1) from e

    return wrapper


def parse_params(pairs: list[str] | None) -> dict[str, Any]:
    """`k=v` pairs; v is read as JSON when it parses (numbers, lists, true/null), else a string."""
    params: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{pair!r} is not key=value", param_hint="--param")
        try:
            params[key] = json.loads(raw)
        except json.JSONDecodeError:
            params[key] = raw
    return params


def pick_device(device: str) -> str:
    """`auto` -> cuda when torch sees a GPU, else cpu (torch is imported only here)."""
    from circuitcat.ingest.inputs import pick_device as pick

    return pick(device)


def job_store(catalog: Any, shard: str | None, parts: Path | None) -> tuple[Any, Any]:
    """(store the job writes to, its Shard): the catalog, or parts of one shard."""
    from circuitcat.catalog.parts import PartsWriter, ShardStore, parse_shard

    which = parse_shard(shard)
    if parts is None:
        return catalog, which
    return ShardStore(catalog, PartsWriter(parts, which)), which
