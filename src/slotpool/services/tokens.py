"""Agent tokens of a pool: create (the value shown once), list, revoke, and authenticate agents.

A token authenticates its bearer as an agent of exactly one pool; every agent-facing call checks
that the pool it names is that pool (403 otherwise), so a token can never reach another pool.
A pool token only registers an agent; the registered agent then shows its own credential
(``domain.agent_identity``), which names one pod of one pool.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeAlias

from slotpool.clock import Clock
from slotpool.domain.agent_identity import CREDENTIAL_PREFIX
from slotpool.domain.audit import AuditEntry
from slotpool.domain.errors import Issue
from slotpool.domain.events import NewEvent, Outcome
from slotpool.domain.tokens import TOKEN_PREFIX, PoolToken, TokenStatus, token_digest
from slotpool.services.errors import Conflict, Forbidden, Invalid, NotFound, Unauthorized
from slotpool.services.ids import new_token_id
from slotpool.services.pools import require_pool
from slotpool.store.errors import Conflict as StoreConflict
from slotpool.store.tokens import PoolTokenRepository
from slotpool.store.uow import Store, UnitOfWork

# last_used_at is written at most this often per token; agents call every few seconds.
TOUCH_INTERVAL = timedelta(seconds=60)


def _revoked_by(name: str, by: str) -> NewEvent:
    """The pool's event log says who revoked which token (an admin token's name)."""
    return NewEvent(
        action="revoke_token",
        reason="revoked",
        message=f"{by} revoked the agent token {name}",
        outcome=Outcome.done,
        inputs={"token": name, "by": by},
    )


def token_audit(action: str, pool_id: str, name: str, *, by: str, **more: str) -> AuditEntry:
    """The audit entry of a change of a pool's token (named, never its value)."""
    return AuditEntry(action, by, {"pool_id": pool_id, "token": name, **more})


def secret_token_message(pool_id: str, name: str) -> str:
    return (
        f"token {name} is the one the Secret of {pool_id} holds: its Pods run with it, so "
        "revoking it would lose their running tasks and leave new Pods with a dead token. "
        f"Rotate it instead: POST /api/v1/agent-pools/{pool_id}/tokens/{name}/rotate "
        f"(slotpool tokens rotate {pool_id} {name}) puts a new token in the Secret and rebuilds "
        "the Pods onto it; the old one is revoked once no Pod runs with it, or at the end of "
        "overlap_seconds (0: at once, and tasks still running with it are lost)"
    )


@dataclass(frozen=True)
class AgentIdentity:
    """The bearer of a pool token: it may register an agent of the pool, nothing more."""

    pool_id: str
    token_id: str
    token_name: str


@dataclass(frozen=True)
class RegisteredAgent:
    """The bearer of an agent's credential: the one agent registered for pod ``name``."""

    pool_id: str
    pod_id: int
    name: str


AgentCaller: TypeAlias = AgentIdentity | RegisteredAgent


class TokenService:
    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    async def list(self, pool_id: str) -> list[PoolToken]:
        async with self._store.reading() as uow:
            await require_pool(uow, pool_id)
            return await uow.pool_tokens.list(pool_id)

    async def get(self, pool_id: str, name: str) -> PoolToken:
        async with self._store.reading() as uow:
            await require_pool(uow, pool_id)
            return await self._require(uow.pool_tokens, pool_id, name)

    async def create(
        self, pool_id: str, *, name: str, expires_at: datetime | None, by: str
    ) -> tuple[PoolToken, str]:
        """Returns the token's record and its value, which is never available again."""
        token, value = self._new(pool_id, name=name, expires_at=expires_at, by=by)
        async with self._store.unit_of_work() as uow:
            await self._add(uow, token, value)
            uow.audit(token_audit("pool_token.create", pool_id, name, by=by))
        return token, value

    def _new(
        self, pool_id: str, *, name: str, expires_at: datetime | None, by: str
    ) -> tuple[PoolToken, str]:
        now = self._clock()
        if expires_at is not None and expires_at <= now:
            raise Invalid("nothing was saved", [Issue("expires_at", "must be in the future")])
        value = TOKEN_PREFIX + secrets.token_urlsafe(32)
        token = PoolToken(
            id=new_token_id(),
            pool_id=pool_id,
            name=name,
            created_by=by,
            created_at=now,
            expires_at=expires_at,
            revoked_at=None,
            last_used_at=None,
        )
        return token, value

    @staticmethod
    async def _add(uow: UnitOfWork, token: PoolToken, value: str) -> None:
        await require_pool(uow, token.pool_id)
        try:
            await uow.pool_tokens.add(token, token_hash=token_digest(value))
        except StoreConflict as exc:
            raise Conflict(str(exc)) from None

    async def rotate(
        self, pool_id: str, name: str, *, overlap: timedelta, by: str
    ) -> tuple[PoolToken, PoolToken, str]:
        """A token handed out by hand: a successor named ``<name>-<4 chars>`` (its value shown
        once), and the old one expires after ``overlap``. Returns (old, new, new value)."""
        async with self._store.unit_of_work() as uow:
            await require_pool(uow, pool_id)
            old = await self._require(uow.pool_tokens, pool_id, name)
        if old.status(self._clock()) is not TokenStatus.active:
            raise Conflict(f"token {name} is {old.status(self._clock())}: nothing to rotate")
        base = name[:58].rstrip("-")
        new, value = self._new(
            pool_id, name=f"{base}-{secrets.token_hex(2)}", expires_at=None, by=by
        )
        async with self._store.unit_of_work() as uow:
            await self._add(uow, new, value)
            await uow.pool_tokens.expire(old.id, at=self._clock() + overlap)
            expiring = await uow.pool_tokens.by_name(pool_id, name)
            uow.audit(token_audit("pool_token.rotate", pool_id, name, by=by, successor=new.name))
        assert expiring is not None
        return expiring, new, value

    async def revoke(self, pool_id: str, name: str, *, by: str) -> PoolToken:
        """The token stops working at once. Not the one the pool's Secret holds: every Pod of
        the pool runs with it, so its running tasks would be lost and the Pods replacing them
        would start with a dead token; that one is rotated instead (409 says how)."""
        now = self._clock()
        async with self._store.unit_of_work() as uow:
            pool = await require_pool(uow, pool_id)
            token = await self._require(uow.pool_tokens, pool_id, name)
            if name == pool.agent_token and token.status(now) is TokenStatus.active:
                raise Conflict(secret_token_message(pool_id, name))
            if token.revoked_at is None:
                await uow.pool_tokens.revoke(token.id, now=now)
                await uow.events.add(pool_id, [_revoked_by(name, by)], now=now)
                uow.audit(token_audit("pool_token.revoke", pool_id, name, by=by))
            revoked = await uow.pool_tokens.by_name(pool_id, name)
        assert revoked is not None
        return revoked

    async def authenticate(self, value: str | None) -> AgentCaller:
        """A pool token's bearer, or a registered agent by its credential; 401 otherwise."""
        if not value:
            raise Unauthorized("missing bearer token: send 'Authorization: Bearer <pool token>'")
        if value.startswith(CREDENTIAL_PREFIX):
            agent = await self.registered(value)
            if agent is None:
                raise Unauthorized(
                    "unknown agent credential: its pod is gone; a new agent registers with "
                    "the pool token"
                )
            return agent
        now = self._clock()
        async with self._store.unit_of_work() as uow:
            token = await uow.pool_tokens.by_hash(token_digest(value))
            if token is None:
                raise Unauthorized("invalid agent token")
            status = token.status(now)
            if status is not TokenStatus.active:
                raise Unauthorized(f"agent token {token.name} of {token.pool_id} is {status}")
            await uow.pool_tokens.touch(token.id, now=now, older_than=now - TOUCH_INTERVAL)
        return AgentIdentity(pool_id=token.pool_id, token_id=token.id, token_name=token.name)

    async def registered(self, credential: str) -> RegisteredAgent | None:
        """The agent that holds ``credential``, if one does."""
        async with self._store.reading() as uow:
            pod = await uow.pods.by_credential(token_digest(credential))
        return None if pod is None else RegisteredAgent(*pod)

    @staticmethod
    def require_scope(identity: AgentCaller, pool_id: str) -> None:
        if identity.pool_id != pool_id:
            what = "token" if isinstance(identity, AgentIdentity) else "credential"
            raise Forbidden(f"this agent {what} belongs to {identity.pool_id}, not to {pool_id}")

    @classmethod
    def require_agent(cls, caller: AgentCaller, pool_id: str, call: str) -> RegisteredAgent:
        """The registered agent making ``call`` in ``pool_id``; a pool token only registers."""
        cls.require_scope(caller, pool_id)
        if isinstance(caller, AgentIdentity):
            raise Forbidden(
                f"{call} takes the agent's own credential, the one it registered with; the "
                "pool token only registers an agent"
            )
        return caller

    @staticmethod
    async def _require(tokens: PoolTokenRepository, pool_id: str, name: str) -> PoolToken:
        token = await tokens.by_name(pool_id, name)
        if token is None:
            raise NotFound(f"token {name} not found in {pool_id}")
        return token
