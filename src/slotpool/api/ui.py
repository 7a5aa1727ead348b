"""Serves the admin web UI (``ui/dist``, built by scripts/bootstrap) at ``/``.

Files that exist in the build are served as they are; any other GET of a non-API path answers the
SPA's ``index.html`` so that its client-side routes (``/pools/...``) survive a reload. API paths,
the OpenAPI docs, metrics and health endpoints are never shadowed: the UI's mount matches none of
their prefixes, so an unknown ``/api/...`` path still gets the API's JSON 404 (or 405).
"""

from __future__ import annotations

from pathlib import Path

import structlog
from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Match, Mount
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from slotpool.settings import Settings

log = structlog.get_logger(__name__)

# Paths owned by the server itself: never answered with the UI's index.html.
RESERVED = (
    "/api",
    "/docs",
    "/docs-assets",
    "/redoc",
    "/openapi.json",
    "/metrics",
    "/healthz",
    "/readyz",
)


NOT_BUILT = (
    "slotpool: this server has no web UI: it was started without a built one.\n"
    "Build it with scripts/bootstrap (it builds ui/dist) or point SLOTPOOL_UI_DIR at a built UI\n"
    "(the image has it). The API answers under /api/v1; its documentation is at /docs.\n"
)


def default_ui_dir() -> Path:
    """``ui/dist`` of the source checkout (src layout, editable install)."""
    return Path(__file__).resolve().parents[3] / "ui" / "dist"


def reserved(path: str) -> bool:
    return any(path == prefix or path.startswith(prefix + "/") for prefix in RESERVED)


class SinglePageApp(StaticFiles):
    """Static files, with index.html for unknown non-API paths (client-side routes)."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        try:
            return await super().get_response(path, scope)
        except HTTPException as exc:
            if exc.status_code != 404:
                raise
        assert self.directory is not None
        index = Path(self.directory) / "index.html"
        return FileResponse(index, headers={"Cache-Control": "no-cache"})


class UiMount(Mount):
    """Mounted at ``/`` but matching no reserved path, so the API keeps its own 404 and 405."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http" and reserved(scope["path"]):
            return Match.NONE, {}
        return super().matches(scope)


async def _not_built(request: Request) -> Response:
    return PlainTextResponse(NOT_BUILT, status_code=404)


def mount(app: FastAPI, settings: Settings) -> None:
    """Mount the built UI at ``/`` if it exists; the API works without it, and ``/`` says why
    there is no UI (the directory looked in is logged, not shown to whoever asks)."""
    directory = settings.ui_dir or default_ui_dir()
    if not (directory / "index.html").is_file():
        log.info(
            "web UI not built; serving the API only",
            ui_dir=str(directory),
            hint="run scripts/bootstrap (it builds ui/dist) or set SLOTPOOL_UI_DIR",
        )
        app.add_route("/", _not_built, methods=["GET"], include_in_schema=False)
        return
    app.router.routes.append(
        UiMount("/", app=SinglePageApp(directory=directory, html=True), name="ui")
    )
    log.debug("web UI mounted", ui_dir=str(directory))
