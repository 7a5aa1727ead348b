"""The OpenAPI docs (``/docs``: Swagger UI, ``/redoc``: ReDoc) on assets this server ships.

FastAPI's own pages load Swagger UI and ReDoc from a CDN, so without outside network access
``/docs`` (where an admin pastes the token) is blank. The scripts and the stylesheet come from
the ``fastapi-offline`` package instead, served under ``ASSETS_URL``. Each page carries a
Content-Security-Policy allowing this origin's files and the page's own inline code (Swagger UI's
bootstrap script by its hash; ReDoc's init script and styles by a nonce made for each answer):
nothing else runs on the page that takes the token.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
from html import escape
from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse

DOCS_URL = "/docs"
REDOC_URL = "/redoc"
ASSETS_URL = "/docs-assets"
# The package's copies of swagger-ui-dist (swagger-ui-bundle.js, swagger-ui.css), ReDoc's
# standalone bundle (redoc.standalone.js) and FastAPI's favicon.
ASSETS_DIR = Path(str(files("fastapi_offline") / "static"))

_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)

# FastAPI's ReDoc page, made here with a nonce: ReDoc's styled-components add <style> elements
# as it renders, which the policy allows by the nonce ReDoc gives them. Browsers hide an
# element's nonce attribute from scripts, so the nonce reaches ReDoc through its init call.
REDOC_PAGE = """<!DOCTYPE html>
<html>
<head>
<title>{title}</title>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="shortcut icon" href="{favicon}">
<style nonce="{nonce}">body {{ margin: 0; padding: 0; }}</style>
</head>
<body>
<noscript>ReDoc needs JavaScript to show the documentation.</noscript>
<div id="redoc"></div>
<script src="{script}"></script>
<script nonce="{nonce}">
Redoc.init({spec}, {{nonce: document.currentScript.nonce}}, document.getElementById("redoc"));
</script>
</body>
</html>
"""


# Two <style> elements ReDoc's bundle adds as it loads, before it is given the nonce: an empty one
# (styled-components' first sheet) and perfect-scrollbar's stylesheet. Allowed by their hashes:
# fixed text of the pinned bundle (a changed bundle shows as a violation in the browser test).
REDOC_LOAD_STYLES = (
    "'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='",
    "'sha256-QMIg+bpjm3JdElJ388KYke01izlUW0UoNOeKjpMxdgc='",
)


def script_hashes(html: str) -> list[str]:
    """The CSP source expressions allowing each inline script of the page, by its hash."""
    return [
        f"'sha256-{base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()}'"
        for body in _INLINE_SCRIPT.findall(html)
    ]


def docs_policy(*, scripts: list[str], styles: list[str], workers: tuple[str, ...] = ()) -> str:
    """A docs page's Content-Security-Policy: this origin's files, and the page's own inline
    code as ``scripts`` and ``styles`` allow it (hashes, a nonce); nothing else. Both pages draw
    icons as ``data:`` images.
    """
    return "; ".join(
        (
            "default-src 'self'",
            " ".join(("script-src 'self'", *scripts)),
            " ".join(("style-src 'self'", *styles)),
            "img-src 'self' data:",
            "font-src 'self'",
            "connect-src 'self'",
            " ".join(("worker-src 'self'", *workers)),
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        )
    )


def serve_docs(app: FastAPI) -> None:
    """Serve ``/docs``, ``/redoc`` and their assets; the app is made with both URLs ``None``."""
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS_DIR), name="docs-assets")
    title = app.title

    @app.get(DOCS_URL, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        page = get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{title} - Swagger UI",
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            oauth2_redirect_url=None,  # no OAuth2 flow: the API takes bearer tokens
            swagger_ui_parameters=app.swagger_ui_parameters,
        )
        inline = script_hashes(bytes(page.body).decode())
        page.headers["Content-Security-Policy"] = docs_policy(scripts=inline, styles=[])
        return page

    @app.get(REDOC_URL, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        nonce = secrets.token_urlsafe(18)
        page = REDOC_PAGE.format(
            title=escape(f"{title} - ReDoc"),
            favicon=escape(f"{root}{ASSETS_URL}/favicon.png"),
            spec=json.dumps(f"{root}{app.openapi_url}").replace("<", "\\u003c"),
            script=escape(f"{root}{ASSETS_URL}/redoc.standalone.js"),
            nonce=nonce,
        )
        allowed = f"'nonce-{nonce}'"
        policy = docs_policy(
            scripts=[allowed],
            styles=[allowed, *REDOC_LOAD_STYLES],
            workers=("blob:",),  # ReDoc's search runs in a worker made from a blob: URL
        )
        return HTMLResponse(page, headers={"Content-Security-Policy": policy})
