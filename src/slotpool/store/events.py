"""The pool event log: appended by the controller, read newest first, pruned per pool."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from slotpool.domain.events import NewEvent, Outcome, PoolEvent
from slotpool.store.models import PoolEventRow


def _event(row: PoolEventRow) -> PoolEvent:
    return PoolEvent(
        id=row.id,
        pool_id=row.pool_id,
        at=row.at,
        action=row.action,
        reason=row.reason,
        message=row.message,
        pod=row.pod,
        outcome=Outcome(row.outcome),
        inputs=dict(row.inputs),
    )


class PoolEventRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, pool_id: str, events: Sequence[NewEvent], *, now: datetime) -> None:
        for event in events:
            self._session.add(
                PoolEventRow(
                    pool_id=pool_id,
                    at=now,
                    action=event.action,
                    reason=event.reason,
                    message=event.message,
                    pod=event.pod,
                    outcome=event.outcome.value,
                    inputs=event.inputs,
                )
            )
        await self._session.flush()

    async def page(
        self, pool_id: str, *, limit: int, before: int | None
    ) -> tuple[list[PoolEvent], int]:
        """Newest first; ``before`` an event id to page further back."""
        query = select(PoolEventRow).where(PoolEventRow.pool_id == pool_id)
        if before is not None:
            query = query.where(PoolEventRow.id < before)
        rows = await self._session.scalars(query.order_by(PoolEventRow.id.desc()).limit(limit))
        total = await self._session.scalar(
            select(func.count()).select_from(PoolEventRow).where(PoolEventRow.pool_id == pool_id)
        )
        return [_event(r) for r in rows], int(total or 0)

    async def between(
        self,
        pool_id: str,
        *,
        since: datetime,
        until: datetime,
        actions: Collection[str],
        limit: int,
    ) -> list[PoolEvent]:
        """The pool's events with one of ``actions`` recorded in ``[since, until]``, oldest
        first, at most ``limit`` (the newest ones)."""
        rows = await self._session.scalars(
            select(PoolEventRow)
            .where(
                PoolEventRow.pool_id == pool_id,
                PoolEventRow.at >= since,
                PoolEventRow.at <= until,
                PoolEventRow.action.in_(sorted(actions)),
            )
            .order_by(PoolEventRow.id.desc())
            .limit(limit)
        )
        return [_event(r) for r in reversed(rows.all())]

    async def last(self, pool_id: str) -> PoolEvent | None:
        row = await self._session.scalar(
            select(PoolEventRow)
            .where(PoolEventRow.pool_id == pool_id)
            .order_by(PoolEventRow.id.desc())
            .limit(1)
        )
        return None if row is None else _event(row)

    async def prune(self, pool_id: str, *, keep: int) -> None:
        """Keep the newest ``keep`` events of the pool."""
        cutoff = await self._session.scalar(
            select(PoolEventRow.id)
            .where(PoolEventRow.pool_id == pool_id)
            .order_by(PoolEventRow.id.desc())
            .offset(keep)
            .limit(1)
        )
        if cutoff is not None:
            await self._session.execute(
                delete(PoolEventRow).where(
                    PoolEventRow.pool_id == pool_id, PoolEventRow.id <= cutoff
                )
            )
