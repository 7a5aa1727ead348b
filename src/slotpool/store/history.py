"""Pool history samples: written in one batch per sampling round, read per pool and range."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime
from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.ext.asyncio import AsyncSession

from slotpool.domain.history import LOAD_FIELDS, PoolLoad, PoolSample
from slotpool.store.dialect import insert_ignoring_duplicates
from slotpool.store.models import PoolSampleRow

_TABLE = PoolSampleRow.__table__
_COLUMNS = [PoolSampleRow.at, *(getattr(PoolSampleRow, name) for name in LOAD_FIELDS)]


def _sample(pool_id: str, row: Row[Any]) -> PoolSample:
    return PoolSample(pool_id, row[0], PoolLoad(*row[1:]))


class PoolHistoryRepository:
    def __init__(self, session: AsyncSession, backend: str) -> None:
        self._session = session
        self._backend = backend

    async def add(self, samples: Sequence[PoolSample]) -> None:
        """One batched INSERT; a sample of a pool at an instant already stored (another server
        sampled it) is left as it is."""
        if not samples:
            return
        rows = [{"pool_id": s.pool_id, "at": s.at, **asdict(s.load)} for s in samples]
        statement = insert_ignoring_duplicates(_TABLE, self._backend)  # type: ignore[arg-type]
        await self._session.execute(statement, rows)

    async def between(
        self, pool_id: str, *, since: datetime, until: datetime, limit: int
    ) -> list[PoolSample]:
        """The pool's samples taken in ``[since, until]``, oldest first, at most ``limit`` (the
        oldest ones), after the latest one taken before ``since`` if any (what was in force when
        the range began)."""
        before = await self._session.execute(
            select(*_COLUMNS)
            .where(PoolSampleRow.pool_id == pool_id, PoolSampleRow.at < since)
            .order_by(PoolSampleRow.at.desc())
            .limit(1)
        )
        within = await self._session.execute(
            select(*_COLUMNS)
            .where(
                PoolSampleRow.pool_id == pool_id,
                PoolSampleRow.at >= since,
                PoolSampleRow.at <= until,
            )
            .order_by(PoolSampleRow.at)
            .limit(limit)
        )
        return [_sample(pool_id, row) for row in (*before.all(), *within.all())]
