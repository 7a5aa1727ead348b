"""Commands that run slotpool itself: the server, `up`, the agent, migrations, admin tokens."""

from __future__ import annotations

import asyncio
import gc
import getpass
import logging
import os
import secrets
import shlex
import shutil
import sys
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer
from pydantic import SecretStr

from slotpool import __version__
from slotpool.cli.common import DEFAULT_URL, err, out
from slotpool.hardening import make_non_dumpable, private_directory

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
    from slotpool.logs import announce, configure_logging
    from slotpool.settings import Settings
    from slotpool.store.migrate import upgrade

    make_non_dumpable()
    settings = Settings()
    configure_logging(level=settings.log_level, log_format=settings.log_format)
    _hold_database(settings, f"http://{host}:{port}")
    if run_migrations:
        upgrade(settings.database_url)
    announce(
        f"slotpool {__version__} listening on http://{host}:{port} (API docs at /docs)",
        version=__version__,
        url=f"http://{host}:{port}",
    )
    _warn_of_reach(settings)
    _serve(settings, host, port)


def _hold_database(settings: Any, url: str) -> None:
    """On SQLite, refuse to start (before anything else) while another server uses the
    database; the lock is then this process's until it ends."""
    from slotpool.store.exclusive import DatabaseInUse, hold_database

    try:
        hold_database(settings.database_url, url=url)
    except DatabaseInUse as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(code=1) from None


def _serve(settings: Any, host: str, port: int) -> None:
    """Serve until SIGINT or SIGTERM. At the signal the app hands over first: it starts nothing
    new (no local agent), stops its controller and sweeper and gives up the leadership, and
    only then does uvicorn close the port and finish the requests under way. (Closing the port
    first let a new server start beside a controller that went on.) A second signal stops at
    once."""
    import uvicorn

    from slotpool.api.app import create_app

    app = create_app(settings)

    class Server(uvicorn.Server):
        handing_over = False

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            stopping = getattr(app.state, "stopping", None)
            if stopping is None or self.handing_over:
                super().handle_exit(sig, frame)
                return
            self.handing_over = True
            exit_now = super().handle_exit
            stopping().add_done_callback(lambda _: exit_now(sig, frame))

    # uvicorn's loggers write through the handler of ``logs.configure_logging`` (its own
    # log_config would install plain-text handlers); the access lines are ``api.access``'s.
    config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False)
    # What is loaded by now (modules, the app, its routes and models) lives as long as the
    # process: kept out of the garbage collector's full passes, which otherwise walk all of it
    # again and again while a large answer (1,000 pools) is built, tens of milliseconds each.
    gc.collect()
    gc.freeze()
    Server(config).run()


def _warn_of_reach(settings: Any) -> None:
    """Say plainly what a task of a local pool can reach, where it is more than its own."""
    from slotpool.logs import announce
    from slotpool.runtime.local import AgentUserError, agent_user

    older = settings.older_database()
    if older is not None:
        announce(
            f"warning: the database in use is {older}, where older versions kept it: move it "
            f"(with its -wal and -shm files) into SLOTPOOL_DATA_DIR ({settings.data_dir}), or "
            "set SLOTPOOL_DATABASE_URL to it",
            level=logging.WARNING,
        )
    if not settings.local_runtime:
        return
    try:
        as_user = agent_user(settings.local_agent_user)
    except AgentUserError:
        return  # the server refuses to start and says why
    if as_user is None:
        announce(
            f"warning: tasks of local pools run as this server's user ({getpass.getuser()}) and "
            "can read all it can: the database, every local pool's token, the data directory "
            "(run the server as root to run them as an unprivileged user, or use k8s pools)",
            level=logging.WARNING,
        )


@admin_app.command("create")
def admin_token_create(
    name: Annotated[
        str, typer.Option(help="Who or what the token is for; audit fields record it.")
    ],
) -> None:
    """Create an admin token in the database directly (when no admin token works any more;
    otherwise `slotpool admin-tokens create` does it over the API). Prints its value once."""
    from slotpool.clock import utc_now
    from slotpool.logs import configure_logging
    from slotpool.services.auth import AdminAuth
    from slotpool.services.errors import ServiceError
    from slotpool.settings import Settings
    from slotpool.store.uow import Store

    settings = Settings()
    # The value is this command's output: the audit line goes to standard error.
    configure_logging(level=settings.log_level, log_format=settings.log_format, to_stderr=True)

    async def create() -> str:
        store = Store(settings.database_url)
        try:
            auth = AdminAuth(store, settings, utc_now)
            _, value = await auth.create(name, expires_at=None, by="slotpool admin-token create")
            return value
        finally:
            await store.close()

    try:
        value = asyncio.run(create())
    except ServiceError as exc:
        err.print(f"error: {exc.message}", markup=False)
        for issue in exc.details:
            err.print(f"  {issue.path}: {issue.message}", markup=False)
        raise typer.Exit(code=1) from None
    err.print(f"admin token {name} (shown only this once):", markup=False)
    out.print(value, soft_wrap=True)


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
    from slotpool.cli.common import ADMIN_TOKEN_FILE
    from slotpool.logs import announce, configure_logging
    from slotpool.settings import Settings
    from slotpool.store.migrate import upgrade

    make_non_dumpable()
    settings = Settings()
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    _hold_database(settings, url)
    token = settings.admin_token.get_secret_value() if settings.admin_token else None
    token = token or _local_admin_token(settings.data_dir / ADMIN_TOKEN_FILE)
    url_option = "" if url == DEFAULT_URL else f" --url {url}"
    settings = settings.model_copy(update={"admin_token": SecretStr(token), "public_url": url})
    configure_logging(level=settings.log_level, log_format=settings.log_format)
    upgrade(settings.database_url)
    asyncio.run(_ensure_demo_pool(settings))
    announce(
        f"\nslotpool {__version__} is up at {url} (API docs: {url}/docs)\n"
        f"admin token: {token}\n\n"
        f"try:  {this_command()} tasks submit{url_option} --pool {DEMO_POOL} --follow -- "
        "echo hello\n" + activate_hint()
    )
    _warn_of_reach(settings)
    _serve(settings, host, port)


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
    private_directory(path.parent)
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
