"""What every command shares: consoles, the server and token options, output formats, errors."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from enum import StrEnum
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.table import Table

from slotpool.client import ApiError, Client

out = Console()
err = Console(stderr=True)


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
PoolArgument = Annotated[str, typer.Argument(help="Pool id or name.")]
OutputOption = Annotated[Output, typer.Option("-o", "--output", help="table, json or yaml")]
DEFAULT_URL = "http://127.0.0.1:8080"
ADMIN_TOKEN_FILE = "admin-token"


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


def client(url: str, token: str | None) -> Client:
    """A client of the server; without a token, the one `slotpool up` keeps for this user."""
    return Client(url, token or local_admin_token())


def local_admin_token() -> str | None:
    from slotpool.settings import default_data_dir

    path = default_data_dir() / ADMIN_TOKEN_FILE
    return path.read_text().strip() if path.exists() else None
