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
from starlette.responses import FileResponse, Response
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


def mount(app: FastAPI, settings: Settings) -> None:
    """Mount the built UI at ``/`` if it exists; the API works without it."""
    directory = settings.ui_dir or default_ui_dir()
    if not (directory / "index.html").is_file():
        log.info(
            "web UI not built; serving the API only",
            ui_dir=str(directory),
            hint="run scripts/bootstrap (it builds ui/dist) or set SLOTPOOL_UI_DIR",
        )
        return
    app.router.routes.append(
        UiMount("/", app=SinglePageApp(directory=directory, html=True), name="ui")
    )
    log.debug("web UI mounted", ui_dir=str(directory))
