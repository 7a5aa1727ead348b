"""The ``slotpool`` command: the server, migrations, the agent, and a client of the REST API.

Tables are for people; ``-o json`` and ``-o yaml`` are for scripts and GitOps (``pools export`` and
``pools apply -f`` round-trip the same documents).
"""

from __future__ import annotations

import typer

from slotpool.cli import pools, server, tasks, tokens

app = typer.Typer(
    help="slotpool: agent pools of bare Pods with N task slots.", no_args_is_help=True
)
app.registered_commands += server.app.registered_commands
app.add_typer(server.admin_app, name="admin-token")
app.add_typer(pools.pools_app, name="pools")
app.add_typer(tokens.tokens_app, name="tokens")
app.add_typer(tokens.admin_tokens_app, name="admin-tokens")
app.add_typer(tasks.tasks_app, name="tasks")


def main() -> None:
    app()
