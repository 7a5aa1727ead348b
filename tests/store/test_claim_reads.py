"""What a claim reads (``TaskRepository.to_answer``), on SQLite and PostgreSQL: the tasks of the
pod it must answer about (in an offered slot, not delivered yet, asked to cancel), and none of the
pod's other busy slots, nor another pod's tasks."""

from __future__ import annotations

from slotpool.domain import transitions
from slotpool.domain.pods import Pod
from slotpool.store.uow import Store
from tests.store.test_transitions import NOW, POOL, queued, read, running, store

__all__ = ["store"]  # the fixture with the tasks' pool


async def four_slots(store: Store, name: str) -> Pod:
    async with store.unit_of_work() as uow:
        return await uow.pods.register(
            pool_id=POOL,
            name=name,
            slots=4,
            version="t",
            config_hash=None,
            credential_digest=None,
            now=NOW,
        )


async def test_a_claim_reads_only_the_tasks_its_answer_is_about(store: Store) -> None:
    pod, other = await four_slots(store, "agent-1"), await four_slots(store, "agent-2")
    busy = await running(store, pod, 0)  # delivered, its slot not offered: not read
    again = await running(store, pod, 1)  # delivered, its slot offered again (a lost answer)
    cancelled = await running(store, pod, 3)
    change = transitions.cancel(cancelled, by="someone", now=NOW)
    assert change is not None
    fresh = await queued(store)  # given a slot by the dispatcher, its step not handed over yet
    async with store.unit_of_work() as uow:
        assert await uow.tasks.apply(change)
        assert await uow.pods.take_slot(pod.id, 2, task_id=fresh.id, now=NOW)
        assert await uow.tasks.start(fresh.id, pod_id=pod.id, pod_name=pod.name, slot=2, now=NOW)
    elsewhere = await queued(store)
    async with store.unit_of_work() as uow:
        assert await uow.pods.take_slot(other.id, 2, task_id=elsewhere.id, now=NOW)
        assert await uow.tasks.start(
            elsewhere.id, pod_id=other.id, pod_name=other.name, slot=2, now=NOW
        )

    async with store.unit_of_work() as uow:
        read_for_claim = await uow.tasks.to_answer(pod.id, [1])
        read_for_nothing_offered = await uow.tasks.to_answer(pod.id, [])

    assert {t.id for t in read_for_claim} == {again.id, fresh.id, cancelled.id}
    assert {t.id for t in read_for_nothing_offered} == {fresh.id, cancelled.id}
    assert busy.id not in {t.id for t in read_for_claim}
    assert (await read(store, cancelled.id)).cancel_requested
