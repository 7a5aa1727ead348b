"""A pool's history over the API on both databases: samples written by the server's own sampler
(a one-second interval, the test's clock), the scaling decisions and freeze intervals of the
range, and a 422 naming the query field for every range that cannot be answered."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from slotpool.api.app import create_app
from slotpool.domain.events import NewEvent, Outcome
from slotpool.store.migrate import upgrade
from slotpool.store.uow import Store
from tests.api.conftest import ADMIN_TOKEN, Api, settings_for
from tests.api.test_pools_api import POOLS, create_pool
from tests.api.test_tasks_protocol import (
    FakeAgent,
    agent_client,
    eventually,
    pool_with_token,
    submit,
)
from tests.support.clock import Clock
from tests.support.server import asgi_client


@pytest.fixture
async def api(database_url: str) -> AsyncIterator[Api]:
    """The app sampling every second (of the test's clock, which only the test moves)."""
    upgrade(database_url)
    settings = settings_for(database_url, history_interval_seconds=1)
    clock = Clock()
    async with asgi_client(create_app(settings, clock=clock), ADMIN_TOKEN) as client:
        yield Api(client=client, settings=settings, clock=clock, database_url=database_url)


async def history(api: Api, pool_id: str, **params: str) -> dict[str, Any]:
    response = await api.client.get(f"{POOLS}/{pool_id}/history", params=params)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def latest(found: dict[str, Any]) -> dict[str, Any]:
    point: dict[str, Any] = found["points"][-1]
    return point


async def sampled(api: Api, pool_id: str, **want: int | None) -> dict[str, Any]:
    """The clock moved to the next sampling instant, and the history once its newest point has
    ``want`` (the sampler runs about every second of real time)."""
    api.clock.advance(seconds=1)
    found: dict[str, Any] = {}

    async def shows() -> bool:
        found.update(await history(api, pool_id, range="15m"))
        return all(latest(found)[key] == value for key, value in want.items())

    await eventually(shows)
    return found


async def rows(api: Api, pool_id: str) -> int:
    """How many samples of the pool are stored (all are within a day of the test's clock)."""
    store = Store(api.database_url)
    day = timedelta(days=1)
    try:
        async with store.unit_of_work() as uow:
            stored = await uow.history.between(
                pool_id, since=api.clock.now - day, until=api.clock.now + day, limit=10_000
            )
    finally:
        await store.close()
    return len(stored)


async def test_the_sampler_records_slots_queue_and_pods_and_the_history_draws_them(
    api: Api,
) -> None:
    pool_id, token = await pool_with_token(api, "busy")
    quiet = (await create_pool(api, "quiet", pool_type="static"))["pool_id"]
    async with agent_client(api, token) as http:
        agent = FakeAgent(http, pool_id, "a")
        await agent.register(2)
        await sampled(api, pool_id, slots_idle=2, slots_busy=0)
        tasks = [await submit(api, pool_id, command=f"echo {n}") for n in range(3)]
        await sampled(api, pool_id, slots_busy=2, tasks_queued=1)
        running = [t["id"] for t in tasks[:2]]
        for task_id in running:
            await agent.result(task_id, 0, "succeeded")
        found = await sampled(api, pool_id, slots_busy=1, tasks_queued=0)

    assert latest(found) | {"at": None} == {
        "at": None,
        "slots_busy": 1,  # the third task took a slot freed by the first two
        "slots_reserved": 0,
        "slots_idle": 1,
        "tasks_queued": 0,
        "tasks_awaiting_approval": 0,
        "pods_pending": 0,
        "pods_starting": 0,
        "pods_ready": 1,
        "pods_stopping": 0,
        "pods_desired": None,  # a static pool: no controller decides its Pods
    }
    points = found["points"]
    assert found["step_seconds"] == found["interval_seconds"] == 1
    assert len(points) == 15 * 60 + 1  # a point a second, the range's ends included
    steps = {
        datetime.fromisoformat(b["at"]) - datetime.fromisoformat(a["at"])
        for a, b in itertools.pairwise(points)
    }
    assert steps == {timedelta(seconds=1)}
    busy = [p["slots_busy"] for p in points]
    assert busy[-3:] == [0, 2, 1]
    assert busy[0] is None  # no sample in force 15 minutes ago
    assert datetime.fromisoformat(found["until"]) == api.clock.now

    # A pool is written when its values change: the idle one once, shown as holding since.
    values = [{**p, "at": None} for p in points if p["slots_busy"] is not None]
    changes = 1 + sum(a != b for a, b in itertools.pairwise(values))
    assert await rows(api, pool_id) == changes
    assert latest(await history(api, quiet, range="15m"))["slots_idle"] == 0
    assert await rows(api, quiet) == 1


async def test_the_range_has_the_scaling_decisions_in_it_and_no_other_event(api: Api) -> None:
    pool_id, _ = await pool_with_token(api, "decided")
    now = api.clock.now
    store = Store(api.database_url)

    def event(action: str, reason: str, message: str) -> NewEvent:
        return NewEvent(
            action=action, reason=reason, message=message, outcome=Outcome.done, inputs={}
        )

    try:
        async with store.unit_of_work() as uow:
            for ago, made in (
                (timedelta(hours=2), event("create_pods", "scale_up", "too old")),
                (timedelta(minutes=30), event("create_pods", "scale_up", "3 Pods for 9 tasks")),
                (timedelta(minutes=20), event("rotate_token", "rotated", "not a decision")),
                (timedelta(minutes=10), event("hold", "max_replicas", "at max_replicas 3")),
                (timedelta(minutes=5), event("delete_pod", "scale_down", "idle for 60s")),
            ):
                await uow.events.add(pool_id, [made], now=now - ago)
    finally:
        await store.close()

    found = await history(api, pool_id, range="1h")
    decisions = [(d["action"], d["reason"], d["message"]) for d in found["decisions"]]
    assert decisions == [
        ("create_pods", "scale_up", "3 Pods for 9 tasks"),
        ("hold", "max_replicas", "at max_replicas 3"),
        ("delete_pod", "scale_down", "idle for 60s"),
    ]
    assert {d["outcome"] for d in found["decisions"]} == {"done"}


async def test_freeze_windows_in_the_range_are_intervals_without_the_unfrozen_span(
    api: Api,
) -> None:
    pool_id, _ = await pool_with_token(api, "frozen")
    friday = 5  # the test clock starts on Friday 2026-11-20 12:00 UTC
    for frm, to in (("11:00", "11:30"), ("12:30", "13:30")):
        window = {"from_time": frm, "to_time": to, "weekdays": [friday], "timezone": "UTC"}
        added = await api.client.post(f"{POOLS}/{pool_id}/freeze-schedules", json=window)
        assert added.status_code == 201, added.text
    lifted = await api.client.post(
        f"{POOLS}/{pool_id}/one-time-unfreeze", json={"until": "2026-11-20T13:00:00Z"}
    )
    assert lifted.status_code == 200, lifted.text

    found = await history(
        api, pool_id, since="2026-11-20T10:00:00Z", until="2026-11-20T15:00:00+00:00"
    )
    intervals = [(f["start"], f["end"], f["policy"]) for f in found["freeze"]]
    assert intervals == [
        ("2026-11-20T11:00:00Z", "2026-11-20T11:30:00Z", "scale_to_zero"),
        ("2026-11-20T13:00:00Z", "2026-11-20T13:30:00Z", "scale_to_zero"),  # lifted 12:00-13:00
    ]
    assert "Fri 12:30-13:30 UTC" in found["freeze"][1]["windows"][0]
    # The future has no points: they end at the reading's now.
    assert datetime.fromisoformat(latest(found)["at"]) <= api.clock.now


@pytest.mark.parametrize(
    ("params", "field", "says"),
    [
        ({"range": "1w"}, "query.range", "such as 15m, 1h, 6h, 24h or 7d"),
        ({"range": "90m", "since": "2026-11-20T11:00:00Z"}, "query.range", "not both"),
        ({"range": "x" * 17}, "query.range", "at most 16 characters"),
        ({"since": "2026-11-20T11:00:00"}, "query.since", "timezone"),
        ({"since": "yesterday"}, "query.since", "datetime"),
        (
            {"since": "2026-11-20T11:00:00Z", "until": "2026-11-20T10:00:00Z"},
            "query.until",
            "must be before until",
        ),
        ({"since": "2026-11-20T13:00:00Z"}, "query.since", "must be before until"),
        # One-second sampling: a range reads at most 50,000 samples, 13h 53m.
        ({"range": "14h"}, "query.range", "the range is 14h; it may be at most 13h 53m"),
        ({"since": "2026-10-01T00:00:00Z"}, "query.since", "it may be at most 13h 53m"),
    ],
)
async def test_a_range_that_cannot_be_answered_is_a_422_naming_the_field(
    api: Api, params: dict[str, str], field: str, says: str
) -> None:
    pool_id, _ = await pool_with_token(api, "asked")
    response = await api.client.get(f"{POOLS}/{pool_id}/history", params=params)
    assert response.status_code == 422, response.text
    (detail,) = response.json()["details"]
    assert detail["field"] == field
    assert says in detail["message"], detail


async def test_the_longest_range_is_said_and_answered_and_an_unknown_pool_is_a_404(
    api: Api,
) -> None:
    pool_id, _ = await pool_with_token(api, "long")
    found = await history(api, pool_id, range="13h")
    assert found["max_range_seconds"] == 50_000
    assert len(found["points"]) <= 1002
    assert found["step_seconds"] == 47  # 13 h in at most 1,000 steps
    too_long = await api.client.get(f"{POOLS}/{pool_id}/history", params={"range": "14h"})
    assert "50,000 sampling intervals of 1 s" in too_long.json()["details"][0]["hint"]
    missing = await api.client.get(f"{POOLS}/pool-0000000000000000/history")
    assert missing.status_code == 404
