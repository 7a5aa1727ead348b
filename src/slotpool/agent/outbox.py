"""Batches of log chunks and step results, delivered in the order they were made, and never
dropped.

One queue for all of them, shipped by one root task, one item at a time: a step's result then
always follows its last log chunk, and while the control plane is away everything waits in order
and goes out once it is back (the client retries with back-off and registers again first). Batches
of one step that queued up behind each other (the control plane was slow, or away) go out as
one, up to the protocol's size of a batch. The only item ever given up is one the control plane
refuses outright (a 4xx other than 401/403, say for a task it no longer has): sent again, it
would be refused again.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NoReturn

import structlog

from slotpool.agent.client import AgentClient, Rejected
from slotpool.agent.process import StepOutcome
from slotpool.domain.tasks import OutputChunk
from slotpool.protocol import MAX_LOG_BATCH, MAX_LOG_BATCH_CHARS, ResultAnswer

log = structlog.get_logger(__name__)
# A result the control plane refused outright (say the task is gone): nothing more to run.
RELEASED = ResultAnswer(release=True)


@dataclass(frozen=True)
class _Logs:
    task_id: str
    step_index: int
    chunks: tuple[OutputChunk, ...]

    def joined(self, other: _Logs) -> _Logs | None:
        """This batch and ``other`` as one, if they are of one step and fit one request."""
        if (other.task_id, other.step_index) != (self.task_id, self.step_index):
            return None
        chunks = self.chunks + other.chunks
        chars = sum(len(chunk.data) for chunk in chunks)
        if len(chunks) > MAX_LOG_BATCH or chars > MAX_LOG_BATCH_CHARS:
            return None
        return _Logs(self.task_id, self.step_index, chunks)


@dataclass(frozen=True)
class _Result:
    task_id: str
    step_index: int
    outcome: StepOutcome
    answer: asyncio.Future[ResultAnswer]
    then: bool  # its answer may bring a new task for the freed slot (``ResultAnswer.then``)


class Outbox:
    """The agent's ``Reporter``: ``log`` queues, ``result`` queues and waits for the answer."""

    def __init__(self, client: AgentClient, *, takes_work: Callable[[], bool] = lambda: False):
        """``takes_work``: whether a result's answer may bring a new task for the freed slot
        now (not while the agent drains), asked when the result is sent."""
        self._client = client
        self._takes_work = takes_work
        self._items: deque[_Logs | _Result] = deque()
        self._wake = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    def log(self, task_id: str, step_index: int, chunks: Sequence[OutputChunk]) -> None:
        self._put(_Logs(task_id, step_index, tuple(chunks)))

    def submit(
        self, task_id: str, step_index: int, outcome: StepOutcome, *, then: bool = False
    ) -> asyncio.Future[ResultAnswer]:
        """Queue a result. ``then``: whoever awaits the answer runs a new task it brings for
        the freed slot; asked only while the agent takes work (``takes_work``)."""
        answer: asyncio.Future[ResultAnswer] = asyncio.get_running_loop().create_future()
        self._put(_Result(task_id, step_index, outcome, answer, then))
        return answer

    async def result(
        self, task_id: str, step_index: int, outcome: StepOutcome, *, then: bool = False
    ) -> ResultAnswer:
        return await self.submit(task_id, step_index, outcome, then=then)

    async def ship(self) -> NoReturn:
        """Root task: deliver the oldest item until it is delivered (or refused), then the next."""
        while True:
            if not self._items:
                self._wake.clear()
                await self._wake.wait()
                continue
            self._join_batches_at_head()
            await self._deliver(self._items[0])
            self._items.popleft()

    def _join_batches_at_head(self) -> None:
        """Batches of the head's step queued right behind it join it (it stays queued as one,
        so ``len`` still counts what is not delivered)."""
        head = self._items[0]
        while isinstance(head, _Logs) and len(self._items) > 1:
            follower = self._items[1]
            joined = head.joined(follower) if isinstance(follower, _Logs) else None
            if joined is None:
                return
            del self._items[1]
            self._items[0] = head = joined

    def _put(self, item: _Logs | _Result) -> None:
        self._items.append(item)
        self._wake.set()

    async def _deliver(self, item: _Logs | _Result) -> None:
        try:
            if isinstance(item, _Logs):
                await self._client.post_logs(item.task_id, item.step_index, item.chunks)
                return
            answer = await self._client.post_result(
                item.task_id,
                step_index=item.step_index,
                outcome=item.outcome,
                then=item.then and self._takes_work(),
            )
        except Rejected as exc:
            log.error("control plane refused a report", task_id=item.task_id, error=str(exc))
            answer = RELEASED
        if isinstance(item, _Result) and not item.answer.done():
            item.answer.set_result(answer)
