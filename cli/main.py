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


def _reflow_help(group: typer.Typer) -> None:
    """Each command's help as paragraphs of flowing text: in rich mode Typer keeps a docstring's
    line breaks, so at any terminal width but the source's the text breaks mid-sentence (in the
    command's own help and, for its first paragraph, in its group's list of commands). Every
    help paragraph here is prose; a blank line still separates paragraphs."""
    for command in group.registered_commands:
        doc = command.help or inspect.getdoc(command.callback) or ""
        if doc:
            paragraphs = [" ".join(p.split()) for p in doc.split("\n\n")]
            command.help = "\n\n".join(paragraphs)
            command.short_help = command.short_help or paragraphs[0]
    for sub in group.registered_groups:
        if sub.typer_instance is not None:
            _reflow_help(sub.typer_instance)


_reflow_help(app)


def _terminated(signum: int, _frame: FrameType | None) -> None:
    """SIGTERM (a scheduler cancelling a job, `kill`) as an exception, so the open store marks
    the job's Run failed on the way out, as Ctrl-C does."""
    raise SystemExit(128 + signum)


def main() -> None:
    signal.signal(signal.SIGTERM, _terminated)
    app()
