"""Rotating a pool's agent token: which kind of rotation a token gets is decided here.

A token handed out by hand gets a successor whose value is shown once, and expires after the
overlap. The token in the pool's Secret (on a server that runs the pool's Pods) is replaced in the
Secret instead: its value is never shown, and the Pods are rebuilt onto the new one (idle ones now,
by a pass, busy ones once idle); the old one is revoked as soon as no Pod runs with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from slotpool.domain.pools import Pool
from slotpool.domain.tokens import PoolToken
from slotpool.runtime.errors import RuntimeApiError
from slotpool.services.errors import RuntimeUnavailable
from slotpool.services.locks import PoolLocks
from slotpool.services.pools import PoolService
from slotpool.services.ports import PoolPasses, SyncReport
from slotpool.services.runtimes import PoolRuntimes
from slotpool.services.secret_tokens import SecretTokens
from slotpool.services.tokens import TokenService


@dataclass(frozen=True)
class Rotated:
    """The old token (now expiring), the new one, the new value (None for the Secret's token,
    whose value only the Secret holds) and, for the Secret's token, the pass that followed."""

    old: PoolToken
    new: PoolToken
    value: str | None
    report: SyncReport | None

    @property
    def secret(self) -> bool:
        return self.report is not None


class TokenRotation:
    def __init__(
        self,
        *,
        pools: PoolService,
        tokens: TokenService,
        runtimes: PoolRuntimes,
        secrets: SecretTokens,
        locks: PoolLocks,
        passes: PoolPasses,
    ) -> None:
        self._pools = pools
        self._tokens = tokens
        self._runtimes = runtimes
        self._secrets = secrets
        self._locks = locks
        self._passes = passes

    async def rotate(self, pool_id: str, name: str, *, overlap: timedelta, by: str) -> Rotated:
        pool = await self._pools.get(pool_id)
        if pool.agent_token == name and self._runtimes.can_run(pool):
            return await self._rotate_secret(pool, name, overlap=overlap, by=by)
        old, new, value = await self._tokens.rotate(pool_id, name, overlap=overlap, by=by)
        return Rotated(old=old, new=new, value=value, report=None)

    async def _rotate_secret(
        self, pool: Pool, name: str, *, overlap: timedelta, by: str
    ) -> Rotated:
        runtime = self._runtimes.for_pool(pool)
        namespace = self._runtimes.namespace(pool)
        assert namespace is not None  # can_run: the pool has a configuration
        async with self._locks.of(pool.pool_id):
            try:
                new = await self._secrets.rotate(pool, runtime, namespace, overlap=overlap, by=by)
            except RuntimeApiError as exc:
                raise RuntimeUnavailable(f"the token was not rotated: {exc}") from exc
        report = await self._passes.run_pass(pool.pool_id, check_secret=False)
        old_token = await self._tokens.get(pool.pool_id, name)
        new_token = await self._tokens.get(pool.pool_id, new)
        return Rotated(old=old_token, new=new_token, value=None, report=report)
