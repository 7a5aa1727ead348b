"""The ``slotpool`` command: the server, migrations, the agent, and a client of the REST API.

Tables are for people; ``-o json`` and ``-o yaml`` are for scripts and GitOps (``pools export`` and
``pools apply -f`` round-trip the same documents).
"""

from __future__ import annotations

from typing import Annotated

import typer

from slotpool import __version__
from slotpool.cli import cluster, pools, server, tasks, tokens
from slotpool.cli.common import Commands, out

app = typer.Typer(
    cls=Commands,
    help="slotpool: agent pools of bare Pods with N task slots.",
    no_args_is_help=True,
    # Help texts are printed as written: "[min..max]" is not markup.
    rich_markup_mode=None,
)
app.registered_commands += server.app.registered_commands
app.registered_commands += cluster.app.registered_commands
app.add_typer(server.admin_app, name="admin-token")
app.add_typer(pools.pools_app, name="pools")
app.add_typer(tokens.tokens_app, name="tokens")
app.add_typer(tokens.admin_tokens_app, name="admin-tokens")
app.add_typer(tasks.tasks_app, name="tasks")


def _print_version(asked: bool) -> None:
    if asked:
        out.print(f"slotpool {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", is_eager=True, callback=_print_version, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """slotpool: agent pools of bare Pods with N task slots."""


def main() -> None:
    app()
