"""Admin tokens and pool (agent) tokens: stored hashed, listed, expired and revoked."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from slotpool.domain.tokens import AdminToken, PoolToken
from slotpool.store.errors import Conflict
from slotpool.store.models import AdminTokenRow, PoolTokenRow


def _token(row: PoolTokenRow) -> PoolToken:
    return PoolToken(
        id=row.id,
        pool_id=row.pool_id,
        name=row.name,
        created_by=row.created_by,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        last_used_at=row.last_used_at,
    )


class PoolTokenRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def list(self, pool_id: str) -> list[PoolToken]:
        rows = await self._session.scalars(
            select(PoolTokenRow)
            .where(PoolTokenRow.pool_id == pool_id)
            .order_by(PoolTokenRow.created_at, PoolTokenRow.name)
        )
        return [_token(row) for row in rows]

    async def add(self, token: PoolToken, *, token_hash: str) -> PoolToken:
        self._session.add(
            PoolTokenRow(
                id=token.id,
                pool_id=token.pool_id,
                name=token.name,
                token_hash=token_hash,
                created_by=token.created_by,
                created_at=token.created_at,
                expires_at=token.expires_at,
            )
        )
        try:
            await self._session.flush()
        except IntegrityError as exc:
            raise Conflict(
                f"a token named {token.name!r} already exists in {token.pool_id}"
            ) from exc
        return token

    async def by_name(self, pool_id: str, name: str) -> PoolToken | None:
        row = await self._session.scalar(
            select(PoolTokenRow).where(PoolTokenRow.pool_id == pool_id, PoolTokenRow.name == name)
        )
        return None if row is None else _token(row)

    async def by_hash(self, token_hash: str) -> PoolToken | None:
        row = await self._session.scalar(
            select(PoolTokenRow).where(PoolTokenRow.token_hash == token_hash)
        )
        return None if row is None else _token(row)

    async def revoke(self, token_id: str, *, now: datetime) -> None:
        await self._session.execute(
            update(PoolTokenRow)
            .where(PoolTokenRow.id == token_id, PoolTokenRow.revoked_at.is_(None))
            .values(revoked_at=now)
        )

    async def expire(self, token_id: str, *, at: datetime) -> None:
        """Make the token expire at ``at`` (sooner than it would have, never later)."""
        await self._session.execute(
            update(PoolTokenRow)
            .where(
                PoolTokenRow.id == token_id,
                or_(PoolTokenRow.expires_at.is_(None), PoolTokenRow.expires_at > at),
            )
            .values(expires_at=at)
        )

    async def touch(self, token_id: str, *, now: datetime, older_than: datetime) -> None:
        """Record use, at most once per interval: agents call every few seconds."""
        await self._session.execute(
            update(PoolTokenRow)
            .where(
                PoolTokenRow.id == token_id,
                or_(PoolTokenRow.last_used_at.is_(None), PoolTokenRow.last_used_at < older_than),
            )
            .values(last_used_at=now)
        )


def _admin_token(row: AdminTokenRow) -> AdminToken:
    return AdminToken(
        name=row.name,
        created_by=row.created_by,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        last_used_at=row.last_used_at,
    )


class AdminTokenRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def count(self) -> int:
        return int(await self._session.scalar(select(func.count()).select_from(AdminTokenRow)) or 0)

    async def all(self) -> list[AdminToken]:
        rows = await self._session.scalars(
            select(AdminTokenRow).order_by(AdminTokenRow.created_at, AdminTokenRow.name)
        )
        return [_admin_token(row) for row in rows]

    async def add(self, token: AdminToken, *, token_hash: str) -> None:
        assert token.created_by is not None, "a stored token says who made it"
        assert token.created_at is not None, "and when"
        self._session.add(
            AdminTokenRow(
                name=token.name,
                token_hash=token_hash,
                created_by=token.created_by,
                created_at=token.created_at,
                expires_at=token.expires_at,
            )
        )
        try:
            await self._session.flush()
        except IntegrityError as exc:
            raise Conflict(f"an admin token named {token.name!r} already exists") from exc

    async def by_hash(self, token_hash: str) -> AdminToken | None:
        row = await self._session.scalar(
            select(AdminTokenRow).where(AdminTokenRow.token_hash == token_hash)
        )
        return None if row is None else _admin_token(row)

    async def by_name(self, name: str) -> AdminToken | None:
        row = await self._session.scalar(select(AdminTokenRow).where(AdminTokenRow.name == name))
        return None if row is None else _admin_token(row)

    async def active_names(self, *, now: datetime) -> list[str]:
        """The tokens that work at ``now``, their rows locked until the unit of work ends (on
        PostgreSQL; SQLite has one writer at a time): two revocations cannot both count the
        other's token as the one left."""
        names = await self._session.scalars(
            select(AdminTokenRow.name)
            .where(
                AdminTokenRow.revoked_at.is_(None),
                or_(AdminTokenRow.expires_at.is_(None), AdminTokenRow.expires_at > now),
            )
            .order_by(AdminTokenRow.id)
            .with_for_update()
        )
        return list(names)

    async def revoke(self, name: str, *, now: datetime) -> None:
        await self._session.execute(
            update(AdminTokenRow)
            .where(AdminTokenRow.name == name, AdminTokenRow.revoked_at.is_(None))
            .values(revoked_at=now)
        )

    async def touch(self, name: str, *, now: datetime, older_than: datetime) -> None:
        """Record use, at most once per interval (as for pool tokens)."""
        await self._session.execute(
            update(AdminTokenRow)
            .where(
                AdminTokenRow.name == name,
                or_(AdminTokenRow.last_used_at.is_(None), AdminTokenRow.last_used_at < older_than),
            )
            .values(last_used_at=now)
        )
