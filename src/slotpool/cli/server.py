"""Commands that run slotpool itself: the server, `up`, the agent, migrations, admin tokens."""

from __future__ import annotations

import asyncio
import os
import secrets
import shlex
import shutil
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import SecretStr

from slotpool import __version__
from slotpool.cli.common import DEFAULT_URL, err, out

app = typer.Typer()
admin_app = typer.Typer(help="Administration that works on the database directly.")


@app.command()
def version() -> None:
    """Print slotpool's version."""
    out.print(__version__)


@app.command()
def migrate() -> None:
    """Bring the database (SLOTPOOL_DATABASE_URL, default SQLite) to the newest schema."""
    from slotpool.settings import Settings
    from slotpool.store.migrate import current_revision, upgrade

    settings = Settings()
    upgrade(settings.database_url)
    out.print(f"database at revision {current_revision(settings.database_url)}")


@app.command()
def server(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    run_migrations: Annotated[
        bool, typer.Option("--migrate/--no-migrate", help="Migrate the database first.")
    ] = True,
) -> None:
    """Run the control plane (REST API and OpenAPI at /docs)."""
    import uvicorn

    from slotpool.api.app import create_app
    from slotpool.logs import configure_logging
    from slotpool.settings import Settings
    from slotpool.store.migrate import upgrade

    settings = Settings()
    configure_logging(level=settings.log_level, log_format=settings.log_format)
    if run_migrations:
        upgrade(settings.database_url)
    err.print(f"slotpool {__version__} listening on http://{host}:{port} (API docs at /docs)")
    uvicorn.run(create_app(settings), host=host, port=port, log_config=None, access_log=False)


@admin_app.command("create")
def admin_token_create(
    name: Annotated[str, typer.Option(help="Who or what the token is for.")] = "admin",
) -> None:
    """Create another admin token in the database (e.g. when the first one was lost)."""
    from slotpool.clock import utc_now
    from slotpool.services.auth import AdminAuth
    from slotpool.settings import Settings
    from slotpool.store.uow import Store

    async def create() -> str:
        store = Store(Settings().database_url)
        try:
            return await AdminAuth(store, Settings(), utc_now).create_token(name)
        finally:
            await store.close()

    out.print(asyncio.run(create()))


@app.command()
def agent() -> None:
    """Run an agent: configured by SLOTPOOL_SERVER_URL, SLOTPOOL_POOL_ID, SLOTPOOL_AGENT_NAME,
    SLOTPOOL_SLOTS and SLOTPOOL_AGENT_TOKEN (see docs/agent-protocol.md). SIGTERM drains."""
    from slotpool.agent.main import main as agent_main

    raise typer.Exit(code=agent_main())


DEMO_POOL = "demo"


@app.command()
def up(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
) -> None:
    """Everything on this machine in one command: an SQLite database, the server, a local pool
    named demo (agent processes on this host) if there is no pool yet, and the admin token."""
    import uvicorn

    from slotpool.api.app import create_app
    from slotpool.cli.common import ADMIN_TOKEN_FILE
    from slotpool.logs import configure_logging
    from slotpool.settings import Settings
    from slotpool.store.migrate import upgrade

    settings = Settings()
    token = settings.admin_token.get_secret_value() if settings.admin_token else None
    token = token or _local_admin_token(settings.data_dir / ADMIN_TOKEN_FILE)
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    url_option = "" if url == DEFAULT_URL else f" --url {url}"
    settings = settings.model_copy(update={"admin_token": SecretStr(token), "public_url": url})
    configure_logging(level=settings.log_level, log_format=settings.log_format)
    upgrade(settings.database_url)
    asyncio.run(_ensure_demo_pool(settings))
    err.print(
        f"\nslotpool {__version__} is up at {url} (API docs: {url}/docs)\n"
        f"admin token: {token}\n\n"
        f"try:  {this_command()} tasks submit{url_option} --pool {DEMO_POOL} --follow -- "
        "echo hello\n" + activate_hint(),
        soft_wrap=True,
    )
    uvicorn.run(create_app(settings), host=host, port=port, log_config=None, access_log=False)


def this_command() -> str:
    """How to run this very slotpool from a shell: ``slotpool`` where the PATH finds it, its
    full path where it does not (say only ``.venv/bin/slotpool`` exists)."""
    script = Path(sys.argv[0])
    if script.name != "slotpool":  # python -m slotpool.cli
        return f"{shlex.quote(sys.executable)} -m slotpool.cli"
    found = shutil.which("slotpool")
    if found is not None and Path(found).resolve() == script.resolve():
        return "slotpool"
    return shlex.quote(str(script.absolute()))


def activate_hint() -> str:
    """Where ``slotpool`` is not on the PATH but sits in a virtual environment: how to put it
    there."""
    activate = Path(sys.argv[0]).absolute().parent / "activate"
    if this_command() == "slotpool" or not activate.is_file():
        return ""
    return f"      (or first: . {shlex.quote(str(activate))}  and then just slotpool)\n"


def _local_admin_token(path: Path) -> str:
    """`up` is for one machine: its admin token lives in a file only this user can read, so the
    CLI on the same machine works without copying it around."""
    if path.exists():
        return path.read_text().strip()
    from slotpool.services.auth import ADMIN_TOKEN_PREFIX

    token = ADMIN_TOKEN_PREFIX + secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    return token


async def _ensure_demo_pool(settings: Any) -> None:
    from slotpool.clock import utc_now
    from slotpool.domain.config import PoolConfig, PoolType
    from slotpool.services.pools import PoolService
    from slotpool.store.uow import Store

    store = Store(settings.database_url)
    try:
        pools = PoolService(store, settings, utc_now)
        _, total = await pools.list(limit=1, offset=0, name=None)
        if total == 0:
            await pools.create(
                name=DEMO_POOL,
                description="Agent processes on this host, made by `slotpool up`.",
                pool_type=PoolType.local,
                config=PoolConfig(min_replicas=1, slots_per_pod=4),
                by="slotpool up",
            )
    finally:
        await store.close()
