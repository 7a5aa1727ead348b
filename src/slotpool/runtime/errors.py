"""The two kinds of runtime failure a caller has to tell apart, and the one mapping onto them.

A reconciler only needs to know whether to try again later or to stop and report: a
``TemporaryRuntimeError`` (throttled, server trouble, a lost race, the network) is retried after a
delay; a ``PermanentRuntimeError`` (refused as invalid or forbidden) is reported with the server's
own words, because retrying the same request cannot succeed. Both carry the HTTP status (``None``
when no answer came back) and the message. ``runtime_error_from`` is the only place that decides
which is which for a failed Kubernetes API call.
"""

from __future__ import annotations

from typing import cast

# lightkube's HTTP client: what a failed call raises (lightkube.ApiError is one of its errors).
import httpx2
from lightkube import ApiError

# 408 timeout, 409 conflict (lost an optimistic-concurrency race), 410 gone (list again), 429.
_TEMPORARY_STATUSES = frozenset({408, 409, 410, 429})


class RuntimeApiError(Exception):
    """A runtime call failed; ``status`` is the HTTP status, None if no answer came back."""

    def __init__(self, *, status: int | None, message: str) -> None:
        super().__init__(f"{status}: {message}" if status is not None else message)
        self.status = status
        self.message = message


class TemporaryRuntimeError(RuntimeApiError):
    """Retry later: throttled (429), server errors (5xx), conflicts (409), timeouts, network."""


class PermanentRuntimeError(RuntimeApiError):
    """Do not retry as is: invalid (400/422), forbidden (403, Pod Security admission), not found."""


def runtime_error_from(exc: Exception) -> RuntimeApiError:
    """The one mapping of a failed API call: temporary (retry later) or permanent (report)."""
    status, message = _status_and_message(exc)
    temporary = status is None or status in _TEMPORARY_STATUSES or status >= 500
    kind = TemporaryRuntimeError if temporary else PermanentRuntimeError
    return kind(status=status, message=message)


def _status_and_message(exc: Exception) -> tuple[int | None, str]:
    if isinstance(exc, ApiError):  # the server's Status: keep its words (e.g. Pod Security's)
        response = cast(httpx2.Response | None, exc.response)  # None for a watch's ERROR event
        code = exc.status.code or (response.status_code if response is not None else None)
        return code, exc.status.message or str(exc)
    if isinstance(exc, httpx2.HTTPStatusError):  # lightkube does not convert a watch's own
        return exc.response.status_code, _body(exc.response) or str(exc)
    if isinstance(exc, httpx2.TimeoutException):
        return None, f"timed out talking to the API server ({type(exc).__name__})"
    return None, f"could not reach the API server: {exc!r}"


def _body(response: httpx2.Response) -> str:
    try:
        return response.text[:1000]
    except httpx2.StreamError:  # a streamed (watch) response is closed unread
        return ""
