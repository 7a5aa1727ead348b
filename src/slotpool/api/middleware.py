"""Two small pure-ASGI middlewares around the whole app (API, UI, docs, metrics).

* ``RequestSizeLimit``: a body above ``SLOTPOOL_MAX_REQUEST_BYTES`` is answered 413 with the usual
  error body. A declared ``Content-Length`` above the limit is refused before a byte of the body
  is read (and before any token is looked at); a body without one is counted as it arrives and
  cut off once it passes the limit.
* ``SecurityHeaders``: every answer says ``nosniff``, may not be framed, sends no referrer, and
  carries a Content-Security-Policy: the one an answer sets itself (the OpenAPI docs' pages, see
  ``docs``), else one that allows the built UI's own files and nothing else: its scripts and
  styles are same-origin files, without inline code.
"""

from __future__ import annotations

import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from slotpool.api.errors import error_body
from slotpool.domain.errors import Issue

LIMIT_SETTING = "SLOTPOOL_MAX_REQUEST_BYTES"


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` once a streamed body passes the limit. An HTTPException, so that
    FastAPI's body reading lets it through to the one error handler (``errors._http``)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, too_large_message(limit))
        self.limit = limit


def too_large_message(limit: int) -> str:
    return f"request body too large: at most {limit} bytes are accepted ({LIMIT_SETTING})"


def too_large_body(limit: int, size: int | None) -> dict[str, object]:
    said = "is larger than the limit" if size is None else f"is {size} bytes"
    issue = Issue("(body)", f"{said}; the limit is {limit} bytes", f"{LIMIT_SETTING} on the server")
    return error_body(too_large_message(limit), [issue])


async def _answer_json(send: Send, status: int, body: dict[str, object]) -> None:
    content = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(content)).encode()),
                (b"connection", b"close"),  # the rest of the body is not read
            ],
        }
    )
    await send({"type": "http.response.body", "body": content})


def declared_length(scope: Scope) -> int | None:
    """The request's Content-Length, None without one, -1 if it is not a number."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else -1
    return None


class RequestSizeLimit:
    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = declared_length(scope)
        if declared == -1:
            body = error_body("invalid Content-Length header", [])
            await _answer_json(send, 400, body)
            return
        if declared is not None and declared > self.max_bytes:
            await _answer_json(send, 413, too_large_body(self.max_bytes, declared))
            return
        received = 0
        started = False
        overflowed = False

        async def counted() -> Message:
            nonlocal received, overflowed
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    overflowed = True
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if overflowed:
                    # The rest of the body is never read: the connection cannot carry another
                    # request, so the answer says so and the server closes it after the answer
                    # (without it, the server may wait for the rest of a body that never ends).
                    headers = [(k, v) for k, v in message.get("headers", []) if k != b"connection"]
                    message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except BodyTooLarge:
            # A part of the app that reads bodies outside FastAPI's own reading (which answers
            # through the error handler) lets it out: answered here if nothing was sent yet.
            if started:
                raise
            await _answer_json(send, 413, too_large_body(self.max_bytes, None))


# The built UI loads ``/assets/*.js`` and ``/assets/*.css`` from its own origin and talks to the
# API on the same origin; it has no inline scripts or styles (React sets styles through the
# CSSOM, which a policy does not govern).
UI_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
# Added to every answer that does not set the header itself.
ALWAYS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy", UI_POLICY.encode()),
)


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name.lower() for name, _ in message.get("headers", [])}
                added = [(n, v) for n, v in ALWAYS if n not in names]
                message = {**message, "headers": [*message.get("headers", []), *added]}
            await send(message)

        await self.app(scope, receive, with_headers)
