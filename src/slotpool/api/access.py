"""The access line: one per request, written once the answer has been sent (or has failed).

A pure-ASGI middleware around the whole app, outermost, so that what the other middlewares
refuse (a body too large: 413) has its line too. The line of logger ``slotpool.access`` says:

* ``request_id``: the caller's ``X-Request-ID`` when it is a sane one (1 to 128 letters, digits
  and ``._:-``), a new one otherwise; the answer carries it back in ``X-Request-ID``, and every
  other line written while the request is served (an audit line, an error) carries it too;
* ``method``, ``path`` (never the query string: its values could hold secrets), ``status``,
  ``duration_ms``;
* ``who``: ``admin:<token name>``, ``agent:<pool id>/<pod name>`` (an agent's credential) or
  ``pool-token:<pool id>/<token name>`` (a pool token registering an agent); none for a caller
  that was not authenticated. The authentication dependencies say who it was (``identify``),
  from what they read anyway: no database read of its own.

``SLOTPOOL_ACCESS_LOG``: ``on`` (every request except successful probes and scrapes of
``/healthz``, ``/readyz`` and ``/metrics``), ``all``, or ``off``.
"""

from __future__ import annotations

import re
import time
import uuid
from contextvars import ContextVar
from dataclasses import dataclass, field

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = structlog.get_logger("slotpool.access")

HEADER = b"x-request-id"
SANE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")
QUIET_PATHS = ("/healthz", "/readyz", "/metrics")
MODES = ("on", "all", "off")


@dataclass
class Caller:
    """Who the request's caller turned out to be (filled in by the authentication)."""

    who: str | None = None
    fields: dict[str, str] = field(default_factory=dict)


_caller: ContextVar[Caller | None] = ContextVar("slotpool_access_caller", default=None)


def identify(who: str, **fields: str) -> None:
    """Record who the current request's caller is, for its access line."""
    caller = _caller.get()
    if caller is not None:
        caller.who = who
        caller.fields.update(fields)


def request_id_of(scope: Scope) -> str:
    """The caller's request id if it is a sane one, a new one otherwise."""
    headers: list[tuple[bytes, bytes]] = scope["headers"]
    for name, value in headers:
        if name == HEADER and SANE_REQUEST_ID.fullmatch(value):
            return value.decode()
    return uuid.uuid4().hex


def _quiet(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in QUIET_PATHS)


class AccessLog:
    def __init__(self, app: ASGIApp, *, mode: str = "on") -> None:
        if mode not in MODES:
            raise ValueError(f"access log mode {mode!r} is not one of {', '.join(MODES)}")
        self.app = app
        self.mode = mode

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = request_id_of(scope)
        caller = Caller()
        status = 500  # unless an answer starts: the app failed before answering
        started = time.perf_counter()

        async def stamped(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [(n, v) for n, v in message.get("headers", []) if n.lower() != HEADER]
                message = {**message, "headers": [*headers, (HEADER, rid.encode())]}
            await send(message)

        reset = _caller.set(caller)
        try:
            with structlog.contextvars.bound_contextvars(request_id=rid):
                try:
                    await self.app(scope, receive, stamped)
                finally:
                    self._write(scope, rid, status, time.perf_counter() - started, caller)
        finally:
            _caller.reset(reset)

    def _write(
        self, scope: Scope, request_id: str, status: int, seconds: float, caller: Caller
    ) -> None:
        path: str = scope["path"]
        if self.mode == "off" or (self.mode == "on" and status < 400 and _quiet(path)):
            return
        log.info(
            "request",
            request_id=request_id,
            method=scope["method"],
            path=path,
            status=status,
            duration_ms=round(seconds * 1000, 1),
            who=caller.who,
            **caller.fields,
        )
