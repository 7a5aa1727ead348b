"""Freeze windows one at a time, and the one-time unfreeze (who lifted the freeze, until when)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from slotpool.clock import Clock
from slotpool.domain.errors import Issue
from slotpool.domain.freeze import (
    FreezeSchedule,
    FreezeState,
    freeze_ends_at,
    freeze_state,
    next_boundary,
)
from slotpool.domain.pools import Pool
from slotpool.domain.signals import Signal
from slotpool.services.errors import Conflict, Invalid, NotFound
from slotpool.services.ids import new_schedule_id
from slotpool.services.pools import edit_pool, require_pool
from slotpool.settings import Settings
from slotpool.store.uow import Store

MAX_UNFREEZE = timedelta(days=31)


class FreezeService:
    def __init__(self, store: Store, settings: Settings, clock: Clock) -> None:
        self._store = store
        self._default_tz = settings.default_timezone
        self._clock = clock

    def state(self, pool: Pool, now: datetime | None = None) -> FreezeState:
        return self.state_of(
            pool.freeze_schedules,
            unfreeze_until=pool.unfreeze.until if pool.unfreeze else None,
            now=now or self._clock(),
        )

    def state_of(
        self,
        schedules: Sequence[FreezeSchedule],
        *,
        unfreeze_until: datetime | None,
        now: datetime,
    ) -> FreezeState:
        """``state`` of a pool with these windows and this one-time unfreeze's end."""
        return freeze_state(
            schedules, now=now, default_tz=self._default_tz, unfreeze_until=unfreeze_until
        )

    def next_boundary(self, pool: Pool, now: datetime) -> datetime | None:
        """When the pool's freeze next starts or ends (the controller wakes then)."""
        return next_boundary(
            pool.freeze_schedules,
            now=now,
            default_tz=self._default_tz,
            unfreeze_until=pool.unfreeze.until if pool.unfreeze else None,
        )

    async def add(self, pool_id: str, schedule: FreezeSchedule, *, by: str) -> FreezeSchedule:
        schedule = (
            schedule if schedule.id else schedule.model_copy(update={"id": new_schedule_id()})
        )
        return await self._write(pool_id, schedule, by=by, replace=False)

    async def replace(
        self, pool_id: str, schedule_id: str, schedule: FreezeSchedule, *, by: str
    ) -> FreezeSchedule:
        if schedule.id not in (None, schedule_id):
            raise Invalid(
                "the body names another freeze schedule than the path",
                [Issue("id", f"{schedule.id} does not match the path's {schedule_id}")],
            )
        return await self._write(
            pool_id, schedule.model_copy(update={"id": schedule_id}), by=by, replace=True
        )

    async def _write(
        self, pool_id: str, schedule: FreezeSchedule, *, by: str, replace: bool
    ) -> FreezeSchedule:
        now = self._clock()
        action = "freeze_window.replace" if replace else "freeze_window.add"
        async with self._store.unit_of_work() as uow:
            # First: the windows as now.
            pool = await edit_pool(
                uow, pool_id, action=action, by=by, now=now, audited={"window_id": schedule.id}
            )
            schedules = list(pool.freeze_schedules)
            ids = [s.id for s in schedules]
            if replace and schedule.id not in ids:
                raise NotFound(f"freeze schedule {schedule.id} not found in {pool_id}")
            if not replace and schedule.id in ids:
                raise Conflict(f"freeze schedule {schedule.id} already exists in {pool_id}")
            if replace:
                schedules[ids.index(schedule.id)] = schedule
            else:
                schedules.append(schedule)
            await uow.pools.replace_schedules(pool_id, schedules, now=now)
            uow.signal(Signal.pool(pool_id))  # the controller acts on the windows now
        return schedule

    async def remove(self, pool_id: str, schedule_id: str, *, by: str) -> None:
        now = self._clock()
        async with self._store.unit_of_work() as uow:
            # First: the windows as now.
            pool = await edit_pool(
                uow,
                pool_id,
                action="freeze_window.remove",
                by=by,
                now=now,
                audited={"window_id": schedule_id},
            )
            kept = [s for s in pool.freeze_schedules if s.id != schedule_id]
            if len(kept) == len(pool.freeze_schedules):
                raise NotFound(f"freeze schedule {schedule_id} not found in {pool_id}")
            await uow.pools.replace_schedules(pool_id, kept, now=now)
            uow.signal(Signal.pool(pool_id))  # the controller acts on the windows now

    async def unfreeze(
        self, pool_id: str, *, until: datetime | None, note: str, by: str
    ) -> FreezeState:
        now = self._clock()
        async with self._store.unit_of_work() as uow:
            pool = await require_pool(uow, pool_id)
            until = until or self._end_of_active_freeze(pool, now)
            if until <= now:
                raise Invalid("nothing was saved", [Issue("until", "must be in the future")])
            if until - now > MAX_UNFREEZE:
                raise Invalid(
                    "nothing was saved",
                    [Issue("until", f"may be at most {MAX_UNFREEZE.days} days ahead")],
                )
            fields: dict[str, Any] = {
                "one_time_unfreeze_until": until,
                "one_time_unfreeze_by": by,
                "one_time_unfreeze_at": now,
                "one_time_unfreeze_note": note,
            }
            updated = await edit_pool(
                uow,
                pool_id,
                action="pool.unfreeze",
                by=by,
                now=now,
                audited={"until": until.isoformat(timespec="seconds")},
                **fields,
            )
            uow.signal(Signal.pool(pool_id))  # the controller acts on the windows now
        return self.state(updated, now)

    def _end_of_active_freeze(self, pool: Pool, now: datetime) -> datetime:
        end = freeze_ends_at(pool.freeze_schedules, now=now, default_tz=self._default_tz)
        if end is None:
            raise Conflict(
                f"no freeze window of {pool.pool_id} is active now: give 'until' to lift the "
                "windows ahead of time"
            )
        return end

    async def cancel_unfreeze(self, pool_id: str, *, by: str) -> FreezeState:
        now = self._clock()
        fields = {
            "one_time_unfreeze_until": None,
            "one_time_unfreeze_by": None,
            "one_time_unfreeze_at": None,
            "one_time_unfreeze_note": None,
        }
        async with self._store.unit_of_work() as uow:
            updated = await edit_pool(
                uow, pool_id, action="pool.unfreeze.cancel", by=by, now=now, **fields
            )
            uow.signal(Signal.pool(pool_id))  # the controller acts on the windows now
        return self.state(updated, now)
