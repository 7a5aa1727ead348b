"""Agent tokens (one pool each) and admin tokens: random, shown once, stored hashed, named,
expiring, revocable.

Whether a token may be used is a pure question of its record and ``now``; the store keeps only
the SHA-256 of the value (the value is long and random, so a slow password hash adds nothing).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

TOKEN_PREFIX = "spt_"
TOKEN_NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
TOKEN_NAME_RULE = "1 to 63 lowercase letters, digits and '-', starting and ending alphanumeric"


class TokenStatus(StrEnum):
    active = "active"
    expired = "expired"
    revoked = "revoked"


def token_digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass(frozen=True)
class PoolToken:
    id: str
    pool_id: str
    name: str
    created_by: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None

    def status(self, now: datetime) -> TokenStatus:
        return token_status(self.revoked_at, self.expires_at, now)


def token_status(
    revoked_at: datetime | None, expires_at: datetime | None, now: datetime
) -> TokenStatus:
    if revoked_at is not None and revoked_at <= now:
        return TokenStatus.revoked
    if expires_at is not None and expires_at <= now:
        return TokenStatus.expired
    return TokenStatus.active


# The admin token of the server's settings (SLOTPOOL_ADMIN_TOKEN) goes by this name; no token
# in the database may take it.
CONFIGURED_ADMIN_TOKEN = "configured"


@dataclass(frozen=True)
class AdminToken:
    """An admin token: its name is who did what in every audit field (``created_by``,
    ``updated_by``, ``approved_by``...). The configured one has no row: ``created_at`` None."""

    name: str
    created_by: str | None
    created_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None

    @property
    def configured(self) -> bool:
        return self.name == CONFIGURED_ADMIN_TOKEN and self.created_at is None

    def status(self, now: datetime) -> TokenStatus:
        return token_status(self.revoked_at, self.expires_at, now)
