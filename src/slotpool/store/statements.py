"""What the hot paths' statements share: they are built once, at import, with bind parameters
(SQLAlchemy then neither rebuilds the statement nor recomputes its cache key on every call), and
run on the tables rather than the mapped classes (no ORM bulk-update or loading machinery). A
statement built per call costs about five times one built once (``bench/DISPATCH.md``).

Statements on the tables bypass the session's identity map, so an object of the same row that
the unit of work loaded earlier would keep its old values: ``refresh_if_loaded`` reloads it (a
lookup in a dict when none is loaded, as on the task path).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.util import identity_key


async def refresh_if_loaded(session: AsyncSession, mapped: type[Any], key: tuple[Any, ...]) -> None:
    """Reload the object of ``mapped`` with primary key ``key`` if the session holds it."""
    loaded = session.sync_session.identity_map.get(identity_key(mapped, key))
    if loaded is not None:
        await session.refresh(loaded)
