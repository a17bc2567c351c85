"""`circuitcat ingest ...`: jobs that load a model and transcoders and write into the catalog.

Heavy imports (torch, transformer_lens) happen inside the commands, so the rest of the CLI
starts fast.
"""

from __future__ import annotations

from typing import Annotated

import typer

from circuitcat.catalog import open_store

from .common import StoreOption, handle_errors

app = typer.Typer(
    help="Ingest models, transcoders and circuits into the catalog.", no_args_is_help=True
)

DeviceOption = Annotated[str, typer.Option(help="torch device: auto, cpu, cuda, cuda:1 ...")]


def pick_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


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
    allow_pickle: Annotated[
        bool, typer.Option(help="Allow .pt pickles (trusted files only).")
    ] = False,
    device: DeviceOption = "auto",
    store: StoreOption = None,
) -> None:
    """Write the model, its vocabulary and heads, and one Feature node per transcoder feature."""
    from circuitcat.ingest.models import load_model
    from circuitcat.ingest.register import register as register_job
    from circuitcat.ingest.transcoders.load import load_transcoders

    dev = pick_device(device)
    loaded = load_model(model, dev)
    tset = load_transcoders(transcoders, loaded, allow_pickle=allow_pickle, device=dev)
    if name:
        tset.name = name
    with open_store(store) as s:
        report = register_job(s, loaded, tset)
    verb = "already registered" if report.already_registered else "registered"
    typer.echo(
        f"{verb}: {report.set_uid} ({report.n_features} features, {report.n_tokens} "
        f"tokens, {report.n_heads} heads) in {s.uri}"
    )
