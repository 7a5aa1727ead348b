"""/freeze-schedules one window at a time, and /one-time-unfreeze."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Response, status

from slotpool.api.deps import Admin, ServicesDep
from slotpool.api.routes.pools import PoolId
from slotpool.api.schemas import FreezeStateOut, ScheduleList, UnfreezeIn, schedule_view
from slotpool.domain.freeze import FreezeSchedule
from slotpool.domain.pools import FREEZE_ID_PATTERN
from slotpool.services.errors import NotFound

router = APIRouter(prefix="/api/v1/agent-pools/{pool_id}", tags=["freeze"])
ScheduleId = Annotated[str, Path(pattern=FREEZE_ID_PATTERN)]


@router.get("/freeze-schedules", response_model=ScheduleList)
async def list_schedules(pool_id: PoolId, services: ServicesDep, _: Admin) -> ScheduleList:
    pool = await services.pools.get(pool_id)
    return ScheduleList(
        items=[schedule_view(s) for s in pool.freeze_schedules],
        freeze=FreezeStateOut.of(services.freeze.state(pool)),
    )


@router.post(
    "/freeze-schedules", response_model=dict[str, Any], status_code=status.HTTP_201_CREATED
)
async def add_schedule(
    pool_id: PoolId, schedule: FreezeSchedule, services: ServicesDep, actor: Admin
) -> dict[str, Any]:
    added = await services.freeze.add(pool_id, schedule, by=actor)
    return schedule_view(added)


@router.get("/freeze-schedules/{schedule_id}", response_model=dict[str, Any])
async def get_schedule(
    pool_id: PoolId, schedule_id: ScheduleId, services: ServicesDep, _: Admin
) -> dict[str, Any]:
    pool = await services.pools.get(pool_id)
    for schedule in pool.freeze_schedules:
        if schedule.id == schedule_id:
            return schedule_view(schedule)
    raise NotFound(f"freeze schedule {schedule_id} not found in {pool_id}")


@router.put("/freeze-schedules/{schedule_id}", response_model=dict[str, Any])
async def replace_schedule(
    pool_id: PoolId,
    schedule_id: ScheduleId,
    schedule: FreezeSchedule,
    services: ServicesDep,
    actor: Admin,
) -> dict[str, Any]:
    replaced = await services.freeze.replace(pool_id, schedule_id, schedule, by=actor)
    return schedule_view(replaced)


@router.delete("/freeze-schedules/{schedule_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_schedule(
    pool_id: PoolId, schedule_id: ScheduleId, services: ServicesDep, actor: Admin
) -> Response:
    await services.freeze.remove(pool_id, schedule_id, by=actor)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/one-time-unfreeze", response_model=FreezeStateOut)
async def unfreeze(
    pool_id: PoolId,
    services: ServicesDep,
    actor: Admin,
    body: Annotated[UnfreezeIn | None, Body()] = None,
) -> FreezeStateOut:
    """Lift every window until ``until`` (default: the end of the active freeze)."""
    body = body or UnfreezeIn()
    state = await services.freeze.unfreeze(pool_id, until=body.until, note=body.note, by=actor)
    return FreezeStateOut.of(state)


@router.delete("/one-time-unfreeze", response_model=FreezeStateOut)
async def cancel_unfreeze(pool_id: PoolId, services: ServicesDep, actor: Admin) -> FreezeStateOut:
    state = await services.freeze.cancel_unfreeze(pool_id, by=actor)
    return FreezeStateOut.of(state)
