"""Tasks and their logs: the queue, starts taken with ``WHERE status = 'queued'`` (the row count
says who won, so no task is started twice), every later change of a task through ``apply`` (the
gate: a transition of ``domain.transitions`` written conditionally, with the slot it frees,
reserves or takes), and the log chunks agents ship.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Table, and_, bindparam, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import Update

from slotpool.domain.pods import SlotState
from slotpool.domain.tasks import LogEntry, LogStream, OutputChunk, StepSpec, Task, TaskStatus
from slotpool.domain.transitions import SlotChange, TaskChange
from slotpool.store.dialect import insert_ignoring_duplicates, rowcount
from slotpool.store.errors import MissingPool
from slotpool.store.models import SlotRow, TaskLogRow, TaskRow
from slotpool.store.statements import refresh_if_loaded

# The task path's statements, built once (store/statements.py): on the tables, with bind
# parameters named apart from the columns (an UPDATE reserves the columns' own names).
_TASKS: Table = TaskRow.__table__  # type: ignore[assignment]
_T = _TASKS.c
_SLOTS: Table = SlotRow.__table__  # type: ignore[assignment]
_S = _SLOTS.c
_QUEUED = TaskStatus.queued.value

_INSERT = _TASKS.insert()
_BY_ID = select(_TASKS).where(_T.id == bindparam("b_id"))
_ON_POD = select(_TASKS).where(
    _T.pod_id == bindparam("b_pod"), _T.status.in_(bindparam("b_statuses", expanding=True))
)
_HOLDING_A_SLOT = [TaskStatus.running.value, TaskStatus.awaiting_approval.value]
_TO_ANSWER = select(_TASKS).where(
    _T.pod_id == bindparam("b_pod"),
    _T.status.in_(_HOLDING_A_SLOT),
    or_(
        _T.slot_index.in_(bindparam("b_offered", expanding=True)),
        _T.step_started_at.is_(None),
        _T.cancel_requested.is_(True),
    ),
)
_COUNT_QUEUED = (
    select(func.count())
    .select_from(_TASKS)
    .where(_T.pool_id == bindparam("b_pool"), _T.status == _QUEUED)
)
_QUEUE = (
    select(_T.id, _T.updated_at)
    .where(_T.pool_id == bindparam("b_pool"), _T.status == _QUEUED)
    .order_by(_T.created_at, _T.id)
    .limit(bindparam("b_limit"))
)
_START = (
    _TASKS.update()
    .where(_T.id == bindparam("b_id"), _T.status == _QUEUED)
    .values(
        status=TaskStatus.running.value,
        pod_id=bindparam("b_pod"),
        pod_name=bindparam("b_pod_name"),
        slot_index=bindparam("b_slot"),
        started_at=func.coalesce(_T.started_at, bindparam("b_now", type_=_T.started_at.type)),
        step_started_at=None,
        reason="",
        updated_at=bindparam("b_now", type_=_T.updated_at.type),
    )
)
_SLOT_OF_TASK = (_S.pod_id == bindparam("b_pod"), _S.slot_index == bindparam("b_slot"))
_SLOT_MOVES = _SLOTS.update().where(*_SLOT_OF_TASK, _S.task_id == bindparam("b_task"))
_SLOT_FREED = _SLOT_MOVES.values(state=SlotState.idle.value, task_id=None, since=bindparam("b_now"))
_SLOT_KEPT = _SLOT_MOVES.values(state=bindparam("b_state"), since=bindparam("b_now"))
# ``apply``'s UPDATEs, one per set of columns a transition writes (a handful in all).
_APPLY: dict[tuple[tuple[str, ...], bool], Update] = {}


def _apply_statement(columns: tuple[str, ...], at_step: bool) -> Update:
    statement = _APPLY.get((columns, at_step))
    if statement is None:
        statement = _TASKS.update().where(
            _T.id == bindparam("b_id"), _T.status.in_(bindparam("b_from", expanding=True))
        )
        if at_step:
            statement = statement.where(_T.current_step == bindparam("b_step"))
        statement = statement.values(
            {name: bindparam(f"v_{name}", type_=_T[name].type) for name in columns}
        )
        _APPLY[(columns, at_step)] = statement
    return statement


def _task(row: Any) -> Task:
    """A task from its row: a mapped ``TaskRow`` or a row of the table's columns."""
    return Task(
        id=row.id,
        pool_id=row.pool_id,
        name=row.name,
        status=TaskStatus(row.status),
        env=dict(row.env),
        labels=dict(row.labels),
        # Validated when submitted and stored as dumped: not validated again on every read.
        steps=tuple(StepSpec.model_construct(**s) for s in row.steps),
        results=tuple(row.results),
        current_step=row.current_step,
        pod_id=row.pod_id,
        pod_name=row.pod_name,
        slot_index=row.slot_index,
        cancel_requested=row.cancel_requested,
        reason=row.reason,
        created_by=row.created_by,
        created_at=row.created_at,
        started_at=row.started_at,
        step_started_at=row.step_started_at,
        finished_at=row.finished_at,
        reserved_until=row.reserved_until,
        updated_at=row.updated_at,
    )


def _columns(change: TaskChange) -> dict[str, Any]:
    columns: dict[str, Any] = {"status": change.to.value, "updated_at": change.now}
    for name, value in change.sets().items():
        columns[name] = list(value) if name == "results" else value  # a JSON array
    return columns


class TaskRepository:
    def __init__(self, session: AsyncSession, backend: str) -> None:
        self._session = session
        self._backend = backend

    async def add(self, row: TaskRow) -> Task:
        """The task inserted; ``MissingPool`` if its pool does not exist (the foreign key says
        so in the INSERT itself: no lookup beforehand)."""
        values = {column.key: getattr(row, column.key) for column in _TASKS.columns}
        try:
            await self._session.execute(_INSERT, values)
        except IntegrityError as exc:
            raise MissingPool(row.pool_id) from exc
        return _task(row)

    async def get(self, task_id: str) -> Task | None:
        row = (await self._session.execute(_BY_ID, {"b_id": task_id})).first()
        return None if row is None else _task(row)

    async def page(
        self,
        *,
        pool_id: str | None,
        status: TaskStatus | None,
        limit: int,
        offset: int,
        created_by: str | None = None,
    ) -> tuple[list[Task], int]:
        conditions = []
        if pool_id is not None:
            conditions.append(TaskRow.pool_id == pool_id)
        if status is not None:
            conditions.append(TaskRow.status == status.value)
        if created_by is not None:
            conditions.append(TaskRow.created_by == created_by)
        where = and_(True, *conditions)
        rows = await self._session.execute(
            select(_TASKS)
            .where(where)
            .order_by(TaskRow.created_at.desc(), TaskRow.id)
            .limit(limit)
            .offset(offset)
        )
        total = await self._session.scalar(select(func.count()).select_from(TaskRow).where(where))
        return [_task(r) for r in rows], int(total or 0)

    async def pools_with_queued(self) -> list[str]:
        pools = await self._session.scalars(
            select(TaskRow.pool_id).where(TaskRow.status == TaskStatus.queued.value).distinct()
        )
        return list(pools)

    async def queued(self, pool_id: str, *, limit: int) -> list[tuple[str, datetime]]:
        """The first ``limit`` queued tasks, in queue order: each id and since when it is
        queued (its last write: its creation, or the approval that put it back)."""
        rows = await self._session.execute(_QUEUE, {"b_pool": pool_id, "b_limit": limit})
        return [(task_id, since) for task_id, since in rows.all()]

    async def count_queued(self, pool_id: str) -> int:
        count = await self._session.scalar(_COUNT_QUEUED, {"b_pool": pool_id})
        return int(count or 0)

    async def count_open(self, pool_id: str) -> int:
        """Tasks of the pool that have not ended: queued, running, awaiting approval."""
        statuses = [TaskStatus.queued, TaskStatus.running, TaskStatus.awaiting_approval]
        count = await self._session.scalar(
            select(func.count())
            .select_from(TaskRow)
            .where(TaskRow.pool_id == pool_id, TaskRow.status.in_([s.value for s in statuses]))
        )
        return int(count or 0)

    async def explain_queued(self, pool_id: str, *, reason: str) -> None:
        """Say on every queued task of the pool why it waits (only where it changed).

        Rows another transaction holds are skipped (PostgreSQL's ``SKIP LOCKED``; SQLite has
        one writer at a time): those are being started by a dispatcher, which clears the reason
        anyway, and this statement never waits for it. Waiting would deadlock: the dispatcher
        takes the rows one by one in queue order, one UPDATE here in the table's order."""
        waiting = (
            select(TaskRow.id)
            .where(
                TaskRow.pool_id == pool_id,
                TaskRow.status == TaskStatus.queued.value,
                TaskRow.reason != reason,
            )
            .with_for_update(skip_locked=True)
        )
        ids = list(await self._session.scalars(waiting))
        for start in range(0, len(ids), 1000):  # bound the statement's parameters
            await self._session.execute(
                update(TaskRow)
                .where(
                    TaskRow.id.in_(ids[start : start + 1000]),
                    TaskRow.status == TaskStatus.queued.value,
                )
                .values(reason=reason)
            )

    async def start(
        self, task_id: str, *, pod_id: int, pod_name: str, slot: int, now: datetime
    ) -> bool:
        """queued -> running on (pod, slot); False if someone else started or cancelled it."""
        values = {"b_id": task_id, "b_pod": pod_id, "b_pod_name": pod_name, "b_slot": slot}
        result = await self._session.execute(_START, {**values, "b_now": now})
        return rowcount(result) == 1

    async def apply(self, change: TaskChange) -> bool:
        """Apply a transition if the task is still where it was computed from (its statuses, and
        its step if the change names one); only then change the slot, and only if this task
        still holds it. Returns whether the task was written.

        The task row is written first, so two transitions of one task are applied one after the
        other (the second waits for the first to commit, then finds its condition gone); the slot
        row is written second, as the task's own, so a slot given to another task is never
        freed or taken by a stale transition."""
        columns = _columns(change)
        statement = _apply_statement(tuple(columns), change.at_step is not None)
        values = {f"v_{name}": value for name, value in columns.items()}
        values["b_id"] = change.task_id
        values["b_from"] = [s.value for s in change.from_statuses]
        if change.at_step is not None:
            values["b_step"] = change.at_step
        result = await self._session.execute(statement, values)
        if rowcount(result) != 1:
            return False
        # No refresh of a loaded TaskRow: this repository reads tasks as rows and inserts them
        # with a statement, so a session never holds a TaskRow object. A slot's row it may.
        if change.slot is not None:
            await self._move_slot(change.task_id, change.slot, now=change.now)
        return True

    async def _move_slot(self, task_id: str, slot: SlotChange, *, now: datetime) -> None:
        values = {"b_pod": slot.pod_id, "b_slot": slot.index, "b_task": task_id, "b_now": now}
        if slot.to is SlotState.idle:
            await self._session.execute(_SLOT_FREED, values)
        else:
            await self._session.execute(_SLOT_KEPT, {**values, "b_state": slot.to.value})
        await refresh_if_loaded(self._session, SlotRow, (slot.pod_id, slot.index))

    async def on_pod(self, pod_id: int, statuses: Sequence[TaskStatus]) -> list[Task]:
        values = {"b_pod": pod_id, "b_statuses": [s.value for s in statuses]}
        rows = await self._session.execute(_ON_POD, values)
        return [_task(r) for r in rows]

    async def to_answer(self, pod_id: int, offered: Sequence[int]) -> list[Task]:
        """The tasks holding a slot of the pod (busy or reserved) that an agent's claim offering
        the slots ``offered`` must be answered about: those in an offered slot, those whose step
        was not delivered yet, and those asked to cancel. Not the pod's other busy slots: under
        load, a claim reads the one or two tasks it answers with, not every slot's."""
        values = {"b_pod": pod_id, "b_offered": list(offered)}
        return [_task(r) for r in await self._session.execute(_TO_ANSWER, values)]

    async def cancel_requested_on(self, pod_id: int) -> list[str]:
        """The ids of the tasks running on the pod that were asked to cancel."""
        ids = await self._session.scalars(
            select(TaskRow.id).where(
                TaskRow.pod_id == pod_id,
                TaskRow.status == TaskStatus.running.value,
                TaskRow.cancel_requested.is_(True),
            )
        )
        return list(ids)

    async def last_on_slot(
        self, pod_id: int, slot: int, *, other_than: str | None = None
    ) -> Task | None:
        """The task that was on the slot last (``other_than`` left out: the one there now)."""
        query = select(_TASKS).where(TaskRow.pod_id == pod_id, TaskRow.slot_index == slot)
        if other_than is not None:
            query = query.where(TaskRow.id != other_than)
        latest = query.order_by(TaskRow.updated_at.desc()).limit(1)
        row = (await self._session.execute(latest)).first()
        return None if row is None else _task(row)

    async def reservations_expired(self, *, now: datetime) -> list[Task]:
        rows = await self._session.execute(
            select(_TASKS).where(
                TaskRow.status == TaskStatus.awaiting_approval.value,
                TaskRow.reserved_until < now,
            )
        )
        return [_task(r) for r in rows]

    async def add_log(
        self,
        task_id: str,
        *,
        step: int,
        seq: int,
        data: str,
        now: datetime,
        stream: LogStream = LogStream.stdout,
    ) -> None:
        await self.add_logs(task_id, step=step, chunks=[OutputChunk(seq, data, stream)], now=now)

    async def add_logs(
        self, task_id: str, *, step: int, chunks: Sequence[OutputChunk], now: datetime
    ) -> None:
        """One INSERT for all of ``chunks``; a chunk stored before (same seq) is left as it is."""
        rows = [
            {
                "task_id": task_id,
                "step_index": step,
                "seq": chunk.seq,
                "stream": chunk.stream.value,
                "data": chunk.data,
                "created_at": now,
            }
            for chunk in chunks
        ]
        if not rows:
            return
        table = TaskLogRow.__table__
        insert = insert_ignoring_duplicates(table, self._backend)  # type: ignore[arg-type]
        await self._session.execute(insert.values(rows))

    async def logs(self, task_id: str, *, after: int, limit: int) -> list[LogEntry]:
        """The chunks after the chunk id ``after``, in the order they were written."""
        rows = await self._session.scalars(
            select(TaskLogRow)
            .where(TaskLogRow.task_id == task_id, TaskLogRow.id > after)
            .order_by(TaskLogRow.id)
            .limit(limit)
        )
        return [
            LogEntry(r.id, r.step_index, r.seq, LogStream(r.stream), r.data, r.created_at)
            for r in rows
        ]
