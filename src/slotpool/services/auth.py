"""Admin authentication and the admin tokens: the one in the settings, and named ones stored in
the database (the first generated on first start when none is configured), listed, expiring,
revoked. A token's name is who the caller is in every audit field.

Tokens are long random strings, so a SHA-256 digest is a safe way to store them (a slow password
hash protects guessable secrets; these are not guessable) and lets a lookup use an index.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from datetime import datetime

from slotpool.domain.audit import AuditEntry
from slotpool.domain.errors import Issue
from slotpool.domain.tokens import (
    CONFIGURED_ADMIN_TOKEN,
    TOKEN_NAME_PATTERN,
    TOKEN_NAME_RULE,
    AdminToken,
    TokenStatus,
)
from slotpool.services.errors import Conflict, Invalid, NotFound, Unauthorized
from slotpool.services.tokens import TOUCH_INTERVAL
from slotpool.settings import Settings
from slotpool.store.errors import Conflict as StoreConflict
from slotpool.store.uow import Store

ADMIN_TOKEN_PREFIX = "spa_"
FIRST_TOKEN = "initial"  # the one generated on first start when none is configured
CREATE_ANOTHER = "POST /api/v1/admin-tokens or `slotpool admin-tokens create NAME`"


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _when(instant: datetime | None) -> str:
    return "" if instant is None else instant.isoformat(timespec="seconds")


class AdminAuth:
    def __init__(self, store: Store, settings: Settings, clock: Callable[[], datetime]) -> None:
        self._store = store
        self._configured = settings.admin_token
        self._clock = clock

    async def ensure_token(self) -> str | None:
        """On first start with no configured token, make one; returns it so it can be shown once
        (None: there is one already, or another replica made it at the same moment)."""
        if self._configured is not None:
            return None
        async with self._store.unit_of_work() as uow:
            if await uow.admin_tokens.count() > 0:
                return None
        try:
            _, value = await self.create(FIRST_TOKEN, expires_at=None, by="slotpool (first start)")
        except Conflict:
            # Replicas started together on a new database: another one made it a moment ago
            # (the name is unique) and shows it; this one has nothing to show.
            return None
        return value

    async def create(
        self, name: str, *, expires_at: datetime | None, by: str
    ) -> tuple[AdminToken, str]:
        """A new admin token; returns it and its value, which is never available again."""
        now = self._clock()
        issues = []
        if not re.fullmatch(TOKEN_NAME_PATTERN, name):
            issues.append(Issue("name", f"{name!r} is not a token name: {TOKEN_NAME_RULE}"))
        elif name == CONFIGURED_ADMIN_TOKEN:
            issues.append(Issue("name", f"{name!r} is the name of SLOTPOOL_ADMIN_TOKEN"))
        if expires_at is not None and expires_at <= now:
            issues.append(Issue("expires_at", "must be in the future"))
        if issues:
            raise Invalid("nothing was saved", issues)
        value = ADMIN_TOKEN_PREFIX + secrets.token_urlsafe(32)
        token = AdminToken(
            name=name,
            created_by=by,
            created_at=now,
            expires_at=expires_at,
            revoked_at=None,
            last_used_at=None,
        )
        async with self._store.unit_of_work() as uow:
            try:
                await uow.admin_tokens.add(token, token_hash=digest(value))
            except StoreConflict as exc:
                raise Conflict(str(exc)) from None
            uow.audit(
                AuditEntry(
                    "admin_token.create", by, {"token": name, "expires_at": _when(expires_at)}
                )
            )
        return token, value

    async def tokens(self) -> list[AdminToken]:
        """The configured token (if any) first, then the stored ones, oldest first."""
        async with self._store.reading() as uow:
            stored = await uow.admin_tokens.all()
        return [*self._configured_token(), *stored]

    def _configured_token(self) -> list[AdminToken]:
        if self._configured is None:
            return []
        return [AdminToken(CONFIGURED_ADMIN_TOKEN, None, None, None, None, None)]

    async def revoke(self, name: str, *, by: str) -> AdminToken:
        """The token stops working at once. Refused for the configured token (the settings hold
        it) and for the last token that works: nobody could sign in any more."""
        if name == CONFIGURED_ADMIN_TOKEN and self._configured is not None:
            raise Conflict(
                "the token named configured is SLOTPOOL_ADMIN_TOKEN of the server's settings: "
                "change or unset it there and restart the server"
            )
        now = self._clock()
        async with self._store.unit_of_work() as uow:
            working = await uow.admin_tokens.active_names(now=now)
            token = await uow.admin_tokens.by_name(name)
            if token is None:
                raise NotFound(f"admin token {name} not found")
            left = [n for n in working if n != name] + [t.name for t in self._configured_token()]
            if token.status(now) is TokenStatus.active and not left:
                raise Conflict(
                    f"admin token {name} is the last one that works: revoked, it would lock "
                    f"every admin out. Create another first ({CREATE_ANOTHER}), then revoke it"
                )
            await uow.admin_tokens.revoke(name, now=now)
            revoked = await uow.admin_tokens.by_name(name)
            uow.audit(AuditEntry("admin_token.revoke", by, {"token": name}))
        assert revoked is not None
        return revoked

    async def authenticate(self, token: str | None) -> str:
        """The name of the caller's admin token, which audit fields record; raises
        Unauthorized, saying so when the token was revoked or has expired."""
        if not token:
            raise Unauthorized("missing bearer token: send 'Authorization: Bearer <admin token>'")
        configured = self._configured
        if configured is not None and hmac.compare_digest(
            token.encode(), configured.get_secret_value().encode()
        ):
            return CONFIGURED_ADMIN_TOKEN
        now = self._clock()
        async with self._store.reading() as reading:
            found = await reading.admin_tokens.by_hash(digest(token))
        if found is None:
            raise Unauthorized("invalid admin token")
        status = found.status(now)
        if status is TokenStatus.revoked:
            raise Unauthorized(f"admin token {found.name} was revoked at {_when(found.revoked_at)}")
        if status is TokenStatus.expired:
            raise Unauthorized(f"admin token {found.name} expired at {_when(found.expires_at)}")
        if found.last_used_at is None or found.last_used_at < now - TOUCH_INTERVAL:
            async with self._store.unit_of_work() as uow:  # once a TOUCH_INTERVAL at most
                await uow.admin_tokens.touch(found.name, now=now, older_than=now - TOUCH_INTERVAL)
        return found.name
