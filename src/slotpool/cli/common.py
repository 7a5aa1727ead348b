"""What every command shares: consoles, the server and token options, output formats, errors.

The consoles take no markup, emoji codes or highlighting: what they print comes from the server
(a task named ``[/bold]``, a pattern ``^pool-[a-z0-9]{16}$`` in an error) and is printed as it is;
the CLI's own styles are ``Text`` objects.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from slotpool.client import ApiError, Client

out = Console(markup=False, emoji=False, highlight=False)
err = Console(stderr=True, markup=False, emoji=False, highlight=False)


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


def error(message: str) -> None:
    """``error: message`` on stderr, the message as it is."""
    err.print(Text.assemble(("error:", "red"), " ", message), soft_wrap=True)


def fail(exc: ApiError) -> typer.Exit:
    error(str(exc.body.get("error") if isinstance(exc.body, dict) else exc))
    for detail in exc.details:
        hint = f" ({detail['hint']})" if detail.get("hint") else ""
        line = Text.assemble("  ", (str(detail.get("field")), "bold"), f": {detail.get('message')}")
        err.print(line + hint, soft_wrap=True)
    return typer.Exit(code=1)


class NoAliasLoader(yaml.SafeLoader):
    """YAML without anchors and aliases: a few hundred bytes of nested aliases expand to
    gigabytes ("billion laughs"), and a pool document has no use for them."""

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise yaml.MarkedYAMLError(
                problem="anchors and aliases (&name, *name) are not accepted: write the values out",
                problem_mark=event.start_mark,
            )
        return super().compose_node(parent, index)


class UserError(Exception):
    """A mistake of the user's (a missing file, a bad document): one line, exit 1."""


def yaml_documents(text: str, source: str) -> list[Any]:
    """The YAML documents of ``text`` (empty ones left out); a ``UserError`` in one line for a
    file that is not YAML or holds an alias."""
    try:
        return [doc for doc in yaml.load_all(text, Loader=NoAliasLoader) if doc is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}, line {mark.line + 1}" if mark is not None else source
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
        raise UserError(f"{where}: {problem}") from None


def read_text(path: Path) -> tuple[str, str]:
    """(text, its name for messages) of ``path``, or of stdin for ``-``."""
    if str(path) == "-":
        return sys.stdin.read(), "stdin"
    try:
        return path.read_text(encoding="utf-8"), str(path)
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None


def read_documents(path: Path) -> list[Any]:
    """The YAML (or JSON) documents of a file, or of stdin for ``-``; at least one."""
    documents = yaml_documents(*read_text(path))
    if not documents:
        raise UserError(f"{'stdin' if str(path) == '-' else path}: no YAML document in it")
    return documents


def read_mapping(path: Path, what: str) -> dict[str, Any]:
    """The one YAML mapping a file holds (a config, a task)."""
    documents = read_documents(path)
    source = "stdin" if str(path) == "-" else str(path)
    if len(documents) > 1:
        raise UserError(f"{source}: one document expected ({what}), found {len(documents)}")
    if not isinstance(documents[0], dict):
        kind = type(documents[0]).__name__
        raise UserError(f"{source}: {what} must be a mapping of keys to values, not a {kind}")
    return documents[0]


class Commands(TyperGroup):
    """The command tree; a user's mistake anywhere in it ends in one line on stderr, never a
    traceback."""

    def invoke(self, ctx: Any) -> Any:  # typer's own click Context
        try:
            return super().invoke(ctx)
        except ApiError as exc:
            raise fail(exc) from None
        except UserError as exc:
            error(str(exc))
            raise typer.Exit(code=1) from None
        except OSError as exc:  # a file named on the command line, a closed pipe
            error(f"{exc.filename}: {exc.strerror}" if exc.filename else str(exc))
            raise typer.Exit(code=1) from None


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
    """The token `slotpool up` keeps in its data directory (SLOTPOOL_DATA_DIR, as `up` reads
    it), so the CLI on the same machine works without copying it around."""
    from slotpool.settings import default_data_dir

    data_dir = os.environ.get("SLOTPOOL_DATA_DIR")
    path = (Path(data_dir) if data_dir else default_data_dir()) / ADMIN_TOKEN_FILE
    return path.read_text().strip() if path.exists() else None
