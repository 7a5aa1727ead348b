"""The agent token in a pool's Secret: checked, minted, rotated, and the rotated-out one revoked.

Every Pod of a ``k8s`` or ``local`` pool authenticates with the token its pool's Secret holds.
The controller's pass checks that the Secret holds one that still authenticates for the pool (a new
one is minted when not); a rotation puts a new one in and moves the token generation counted in
the Pods' config hash, so the Pods are rebuilt onto it; once no Pod runs with the old token, a
pass revokes it. Only the token's name is kept in the pool's row: the value is in the Secret.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import structlog

from slotpool.clock import Clock
from slotpool.domain.events import NewEvent, Outcome, minute_utc
from slotpool.domain.pools import Pool
from slotpool.domain.scaling import Observation
from slotpool.runtime.base import PodRuntime
from slotpool.services.errors import Unauthorized
from slotpool.services.ids import new_token_id
from slotpool.services.tokens import TokenService, token_audit
from slotpool.store.uow import Store, UnitOfWork

log = structlog.get_logger(__name__)


class SecretTokens:
    def __init__(self, *, store: Store, tokens: TokenService, clock: Clock) -> None:
        self._store = store
        self._tokens = tokens
        self._clock = clock

    async def ensure(self, pool: Pool, runtime: PodRuntime, namespace: str) -> str:
        """The Secret must hold a token that authenticates for this pool, else a new one goes
        in. Returns what happened to the Secret: unchanged, created or recreated."""
        held = await runtime.read_token(namespace, pool.pool_id)
        if held is not None and await self._authenticates(held, pool.pool_id):
            return "unchanged"
        name = await self.mint(pool, runtime, namespace)
        outcome = "created" if held is None else "recreated"
        log.info("pool token secret " + outcome, pool_id=pool.pool_id, token=name)
        return outcome

    async def _authenticates(self, value: str, pool_id: str) -> bool:
        try:
            identity = await self._tokens.authenticate(value)
        except Unauthorized:
            return False
        return identity.pool_id == pool_id

    async def mint(self, pool: Pool, runtime: PodRuntime, namespace: str) -> str:
        """A new token into the pool's Secret, recorded as the one the Secret holds."""
        name = f"{runtime.name}-" + new_token_id().removeprefix("tok-")[:8]
        _token, value = await self._tokens.create(
            pool.pool_id, name=name, expires_at=None, by=f"slotpool ({runtime.name} runtime)"
        )
        await runtime.write_token(namespace, pool.pool_id, value)
        async with self._store.unit_of_work() as uow:
            await uow.pools.set_token_state(pool.pool_id, agent_token=name)
        return name

    async def rotate(
        self, pool: Pool, runtime: PodRuntime, namespace: str, *, overlap: timedelta, by: str
    ) -> str:
        """A new token into the Secret; the generation counted in the Pods' config hash moves
        (so they are rebuilt onto it), and the old token stays valid until no Pod runs with it
        or ``overlap`` ends, whichever is first. Returns the new token's name."""
        old = pool.agent_token
        new = await self.mint(pool, runtime, namespace)
        now = self._clock()
        async with self._store.unit_of_work() as uow:
            if old is not None:
                await _expire(uow, pool.pool_id, old, at=now + overlap)
            await uow.pools.set_token_state(
                pool.pool_id,
                token_generation=pool.token_generation + 1,
                rotating_from=old if old is not None else pool.rotating_from,
            )
            rotated = token_audit(
                "pool_token.rotate", pool.pool_id, old or "", by=by, successor=new
            )
            uow.audit(rotated)
            await uow.events.add(pool.pool_id, [_rotated(old, new, now + overlap, by)], now=now)
        return new

    async def finish_rotation(self, pool: Pool, observation: Observation) -> list[NewEvent]:
        """Once no Pod runs with the token a rotation replaced, revoke it (and say so)."""
        old = pool.rotating_from
        if old is None or any(observation.outdated(p) for p in observation.pods):
            return []
        async with self._store.unit_of_work() as uow:
            token = await uow.pool_tokens.by_name(pool.pool_id, old)
            if token is not None and token.name != pool.agent_token:
                await uow.pool_tokens.revoke(token.id, now=self._clock())
            await uow.pools.set_token_state(pool.pool_id, rotating_from=None)
        log.info("rotated-out token revoked", pool_id=pool.pool_id, token=old)
        return [_revoked(old, observation)]


async def _expire(uow: UnitOfWork, pool_id: str, name: str, *, at: datetime) -> None:
    token = await uow.pool_tokens.by_name(pool_id, name)
    if token is not None:
        await uow.pool_tokens.expire(token.id, at=at)


def _rotated(old: str | None, new: str, valid_until: datetime, by: str) -> NewEvent:
    return NewEvent(
        action="rotate_token",
        reason="token_rotation",
        message=f"{by} rotated the Secret's token {old or '-'} -> {new}; the old one is valid "
        f"until no Pod uses it, at most until {minute_utc(valid_until)}",
        outcome=Outcome.done,
        inputs={"old": old, "new": new},
    )


def _revoked(old: str, observation: Observation) -> NewEvent:
    return NewEvent(
        action="revoke_token",
        reason="rotation_done",
        message=f"every Pod runs with the new token: the rotated-out token {old} is revoked",
        outcome=Outcome.done,
        inputs=observation.inputs(),
    )
