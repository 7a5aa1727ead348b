"""A pod's life in the books, written once for every path that needs it: recording a pod
slotpool created (the pass that created it, or its agent registering first), and ending it (a
silent agent, a local process that exited, a Pod that vanished)."""

from __future__ import annotations

from datetime import datetime

from slotpool import metrics
from slotpool.domain import transitions
from slotpool.domain.agent_identity import kept_uid
from slotpool.domain.pods import Pod, PodEnd, state_from_runtime
from slotpool.domain.signals import Signal
from slotpool.runtime.base import RuntimePod
from slotpool.store.uow import UnitOfWork


async def record_created(
    uow: UnitOfWork, pool_id: str, pod: RuntimePod, *, slots: int, now: datetime
) -> bool:
    """Record a pod slotpool just created, unless it is known already; True if recorded."""
    if await uow.pods.find(pool_id, pod.name) is not None:
        return False
    await uow.pods.adopt(
        pool_id=pool_id,
        name=pod.name,
        slots=slots,
        config_hash=pod.config_hash,
        state=state_from_runtime(None, phase=pod.phase, deleting=False),
        phase=pod.phase,
        node=pod.node,
        reason="",
        created_at=now,
        uid_digest=kept_uid(pod.uid),
        now=now,
    )
    reached = metrics.startup_phases_reached(None, metrics.PodProgress(pod.phase, pod.node))
    uow.after_commit(lambda: metrics.pod_started(pool_id, now, reached, now=now))
    return True


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
    uow.after_commit(lambda: metrics.pod_ended(pod.pool_id, end.cause, lost=len(lost)))
    return lost
