"""Time as the control plane reads it: a ``Clock`` is passed in wherever "now" is needed, so tests
and benchmarks can move time, and the pure domain takes ``now`` as a parameter instead."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The real clock: timezone-aware UTC."""
    return datetime.now(UTC)
