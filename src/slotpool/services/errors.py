"""The errors a use case can answer with; the API maps each to one status code in one handler."""

from __future__ import annotations

from collections.abc import Sequence

from slotpool.domain.errors import Issue


class ServiceError(Exception):
    status = 400

    def __init__(self, message: str, details: Sequence[Issue] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.details = tuple(details)


class NotFound(ServiceError):
    status = 404


class Conflict(ServiceError):
    status = 409


class Invalid(ServiceError):
    status = 422


class PreconditionFailed(ServiceError):
    status = 412


class Unauthorized(ServiceError):
    status = 401


class Forbidden(ServiceError):
    status = 403


class RuntimeUnavailable(ServiceError):
    """The runtime (the Kubernetes API server) failed or refused a request slotpool made."""

    status = 502
