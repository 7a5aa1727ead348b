"""Pools, their configuration and freeze windows. Repositories flush, never commit: the caller's
unit of work decides when a change becomes visible, so a request's changes land together or not
at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import bindparam, case, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from slotpool.domain.config import PoolConfig, PoolType
from slotpool.domain.freeze import FreezeSchedule
from slotpool.domain.pools import OneTimeUnfreeze, Pool, StoredConfig, stored_pod_fields
from slotpool.domain.trusted import trusted
from slotpool.store.errors import Conflict, StaleRevision
from slotpool.store.models import AgentPoolRow, FreezeScheduleRow, PoolSampleRow

POOLS = AgentPoolRow.__table__
SCHEDULES = FreezeScheduleRow.__table__
# A pool as the dispatcher and the controller read it on every pass: built once, rows only.
_POOL_BY_ID = select(POOLS).where(POOLS.c.pool_id == bindparam("b_pool"))
_WINDOWS_OF = (
    select(SCHEDULES)
    .where(SCHEDULES.c.pool_id == bindparam("b_pool"))
    .order_by(SCHEDULES.c.position)
)
SCHEDULE_FIELDS = ("id", "from_time", "to_time", "weekdays", "timezone", "policy", "note")
# What a page of pools reads of their windows: the fields, and whose they are (no timestamps).
_PAGE_WINDOWS = select(SCHEDULES.c.pool_id, *(SCHEDULES.c[name] for name in SCHEDULE_FIELDS))
Columns = Mapping[Any, Any]  # a row's values by column name (a RowMapping, or a dict)
Page = tuple[list[Columns], dict[str, list[Columns]], int]  # rows, their windows, the total


# Rows are turned into domain objects without validating them again (``domain.trusted``): what
# is stored was validated when it was saved, and reading it is every listing's work per pool.
# They are read by column name from a mapping (a plain select's ``Row._mapping``; a Row's own
# attributes cost several times more, and a listing reads some 25 per pool).
def _schedule(row: Columns) -> FreezeSchedule:
    values = {name: row[name] for name in SCHEDULE_FIELDS}
    values["weekdays"] = list(values["weekdays"])
    return trusted(FreezeSchedule, values)


def _pool(row: Columns, schedules: Iterable[Columns]) -> Pool:
    unfreeze = None
    if row["one_time_unfreeze_until"] is not None and row["one_time_unfreeze_at"] is not None:
        unfreeze = OneTimeUnfreeze(
            until=row["one_time_unfreeze_until"],
            by=row["one_time_unfreeze_by"] or "",
            at=row["one_time_unfreeze_at"],
            note=row["one_time_unfreeze_note"] or "",
        )
    pool_type = PoolType(row["pool_type"])
    stored = row["k8s_config"]
    config = None if stored is None else trusted(PoolConfig, stored)
    return Pool(
        pool_id=row["pool_id"],
        name=row["name"],
        description=row["description"],
        pool_type=pool_type,
        config=config,
        pod_fields=_pod_fields(row, pool_type, config),
        freeze_schedules=tuple(_schedule(s) for s in schedules),
        unfreeze=unfreeze,
        revision=row["revision"],
        created_by=row["created_by"],
        created_at=row["created_at"],
        updated_by=row["updated_by"],
        updated_at=row["updated_at"],
        agent_token=row["agent_token"],
        token_generation=row["token_generation"] or 0,
        rotating_from=row["rotating_from"],
        backoff_failures=row["backoff_failures"] or 0,
        backoff_last_failure_at=row["backoff_last_failure_at"],
    )


def _pod_fields(row: Columns, pool_type: PoolType, config: PoolConfig | None) -> str | None:
    """The pool's Pod fields: as stored while they are current (written at the pool's revision),
    else computed again from its configuration (an edit by code that does not know them left
    them behind)."""
    if row["pod_fields_revision"] == row["revision"]:
        stored: str | None = row["pod_fields"]
        return stored
    return stored_pod_fields(pool_type, config)


def _stored_pool(row: Columns, windows: list[Columns]) -> StoredPool:
    schedules = tuple(_schedule(s) for s in windows)
    if row["pod_fields_revision"] == row["revision"]:
        return StoredPool(row, row["pod_fields"], schedules)
    stored = row["k8s_config"]
    config = None if stored is None else trusted(PoolConfig, stored)
    return StoredPool(row, _pod_fields(row, PoolType(row["pool_type"]), config), schedules)


def _pool_of(row: AgentPoolRow) -> Pool:
    return _pool(_columns(row), [_columns(s) for s in row.freeze_schedules])


def _columns(row: AgentPoolRow | FreezeScheduleRow) -> Columns:
    return {column.key: getattr(row, column.key) for column in row.__table__.columns}


class StoredPool(NamedTuple):
    """A pool as stored, for a listing to show without rebuilding it: its row (``columns``,
    by column name; its configuration as the stored JSON), its current Pod fields
    (``_pod_fields``) and its windows in order."""

    columns: Columns
    pod_fields: str | None
    windows: tuple[FreezeSchedule, ...]


@dataclass(frozen=True)
class PoolPage:
    pools: list[StoredPool]
    total: int  # how many pools there are (with the name asked for, if one was)


@dataclass(frozen=True)
class NewPool:
    pool_id: str
    name: str
    description: str
    pool_type: PoolType
    config: PoolConfig | None  # validated; None: none saved yet
    by: str
    now: datetime


class PoolRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session
        self._rows: dict[str, AgentPoolRow] = {}

    async def list(
        self, *, limit: int, offset: int, name: str | None = None
    ) -> tuple[list[Pool], int]:
        """A page of pools by name, and how many there are, as domain pools."""
        rows, windows, total = await self._page(limit=limit, offset=offset, name=name)
        return [_pool(row, windows[row["pool_id"]]) for row in rows], total

    async def page(self, *, limit: int, offset: int, name: str | None = None) -> PoolPage:
        """The same page as ``list``, as stored (``StoredPool``): for a listing that shows the
        pools as they are, nothing is rebuilt."""
        rows, windows, total = await self._page(limit=limit, offset=offset, name=name)
        return PoolPage([_stored_pool(row, windows[row["pool_id"]]) for row in rows], total)

    async def _page(self, *, limit: int, offset: int, name: str | None) -> Page:
        """A page of pools by name, their windows and how many pools there are: read as plain
        rows (no ORM objects: a listing changes nothing), in three statements."""
        query = select(POOLS)
        count = select(func.count()).select_from(POOLS)
        if name is not None:
            query, count = query.where(POOLS.c.name == name), count.where(POOLS.c.name == name)
        found = await self._session.execute(
            query.order_by(POOLS.c.name).limit(limit).offset(offset)
        )
        rows: list[Columns] = list(found.mappings())
        windows: dict[str, list[Columns]] = {row["pool_id"]: [] for row in rows}
        if windows:
            found = await self._session.execute(
                _PAGE_WINDOWS.where(SCHEDULES.c.pool_id.in_(list(windows))).order_by(
                    SCHEDULES.c.pool_id, SCHEDULES.c.position
                )
            )
            for window in found.mappings():
                windows[window["pool_id"]].append(window)
        total = await self._session.scalar(count)
        return rows, windows, int(total or 0)

    async def get(self, pool_id: str) -> Pool | None:
        """The pool, read to be changed in this unit of work (its row is kept for the write)."""
        row = await self._row(pool_id)
        return None if row is None else _pool_of(row)

    async def read(self, pool_id: str) -> Pool | None:
        """The pool, only to be read (the dispatcher's and the controller's passes): rows with
        statements built once, no mapped objects; as this unit of work changed it, if it did."""
        if pool_id in self._rows:
            return _pool_of(self._rows[pool_id])
        row = (await self._session.execute(_POOL_BY_ID, {"b_pool": pool_id})).first()
        if row is None:
            return None
        windows = await self._session.execute(_WINDOWS_OF, {"b_pool": pool_id})
        return _pool(dict(row._mapping), [dict(w._mapping) for w in windows])

    async def get_by_name(self, name: str) -> Pool | None:
        row = await self._session.scalar(select(AgentPoolRow).where(AgentPoolRow.name == name))
        return None if row is None else _pool_of(row)

    async def add(self, new: NewPool) -> Pool:
        config = StoredConfig.of(new.pool_type, new.config)
        row = AgentPoolRow(
            pool_id=new.pool_id,
            name=new.name,
            description=new.description,
            pool_type=new.pool_type.value,
            k8s_config=config.document,
            pod_fields=config.pod_fields,
            pod_fields_revision=1,
            revision=1,
            created_by=new.by,
            created_at=new.now,
            updated_by=new.by,
            updated_at=new.now,
            freeze_schedules=[],
        )
        self._session.add(row)
        await self._flush(f"a pool named {new.name!r} already exists")
        self._rows[row.pool_id] = row
        return _pool_of(row)

    async def update(
        self,
        pool_id: str,
        *,
        by: str,
        now: datetime,
        expected_revision: int | None = None,
        config: StoredConfig | None = None,
        **fields: Any,
    ) -> Pool | None:
        """An edit: set columns (name, description, one_time_unfreeze_*), and the configuration
        when ``config`` is given, and move the revision by one, in one UPDATE whose
        ``revision + 1`` the database computes; with ``expected_revision``, only if the pool is
        still at it (``StaleRevision`` otherwise).

        The configuration and its Pod fields are written together, and the Pod fields stay
        current with the revision (``pod_fields_revision``) only if they were current before:
        an edit made without them (by code that does not know them) leaves them to be computed
        again on read.

        The write comes first: on PostgreSQL it holds the pool's row until the unit of work
        ends, so what the caller reads of the pool afterwards (it is returned as it is now,
        windows included) stays as read until it commits, and two edits never both build on
        one state. ``None`` if there is no such pool."""
        if {"k8s_config", "pod_fields", "pod_fields_revision"} & fields.keys():
            raise ValueError("a configuration is written with config=, its Pod fields with it")
        statement = update(AgentPoolRow).where(AgentPoolRow.pool_id == pool_id)
        if expected_revision is not None:
            statement = statement.where(AgentPoolRow.revision == expected_revision)
        values: dict[str, Any] = {**fields, "updated_by": by, "updated_at": now}
        if config is not None:
            values |= {"k8s_config": config.document, "pod_fields": config.pod_fields}
        next_revision = AgentPoolRow.revision + 1
        kept = case(
            (AgentPoolRow.pod_fields_revision == AgentPoolRow.revision, next_revision),
            else_=AgentPoolRow.pod_fields_revision,
        )
        try:
            written = (
                await self._session.execute(
                    statement.values(
                        **values,
                        revision=next_revision,
                        pod_fields_revision=next_revision if config is not None else kept,
                    )
                    .returning(AgentPoolRow.revision, AgentPoolRow.pod_fields_revision)
                    .execution_options(synchronize_session=False)
                )
            ).one_or_none()
        except IntegrityError as exc:
            raise Conflict(f"a pool named {fields.get('name')!r} already exists") from exc
        if written is None:
            current = await self._session.scalar(
                select(AgentPoolRow.revision).where(AgentPoolRow.pool_id == pool_id)
            )
            if current is None:
                return None
            raise StaleRevision(current)
        revision, fields_revision = written
        row = self._rows.get(pool_id)
        if row is None or row.revision != revision - 1:
            return await self._fresh(pool_id)
        # Read in this unit of work, and no other edit came between: the row is as read, but
        # for this edit (windows move only with an edit; so does the revision).
        changed = {**values, "revision": revision, "pod_fields_revision": fields_revision}
        for key, value in changed.items():
            set_committed_value(row, key, value)
        return _pool_of(row)

    async def set_token_state(self, pool_id: str, **fields: Any) -> Pool | None:
        """The Secret's bookkeeping (agent_token, token_generation, rotating_from): kept by
        slotpool itself, so the pool's revision (the operator's edits) does not move."""
        row = await self._row(pool_id)
        if row is None:
            return None
        for key in fields:
            if key not in ("agent_token", "token_generation", "rotating_from"):
                raise ValueError(f"not a token field: {key}")
        for key, value in fields.items():
            setattr(row, key, value)
        await self._session.flush()
        return _pool_of(row)

    async def set_backoff(
        self, pool_id: str, *, failures: int, last_failure_at: datetime | None
    ) -> None:
        """The controller's back-off; like the token state, not an edit (no revision)."""
        await self._session.execute(
            update(AgentPoolRow)
            .where(AgentPoolRow.pool_id == pool_id)
            .values(backoff_failures=failures, backoff_last_failure_at=last_failure_at)
        )

    async def replace_schedules(
        self, pool_id: str, schedules: Sequence[FreezeSchedule], *, now: datetime
    ) -> None:
        """Make the pool's windows exactly these, in this order; every schedule must have an id."""
        row = await self._row(pool_id)
        if row is None:
            return
        existing = {s.id: s for s in row.freeze_schedules}
        row.freeze_schedules = [
            self._schedule_row(s, position=i, now=now, existing=existing.get(s.id or ""))
            for i, s in enumerate(schedules)
        ]
        await self._flush("a freeze schedule id is already used by another pool")

    @staticmethod
    def _schedule_row(
        schedule: FreezeSchedule,
        *,
        position: int,
        now: datetime,
        existing: FreezeScheduleRow | None,
    ) -> FreezeScheduleRow:
        row = existing or FreezeScheduleRow(id=schedule.id, created_at=now)
        row.position = position
        row.from_time, row.to_time = schedule.from_time, schedule.to_time
        row.weekdays = list(schedule.weekdays)
        row.timezone = schedule.timezone
        row.policy = schedule.policy.value
        row.note = schedule.note
        if existing is None or _schedule(_columns(existing)) != schedule:
            row.updated_at = now
        return row

    async def delete(self, pool_id: str) -> bool:
        """The pool and what belongs to it (its other tables cascade; its history samples have
        no foreign key, see ``PoolSampleRow``)."""
        self._rows.pop(pool_id, None)
        await self._session.execute(delete(PoolSampleRow).where(PoolSampleRow.pool_id == pool_id))
        result = await self._session.execute(
            delete(AgentPoolRow).where(AgentPoolRow.pool_id == pool_id)
        )
        return bool(getattr(result, "rowcount", 0))

    async def _fresh(self, pool_id: str) -> Pool | None:
        """The pool as the database has it now, windows included (not the session's copy)."""
        row = await self._session.scalar(
            select(AgentPoolRow)
            .where(AgentPoolRow.pool_id == pool_id)
            .execution_options(populate_existing=True)
        )
        if row is None:
            return None
        self._rows[pool_id] = row
        return _pool_of(row)

    async def _row(self, pool_id: str) -> AgentPoolRow | None:
        # The session's identity map holds rows weakly, and callers keep only the domain Pool,
        # so without this reference every read in a unit of work would go back to the database.
        row = self._rows.get(pool_id) or await self._session.get(AgentPoolRow, pool_id)
        if row is not None:
            self._rows[pool_id] = row
        return row

    async def _flush(self, conflict_message: str) -> None:
        try:
            await self._session.flush()
        except IntegrityError as exc:
            raise Conflict(conflict_message) from exc
