"""The first admin token of a new database, made by replicas that start together: one of them
makes it and shows it once; the others find it made and start without an error (the token's name
is unique, so a second one cannot be made). On PostgreSQL, where several replicas share a
database; on SQLite one server holds it (``store/exclusive.py``), but the rule is the same."""

from __future__ import annotations

import asyncio

from slotpool.clock import utc_now
from slotpool.services.auth import AdminAuth
from slotpool.settings import Settings
from slotpool.store.migrate import upgrade
from slotpool.store.uow import Store

REPLICAS = 4


async def test_replicas_starting_together_make_one_first_token(database_url: str) -> None:
    upgrade(database_url)
    stores = [Store(database_url) for _ in range(REPLICAS)]
    settings = Settings(database_url=database_url, admin_token=None, local_runtime=False)
    try:
        auths = [AdminAuth(store, settings, utc_now) for store in stores]
        # Together: each looks (none yet) before the first one's token is committed.
        shown = await asyncio.gather(*(auth.ensure_token() for auth in auths))
        async with stores[0].unit_of_work() as uow:
            made = await uow.admin_tokens.count()
    finally:
        for store in stores:
            await store.close()
    assert made == 1
    assert len([value for value in shown if value is not None]) == 1
