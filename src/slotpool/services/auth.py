"""Admin authentication: a bearer token from the settings, or one generated on first start.

Tokens are long random strings, so a SHA-256 digest is a safe way to store them (a slow password
hash protects guessable secrets; these are not guessable) and lets a lookup use an index.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from datetime import datetime

from slotpool.services.errors import Unauthorized
from slotpool.settings import Settings
from slotpool.store.uow import Store

ADMIN_TOKEN_PREFIX = "spa_"


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class AdminAuth:
    def __init__(self, store: Store, settings: Settings, clock: Callable[[], datetime]) -> None:
        self._store = store
        self._configured = settings.admin_token
        self._clock = clock

    async def ensure_token(self) -> str | None:
        """On first start with no configured token, make one; returns it so it can be shown once."""
        if self._configured is not None:
            return None
        async with self._store.unit_of_work() as uow:
            if await uow.admin_tokens.count() > 0:
                return None
            token = ADMIN_TOKEN_PREFIX + secrets.token_urlsafe(32)
            await uow.admin_tokens.add(name="admin", token_hash=digest(token), now=self._clock())
        return token

    async def create_token(self, name: str) -> str:
        token = ADMIN_TOKEN_PREFIX + secrets.token_urlsafe(32)
        async with self._store.unit_of_work() as uow:
            await uow.admin_tokens.add(name=name, token_hash=digest(token), now=self._clock())
        return token

    async def authenticate(self, token: str | None) -> str:
        """The actor's name for audit fields; raises Unauthorized."""
        if not token:
            raise Unauthorized("missing bearer token: send 'Authorization: Bearer <admin token>'")
        configured = self._configured
        if configured is not None and hmac.compare_digest(
            token.encode(), configured.get_secret_value().encode()
        ):
            return "admin"
        async with self._store.unit_of_work() as uow:
            if await uow.admin_tokens.exists(digest(token)):
                return "admin"
        raise Unauthorized("invalid admin token")
