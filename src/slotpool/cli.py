"""The ``slotpool`` command: the server, migrations, and a client of the REST API for operators.

Tables are for people; ``-o json`` and ``-o yaml`` are for scripts and GitOps (``pools export`` and
``pools apply -f`` round-trip the same documents).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.table import Table

from slotpool import __version__
from slotpool.client import ApiError, Client

app = typer.Typer(
    help="slotpool: agent pools of bare Pods with N task slots.", no_args_is_help=True
)
pools_app = typer.Typer(help="Agent pools: list, inspect, create, apply, export, preview.")
admin_app = typer.Typer(help="Administration that works on the database directly.")
app.add_typer(pools_app, name="pools")
tokens_app = typer.Typer(help="A pool's agent tokens: list, create (shown once), revoke.")
app.add_typer(admin_app, name="admin-token")
app.add_typer(tokens_app, name="tokens")
out = Console()
err = Console(stderr=True)

POOL_DOC_KEYS = ("name", "description", "pool_type", "k8s_config")


class Output(StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"


UrlOption = Annotated[
    str, typer.Option("--url", envvar="SLOTPOOL_URL", help="The slotpool server.")
]
TokenOption = Annotated[
    str | None,
    typer.Option("--token", envvar="SLOTPOOL_ADMIN_TOKEN", help="Admin token.", show_default=False),
]
OutputOption = Annotated[Output, typer.Option("-o", "--output", help="table, json or yaml")]
DEFAULT_URL = "http://127.0.0.1:8080"


def fail(exc: ApiError) -> typer.Exit:
    err.print(f"[red]error:[/red] {exc.body.get('error') if isinstance(exc.body, dict) else exc}")
    for detail in exc.details:
        hint = f" ({detail['hint']})" if detail.get("hint") else ""
        err.print(f"  [bold]{detail.get('field')}[/bold]: {detail.get('message')}{hint}")
    return typer.Exit(code=1)


def emit(data: Any, output: Output) -> None:
    if output is Output.json:
        out.print_json(json.dumps(data))
    else:
        sys.stdout.write(yaml.safe_dump(data, sort_keys=False))


def show(data: Any, output: Output, table: Callable[[Any], Table]) -> None:
    if output is Output.table:
        out.print(table(data))
    else:
        emit(data, output)


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
    configure_logging(settings)
    if run_migrations:
        upgrade(settings.database_url)
    err.print(f"slotpool {__version__} listening on http://{host}:{port} (API docs at /docs)")
    uvicorn.run(create_app(settings), host=host, port=port, log_config=None, access_log=False)


@admin_app.command("create")
def admin_token_create(
    name: Annotated[str, typer.Option(help="Who or what the token is for.")] = "admin",
) -> None:
    """Create another admin token in the database (e.g. when the first one was lost)."""
    from slotpool.api.app import utc_now
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


def client(url: str, token: str | None) -> Client:
    return Client(url, token)


def _table(pools: list[dict[str, Any]]) -> Table:
    # kubectl-like: no borders, identifiers never wrapped, the image column gives way first.
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("NAME", "TYPE", "ID", "REPLICAS", "SLOTS", "FREEZE"):
        table.add_column(column, no_wrap=True)
    table.add_column("IMAGE", overflow="fold")
    for pool in pools:
        config = pool.get("k8s_config") or {}
        freeze = pool["freeze"]
        table.add_row(
            pool["name"],
            pool["pool_type"],
            pool["pool_id"],
            f"{config.get('min_replicas', 1)}..{config.get('max_replicas', 10)}",
            str(config.get("slots_per_pod", 4)),
            "frozen" if freeze["active"] else ("lifted" if freeze["lifted_until"] else "-"),
            config.get("image", "-"),
        )
    return table


@pools_app.command("list")
def pools_list(
    url: UrlOption = DEFAULT_URL, token: TokenOption = None, output: OutputOption = Output.table
) -> None:
    """List agent pools."""
    try:
        pools = client(url, token).list_pools()
    except ApiError as exc:
        raise fail(exc) from None
    show(pools, output, _table)


@pools_app.command("get")
def pools_get(
    pool: Annotated[str, typer.Argument(help="Pool id or name.")],
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    output: OutputOption = Output.yaml,
) -> None:
    """Show one pool."""
    try:
        found = client(url, token).find_pool(pool)
    except ApiError as exc:
        raise fail(exc) from None
    show(found, output, lambda one: _table([one]))


def _read_documents(path: Path) -> list[Any]:
    text = sys.stdin.read() if str(path) == "-" else path.read_text()
    return [doc for doc in yaml.safe_load_all(text) if doc is not None]


@pools_app.command("create")
def pools_create(
    name: Annotated[str, typer.Argument(help="Unique pool name.")],
    pool_type: Annotated[str, typer.Option("--type", help="k8s, local or static")] = "k8s",
    description: Annotated[str, typer.Option(help="Free text.")] = "",
    config_file: Annotated[
        Path | None, typer.Option("-f", "--config", help="YAML/JSON k8s_config file.")
    ] = None,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    output: OutputOption = Output.table,
) -> None:
    """Create a pool."""
    body: dict[str, Any] = {"name": name, "pool_type": pool_type, "description": description}
    if config_file is not None:
        body["k8s_config"] = _read_documents(config_file)[0]
    try:
        created = client(url, token).json("POST", "/api/v1/agent-pools", json=body)
    except ApiError as exc:
        raise fail(exc) from None
    show(created, output, lambda one: _table([one]))


def export_document(pool: dict[str, Any]) -> dict[str, Any]:
    return {key: pool[key] for key in POOL_DOC_KEYS if pool.get(key) is not None}


@pools_app.command("export")
def pools_export(
    pool: Annotated[
        str | None, typer.Argument(help="Pool id or name; all pools if omitted.")
    ] = None,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> None:
    """Print pools as YAML documents that `pools apply -f` accepts."""
    api = client(url, token)
    try:
        pools = [api.find_pool(pool)] if pool else api.list_pools()
    except ApiError as exc:
        raise fail(exc) from None
    sys.stdout.write(
        yaml.safe_dump_all([export_document(p) for p in pools], sort_keys=False) if pools else ""
    )


def apply_document(api: Client, doc: Any) -> str:
    """Create or update one pool from a document; returns what happened."""
    if not isinstance(doc, dict) or "name" not in doc:
        raise ApiError(422, {"error": "each document must be a mapping with at least 'name'"})
    unknown = sorted(set(doc) - set(POOL_DOC_KEYS))
    if unknown:
        details = [{"field": k, "message": "unknown field"} for k in unknown]
        raise ApiError(
            422, {"error": f"valid keys: {', '.join(POOL_DOC_KEYS)}", "details": details}
        )
    existing = api.list_pools(name=doc["name"])
    if not existing:
        created = api.json("POST", "/api/v1/agent-pools", json=doc)
        return f"agent pool {created['name']} ({created['pool_id']}) created"
    return _update(api, existing[0], doc)


def _update(api: Client, pool: dict[str, Any], doc: dict[str, Any]) -> str:
    if doc.get("pool_type", pool["pool_type"]) != pool["pool_type"]:
        raise ApiError(
            409,
            {"error": f"{pool['name']} is a {pool['pool_type']} pool; the type cannot change"},
        )
    path = f"/api/v1/agent-pools/{pool['pool_id']}"
    changed = []
    if "description" in doc and doc["description"] != pool["description"]:
        api.json("PATCH", path, json={"description": doc["description"]})
        changed.append("description")
    if "k8s_config" in doc and doc["k8s_config"] != pool["k8s_config"]:
        api.json("PUT", f"{path}/k8s-config", json=doc["k8s_config"])
        changed.append("k8s_config")
    what = ", ".join(changed) + " updated" if changed else "unchanged"
    return f"agent pool {pool['name']} ({pool['pool_id']}) {what}"


@pools_app.command("apply")
def pools_apply(
    file: Annotated[Path, typer.Option("-f", "--file", help="YAML file of pools ('-' = stdin).")],
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> None:
    """Create or update pools from YAML documents (name, description, pool_type, k8s_config)."""
    api = client(url, token)
    try:
        for doc in _read_documents(file):
            out.print(apply_document(api, doc))
    except ApiError as exc:
        raise fail(exc) from None


@pools_app.command("preview")
def pools_preview(
    pool: Annotated[str, typer.Argument(help="Pool id or name.")],
    config_file: Annotated[
        Path | None, typer.Option("-f", "--config", help="A candidate k8s_config (not saved).")
    ] = None,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    output: Annotated[str, typer.Option("-o", "--output", help="yaml or json")] = "yaml",
) -> None:
    """Print the exact Pod the pool's saved (or a candidate) configuration makes."""
    api = client(url, token)
    try:
        pool_id = api.find_pool(pool)["pool_id"]
        path = f"/api/v1/agent-pools/{pool_id}/pod-preview"
        params = {"format": output}
        if config_file is None:
            response = api.request("GET", path, params=params)
        else:
            candidate = _read_documents(config_file)[0]
            response = api.request("POST", path, params=params, json=candidate)
    except ApiError as exc:
        raise fail(exc) from None
    sys.stdout.write(response.text if response.text.endswith("\n") else response.text + "\n")


def _token_table(tokens: list[dict[str, Any]]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("NAME", "STATUS", "CREATED", "EXPIRES", "LAST USED"):
        table.add_column(column, no_wrap=True)
    for token in tokens:
        table.add_row(
            token["name"],
            token["status"],
            token["created_at"][:16].replace("T", " "),
            (token["expires_at"] or "never")[:16].replace("T", " "),
            (token["last_used_at"] or "-")[:16].replace("T", " "),
        )
    return table


PoolArgument = Annotated[str, typer.Argument(help="Pool id or name.")]


@tokens_app.command("list")
def tokens_list(
    pool: PoolArgument,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    output: OutputOption = Output.table,
) -> None:
    """List a pool's agent tokens (never their values)."""
    api = client(url, token)
    try:
        pool_id = api.find_pool(pool)["pool_id"]
        tokens = api.json("GET", f"/api/v1/agent-pools/{pool_id}/tokens")["items"]
    except ApiError as exc:
        raise fail(exc) from None
    show(tokens, output, _token_table)


@tokens_app.command("create")
def tokens_create(
    pool: PoolArgument,
    name: Annotated[str, typer.Argument(help="Token name, unique in the pool.")],
    expires_at: Annotated[
        str | None, typer.Option(help="ISO 8601 time with a zone; default: never.")
    ] = None,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> None:
    """Create an agent token and print its value (shown only this once)."""
    api = client(url, token)
    body: dict[str, Any] = {"name": name}
    if expires_at is not None:
        body["expires_at"] = expires_at
    try:
        pool_id = api.find_pool(pool)["pool_id"]
        created = api.json("POST", f"/api/v1/agent-pools/{pool_id}/tokens", json=body)
    except ApiError as exc:
        raise fail(exc) from None
    err.print(f"token {created['name']} of {pool_id} (shown only this once):")
    out.print(created["token"], soft_wrap=True)


@tokens_app.command("revoke")
def tokens_revoke(
    pool: PoolArgument,
    name: Annotated[str, typer.Argument(help="Token name.")],
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> None:
    """Revoke an agent token: it stops working at once."""
    api = client(url, token)
    try:
        pool_id = api.find_pool(pool)["pool_id"]
        api.json("DELETE", f"/api/v1/agent-pools/{pool_id}/tokens/{name}")
    except ApiError as exc:
        raise fail(exc) from None
    out.print(f"token {name} of {pool_id} revoked")


def main() -> None:
    app()
