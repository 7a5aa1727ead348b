"""One place that turns every failure into ``{"error": ..., "details": [...]}`` with its status.

FastAPI's own 422 is rewritten too, so a misplaced ``cpu_limit`` in a request body gets the same
"it belongs at resources.limits.cpu" answer as it would from the CLI or a stored-config check.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from slotpool.domain.bounds import capped, more_issues
from slotpool.domain.config import issue_from_error
from slotpool.domain.errors import ConfigInvalid, Issue
from slotpool.services.errors import ServiceError, Unauthorized
from slotpool.store.errors import DatabaseUnavailable, TransactionAborted

log = structlog.get_logger(__name__)


def error_body(message: str, details: Sequence[Issue] = ()) -> dict[str, Any]:
    return {"error": message, "details": [issue.as_dict() for issue in details]}


def _strip_for(loc: Sequence[Any]) -> int:
    return 1 if loc and loc[0] in ("body", "query", "path", "header") else 0


def _issue(error: Mapping[str, Any]) -> Issue:
    source = error["loc"][0] if error["loc"] else "body"
    issue = issue_from_error(error, strip=_strip_for(error["loc"]))
    return issue if source == "body" else Issue(f"{source}.{issue.path}", issue.message, issue.hint)


async def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    issues = capped((_issue(error) for error in errors), len(errors), more_issues)
    summary = "invalid request: nothing was saved" if request.method != "GET" else "invalid request"
    return JSONResponse(status_code=422, content=error_body(summary, issues))


async def _service(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthorized) else None
    return JSONResponse(
        status_code=exc.status, content=error_body(exc.message, exc.details), headers=headers
    )


async def _config_invalid(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ConfigInvalid)
    return JSONResponse(status_code=422, content=error_body(exc.summary, exc.issues))


async def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return JSONResponse(
        status_code=exc.status_code,
        content=error_body(str(exc.detail)),
        headers=getattr(exc, "headers", None),
    )


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(
        status_code=503,
        content=error_body("the connection to the database was lost; nothing was saved, retry"),
        headers={"Retry-After": "1"},
    )


async def _transaction_aborted(request: Request, exc: Exception) -> JSONResponse:
    log.warning("transaction aborted by the database", path=request.url.path, error=str(exc))
    return JSONResponse(
        status_code=503,
        content=error_body("a concurrent change got in the way; nothing was saved, retry"),
        headers={"Retry-After": "1"},
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", path=request.url.path, method=request.method)
    return JSONResponse(status_code=500, content=error_body("internal error; see the server log"))


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(ServiceError, _service)
    app.add_exception_handler(ConfigInvalid, _config_invalid)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(DatabaseUnavailable, _database_unavailable)
    app.add_exception_handler(TransactionAborted, _transaction_aborted)
    app.add_exception_handler(Exception, _unexpected)
