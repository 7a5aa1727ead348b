"""Deleting what is old enough: finished tasks (with their log chunks), the log chunks of tasks
finished a while ago, pool events, pool history samples. Each call deletes one batch (at most
``limit`` rows chosen by an indexed column) and says how many it deleted, so the caller keeps
transactions short.

Only final tasks are ever touched: the status is part of every statement that deletes, not only
of the one that picks.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, delete, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from slotpool.domain.tasks import FINAL
from slotpool.store.dialect import rowcount
from slotpool.store.models import PoolEventRow, PoolSampleRow, TaskLogRow, TaskRow

_FINAL = sorted(status.value for status in FINAL)


def _finished_before(instant: datetime) -> list[ColumnElement[bool]]:
    return [TaskRow.status.in_(_FINAL), TaskRow.finished_at < instant]


class RetentionRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def delete_tasks(self, *, finished_before: datetime, limit: int) -> int:
        """Up to ``limit`` final tasks finished before the instant, oldest first, with their
        logs; returns how many tasks went."""
        ids = list(
            await self._session.scalars(
                select(TaskRow.id)
                .where(*_finished_before(finished_before))
                .order_by(TaskRow.finished_at)
                .limit(limit)
            )
        )
        if not ids:
            return 0
        await self._session.execute(delete(TaskLogRow).where(TaskLogRow.task_id.in_(ids)))
        deleted = await self._session.execute(
            delete(TaskRow).where(TaskRow.id.in_(ids), *_finished_before(finished_before))
        )
        return rowcount(deleted)

    async def delete_logs(self, *, finished_before: datetime, limit: int) -> int:
        """Up to ``limit`` log chunks of final tasks finished before the instant (the tasks
        stay); returns how many chunks went."""
        ids = list(
            await self._session.scalars(
                select(TaskLogRow.id)
                .join(TaskRow, TaskRow.id == TaskLogRow.task_id)
                .where(*_finished_before(finished_before))
                .limit(limit)
            )
        )
        if not ids:
            return 0
        finished = select(TaskRow.id).where(*_finished_before(finished_before))
        deleted = await self._session.execute(
            delete(TaskLogRow).where(TaskLogRow.id.in_(ids), TaskLogRow.task_id.in_(finished))
        )
        return rowcount(deleted)

    async def delete_events(self, *, before: datetime, limit: int) -> int:
        """Up to ``limit`` pool events recorded before the instant; returns how many went."""
        ids = list(
            await self._session.scalars(
                select(PoolEventRow.id).where(PoolEventRow.at < before).limit(limit)
            )
        )
        if not ids:
            return 0
        deleted = await self._session.execute(delete(PoolEventRow).where(PoolEventRow.id.in_(ids)))
        return rowcount(deleted)

    async def delete_samples(self, *, before: datetime, limit: int) -> int:
        """Up to ``limit`` pool history samples taken before the instant; returns how many went."""
        oldest = (
            select(PoolSampleRow.pool_id, PoolSampleRow.at)
            .where(PoolSampleRow.at < before)
            .limit(limit)
            .subquery()
        )
        deleted = await self._session.execute(
            delete(PoolSampleRow).where(
                tuple_(PoolSampleRow.pool_id, PoolSampleRow.at).in_(select(oldest))
            )
        )
        return rowcount(deleted)
