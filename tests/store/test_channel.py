"""Several server processes on one PostgreSQL database: committed signals cross between them
(``store/channel.py``), also after the listening connection was cut, and what relies on them (a
waiting claim, the dispatcher's "queue drained" shortcut) works across them. Each "replica" here
is a Store, a Notifier and a SignalChannel with connections of their own, as a server process has.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

import psycopg
import pytest

from slotpool.domain import transitions
from slotpool.domain.signals import Signal
from slotpool.domain.tasks import StepStatus, TaskStatus, TaskSubmit
from slotpool.domain.transitions import StepReport
from slotpool.services.dispatch import Dispatcher
from slotpool.services.notify import Notifier
from slotpool.services.pools import PoolService
from slotpool.services.tasks import TaskService
from slotpool.store.channel import PAYLOAD_BYTES, SignalChannel, parse, payloads
from slotpool.store.migrate import upgrade
from slotpool.store.uow import Store
from tests.store.test_dispatch_concurrency import NOW, clock, settings_of, static_pool
from tests.support.postgres import PostgresServer

pytestmark = pytest.mark.postgres
SECONDS = 20.0  # the longest any wake-up here may take (they take milliseconds)


@pytest.fixture
def pg_url(pg_server: PostgresServer) -> Iterator[str]:
    with pg_server.temporary_database() as url:
        upgrade(url)
        yield url


@dataclass
class Replica:
    """What a server process keeps of the database: its store, notifier and channel."""

    store: Store
    notifier: Notifier
    channel: SignalChannel
    heard: list[Signal] = field(default_factory=list)  # what the channel delivered
    missed: int = 0  # how often it listened again after a loss


@contextlib.asynccontextmanager
async def replica(url: str) -> AsyncIterator[Replica]:
    store = Store(url)
    notifier = Notifier()
    store.subscribe(notifier.deliver)

    def deliver(signals: Sequence[Signal]) -> None:
        found.heard += signals
        notifier.deliver(signals)

    def missed() -> None:
        found.missed += 1
        notifier.wake_all()

    channel = SignalChannel(url, deliver=deliver, missed=missed)
    found = Replica(store, notifier, channel)
    await channel.start()
    store.subscribe(channel.publish)
    try:
        yield found
    finally:
        await channel.close()
        await store.close()


async def until(check: Callable[[], bool], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SECONDS
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"not in {SECONDS:g} s: {what}")
        await asyncio.sleep(0.01)


async def signal(store: Store, *signals: Signal) -> None:
    async with store.unit_of_work() as uow:
        uow.signal(*signals)


# -- payloads ------------------------------------------------------------------------------------


def test_payloads_stay_under_postgresqls_limit_and_round_trip() -> None:
    signals = [Signal.task(f"tsk-{i:032d}") for i in range(1000)] + [Signal.pod(7)]
    sent = payloads("origin-1", signals)
    assert len(sent) > 1
    assert all(len(p.encode()) <= PAYLOAD_BYTES for p in sent)
    parsed = [parse(p) for p in sent]
    assert {origin for origin, _ in parsed} == {"origin-1"}
    assert [s for _, found in parsed for s in found] == signals
    assert payloads("origin-1", []) == []


def test_a_line_that_is_no_signal_is_skipped() -> None:
    assert parse("o\ntask:t-1\nnewer_topic:x\npod:3") == ("o", [Signal.task("t-1"), Signal.pod(3)])


# -- across replicas ---------------------------------------------------------------------------


async def test_a_signal_committed_on_one_replica_wakes_a_waiter_on_another(pg_url: str) -> None:
    async with replica(pg_url) as a, replica(pg_url) as b:
        waiting = b.notifier.arm(Signal.pod(42))
        await signal(a.store, Signal.pod(42), Signal.pool("ap-1"))
        await asyncio.wait_for(waiting.wait(), SECONDS)
        await until(lambda: Signal.pool("ap-1") in b.heard, "b heard the pool")
        # A rolled-back unit of work sends nothing; a's own signals do not come back to a.
        with contextlib.suppress(RuntimeError):
            async with a.store.unit_of_work() as uow:
                uow.signal(Signal.task("rolled-back"))
                raise RuntimeError
        await signal(a.store, Signal.task("after"))
        await until(lambda: Signal.task("after") in b.heard, "b heard the later signal")
    assert Signal.task("rolled-back") not in b.heard
    assert a.heard == []


async def test_many_signals_of_one_commit_all_arrive(pg_url: str) -> None:
    """More than one NOTIFY payload can carry (8000 bytes): they are split."""
    many = [Signal.task(f"tsk-{i:040d}") for i in range(800)]
    async with replica(pg_url) as a, replica(pg_url) as b:
        await signal(a.store, *many)
        await until(lambda: set(many) <= set(b.heard), "every signal arrived")


async def _terminate_listeners(url: str) -> int:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as admin:
        cursor = await admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND query LIKE 'LISTEN%%'"
            " AND pid <> pg_backend_pid()"
        )
        row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def test_a_replica_whose_listening_connection_was_cut_wakes_its_waiters_and_hears_again(
    pg_url: str,
) -> None:
    async with replica(pg_url) as a, replica(pg_url) as b:
        waiting = b.notifier.arm(Signal.pod(7))  # an agent's claim, long-polling on b
        assert await _terminate_listeners(pg_url) == 2
        # Whatever was sent while b did not listen is lost: b wakes its waiters once it
        # listens again, so the claim looks at the database instead of sleeping on.
        await asyncio.wait_for(waiting.wait(), SECONDS)
        await until(lambda: b.missed >= 1 and b.channel.listening.is_set(), "b listens again")
        await signal(a.store, Signal.pod(8))
        await until(lambda: Signal.pod(8) in b.heard, "b hears a's signal after the cut")


async def test_a_task_submitted_on_one_replica_is_dispatched_on_another_that_found_the_queue_empty(
    pg_url: str,
) -> None:
    """Replica A found the queue empty (its shortcut skips the queue probe when room comes
    free); a task queued through replica B, which had no room then, must still start on A."""
    settings = settings_of(pg_url)
    async with replica(pg_url) as a, replica(pg_url) as b:
        _, pool = await static_pool(a.store, settings, "across", slots=1)
        dispatchers = []
        for r in (a, b):
            d = Dispatcher(r.store, PoolService(r.store, settings, clock), clock)
            r.notifier.listen(d.heard)
            dispatchers.append(d)
        on_a, on_b = dispatchers
        async with a.store.unit_of_work() as uow:
            pod = await uow.pods.register(
                pool_id=pool.pool_id,
                name="p",
                slots=1,
                version="t",
                config_hash=None,
                credential_digest=None,
                now=NOW,
            )
        body = TaskSubmit.model_validate({"pool_id": pool.pool_id, "command": "true"})
        first = await TaskService(a.store, on_a, a.notifier, clock).submit(body, by="test")
        assert first.status is TaskStatus.running  # A's pass took the slot, found none left
        assert not on_a.may_have_queued(pool.pool_id)

        second = await TaskService(b.store, on_b, b.notifier, clock).submit(body, by="test")
        assert second.status is TaskStatus.queued  # B had no room
        await until(lambda: on_a.may_have_queued(pool.pool_id), "A heard of the queued task")

        async with a.store.unit_of_work() as uow:  # the first task ends on A: room again
            running = await uow.tasks.get(first.id)
            assert running is not None
            report = StepReport(0, StepStatus.succeeded, exit_code=0, message="")
            change = transitions.step_ended(running, report, reservation_ttl=timedelta(), now=NOW)
            assert await uow.apply(change)
        assert await on_a.fill(pool.pool_id) == 1
        async with a.store.unit_of_work() as uow:
            started = await uow.tasks.get(second.id)
        assert started is not None
        assert (started.status, started.pod_id) == (TaskStatus.running, pod.id)
        # A's own pass did not undo the shortcut it had just earned.
        assert not on_a.may_have_queued(pool.pool_id)


async def test_missed_signals_make_the_dispatcher_look_at_every_queue_again(pg_url: str) -> None:
    settings = settings_of(pg_url)
    async with replica(pg_url) as a:
        _, pool = await static_pool(a.store, settings, "missed", slots=1)
        dispatcher = Dispatcher(a.store, PoolService(a.store, settings, clock), clock)
        a.notifier.listen(dispatcher.heard)
        async with a.store.unit_of_work() as uow:
            await uow.pods.register(
                pool_id=pool.pool_id,
                name="p",
                slots=1,
                version="t",
                config_hash=None,
                credential_digest=None,
                now=NOW,
            )
        assert await dispatcher.dispatch(pool.pool_id) == 0
        assert not dispatcher.may_have_queued(pool.pool_id)
        a.notifier.wake_all()
        assert dispatcher.may_have_queued(pool.pool_id)
