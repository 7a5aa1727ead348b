"""`slotpool cluster`: the server processes on the database, and which one leads."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from slotpool.cli.common import (
    DEFAULT_URL,
    Output,
    OutputOption,
    TokenOption,
    UrlOption,
    client,
    fail,
    show,
)
from slotpool.client import ApiError

app = typer.Typer()


def _when(value: str | None) -> str:
    return "-" if value is None else value[:19].replace("T", " ")


def _cluster_table(cluster: dict[str, Any]) -> Table:
    leader = cluster["leader"]
    title = (
        f"leader: {leader['replica_id']} (term {leader['term']})"
        if leader is not None
        else "nobody leads now"
    )
    table = Table(box=None, pad_edge=False, header_style="bold", title=title, title_justify="left")
    for column in ("REPLICA", "HOST", "LEADER", "SINCE", "LAST SEEN", "AGREES"):
        table.add_column(column, no_wrap=True)
    for replica in cluster["replicas"]:
        leads = replica["leader"] and leader is not None
        name = replica["replica_id"] + (
            " (this one)" if replica["replica_id"] == cluster["self"] else ""
        )
        state = "yes" if leads else ("stopping" if replica["stopping"] else "no")
        agrees = "yes" if replica["agrees_with_leader"] else "; ".join(replica["disagreements"])
        table.add_row(
            name,
            replica["host"],
            state,
            _when(leader["since"] if leads else replica["started_at"]),
            _when(replica["last_seen_at"]),
            agrees,
        )
    return table


@app.command()
def cluster(
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    output: OutputOption = Output.table,
) -> None:
    """The server processes on the database (replicas), which one leads (runs the controller)
    and since when, and whether their Pod settings agree with the leader's. SINCE is when the
    leader was elected, or when a follower started."""
    api = client(url, token)
    try:
        found = api.json("GET", "/api/v1/cluster")
    except ApiError as exc:
        raise fail(exc) from None
    show(found, output, _cluster_table)
