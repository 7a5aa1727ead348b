"""What the use cases need from the pool controller, which sits above them in the layers.

Saving a configuration, rotating the Secret's token and deleting a pool each need a pass over the
pool, a wake-up for it, or to have it forgotten. The services name that here (``PoolPasses``), the
controller implements it, and the application hands the one to the other when it starts
(``api/app.py``), so the services never import the controller. The pass's report is defined here
for the same reason: the routes and the services both read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from slotpool.domain.inventory import PendingPod


@dataclass(frozen=True)
class SyncReport:
    """What one pass did, pod by pod, and the decision behind it."""

    secret: str = "unchanged"
    adopted: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    rebuilt: list[str] = field(default_factory=list)
    ended: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    kept_busy: list[str] = field(default_factory=list)
    pending: list[PendingPod] = field(default_factory=list)
    frozen: bool = False
    failures: list[str] = field(default_factory=list)
    decision: dict[str, Any] = field(default_factory=dict)


class RuntimeFailed(Exception):
    """The runtime refused or failed a step of a pass; ``report`` says what was done before."""

    def __init__(self, message: str, report: SyncReport) -> None:
        super().__init__(message)
        self.report = report


class PoolPasses(Protocol):
    """The pool controller as the use cases see it."""

    async def run_pass(self, pool_id: str, *, check_secret: bool) -> SyncReport:
        """One pass over the pool now (after any pass already running for it); raises
        ``RuntimeFailed`` when the runtime failed a step, ``Conflict`` when this server keeps
        no Pods for the pool, ``NotFound`` when it does not exist."""
        ...

    async def settle(self, pool_id: str) -> None:
        """Returns once the Pod creations the pool's passes started have ended (recorded)."""
        ...

    def forget(self, pool_id: str) -> None:
        """The pool is gone: drop what the controller remembers of it."""
        ...
