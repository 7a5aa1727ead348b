"""`slotpool tokens`: a pool's agent tokens."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from slotpool.cli.common import (
    DEFAULT_URL,
    Output,
    OutputOption,
    PoolArgument,
    TokenOption,
    UrlOption,
    client,
    err,
    fail,
    out,
    show,
)
from slotpool.client import ApiError

tokens_app = typer.Typer(help="A pool's agent tokens: list, create (shown once), rotate, revoke.")


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


@tokens_app.command("rotate")
def tokens_rotate(
    pool: PoolArgument,
    name: Annotated[str, typer.Argument(help="Token name.")],
    overlap_seconds: Annotated[
        int, typer.Option(help="How long the old token stays valid at most (0: not at all).")
    ] = 3600,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> None:
    """Replace a token. The one in the pool's Secret is replaced there and the Pods rebuilt onto
    the new one; any other gets a successor whose value is printed (shown only this once)."""
    api = client(url, token)
    try:
        pool_id = api.find_pool(pool)["pool_id"]
        rotated = api.json(
            "POST",
            f"/api/v1/agent-pools/{pool_id}/tokens/{name}/rotate",
            json={"overlap_seconds": overlap_seconds},
            timeout=120,  # the Secret's token: answered once the idle Pods are rebuilt
        )
    except ApiError as exc:
        raise fail(exc) from None
    err.print(rotated["message"], markup=False)
    expires = rotated["old"]["expires_at"] or "never"
    err.print(f"{rotated['old']['name']} stays valid until {expires} at most", markup=False)
    if rotated["token"] is not None:
        err.print(f"token {rotated['new']['name']} of {pool_id} (shown only this once):")
        out.print(rotated["token"], soft_wrap=True)


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


admin_tokens_app = typer.Typer(
    help="Admin tokens over the API: list, create (shown once), revoke. Their names are what "
    "audit fields record."
)


def _admin_token_table(tokens: list[dict[str, Any]]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("NAME", "STATUS", "CREATED BY", "CREATED", "EXPIRES", "LAST USED"):
        table.add_column(column, no_wrap=True)
    for token in tokens:
        created = "(settings)" if token["configured"] else _minute(token["created_at"])
        table.add_row(
            Text(token["name"]),
            token["status"],
            Text(token["created_by"] or "-"),
            created,
            _minute(token["expires_at"]) or "never",
            _minute(token["last_used_at"]) or "-",
        )
    return table


def _minute(instant: str | None) -> str:
    return "" if instant is None else instant[:16].replace("T", " ")


@admin_tokens_app.command("list")
def admin_tokens_list(
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    output: OutputOption = Output.table,
) -> None:
    """List the admin tokens (never their values)."""
    try:
        tokens = client(url, token).json("GET", "/api/v1/admin-tokens")["items"]
    except ApiError as exc:
        raise fail(exc) from None
    show(tokens, output, _admin_token_table)


@admin_tokens_app.command("create")
def admin_tokens_create(
    name: Annotated[str, typer.Argument(help="Token name, unique; audit fields record it.")],
    expires_at: Annotated[
        str | None, typer.Option(help="ISO 8601 time with a zone; default: never.")
    ] = None,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> None:
    """Create an admin token and print its value (shown only this once)."""
    body: dict[str, Any] = {"name": name}
    if expires_at is not None:
        body["expires_at"] = expires_at
    try:
        created = client(url, token).json("POST", "/api/v1/admin-tokens", json=body)
    except ApiError as exc:
        raise fail(exc) from None
    err.print(f"admin token {created['name']} (shown only this once):", markup=False)
    out.print(created["token"], soft_wrap=True)


@admin_tokens_app.command("revoke")
def admin_tokens_revoke(
    name: Annotated[str, typer.Argument(help="Token name.")],
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> None:
    """Revoke an admin token: it stops working at once (not the last one that works)."""
    try:
        client(url, token).json("DELETE", f"/api/v1/admin-tokens/{name}")
    except ApiError as exc:
        raise fail(exc) from None
    out.print(f"admin token {name} revoked", markup=False)
