"""Draining a Pod on request (``DELETE /agent-pools/{id}/pods/{name}``): it takes no new task,
what runs on it (and what waits for approval in its slots) finishes, then the controller deletes
it like any other drained Pod: never while a slot is busy or reserved.

A draining Pod counts neither as capacity nor, for the work it still runs, as demand (the rules
of ``domain.scaling``): if the pool still needs a Pod in its place (``min_replicas``, queued
work), the controller creates one in the same pass, at once; it never cancels the drain.
In a static pool nothing deletes the agent: it is told to take no new work (the heartbeat's
``drain``) and stays listed as ``draining``.
"""

from __future__ import annotations

from slotpool.clock import Clock
from slotpool.domain.audit import AuditEntry
from slotpool.domain.pods import Pod
from slotpool.domain.signals import Signal
from slotpool.services.errors import NotFound
from slotpool.services.pools import require_pool
from slotpool.store.uow import Store


class PodDrain:
    def __init__(self, *, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    async def drain(self, pool_id: str, name: str, *, by: str) -> Pod:
        """Drain the Pod and return it as it is now. Asking again, or for a Pod already on its
        way out (draining, terminating, ended), changes nothing (it is not an error): the
        first reason it was given stays."""
        now = self._clock()
        async with self._store.unit_of_work() as uow:
            await require_pool(uow, pool_id)
            pod = await uow.pods.find(pool_id, name)
            if pod is None:
                raise NotFound(f"pod {name} not found in agent pool {pool_id}")
            reason = f"drained by {by}: takes no new task, deleted once its slots are idle"
            drained = await uow.pods.drain(pod.id, by=by, reason=reason, now=now)
            if drained:
                uow.signal(Signal.pool(pool_id), Signal.pod(pod.id))
                uow.audit(AuditEntry("pod.drain", by, {"pool_id": pool_id, "pod": name}))
            now_pod = await uow.pods.get(pod.id)
        assert now_pod is not None  # read in the same transaction
        return now_pod
