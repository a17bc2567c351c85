"""The web application: the JSON API (cli/web/api.py), the pages and their static files, in one
process over one open store. Pages are static HTML whose scripts read the API; every script
and style ships inside the package (static/vendor holds d3 from npm, with its licence), so the
catalog works with no network."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from circuitcat.catalog.errors import CircuitcatError

from . import api, interventions
from .config import ServeConfig
from .errors import status_of
from .state import ServedCatalog

STATIC = Path(__file__).parent / "static"
# Pages: URL pattern -> the HTML file whose script fills it from the API.
PAGES = {
    "/": "index.html",
    "/search": "index.html",
    "/feature/{uid:path}": "feature.html",
    "/circuit/{uid:path}": "circuit.html",
    "/prompt/{uid:path}": "prompt.html",
    "/pairs": "pairs.html",
    "/compare": "compare.html",
    "/cypher": "cypher.html",
}
SECURITY_HEADERS = {
    # Nothing from elsewhere: scripts, styles, images and API calls come from this server.
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
        "form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def create_app(config: ServeConfig) -> FastAPI:
    """The app for one store; the store opens when the app starts (unless opened before, as
    `circuitcat serve` does to report a bad store at once) and closes when it stops."""
    catalog = ServedCatalog(config)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not catalog.is_open:
            catalog.open()
        try:
            yield
        finally:
            catalog.close()

    app = FastAPI(
        title="circuitcat",
        summary="A read-only catalog of transcoder feature circuits.",
        lifespan=lifespan,
        openapi_url="/api/openapi.json",
        docs_url=None,  # the stock docs page loads its scripts from a CDN
        redoc_url=None,
    )
    app.state.catalog = catalog
    app.include_router(api.router)
    app.include_router(interventions.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    for path, page in PAGES.items():
        app.add_api_route(path, _page(page), methods=["GET"], include_in_schema=False)
    _handlers(app)
    return app


def _page(name: str) -> Callable[[], FileResponse]:
    def page() -> FileResponse:
        return FileResponse(STATIC / name, media_type="text/html")

    return page


def _handlers(app: FastAPI) -> None:
    @app.exception_handler(CircuitcatError)
    async def library_error(request: Request, exc: CircuitcatError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=status_of(exc))

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        # The errors without the submitted values: a body may hold a label or a query.
        errors = [{"loc": e.get("loc"), "msg": e.get("msg")} for e in exc.errors()]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.middleware("http")
    async def headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        if request.url.path.startswith("/api/"):
            response.headers["Cache-Control"] = "no-store"
        return response
