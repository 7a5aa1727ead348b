"""A pool event: one decision or action of the controller, kept so that "why did this pool
scale?" has an answer (the inputs it saw, what it did or held back, and the reason)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class Outcome(StrEnum):
    planned = "planned"  # decided; what follows says whether it was done
    done = "done"
    failed = "failed"
    held = "held"  # deliberately not done (freeze, max_replicas, back-off, busy slots...)


@dataclass(frozen=True)
class PoolEvent:
    id: int
    pool_id: str
    at: datetime
    action: str
    reason: str
    message: str
    pod: str | None
    outcome: Outcome
    inputs: dict[str, Any]


@dataclass(frozen=True)
class NewEvent:
    action: str
    reason: str
    message: str
    outcome: Outcome
    inputs: dict[str, Any]
    pod: str | None = None


def minute_utc(instant: datetime | None) -> str:
    """An instant as event messages write it, e.g. "2026-11-20 18:00 UTC" ("" for None)."""
    return "" if instant is None else instant.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
