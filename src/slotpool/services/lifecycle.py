"""Ending a pod's life in the books: written once for every path that finds an agent gone
(a silent agent, a local process that exited, a Pod that vanished)."""

from __future__ import annotations

from datetime import datetime

from slotpool.domain import transitions
from slotpool.domain.pods import Pod, PodEnd
from slotpool.domain.signals import Signal
from slotpool.store.uow import UnitOfWork


async def retire_pod(
    uow: UnitOfWork, pod: Pod, end: PodEnd, *, reason: str, now: datetime
) -> list[str]:
    """Mark the pod ended (``deleted`` or ``failed``, as ``end`` says), and make its running
    and reserved tasks ``lost`` with the reason (they are not rerun), which frees their slots.
    Returns the ids of the tasks lost. Once committed, the pool's controller is told: the Pod
    is replaced if the pool still needs it.

    The pod is written first: from then on no task is given to it (``take_slot`` wants it
    ``ready``), so the tasks read after it are all the tasks it holds."""
    await uow.pods.retire(pod.id, end, reason=reason, now=now)
    lost = []
    for task in await uow.tasks.on_pod(pod.id, sorted(transitions.HOLDING)):
        if await uow.apply(transitions.agent_gone(task, reason=reason, now=now)):
            lost.append(task.id)
    uow.signal(Signal.pool(pod.pool_id))
    return lost
