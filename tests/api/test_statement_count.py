"""How many SQL statements a task costs on the request path, from submit to ``succeeded``.

The counts are pinned: a change that adds a query to the task path fails here, on both databases,
rather than as a slower benchmark weeks later; a change that removes one updates the pin (and says
so in its message). Only the statements a request runs are counted (a context variable set around
each call, which the app's request handling inherits); the controller's and the sweeper's own
passes run in their own tasks and are measured by the controller benchmark instead.

The path: submit a command into a pool whose agent has an idle slot waiting (the dispatcher gives
it a slot at once), the agent's claim that picks it up, two log chunks, the step's result.
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from tests.api.conftest import Api
from tests.api.test_tasks_protocol import FakeAgent, agent_client, pool_with_token, submit, task

T = TypeVar("T")

# statements per call of the task path, as measured on the commit that pinned them
PINNED: dict[str, dict[str, int]] = {
    "sqlite": {"submit": 8, "claim": 8, "log chunk": 3, "result": 4, "heartbeat": 3, "task": 26},
    "postgresql": {
        "submit": 8,
        "claim": 8,
        "log chunk": 3,
        "result": 4,
        "heartbeat": 3,
        "task": 26,
    },
}

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

        _, seen = await counted(lambda: agent.log(work["task_id"], 0, 0, "hel"))
        costs["log chunk"] = len(seen)
        await agent.log(work["task_id"], 0, 1, "lo\n")

        _, seen = await counted(lambda: agent.result(work["task_id"], 0, "succeeded"))
        costs["result"] = len(seen)

        _, seen = await counted(lambda: agent.heartbeat())
        costs["heartbeat"] = len(seen)

    assert (await task(api, queued["id"]))["status"] == "succeeded"
    costs["task"] = costs["submit"] + costs["claim"] + 2 * costs["log chunk"] + costs["result"]
    assert costs == PINNED[dialect(api)], f"statements per call changed: {costs}"
