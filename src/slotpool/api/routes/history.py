"""/agent-pools/{pool_id}/history: a pool over a range, for the pool page's chart."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import AwareDatetime, BaseModel, Field

from slotpool.api.deps import Admin, ServicesDep
from slotpool.api.routes.pools import PoolId
from slotpool.api.schemas import EventFields
from slotpool.domain.events import Outcome
from slotpool.domain.freeze import FreezePolicy
from slotpool.domain.history import LOAD_FIELDS, SPAN_EXAMPLES, Point
from slotpool.services.history import HistoryQuery, PoolHistory

router = APIRouter(prefix="/api/v1/agent-pools/{pool_id}", tags=["pools"])


class HistoryPointOut(BaseModel):
    """The largest value of each series during the step from ``at``; all null where no sample
    was in force (the server was not sampling)."""

    at: datetime
    slots_busy: int | None
    slots_reserved: int | None
    slots_idle: int | None
    tasks_queued: int | None
    tasks_awaiting_approval: int | None
    pods_pending: int | None
    pods_starting: int | None
    pods_ready: int | None
    pods_stopping: int | None = Field(description="Draining or terminating.")
    pods_desired: int | None = Field(
        description="What the controller last decided; null where it plans nothing (static pools)."
    )

    @classmethod
    def of(cls, point: Point) -> HistoryPointOut:
        values = dict.fromkeys(LOAD_FIELDS) if point.load is None else asdict(point.load)
        return cls(at=point.at, **values)


class DecisionOut(EventFields):
    id: int
    at: datetime
    action: str = Field(description="create_pods, delete_pod, rebuild_pod, delete_stuck_pod, hold")
    reason: str
    message: str
    pod: str | None
    outcome: Outcome


class FreezeIntervalOut(BaseModel):
    start: datetime
    end: datetime
    policy: FreezePolicy
    windows: list[str] = Field(
        description="The windows in force, e.g. fs-... (Sat 01:00-03:00 UTC, scale_to_zero)"
    )


class PoolHistoryOut(BaseModel):
    pool_id: str
    since: datetime
    until: datetime
    step_seconds: int = Field(description="The time each point covers.")
    interval_seconds: int = Field(description="How often this server samples (0: never).")
    max_range_seconds: int = Field(description="The longest range one request may ask for.")
    points: list[HistoryPointOut] = Field(description="Every step from since until now or until.")
    decisions: list[DecisionOut] = Field(
        description="The controller's scaling decisions, oldest first."
    )
    freeze: list[FreezeIntervalOut] = Field(
        description="When the pool's freeze windows (as they are now) were or will be in force, "
        "without the span the current one-time unfreeze lifts."
    )

    @classmethod
    def of(cls, history: PoolHistory) -> PoolHistoryOut:
        return cls(
            pool_id=history.pool_id,
            since=history.since,
            until=history.until,
            step_seconds=int(history.step.total_seconds()),
            interval_seconds=int(history.interval.total_seconds()),
            max_range_seconds=int(history.max_span.total_seconds()),
            points=[HistoryPointOut.of(p) for p in history.points],
            decisions=[DecisionOut.of(e) for e in history.decisions],
            freeze=[
                FreezeIntervalOut(
                    start=f.start, end=f.end, policy=f.policy, windows=list(f.windows)
                )
                for f in history.freeze
            ],
        )


@router.get("/history", response_model=PoolHistoryOut)
async def pool_history(
    pool_id: PoolId,
    services: ServicesDep,
    _: Admin,
    span: Annotated[
        str | None,
        Query(
            alias="range",
            max_length=16,
            description=f"The range ending at until (default now): {SPAN_EXAMPLES}. Default 1h.",
        ),
    ] = None,
    since: Annotated[
        AwareDatetime | None, Query(description="The range's start (instead of range).")
    ] = None,
    until: Annotated[
        AwareDatetime | None, Query(description="The range's end; default now.")
    ] = None,
) -> PoolHistoryOut:
    """Slots (busy, reserved, idle), queued tasks and Pods over a range, as evenly spaced
    points; the controller's scaling decisions and the freeze intervals in it."""
    query = HistoryQuery(since=since, until=until, span=span)
    return PoolHistoryOut.of(await services.history.read(pool_id, query))
