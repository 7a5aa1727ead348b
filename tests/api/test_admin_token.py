"""The admin token: generated on first start, shown once, stored only as a hash."""

from __future__ import annotations

import hashlib

import httpx
from sqlalchemy import create_engine, text

from slotpool.api.app import create_app
from slotpool.settings import Settings
from slotpool.store.db import sync_url
from slotpool.store.migrate import upgrade


async def start_and_list(settings: Settings, shown: list[str], token: str | None) -> int:
    app = create_app(settings, on_admin_token=shown.append)
    async with app.router.lifespan_context(app):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t", headers=headers
        ) as client:
            return (await client.get("/api/v1/agent-pools")).status_code


async def test_first_start_generates_a_token_once(database_url: str) -> None:
    upgrade(database_url)
    settings = Settings.model_validate({"database_url": database_url, "local_runtime": False})
    shown: list[str] = []
    assert await start_and_list(settings, shown, None) == 401
    assert len(shown) == 1
    token = shown[0]
    assert token.startswith("spa_")
    assert len(token) > 40
    assert await start_and_list(settings, shown, token) == 200
    assert len(shown) == 1, "a second start shows no new token"
    engine = create_engine(sync_url(database_url))
    with engine.connect() as connection:
        stored = connection.execute(text("SELECT token_hash FROM admin_tokens")).scalars().all()
    engine.dispose()
    assert stored == [hashlib.sha256(token.encode()).hexdigest()]
    assert token not in stored


async def test_a_configured_token_generates_none(database_url: str) -> None:
    upgrade(database_url)
    settings = Settings.model_validate(
        {
            "database_url": database_url,
            "admin_token": "configured-token-0123456789",
            "local_runtime": False,
        }
    )
    shown: list[str] = []
    assert await start_and_list(settings, shown, "configured-token-0123456789") == 200
    assert shown == []
