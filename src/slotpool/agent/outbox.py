"""Log chunks and step results, delivered in the order they were made, and never dropped.

One queue for all of them, shipped by one root task, one item at a time: a step's result then
always follows its last log chunk, and while the control plane is away everything waits in order
and goes out once it is back (the client retries with back-off and registers again first). The
only item ever given up is one the control plane refuses outright (a 4xx other than 401/403, say
for a task it no longer has): sent again, it would be refused again.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import NoReturn

import structlog

from slotpool.agent.client import AgentClient, Rejected
from slotpool.agent.process import StepOutcome
from slotpool.domain.tasks import LogStream
from slotpool.protocol import ResultAnswer

log = structlog.get_logger(__name__)
# A result the control plane refused outright (say the task is gone): nothing more to run.
RELEASED = ResultAnswer(release=True)


@dataclass(frozen=True)
class _Chunk:
    task_id: str
    step_index: int
    seq: int
    data: str
    stream: LogStream


@dataclass(frozen=True)
class _Result:
    task_id: str
    step_index: int
    outcome: StepOutcome
    answer: asyncio.Future[ResultAnswer]


class Outbox:
    """The agent's ``Reporter``: ``log`` queues, ``result`` queues and waits for the answer."""

    def __init__(self, client: AgentClient) -> None:
        self._client = client
        self._items: deque[_Chunk | _Result] = deque()
        self._wake = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    def log(self, task_id: str, step_index: int, seq: int, data: str, stream: LogStream) -> None:
        self._put(_Chunk(task_id, step_index, seq, data, stream))

    def submit(
        self, task_id: str, step_index: int, outcome: StepOutcome
    ) -> asyncio.Future[ResultAnswer]:
        answer: asyncio.Future[ResultAnswer] = asyncio.get_running_loop().create_future()
        self._put(_Result(task_id, step_index, outcome, answer))
        return answer

    async def result(self, task_id: str, step_index: int, outcome: StepOutcome) -> ResultAnswer:
        return await self.submit(task_id, step_index, outcome)

    async def ship(self) -> NoReturn:
        """Root task: deliver the oldest item until it is delivered (or refused), then the next."""
        while True:
            if not self._items:
                self._wake.clear()
                await self._wake.wait()
                continue
            await self._deliver(self._items[0])
            self._items.popleft()

    def _put(self, item: _Chunk | _Result) -> None:
        self._items.append(item)
        self._wake.set()

    async def _deliver(self, item: _Chunk | _Result) -> None:
        try:
            if isinstance(item, _Chunk):
                await self._client.post_log(
                    item.task_id,
                    step_index=item.step_index,
                    seq=item.seq,
                    data=item.data,
                    stream=item.stream,
                )
                return
            answer = await self._client.post_result(
                item.task_id, step_index=item.step_index, outcome=item.outcome
            )
        except Rejected as exc:
            log.error("control plane refused a report", task_id=item.task_id, error=str(exc))
            answer = RELEASED
        if isinstance(item, _Result) and not item.answer.done():
            item.answer.set_result(answer)
