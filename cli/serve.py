"""`circuitcat serve`: the catalog as a read-only HTTP API and web pages (cli/web/)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import StoreOption, err_console, handle_errors


@handle_errors
def serve(
    store: StoreOption = None,
    host: Annotated[
        str, typer.Option(help="Address to listen on; 0.0.0.0 for every interface.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    tokens_file: Annotated[
        Path | None,
        typer.Option(
            envvar="CIRCUITCAT_SERVE_TOKENS_FILE",
            help="File of user:token lines allowed to write labels (also CIRCUITCAT_SERVE_TOKENS"
            "=user:token,...). No tokens: nothing can be written.",
            show_default=False,
        ),
    ] = None,
    cypher_timeout: Annotated[
        float, typer.Option(help="Seconds an ad hoc Cypher query may run before it is stopped.")
    ] = 10.0,
    cypher_rows: Annotated[
        int, typer.Option(help="Most rows an ad hoc Cypher query returns.")
    ] = 1000,
    access_log: Annotated[
        bool,
        typer.Option(help="Log every request (method, path; query values written as ***)."),
    ] = True,
) -> None:
    """Serve the catalog: a JSON API (OpenAPI at /api/openapi.json) and web pages for features,
    circuits, prompt graphs and search, read-only except for labels written with a token.

    Works offline: every script ships inside the package. For a team, run it behind a reverse
    proxy that adds TLS (docs/serve.md)."""
    import uvicorn

    from .web import ServeConfig, create_app, load_tokens
    from .web.logs import log_config

    config = ServeConfig(
        store=store,
        cypher_timeout_s=cypher_timeout,
        cypher_row_limit=cypher_rows,
        tokens=load_tokens(tokens_file),
    )
    app = create_app(config)
    app.state.catalog.open()  # a store that cannot open is one red line, before listening
    writers = ", ".join(sorted(config.tokens)) or "nobody (read-only)"
    err_console.print(f"circuitcat serve on http://{host}:{port}/  labels: {writers}")
    uvicorn.run(
        app,
        host=host,
        port=port,
        access_log=access_log,
        log_level="info",
        log_config=log_config(),
    )
