"""Tasks as submitters see them: submit, list, read, logs, approve, cancel."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

from slotpool.clock import Clock
from slotpool.domain import transitions
from slotpool.domain.audit import AuditEntry
from slotpool.domain.errors import Issue
from slotpool.domain.signals import Signal
from slotpool.domain.tasks import FINAL, LogEntry, Task, TaskStatus, TaskSubmit
from slotpool.services.dispatch import Dispatcher
from slotpool.services.errors import Conflict, Invalid, NotFound
from slotpool.services.ids import new_task_id
from slotpool.services.no_pods import NoPods
from slotpool.services.notify import Notifier
from slotpool.store.errors import MissingPool
from slotpool.store.models import TaskRow
from slotpool.store.uow import Store, UnitOfWork

LOG_PAGE = 1000  # log chunks read at a time (an agent's are at most 64 KiB each)
CANCEL_ATTEMPTS = 3


@dataclass(frozen=True)
class LogPage:
    """Chunks of a task's log after the cursor ``after``: ``next`` is the cursor to go on from
    (the last chunk's id, or ``after`` itself if there was none), ``complete`` says that nothing
    was stored after them when they were read (a running task's log may still grow)."""

    task: Task
    chunks: list[LogEntry]
    next: int
    complete: bool

    @property
    def text(self) -> str:
        return "".join(chunk.data for chunk in self.chunks)


def task_audit(action: str, task: Task, *, by: str) -> AuditEntry:
    """The audit entry of a change of ``task`` as it was before (never its environment: names
    and ids only)."""
    target = {"task_id": task.id, "task_name": task.name, "pool_id": task.pool_id}
    return AuditEntry(action, by, {**target, "status": task.status.value})


async def require_task(uow: UnitOfWork, task_id: str) -> Task:
    task = await uow.tasks.get(task_id)
    if task is None:
        raise NotFound(f"task {task_id} not found")
    return task


def new_task_row(body: TaskSubmit, *, by: str, now: datetime) -> TaskRow:
    """A submitted task as stored: ``queued``, or ``awaiting_approval`` if its first step is
    gated."""
    steps = body.step_list()
    gated = steps[0].requires_approval
    return TaskRow(
        id=new_task_id(),
        pool_id=body.pool_id,
        name=body.name or steps[0].name or "task",
        status=(TaskStatus.awaiting_approval if gated else TaskStatus.queued).value,
        env=dict(body.env),
        labels=dict(body.labels),
        steps=[s.model_dump(mode="json", exclude_none=True) for s in steps],
        results=[],
        current_step=0,
        cancel_requested=False,
        reason="the first step waits for approval" if gated else "",
        created_by=by,
        created_at=now,
        updated_at=now,
    )


class TaskService:
    def __init__(
        self,
        store: Store,
        dispatcher: Dispatcher,
        notifier: Notifier,
        clock: Clock,
        no_pods: NoPods | None = None,
    ) -> None:
        self._store = store
        self._dispatcher = dispatcher
        self._notifier = notifier
        self._clock = clock
        self._no_pods = no_pods

    async def submit(self, body: TaskSubmit, *, by: str) -> Task:
        try:
            async with self._store.unit_of_work() as uow:
                task = await uow.tasks.add(new_task_row(body, by=by, now=self._clock()))
                # Demand changed: the controller looks; every dispatcher's queue may hold it.
                uow.signal(Signal.pool(task.pool_id), Signal.queued(task.pool_id))
                uow.audit(task_audit("task.submit", task, by=by))
        except MissingPool:
            raise Invalid(
                "nothing was submitted", [Issue("pool_id", f"no agent pool {body.pool_id}")]
            ) from None
        for start in await self._dispatcher.start_queued(task.pool_id):
            if start.task_id == task.id:
                return start.of(task)  # started by this call: as the dispatcher wrote it
        if task.status is TaskStatus.queued and await self._explain_no_pods(task.pool_id):
            return await self.get(task.id)  # it says why no Pod will come for it
        return task  # as written: not started by this call (under a burst, the rule)

    async def get(self, task_id: str) -> Task:
        async with self._store.reading() as uow:
            return await require_task(uow, task_id)

    async def page(
        self,
        *,
        pool_id: str | None,
        status: TaskStatus | None,
        created_by: str | None,
        limit: int,
        offset: int,
    ) -> tuple[list[Task], int]:
        async with self._store.reading() as uow:
            return await uow.tasks.page(
                pool_id=pool_id, status=status, created_by=created_by, limit=limit, offset=offset
            )

    async def log_page(self, task_id: str, *, after: int, limit: int = LOG_PAGE) -> LogPage:
        async with self._store.reading() as uow:
            task = await require_task(uow, task_id)
            chunks = await uow.tasks.logs(task_id, after=after, limit=limit + 1)
        complete = len(chunks) <= limit
        chunks = chunks[:limit]
        return LogPage(task, chunks, chunks[-1].id if chunks else after, complete)

    async def whole_log(self, task_id: str) -> AsyncIterator[LogPage]:
        """Everything stored now, page after page (the caller checked that the task exists)."""
        after = 0
        while True:
            page = await self.log_page(task_id, after=after)
            yield page
            if page.complete:
                return
            after = page.next

    async def follow(self, task_id: str, *, after: int = 0) -> AsyncIterator[LogPage]:
        """The log as it grows, until the task has ended and everything was read: a page at
        least every second, empty while nothing is written (each with the task as it is then).
        A stopping server ends the stream early; the follower resumes ``after`` its last chunk."""
        while True:
            woken = self._notifier.arm(Signal.task(task_id))
            page = await self.log_page(task_id, after=after)
            yield page
            after = page.next
            if page.task.status in FINAL and page.complete:
                return
            if self._notifier.closing:  # the server stops: the follower resumes elsewhere
                return
            if not page.chunks:
                await self._notifier.wait(woken, seconds=1.0)

    async def approve(self, task_id: str, *, by: str) -> Task:
        now = self._clock()
        async with self._store.unit_of_work() as uow:
            task = await require_task(uow, task_id)
            change = transitions.approve(task, by=by, now=now)
            if change is None or not await uow.apply(change):
                current = await require_task(uow, task_id)  # it may have moved on since read
                raise Conflict(f"task {task_id} is {current.status}, not awaiting_approval")
            uow.audit(task_audit("task.approve", task, by=by))
        if task.pod_id is None:  # back in the queue: it may start now
            await self._dispatcher.dispatch(task.pool_id)
            await self._explain_no_pods(task.pool_id)
        return await self.get(task_id)

    async def _explain_no_pods(self, pool_id: str) -> bool:
        """In a pool known to get no Pods, queued tasks say why at once (the controller keeps
        no worker for it that would). Whether the pool is one of those."""
        why = None if self._no_pods is None else self._no_pods.queue_reason(pool_id)
        if why is None:
            return False
        async with self._store.unit_of_work() as uow:
            await uow.tasks.explain_queued(pool_id, reason=why)
        return True

    async def cancel(self, task_id: str, *, by: str) -> Task:
        now = self._clock()
        async with self._store.unit_of_work() as uow:
            await self._cancel(uow, task_id, by=by, now=now)
        return await self.get(task_id)

    @staticmethod
    async def _cancel(uow: UnitOfWork, task_id: str, *, by: str, now: datetime) -> Task:
        """Cancel the task as it is when written; returns it as it was cancelled. One read a
        moment before may have moved on meanwhile (started, approved): then the cancel fitting
        its new status is applied."""
        for _ in range(CANCEL_ATTEMPTS):
            task = await require_task(uow, task_id)
            change = transitions.cancel(task, by=by, now=now)
            if change is None:
                raise Conflict(f"task {task_id} has already ended: {task.status}")
            if await uow.apply(change):
                uow.audit(task_audit("task.cancel", task, by=by))
                return task
        raise Conflict(f"task {task_id} kept changing while being cancelled: try again")
