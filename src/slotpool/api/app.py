"""The application factory: settings in, a FastAPI app out; the store opens and closes with it."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from fastapi import FastAPI
from prometheus_client import make_asgi_app

from slotpool import __version__
from slotpool.api import errors
from slotpool.api.deps import Services
from slotpool.api.routes import agent, config, freeze, health, pools, tokens
from slotpool.services.auth import AdminAuth
from slotpool.services.freeze import FreezeService
from slotpool.services.pools import PoolService
from slotpool.services.tokens import TokenService
from slotpool.settings import Settings
from slotpool.store.uow import Store


def utc_now() -> datetime:
    return datetime.now(UTC)


def announce_admin_token(token: str) -> None:
    """Shown once: only its hash is kept."""
    line = "=" * 72
    print(
        f"{line}\nslotpool generated the admin token (shown only this once, stored hashed):\n\n"
        f"    {token}\n\nexport SLOTPOOL_ADMIN_TOKEN={token}\n{line}",
        file=sys.stderr,
        flush=True,
    )


def create_app(
    settings: Settings,
    *,
    clock: Callable[[], datetime] = utc_now,
    on_admin_token: Callable[[str], None] = announce_admin_token,
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = Store(settings.database_url)
        app.state.store = store
        app.state.services = Services(
            auth=AdminAuth(store, settings, clock),
            pools=PoolService(store, settings, clock),
            freeze=FreezeService(store, settings, clock),
            tokens=TokenService(store, clock),
        )
        token = await app.state.services.auth.ensure_token()
        if token is not None:
            on_admin_token(token)
        try:
            yield
        finally:
            await store.close()

    app = FastAPI(
        title="slotpool",
        version=__version__,
        description="Agent pools whose agents are bare Pods with N task slots.",
        lifespan=lifespan,
    )
    errors.install(app)
    for module in (health, pools, config, freeze, tokens, agent):
        app.include_router(module.router)
    app.mount("/metrics", make_asgi_app())
    return app
