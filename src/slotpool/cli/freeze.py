"""`slotpool pools freeze` (a pool's weekly windows) and `slotpool pools unfreeze` (lift them
once, until a time, or take that back)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from slotpool.cli.common import (
    DEFAULT_URL,
    Output,
    OutputOption,
    PoolArgument,
    TokenOption,
    UrlOption,
    UserError,
    client,
    emit,
    out,
    show,
)
from slotpool.domain.freeze import WEEKDAY_NAMES

freeze_app = typer.Typer(help="A pool's weekly freeze windows: list, add, remove.")
FULL_DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
NUMBERED_DAYS = {
    word: number
    for number, (short, full) in enumerate(zip(WEEKDAY_NAMES, FULL_DAY_NAMES, strict=True), 1)
    for word in (str(number), short.lower(), full)
}


def _path(pool_id: str, tail: str) -> str:
    return f"/api/v1/agent-pools/{pool_id}/{tail}"


def _days(weekdays: list[int]) -> str:
    return ",".join(WEEKDAY_NAMES[day - 1] for day in weekdays)


def parse_days(text: str) -> list[int]:
    """``Mon,Fri``, ``1,5`` or ``Mon-Fri`` (1 = Monday ... 7 = Sunday)."""

    def day(word: str) -> int:
        word = word.strip().lower()
        if word in NUMBERED_DAYS:
            return NUMBERED_DAYS[word]
        raise UserError(
            f"--days: {word!r} is not a weekday; give names (Mon,Tue or Mon-Fri) or "
            "numbers (1 = Monday ... 7 = Sunday)"
        )

    days: list[int] = []
    for part in text.split(","):
        first, dash, last = part.partition("-")
        span = range(day(first), day(last) + 1) if dash else [day(first)]
        if not span:
            raise UserError(f"--days: {part!r} runs backwards; write it as two ranges")
        days.extend(d for d in span if d not in days)
    return days


def _windows_table(windows: list[dict[str, Any]]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("ID", "FROM", "TO", "DAYS", "TIMEZONE", "POLICY"):
        table.add_column(column, no_wrap=True)
    table.add_column("NOTE", overflow="fold")
    for window in windows:
        table.add_row(
            window["id"],
            window["from_time"],
            window["to_time"],
            _days(window["weekdays"]),
            window.get("timezone") or "(pool's)",
            window["policy"],
            window["note"],
        )
    return table


def _state_line(state: dict[str, Any]) -> str:
    if state["active"]:
        return f"frozen ({state['policy']}) until {state['until']}: {state['reason']}".rstrip(": ")
    if state["lifted_until"]:
        return f"not frozen: the windows are lifted until {state['lifted_until']}"
    return "not frozen"


@freeze_app.command("list")
def freeze_list(
    pool: PoolArgument,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    output: OutputOption = Output.table,
) -> None:
    """The pool's windows, and whether it is frozen now."""
    api = client(url, token)
    pool_id = api.find_pool(pool)["pool_id"]
    listed = api.json("GET", _path(pool_id, "freeze-schedules"))
    if output is not Output.table:
        emit(listed, output)
        return
    out.print(_windows_table(listed["items"]))
    out.print(_state_line(listed["freeze"]), soft_wrap=True)


@freeze_app.command("add")
def freeze_add(
    pool: PoolArgument,
    from_time: Annotated[str, typer.Option("--from", help="Start, HH:MM.")],
    to_time: Annotated[str, typer.Option("--to", help="End, HH:MM (before --from: next day).")],
    days: Annotated[
        str, typer.Option("--days", help="Mon,Fri or Mon-Fri or 1,5 (1 = Monday).")
    ] = "Mon-Sun",
    timezone: Annotated[
        str | None, typer.Option(help="IANA zone; default: the server's.", show_default=False)
    ] = None,
    policy: Annotated[str, typer.Option(help="scale_to_zero or no_new_tasks")] = "scale_to_zero",
    note: Annotated[str, typer.Option(help="Why, for whoever reads it.")] = "",
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    output: OutputOption = Output.table,
) -> None:
    """Add a weekly window in which the pool adds no capacity."""
    body: dict[str, Any] = {
        "from_time": from_time,
        "to_time": to_time,
        "weekdays": parse_days(days),
        "policy": policy,
        "note": note,
    }
    if timezone is not None:
        body["timezone"] = timezone
    api = client(url, token)
    pool_id = api.find_pool(pool)["pool_id"]
    added = api.json("POST", _path(pool_id, "freeze-schedules"), json=body)
    show(added, output, lambda one: _windows_table([one]))


@freeze_app.command("remove")
def freeze_remove(
    pool: PoolArgument,
    window: Annotated[str, typer.Argument(help="The window's id (fs-...).")],
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> None:
    """Remove a window."""
    api = client(url, token)
    pool_id = api.find_pool(pool)["pool_id"]
    api.json("DELETE", _path(pool_id, f"freeze-schedules/{window}"))
    out.print(f"freeze window {window} of {pool_id} removed", soft_wrap=True)


def unfreeze(
    pool: PoolArgument,
    until: Annotated[
        str | None,
        typer.Option(
            help="ISO 8601 time with a zone; default: the end of the freeze.", show_default=False
        ),
    ] = None,
    note: Annotated[str, typer.Option(help="Why, for whoever reads it.")] = "",
    cancel: Annotated[
        bool, typer.Option("--cancel", help="Take a one-time unfreeze back: the windows apply.")
    ] = False,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    output: OutputOption = Output.table,
) -> None:
    """Lift the pool's freeze windows once (until a time), or take that back (--cancel)."""
    api = client(url, token)
    pool_id = api.find_pool(pool)["pool_id"]
    path = _path(pool_id, "one-time-unfreeze")
    if cancel:
        if until is not None or note:
            raise UserError("--cancel takes neither --until nor --note")
        state = api.json("DELETE", path)
    else:
        body: dict[str, Any] = {"note": note}
        if until is not None:
            body["until"] = until
        state = api.json("POST", path, json=body)
    if output is Output.table:
        out.print(_state_line(state), soft_wrap=True)
    else:
        emit(state, output)
