"""The election and its fencing, in this process: several electors (each its own store, as
separate processes would have) on one PostgreSQL database; a leader's work fenced by its lease."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest

from slotpool.clock import utc_now
from slotpool.domain.leadership import CURRENT, Lease, NotLeader, PodSettings
from slotpool.services.cluster import Election
from slotpool.services.notify import Notifier
from slotpool.services.pools import PoolService
from slotpool.settings import Settings
from slotpool.store.channel import SignalChannel
from slotpool.store.migrate import upgrade
from slotpool.store.uow import Store
from tests.controller.conftest import World

LEASE, RENEW = 5.0, 1.0  # a busy machine may delay a renewal by a second or more
WAIT = 30.0  # a bound for what should happen within a lease or two, not a measure of it


def leader_settings(
    url: str,
    name: str,
    public_url: str = "http://a:8080",
    *,
    lease: float = LEASE,
    renew: float = RENEW,
) -> Settings:
    return Settings(
        database_url=url,
        replica_id=name,
        leader_lease_seconds=lease,
        leader_renew_seconds=renew,
        local_runtime=False,
        public_url=public_url,
    )


class Elector:
    """An ``Election`` whose leader's work only says it runs (``working``)."""

    def __init__(
        self,
        url: str,
        name: str,
        working: set[str],
        public_url: str,
        *,
        lease: float = LEASE,
        renew: float = RENEW,
    ) -> None:
        self.store = Store(url)
        settings = leader_settings(url, name, public_url, lease=lease, renew=renew)
        self.pools = PoolService(self.store, settings, utc_now)
        self.name = name

        async def work() -> None:
            working.add(name)
            try:
                await asyncio.Event().wait()
            finally:
                working.discard(name)

        self.election = Election(
            store=self.store, settings=settings, pools=self.pools, work=lambda: [work()]
        )

    async def crash(self) -> None:
        """As SIGKILL: its loop and work end, the lease is not given up."""
        loop = self.election._loop
        assert loop is not None
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
        for task in self.election._tasks:
            task.cancel()
        await asyncio.gather(*self.election._tasks, return_exceptions=True)
        self.election.lease = None


async def until(check: Callable[[], bool], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while not check():
        assert loop.time() < deadline, f"not within {WAIT} s: {what}"
        await asyncio.sleep(0.05)


@pytest.fixture
async def pg_url(pg_server: Any) -> AsyncIterator[str]:
    with pg_server.temporary_database() as url:
        upgrade(url)
        yield url


@pytest.mark.postgres
async def test_one_of_three_leads_and_another_takes_over_when_it_dies(pg_url: str) -> None:
    working: set[str] = set()
    urls = {"a": "http://a:8080", "b": "http://b:8080", "c": "http://a:8080"}
    electors = [Elector(pg_url, name, working, urls[name]) for name in "abc"]
    try:
        for elector in electors:
            await elector.election.start()
        leaders = [e for e in electors if e.election.leads]
        assert len(leaders) == 1, "the first to start leads at once, the others follow"
        first = leaders[0]
        assert working == {first.name}
        term = first.election.lease.term if first.election.lease else 0
        await asyncio.sleep(LEASE)  # several renewals: still one leader, the same one
        assert [e.name for e in electors if e.election.leads] == [first.name]
        # Every replica builds Pods with the leader's settings, whatever its own say.
        assert {e.pools.pod_settings for e in electors} == {first.pools.own_pod_settings}

        await first.crash()
        rest = [e for e in electors if e is not first]
        await until(lambda: any(e.election.leads for e in rest), "another replica leads")
        (second,) = [e for e in rest if e.election.leads]
        assert working == {second.name}
        assert second.election.lease is not None
        assert second.election.lease.term == term + 1

        await second.election.stop()  # a hand-over: the third leads at its next renewal
        (third,) = [e for e in rest if e is not second]
        await until(lambda: third.election.leads, "the last replica leads")
        assert third.election.lease is not None
        assert third.election.lease.term == term + 2
        assert working == {third.name}
        view = await third.election.view()
        assert view.leader is not None
        assert view.leader.replica_id == third.name
        by_name = {r.replica.replica_id: r for r in view.replicas}
        assert by_name[second.name].replica.stopping
        assert [r.leader for r in view.replicas].count(True) == 1
        b_differs = by_name["b"].disagreements != []
        assert b_differs == (third.pools.own_pod_settings.public_url != "http://b:8080")
    finally:
        for elector in electors:
            await elector.election.stop()
            await elector.store.close()


@pytest.mark.postgres
async def test_a_leader_paused_past_its_lease_stops_its_work_when_it_wakes(pg_url: str) -> None:
    working: set[str] = set()
    now = [0.0]
    elector = Elector(pg_url, "a", working, "http://a:8080")
    elector.election._monotonic = lambda: now[0]
    try:
        await elector.election.round()  # its rounds by hand: the test says when time passes
        lease = elector.election.lease
        assert lease is not None
        await until(lambda: working == {"a"}, "the leader's work runs")
        lease.monotonic = lambda: now[0]
        now[0] += LEASE  # as after a SIGSTOP: the monotonic clock moved on meanwhile
        assert not elector.election.leads
        with pytest.raises(NotLeader, match="not renewed in time"):
            lease.check()
        await elector.election.round()  # its first round after waking
        assert working == set()
        assert lease.lost is not None
        # The database still names its old term (real time hardly passed): it follows until
        # that runs out, then is elected again, with a new term.
        assert elector.election.lease is None
        await asyncio.sleep(LEASE)
        await elector.election.round()
        assert elector.election.lease is not None
        assert elector.election.lease.term == lease.term + 1
        await until(lambda: working == {"a"}, "the new term's work runs")
    finally:
        await elector.election.stop()
        await elector.store.close()


def as_leader(lease: Lease, call: Callable[[], Coroutine[Any, Any, Any]]) -> asyncio.Task[Any]:
    """``call`` run as the leader's work runs: in a task carrying ``lease``."""
    context = contextvars.copy_context()
    context.run(CURRENT.set, lease)
    return asyncio.get_running_loop().create_task(call(), context=context)


async def test_the_leaders_runtime_writes_are_refused_once_its_lease_ran_out(
    world: World,
) -> None:
    pool = await world.pool(min_replicas=1)
    now = [0.0]
    lease = Lease("a", 1, deadline=10.0, monotonic=lambda: now[0])
    now[0] = 10.0  # its deadline passed
    with pytest.raises(NotLeader, match="not renewed in time"):
        await as_leader(
            lease, lambda: world.services.controller.run_pass(pool.pool_id, check_secret=False)
        )
    assert world.runtime.calls["create_agent"] == 0
    assert world.runtime.of(pool.pool_id) == []

    # The same pass as a request sets it off (a sync on any replica): not fenced.
    await world.services.controller.run_pass(pool.pool_id, check_secret=False)
    assert len(world.runtime.of(pool.pool_id)) == 1


async def test_a_leader_cannot_delete_a_pod_once_its_lease_is_lost(world: World) -> None:
    pool = await world.pool(min_replicas=1)
    await world.services.controller.run_pass(pool.pool_id, check_secret=False)
    (name,) = world.runtime.of(pool.pool_id)
    lease = Lease("a", 1, deadline=float("inf"))
    lease.lose("another replica was elected")
    runtime = world.services.controller.reconciler._runtimes.for_pool(pool)
    with pytest.raises(NotLeader, match="another replica was elected"):
        await as_leader(lease, lambda: runtime.delete_pod("agents", name))
    assert world.runtime.deleted == []


@pytest.mark.postgres
async def test_a_leaders_unit_of_work_is_refused_once_a_newer_term_exists(pg_url: str) -> None:
    store, other = Store(pg_url), Store(pg_url)
    settings = PodSettings(public_url="http://a:8080", default_namespace="agents")
    try:
        async with store.unit_of_work() as uow:
            term = await uow.cluster.acquire(
                "a", lease_seconds=0.5, settings=settings, take_over=False
            )
        assert term == 1
        lease = Lease("a", 1, deadline=float("inf"))  # by its own clock, it still leads

        async def work() -> None:
            async with store.unit_of_work() as uow:
                await uow.pools.list(limit=1, offset=0, name=None)

        async def elect_b() -> int | None:
            async with other.unit_of_work() as uow:
                return await uow.cluster.acquire(
                    "b", lease_seconds=30, settings=settings, take_over=False
                )

        # While a unit of work of the leader is open, a newer election waits for it to end.
        holding, done = asyncio.Event(), asyncio.Event()

        async def long_work() -> None:
            async with store.unit_of_work() as uow:
                await uow.pools.list(limit=1, offset=0, name=None)
                holding.set()
                await done.wait()

        worker = as_leader(lease, long_work)
        await holding.wait()
        await asyncio.sleep(0.7)  # a's lease has run out in the database meanwhile
        election = asyncio.create_task(elect_b())
        await asyncio.sleep(0.5)
        assert not election.done(), "b's election waits for a's unit of work"
        done.set()
        await worker
        assert await election == 2

        with pytest.raises(NotLeader, match="newer term"):
            await as_leader(lease, work)
        assert lease.lost is not None
    finally:
        await store.close()
        await other.close()


@pytest.mark.postgres
async def test_a_lease_given_up_is_taken_at_once_by_a_replica_that_hears_of_it(
    pg_url: str,
) -> None:
    """Over the signal channel, as between server processes: the leader that stops says so, and
    the follower stands for election then, not at its next renewal (here 25 s away)."""
    working: set[str] = set()
    lease, renew = 60.0, 25.0
    electors: list[Elector] = []
    channels: list[SignalChannel] = []
    try:
        for name in "ab":
            elector = Elector(pg_url, name, working, "http://a:8080", lease=lease, renew=renew)
            notifier = Notifier()
            notifier.listen(elector.election.heard)
            channel = SignalChannel(pg_url, deliver=notifier.deliver, missed=notifier.wake_all)
            await channel.start()
            elector.store.subscribe(channel.publish)
            channels.append(channel)
            electors.append(elector)
            await elector.election.start()
        a, b = electors
        assert a.election.leads
        assert not b.election.leads
        await a.election.stop()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10.0  # well below the 25 s until b's next renewal
        while not b.election.leads:
            assert loop.time() < deadline, "b waited for its renewal: it did not hear of it"
            await asyncio.sleep(0.05)
        assert working == {"b"}
    finally:
        for elector in electors:
            await elector.election.stop()
        for channel in channels:
            await channel.close()
        for elector in electors:
            await elector.store.close()
