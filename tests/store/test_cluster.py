"""The controller's lease in the database (``store/cluster.py``), on both databases: one holder
at a time, a term that grows by one at each election, renewals only by the holder of that term,
an expired lease free for anyone, a released one at once."""

from __future__ import annotations

import asyncio

from slotpool.domain.leadership import PodSettings
from slotpool.store.uow import Store

SETTINGS = PodSettings(public_url="http://a:8080", default_namespace="agents")
OTHER = PodSettings(public_url="http://b:8080", default_namespace="agents")


async def acquire(
    store: Store, me: str, *, lease: float = 30.0, take_over: bool = False
) -> int | None:
    async with store.unit_of_work() as uow:
        return await uow.cluster.acquire(
            me, lease_seconds=lease, settings=SETTINGS, take_over=take_over
        )


async def renew(store: Store, me: str, term: int, *, lease: float = 30.0) -> bool:
    async with store.unit_of_work() as uow:
        return await uow.cluster.renew(me, term, lease_seconds=lease, settings=SETTINGS) is not None


async def test_one_holder_at_a_time_and_the_term_grows(store: Store) -> None:
    async with store.unit_of_work() as uow:
        before = await uow.cluster.leader()
    assert before.replica_id is None
    assert before.term == 0
    assert before.leads is None

    assert await acquire(store, "a") == 1
    assert await acquire(store, "b") is None  # a holds it
    assert await acquire(store, "a") is None  # not twice either
    assert await renew(store, "a", 1)
    assert not await renew(store, "b", 1)  # only the holder renews
    assert not await renew(store, "a", 0)  # and only its own term

    async with store.unit_of_work() as uow:
        leader = await uow.cluster.leader()
        assert await uow.cluster.hold("a", 1)
        assert not await uow.cluster.hold("b", 1)
    assert leader.leads == "a"
    assert leader.term == 1
    assert leader.pod_settings == SETTINGS
    assert leader.first_pass_at is None

    async with store.unit_of_work() as uow:
        assert not await uow.cluster.release("b", 1)  # not b's to give
        assert await uow.cluster.release("a", 1)
    assert await acquire(store, "b") == 2  # at once, no lease to wait for
    assert not await renew(store, "a", 1)


async def test_an_expired_lease_is_anyones_and_its_holder_cannot_renew_it(store: Store) -> None:
    assert await acquire(store, "a", lease=0.2) == 1
    await asyncio.sleep(0.4)  # the lease runs out, unrenewed
    async with store.unit_of_work() as uow:
        assert (await uow.cluster.leader()).leads is None
        assert not await uow.cluster.hold("a", 1)
    assert not await renew(store, "a", 1)
    assert await acquire(store, "b") == 2
    async with store.unit_of_work() as uow:
        assert (await uow.cluster.leader()).leads == "b"


async def test_a_restart_under_the_same_name_takes_its_own_lease_over(store: Store) -> None:
    assert await acquire(store, "a") == 1
    assert await acquire(store, "b", take_over=False) is None
    assert await acquire(store, "a", take_over=True) == 2  # the old process of "a" is gone
    taken = await acquire(store, "b", take_over=True)
    # PostgreSQL: only from its own name. SQLite (one server per file): from anyone.
    assert taken == (3 if store.backend == "sqlite" else None)


async def test_the_first_pass_is_recorded_once_for_the_leaders_term(store: Store) -> None:
    assert await acquire(store, "a") == 1
    async with store.unit_of_work() as uow:
        await uow.cluster.first_pass("b", 1)  # not the leader: nothing
        assert (await uow.cluster.leader()).first_pass_at is None
        await uow.cluster.first_pass("a", 1)
        first = (await uow.cluster.leader()).first_pass_at
    assert first is not None
    async with store.unit_of_work() as uow:
        await uow.cluster.first_pass("a", 1)
        assert (await uow.cluster.leader()).first_pass_at == first


async def test_replicas_say_they_are_alive_and_old_ones_drop_out(store: Store) -> None:
    async with store.unit_of_work() as uow:
        for name, settings in (("a", SETTINGS), ("b", OTHER)):
            await uow.cluster.heartbeat(
                name, host="h", pid=7, version="1", settings=settings, stopping=False
            )
    async with store.unit_of_work() as uow:
        await uow.cluster.heartbeat(
            "a", host="h", pid=7, version="1", settings=SETTINGS, stopping=True
        )
        found = await uow.cluster.replicas(seen_within=60)
    assert [(r.replica_id, r.stopping, r.pod_settings) for r in found] == [
        ("a", True, SETTINGS),
        ("b", False, OTHER),
    ]
    assert found[0].started_at <= found[0].last_seen_at
    await asyncio.sleep(0.3)
    async with store.unit_of_work() as uow:
        await uow.cluster.heartbeat(
            "b", host="h", pid=7, version="1", settings=OTHER, stopping=False
        )
    async with store.unit_of_work() as uow:
        assert [r.replica_id for r in await uow.cluster.replicas(seen_within=0.2)] == ["b"]
        assert await uow.cluster.forget_replicas(unseen_for=0.2) == 1
        assert [r.replica_id for r in await uow.cluster.replicas(seen_within=60)] == ["b"]
