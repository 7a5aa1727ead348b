"""Pools this server gives no Pods to, and why, said everywhere a user looks.

A ``k8s`` pool on a server without a cluster, a ``local`` pool on a server whose local runtime is
off, a pool without a configuration: the controller keeps no worker for them, so nothing else
would ever say why their tasks wait. ``NoPods.note`` says it when such a pool is created, its
configuration saved, or seen by the controller's listing: one pool event when the reason starts
(or its words change; after a restart once more, as the controller's holds), a warning in the
server's log, and the reason on every queued task. A task submitted to such a pool is queued
with the reason at once (``queue_reason``, from memory: no query on the submission path).
"""

from __future__ import annotations

import structlog

from slotpool.clock import Clock
from slotpool.domain.config import PoolType
from slotpool.domain.events import NewEvent, Outcome
from slotpool.domain.pools import Pool
from slotpool.domain.scaling import HOLD
from slotpool.services.runtimes import PoolRuntimes
from slotpool.store.uow import Store

log = structlog.get_logger(__name__)
NO_PODS = "no_pods"  # the reason of the pool event


def waiting_reason(why: str) -> str:
    """A queued task's reason when its pool gets no Pods."""
    return f"waiting: no Pod can be created: {why}"


class NoPods:
    def __init__(self, *, store: Store, runtimes: PoolRuntimes, clock: Clock) -> None:
        self._store = store
        self._runtimes = runtimes
        self._clock = clock
        self._noted: dict[str, str] = {}  # pool id -> the reason recorded last

    def why(self, pool: Pool) -> str | None:
        """Why this server gives the pool no Pods; None when it does (or for static pools)."""
        return self._runtimes.why_no_pods(pool)

    def why_of(self, pool_id: str, pool_type: PoolType, *, configured: bool) -> str | None:
        """``why`` of the pool ``pool_id`` of ``pool_type``, configured or not (its
        ``effective_config``)."""
        return self._runtimes.why_no_pods_of(pool_id, pool_type, configured=configured)

    def queue_reason(self, pool_id: str) -> str | None:
        """The reason a task queued now in the pool gets, if the pool was noted as getting no
        Pods (None: the controller says why it waits, if anything holds it)."""
        why = self._noted.get(pool_id)
        return None if why is None else waiting_reason(why)

    async def note(self, pool: Pool) -> str | None:
        """Say why the pool gets no Pods (if it gets none): the event and the log line when the
        reason starts or changes, the reason on its queued tasks. Returns the reason."""
        why = self.why(pool)
        if why is None:
            self._noted.pop(pool.pool_id, None)
            return None
        if self._noted.get(pool.pool_id) == why:
            return why
        event = NewEvent(action=HOLD, reason=NO_PODS, message=why, outcome=Outcome.held, inputs={})
        async with self._store.unit_of_work() as uow:
            await uow.events.add(pool.pool_id, [event], now=self._clock())
            await uow.tasks.explain_queued(pool.pool_id, reason=waiting_reason(why))
        log.warning("pool gets no pods", pool_id=pool.pool_id, pool=pool.name, why=why)
        self._noted[pool.pool_id] = why
        return why

    def forget(self, pool_id: str) -> None:
        self._noted.pop(pool_id, None)
