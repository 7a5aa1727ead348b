"""How many SQL statements a task costs on the request path, from submit to ``succeeded``.

The counts are pinned: a change that adds a query to the task path fails here, on both databases,
rather than as a slower benchmark weeks later; a change that removes one updates the pin (and says
so in its message). Only the statements a request runs are counted (a context variable set around
each call, which the app's request handling inherits); the controller's and the sweeper's own
passes run in their own tasks and are measured by the controller benchmark instead.

The path: submit a command into a pool whose agent has an idle slot waiting (the dispatcher gives
it a slot at once), the agent's claim that picks it up, a batch of two log chunks, the step's
result; besides it, a claim that finds nothing new (the queue is known to be empty: no dispatch
probe) and a heartbeat with nothing to say.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from tests.api.conftest import Api
from tests.api.test_tasks_protocol import FakeAgent, agent_client, pool_with_token, submit, task

T = TypeVar("T")

# Statements per call of the task path, as measured on the commit that pinned them. Before the
# cheap agent protocol: claim 8 (7 when empty), a log chunk 3 (a request each), heartbeat 3, a
# task 30 (with two chunks).
# On PostgreSQL a dispatch batch first takes the pool's dispatch turn (a transaction advisory
# lock: replicas dispatching one pool at once deadlocked), one statement more for a submit.
PINNED: dict[str, dict[str, int]] = {
    dialect: {
        "submit": 8 + extra,
        "claim": 4,
        "claim, nothing new": 3,
        "log batch": 3,
        "result": 4,
        "heartbeat": 2,
        "task": 19 + extra,
    }
    for dialect, extra in (("sqlite", 0), ("postgresql", 1))
}

# A result asked with ``?then=1`` while a task is queued: the result's four, the dispatch pass
# that fills the freed slot (which a plain result starts after its answer anyway: the pool's
# dispatch turn on PostgreSQL, its ready slots, its queue, the pool and its windows, the slot
# taken in two writes, the task started), and two more to hand the task over (the pod's
# undelivered tasks, the delivery). Under load it replaces a claim (a request, and four).
PINNED_RESULT_THEN = {"sqlite": 4 + 7 + 2, "postgresql": 4 + 8 + 2}

_counting: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "statements", default=None
)


def _count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
    seen = _counting.get()
    if seen is not None:
        seen.append(statement)


@pytest.fixture
def statements() -> Iterator[None]:
    event.listen(Engine, "before_cursor_execute", _count)
    try:
        yield
    finally:
        event.remove(Engine, "before_cursor_execute", _count)


class _Looked(list[str]):
    """The statements seen, with ``looked`` set once there are ``first_look`` of them."""

    def __init__(self, *, first_look: int) -> None:
        super().__init__()
        self.first_look = first_look
        self.looked = asyncio.Event()

    def append(self, statement: str) -> None:
        super().append(statement)
        if len(self) >= self.first_look:
            self.looked.set()


async def counted(call: Callable[[], Awaitable[T]]) -> tuple[T, list[str]]:
    seen: list[str] = []
    token = _counting.set(seen)
    try:
        return await call(), seen
    finally:
        _counting.reset(token)


def dialect(api: Api) -> str:
    return "sqlite" if api.database_url.startswith("sqlite") else "postgresql"


async def test_the_statements_a_task_costs_from_submit_to_succeeded_are_pinned(
    api: Api, statements: None
) -> None:
    pool_id, token = await pool_with_token(api)
    costs: dict[str, int] = {}
    async with agent_client(api, token) as http:
        agent = FakeAgent(http, pool_id, "agent-1")
        await agent.register(2)
        await agent.claim([0, 1])  # the agent's first claim, before any work: not counted

        queued, seen = await counted(lambda: submit(api, pool_id, command="echo hello"))
        costs["submit"] = len(seen)
        assert queued["status"] == "running"  # given to the idle slot at once

        claim, seen = await counted(lambda: agent.claim([0, 1]))
        costs["claim"] = len(seen)
        (work,) = claim["assignments"]

        _, seen = await counted(lambda: agent.claim([1]))
        costs["claim, nothing new"] = len(seen)

        chunks = [{"seq": 0, "data": "hel"}, {"seq": 1, "data": "lo\n", "stream": "stderr"}]
        _, seen = await counted(lambda: agent.logs(work["task_id"], 0, chunks))
        costs["log batch"] = len(seen)

        _, seen = await counted(lambda: agent.result(work["task_id"], 0, "succeeded"))
        costs["result"] = len(seen)

        _, seen = await counted(lambda: agent.heartbeat())
        costs["heartbeat"] = len(seen)

    assert (await task(api, queued["id"]))["status"] == "succeeded"
    costs["task"] = costs["submit"] + costs["claim"] + costs["log batch"] + costs["result"]
    assert costs == PINNED[dialect(api)], f"statements per call changed: {costs}"


async def test_a_waiting_claim_reads_the_database_only_when_woken(
    api: Api, statements: None
) -> None:
    """A long poll costs its first look and one look per wake-up, never one per second; a
    pool whose queue is known to be empty is not probed for work."""
    pool_id, token = await pool_with_token(api)
    async with agent_client(api, token) as http:
        agent = FakeAgent(http, pool_id, "agent-1")
        await agent.register(1)
        answer, idle = await counted(lambda: agent.claim([0], wait=1.5))
        assert answer["assignments"] == []
        assert len(idle) == 3, idle  # the credential, the claim's heartbeat, the pod's tasks

        woken = _Looked(first_look=3)  # the credential, the heartbeat, the pod's tasks

        async def claim() -> dict[str, Any]:
            token = _counting.set(woken)
            try:
                answer: dict[str, Any] = await agent.claim([0], wait=10)
                return answer
            finally:
                _counting.reset(token)

        claiming = asyncio.create_task(claim())
        # Submitted once the claim has had its first look (a claim arms its wake-up before it
        # looks, so a submission right after that look still wakes it): on a busy machine a
        # fixed pause could let the submission come first, and the first look find the task.
        await asyncio.wait_for(woken.looked.wait(), timeout=30)
        queued = await submit(api, pool_id, command="x")
        answer = await claiming
    assert [a["task_id"] for a in answer["assignments"]] == [queued["id"]]
    assert len(woken) == 6, woken  # 3 before the wake-up, 2 after it and the delivery


async def test_a_result_that_brings_the_next_task_costs_what_is_pinned(
    api: Api, statements: None
) -> None:
    pool_id, token = await pool_with_token(api)
    async with agent_client(api, token) as http:
        agent = FakeAgent(http, pool_id, "agent-1")
        await agent.register(1)
        first = await submit(api, pool_id, command="echo one")
        second = await submit(api, pool_id, command="echo two")
        await agent.claim([0])

        answer, seen = await counted(lambda: agent.result(first["id"], 0, "succeeded", then=True))

    assert answer["then"]["task_id"] == second["id"]
    assert len(seen) == PINNED_RESULT_THEN[dialect(api)], seen


async def test_the_pool_list_costs_four_statements_however_many_pools(
    api: Api, statements: None
) -> None:
    """A page of pools: the pools, their windows, how many there are, their counts (Pods, slots,
    queued tasks); the same for 1 pool and for 6, with windows or without."""
    costs = []
    for n in range(6):
        config: dict[str, Any] = {"image": "busybox:1"}
        if n % 2:
            config["freeze_schedules"] = [
                {"from_time": "01:00", "to_time": "02:00", "weekdays": [1]}
            ]
        created = await api.client.post(
            "/api/v1/agent-pools", json={"name": f"p{n}", "k8s_config": config}
        )
        assert created.status_code == 201, created.text
        if n in (0, 5):
            listed, seen = await counted(
                lambda: api.client.get("/api/v1/agent-pools", params={"limit": 1000})
            )
            assert listed.status_code == 200
            assert len(listed.json()["items"]) == n + 1
            costs.append(len(seen))
    assert costs == [4, 4], f"statements per pool list changed: {costs}"
