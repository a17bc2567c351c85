"""The `circuitcat` command: thin sub-commands, one per noun, over catalog/ and ingest/."""

from __future__ import annotations

import inspect
import signal
from types import FrameType

import typer

from . import circuit, demo, feature, ingest, intervention, prompt, query, serve, store, toy

app = typer.Typer(
    name="circuitcat",
    help="A graph catalog of transcoder feature circuits in language models.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(store.app, name="store")
app.add_typer(query.app, name="query")
app.add_typer(ingest.app, name="ingest")
app.add_typer(prompt.app, name="prompt")
app.add_typer(circuit.app, name="circuit")
app.add_typer(feature.app, name="feature")
app.add_typer(intervention.app, name="intervention")
app.add_typer(toy.app, name="toy")
app.command("demo")(demo.demo)
app.command("serve")(serve.serve)


def _one_line_summaries(group: typer.Typer) -> None:
    """Each command's line in its group's list is its help's first paragraph on one line: in
    rich mode Typer keeps the docstring's line breaks there, which breaks mid-sentence."""
    for command in group.registered_commands:
        doc = command.help or inspect.getdoc(command.callback) or ""
        if command.short_help is None and doc:
            command.short_help = " ".join(doc.split("\n\n")[0].split())
    for sub in group.registered_groups:
        if sub.typer_instance is not None:
            _one_line_summaries(sub.typer_instance)


_one_line_summaries(app)


def _terminated(signum: int, _frame: FrameType | None) -> None:
    """SIGTERM (a scheduler cancelling a job, `kill`) as an exception, so the open store marks
    the job's Run failed on the way out, as Ctrl-C does."""
    raise SystemExit(128 + signum)


def main() -> None:
    signal.signal(signal.SIGTERM, _terminated)
    app()
