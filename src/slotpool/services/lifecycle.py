"""Ending a pod's life in the books: written once for every path that finds an agent gone
(a silent agent, a local process that exited, a Pod that vanished)."""

from __future__ import annotations

from datetime import datetime

from slotpool.domain.pods import Pod, PodState
from slotpool.domain.tasks import TaskStatus
from slotpool.services.notify import Notifier
from slotpool.store.uow import UnitOfWork


async def retire_pod(
    uow: UnitOfWork, pod: Pod, *, reason: str, now: datetime, notifier: Notifier
) -> list[str]:
    """Mark the pod failed, free its slots, and make its running and reserved tasks ``lost``
    with the reason (they are not rerun). Returns the ids of the tasks lost."""
    await uow.pods.set_state(pod.id, PodState.failed, reason=reason, now=now)
    await uow.pods.free_slots_of(pod.id, now=now)
    lost = []
    for task in await uow.tasks.on_pod(pod.id, [TaskStatus.running, TaskStatus.awaiting_approval]):
        await uow.tasks.update(
            task.id, status=TaskStatus.lost.value, reason=reason, finished_at=now, updated_at=now
        )
        notifier.wake(("task", task.id))
        lost.append(task.id)
    return lost
