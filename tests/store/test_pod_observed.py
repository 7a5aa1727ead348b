"""A runtime observation never undoes an agent's registration that happened after it was read.

The keeper reads a pod (``starting``), the agent registers (``ready``) in another transaction,
then the keeper writes what the runtime reported: a running pod it still believes ``starting``.
The pod must stay ``ready``; otherwise it would be stuck ``starting`` and never get a task.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from slotpool.domain.config import PoolType
from slotpool.domain.pods import EndCause, PodEnd, PodState
from slotpool.store.pools import NewPool
from slotpool.store.uow import Store

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
POOL = "pool-0123456789abcdef"


@pytest.fixture
async def store(store: Store) -> Store:
    """The migrated store (conftest), with the pool these tests record pods of."""
    async with store.unit_of_work() as uow:
        await uow.pools.add(NewPool(POOL, "p", "", PoolType.local, None, by="test", now=NOW))
    return store


async def adopt_starting(store: Store, name: str) -> int:
    async with store.unit_of_work() as uow:
        return await uow.pods.adopt(
            pool_id=POOL,
            name=name,
            slots=1,
            config_hash="h",
            state=PodState.starting,
            phase="Running",
            node="localhost",
            reason="",
            created_at=NOW,
            uid_digest=None,
            now=NOW,
        )


async def state_of(store: Store, pod_id: int) -> PodState:
    async with store.unit_of_work() as uow:
        pod = await uow.pods.get(pod_id)
    assert pod is not None
    return pod.state


@pytest.mark.parametrize("meanwhile", [PodState.ready, PodState.draining, PodState.terminating])
@pytest.mark.parametrize("read", [PodState.starting, PodState.ready, PodState.draining])
async def test_a_stale_observation_keeps_what_happened_meanwhile(
    store: Store, read: PodState, meanwhile: PodState
) -> None:
    """The keeper read ``read`` (so a running Pod is reported as that), then ``meanwhile``
    happened (the agent registered or drains, or slotpool began deleting the Pod)."""
    pod_id = await adopt_starting(store, "a")
    async with store.unit_of_work() as uow:
        await uow.pods.set_state(pod_id, read, reason="", now=NOW)
    async with store.unit_of_work() as uow:
        await uow.pods.set_state(pod_id, meanwhile, reason="", now=NOW)
    async with store.unit_of_work() as uow:  # the keeper's write, from its earlier read
        await uow.pods.observed(pod_id, state=read, phase="Running", node="n1", reason="", now=NOW)
    assert await state_of(store, pod_id) is meanwhile


async def test_other_observations_are_written(store: Store) -> None:
    pod_id = await adopt_starting(store, "b")
    async with store.unit_of_work() as uow:
        await uow.pods.set_state(pod_id, PodState.ready, reason="", now=NOW)
        await uow.pods.observed(
            pod_id, state=PodState.terminating, phase="Running", node="n1", reason="", now=NOW
        )
    assert await state_of(store, pod_id) is PodState.terminating
    pending = await adopt_starting(store, "c")
    async with store.unit_of_work() as uow:
        await uow.pods.observed(
            pending, state=PodState.pending, phase="Pending", node=None, reason="x", now=NOW
        )
    assert await state_of(store, pending) is PodState.pending


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (PodState.starting, PodState.ready),
        (PodState.pending, PodState.ready),
        (PodState.ready, PodState.ready),
        # Found by the chaos run: an agent reconnecting after a control-plane restart revived
        # a Pod that was being deleted, which then got tasks and took them down with it.
        (PodState.draining, PodState.draining),
        (PodState.terminating, PodState.terminating),
        (PodState.failed, PodState.failed),
    ],
)
async def test_an_agent_registering_again_does_not_put_a_pod_on_its_way_out_back_in_service(
    store: Store, before: PodState, after: PodState
) -> None:
    pod_id = await adopt_starting(store, f"r-{before.value}")
    async with store.unit_of_work() as uow:
        await uow.pods.set_state(pod_id, before, reason="", now=NOW)
        await uow.pods.register(
            pool_id=POOL,
            name=f"r-{before.value}",
            slots=1,
            version="t",
            config_hash="h",
            credential_digest=None,
            now=NOW,
        )
    assert await state_of(store, pod_id) is after


async def test_a_draining_agents_heartbeat_only_drains_a_ready_pod(store: Store) -> None:
    ready, leaving = await adopt_starting(store, "h1"), await adopt_starting(store, "h2")
    async with store.unit_of_work() as uow:
        await uow.pods.set_state(ready, PodState.ready, reason="", now=NOW)
        await uow.pods.set_state(leaving, PodState.terminating, reason="", now=NOW)
        await uow.pods.heartbeat(ready, now=NOW, draining=True)
        await uow.pods.heartbeat(leaving, now=NOW, draining=True)
    assert await state_of(store, ready) is PodState.draining
    assert await state_of(store, leaving) is PodState.terminating


async def test_a_pending_pod_drained_meanwhile_stays_draining(store: Store) -> None:
    """The keeper read the Pod pending; an admin drained it; the keeper's report that it is
    still pending must not put it back in line for tasks."""
    pod_id = await adopt_starting(store, "d")
    async with store.unit_of_work() as uow:
        await uow.pods.set_state(pod_id, PodState.pending, reason="", now=NOW)
    async with store.unit_of_work() as uow:
        assert await uow.pods.drain(pod_id, by="ann", reason="drained by ann", now=NOW)
        assert not await uow.pods.drain(pod_id, by="bob", reason="again", now=NOW)
    async with store.unit_of_work() as uow:
        await uow.pods.observed(
            pod_id, state=PodState.pending, phase="Pending", node=None, reason="", now=NOW
        )
        pod = await uow.pods.get(pod_id)
    assert pod is not None
    assert pod.state is PodState.draining
    assert pod.end is not None
    assert pod.end.describe() == "drained by ann"


async def test_the_first_reason_a_pod_goes_for_is_kept_until_it_ends(store: Store) -> None:
    pod_id = await adopt_starting(store, "e")
    async with store.unit_of_work() as uow:
        assert await uow.pods.drain(pod_id, by="ann", reason="drained by ann", now=NOW)
        assert await uow.pods.drain_if_idle(
            pod_id, PodEnd(EndCause.scaled_down), reason="idle", now=NOW
        )
        await uow.pods.terminating(pod_id, PodEnd(EndCause.drained), reason="deleted", now=NOW)
        pod = await uow.pods.get(pod_id)
    assert pod is not None
    assert (pod.state, pod.end) == (PodState.terminating, PodEnd(EndCause.drained, "ann"))
    async with store.unit_of_work() as uow:
        await uow.pods.retire(pod_id, PodEnd(EndCause.drained, "ann"), reason="gone", now=NOW)
        assert (await uow.pods.get(pod_id)).state is PodState.deleted  # type: ignore[union-attr]
