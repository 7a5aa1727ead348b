"""Time-driven bookkeeping: reservations that expired, agents that went silent, queued work left
behind, every pool's history sample (once per ``SLOTPOOL_HISTORY_INTERVAL_SECONDS``) and (every
``RETENTION_EVERY``) records older than the retention settings. Runs every second in the server;
each pass is a few set-based queries.

Silence is only judged once the server has itself been up for the agent timeout: after a restart
every agent looks silent until it reconnects, and none of its work may be declared lost for that.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta

import structlog

from slotpool.clock import Clock
from slotpool.domain import transitions
from slotpool.domain.pods import EndCause, PodEnd, PodState
from slotpool.services.dispatch import Dispatcher
from slotpool.services.history import HistorySampler
from slotpool.services.lifecycle import retire_pod
from slotpool.services.retention import RETENTION_EVERY, Retention, RetentionPolicy
from slotpool.settings import Settings
from slotpool.store.uow import Store

log = structlog.get_logger(__name__)
INTERVAL_SECONDS = 1.0
STEP_TIMEOUT_SECONDS = 60.0


class Sweeper:
    def __init__(
        self,
        *,
        store: Store,
        settings: Settings,
        dispatcher: Dispatcher,
        clock: Clock,
        history: HistorySampler | None = None,
    ) -> None:
        """``history``: the sampler of pool history, None when the server samples none."""
        self._store = store
        self._history = history
        self._timeout = timedelta(seconds=settings.agent_timeout_seconds)
        self._dispatcher = dispatcher
        self._clock = clock
        self._started = clock()
        self._retention = Retention(store=store, policy=RetentionPolicy.of(settings))
        self._pruned_at: datetime | None = None

    async def run_forever(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception:  # a failed pass is logged and the next one tries again
                log.exception("sweep failed")
            await asyncio.sleep(INTERVAL_SECONDS)

    async def sweep(self) -> None:
        """One pass. Each step runs on its own, and each silent agent and each pool in its own
        transaction: one that fails (logged) never keeps the rest from being done, and one that
        hangs is given up after ``STEP_TIMEOUT_SECONDS`` (logged), so the next passes come."""
        now = self._clock()
        for name, step in (
            ("expire reservations", self._expire_reservations),
            ("lose silent agents", self._lose_silent_agents),
            ("dispatch queued", self._dispatch_queued),
            ("sample pool history", self._sample_history),
            ("apply retention", self._apply_retention),
        ):
            try:
                async with asyncio.timeout(STEP_TIMEOUT_SECONDS):
                    await step(now)
            except TimeoutError:
                log.error("sweep step timed out", step=name, seconds=STEP_TIMEOUT_SECONDS)
            except Exception:
                log.exception("sweep step failed", step=name)

    async def _expire_reservations(self, now: datetime) -> None:
        async with self._store.unit_of_work() as uow:
            for task in await uow.tasks.reservations_expired(now=now):
                await uow.apply(transitions.reservation_expired(task, now=now))

    async def _lose_silent_agents(self, now: datetime) -> None:
        if now - self._started < self._timeout:
            return  # agents may not have reconnected since this process started
        heard_before = now - self._timeout
        async with self._store.unit_of_work() as uow:
            silent = [p.id for p in await uow.pods.silent(heard_before=heard_before)]
        for pod_id in silent:
            try:
                await self._lose(pod_id, heard_before, now)
            except Exception:
                log.exception("retiring a silent agent failed", pod_id=pod_id)

    async def _lose(self, pod_id: int, heard_before: datetime, now: datetime) -> None:
        async with self._store.unit_of_work() as uow:
            pod = await uow.pods.get(pod_id)
            if pod is None or pod.state not in (PodState.ready, PodState.draining):
                return
            heard = pod.last_heartbeat_at
            if heard is not None and heard >= heard_before:
                return  # it spoke up meanwhile
            reason = f"agent {pod.name} stopped heartbeating (last heard {_when(heard)})"
            await retire_pod(uow, pod, PodEnd(EndCause.agent_lost), reason=reason, now=now)
        log.warning("agent silent", pool_id=pod.pool_id, pod=pod.name, reason=reason)

    async def _dispatch_queued(self, now: datetime) -> None:
        async with self._store.unit_of_work() as uow:
            pools = await uow.tasks.pools_with_queued()
        for pool_id in pools:
            try:
                await self._dispatcher.dispatch(pool_id)
            except Exception:
                log.exception("dispatching queued tasks failed", pool_id=pool_id)

    async def _sample_history(self, now: datetime) -> None:
        if self._history is not None:
            await self._history.sample(now)  # once per sampling instant, however often called

    async def _apply_retention(self, now: datetime) -> None:
        if self._pruned_at is not None and now - self._pruned_at < RETENTION_EVERY:
            return
        self._pruned_at = now  # a failed run waits for the next turn, not the next second
        await self._retention.prune(now)


def _when(instant: datetime | None) -> str:
    return instant.isoformat() if instant is not None else "never"


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
