"""`slotpool pools`: list, get, create, apply, export, rename, delete, preview, pods, drain,
sync, events; freeze windows (``freeze.py``)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import typer
import yaml
from rich.table import Table

from slotpool.cli.apply import carry_out, check_documents, describe, export_document, plan
from slotpool.cli.common import (
    DEFAULT_URL,
    Output,
    OutputOption,
    PoolArgument,
    TokenOption,
    UrlOption,
    client,
    emit,
    fail,
    out,
    read_mapping,
    read_text,
    show,
    yaml_documents,
)
from slotpool.cli.freeze import freeze_app, unfreeze
from slotpool.client import ApiError

pools_app = typer.Typer(
    help="Agent pools: list, inspect, create, apply, export, rename, delete, preview, pods, "
    "drain, sync, events, freeze windows."
)


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
        body["k8s_config"] = read_mapping(config_file, "a k8s_config")
    try:
        created = client(url, token).json("POST", "/api/v1/agent-pools", json=body)
    except ApiError as exc:
        raise fail(exc) from None
    show(created, output, lambda one: _table([one]))


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


@pools_app.command("apply")
def pools_apply(
    file: Annotated[Path, typer.Option("-f", "--file", help="YAML file of pools ('-' = stdin).")],
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Print what would change, as a diff; change nothing."),
    ] = False,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> None:
    """Create or update pools from YAML documents (name, description, pool_type, k8s_config).
    Idempotent: a pool already as its document says is left alone ("unchanged"), whether the
    file came from `pools export` or was written by hand (freeze windows match by content)."""
    text, source = read_text(file)
    documents = check_documents(yaml_documents(text, source), source)
    api = client(url, token)
    for doc in documents:
        planned = plan(api, doc)
        if not dry_run:
            out.print(carry_out(api, planned), soft_wrap=True)
            continue
        done = "would be created" if planned.pool is None else "would be updated"
        summary = "" if planned.pool is None else describe(planned.changes, "would be updated")
        out.print(f"{planned.label} {summary or done}", soft_wrap=True)
        if planned.pool is None or planned.changes:
            sys.stdout.write(planned.diff())
            sys.stdout.flush()


@pools_app.command("preview")
def pools_preview(
    pool: Annotated[str, typer.Argument(help="Pool id or name.")],
    config_file: Annotated[
        Path | None, typer.Option("-f", "--config", help="A candidate k8s_config (not saved).")
    ] = None,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    output: Annotated[str, typer.Option("-o", "--output", help="yaml or json")] = "yaml",
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Also let the cluster's API server validate and admit it (k8s)."
        ),
    ] = False,
) -> None:
    """Print the exact Pod the pool's saved (or a candidate) configuration makes."""
    api = client(url, token)
    try:
        pool_id = api.find_pool(pool)["pool_id"]
        path = f"/api/v1/agent-pools/{pool_id}/pod-preview"
        params = {"format": output, "dry_run": str(dry_run).lower()}
        if config_file is None:
            response = api.request("GET", path, params=params)
        else:
            candidate = read_mapping(config_file, "a k8s_config")
            response = api.request("POST", path, params=params, json=candidate)
    except ApiError as exc:
        raise fail(exc) from None
    sys.stdout.write(response.text if response.text.endswith("\n") else response.text + "\n")


def _age(created: str, now: datetime) -> str:
    seconds = int((now - datetime.fromisoformat(created)).total_seconds())
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def _slots(pod: dict[str, Any]) -> str:
    marks = {"idle": ".", "busy": "B", "reserved": "R"}
    return "".join(marks.get(slot["state"], "?") for slot in pod["slots"])


def _pods_table(pods: list[dict[str, Any]]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("NAME", "STATE", "OUTCOME", "PHASE", "NODE", "SLOTS", "AGE"):
        table.add_column(column, no_wrap=True)
    table.add_column("REASON", overflow="fold")
    now = datetime.now(UTC)
    for pod in pods:
        state = pod["state"] + (" (outdated)" if pod["outdated"] else "")
        outcome = pod.get("outcome")
        table.add_row(
            pod["name"],
            state,
            outcome["text"] if outcome else "-",
            pod.get("phase") or "-",
            pod.get("node") or "-",
            _slots(pod),
            _age(pod["created_at"], now),
            pod["reason"] or "",
        )
    return table


@pools_app.command("pods")
def pools_pods(
    pool: Annotated[str, typer.Argument(help="Pool id or name.")],
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    output: OutputOption = Output.table,
) -> None:
    """The pool's Pods with their slots (idle ".", busy "B", reserved "R"), state and reason.
    OUTCOME says why a Pod goes or went: deleted on purpose (scaled down, replaced by a rebuild,
    drained by someone) or failed (crashed, evicted, agent lost, vanished...)."""
    api = client(url, token)
    try:
        pool_id = api.find_pool(pool)["pool_id"]
        pods = api.json("GET", f"/api/v1/agent-pools/{pool_id}/pods")["items"]
    except ApiError as exc:
        raise fail(exc) from None
    show(pods, output, _pods_table)


@pools_app.command("drain")
def pools_drain(
    pool: Annotated[str, typer.Argument(help="Pool id or name.")],
    pod: Annotated[str, typer.Argument(help="The Pod's name (see `pools pods`).")],
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    output: OutputOption = Output.table,
) -> None:
    """Drain a Pod: it takes no new task, its running tasks finish, then it is deleted (never
    while a slot is busy or reserved). If the pool still needs a Pod in its place, a new one is
    created at once. Asking again changes nothing."""
    api = client(url, token)
    try:
        pool_id = api.find_pool(pool)["pool_id"]
        drained = api.json("DELETE", f"/api/v1/agent-pools/{pool_id}/pods/{quote(pod, safe='')}")
    except ApiError as exc:
        raise fail(exc) from None
    show(drained, output, lambda one: _pods_table([one]))


def _sync_lines(report: dict[str, Any]) -> str:
    lines = [report["message"], f"  token Secret: {report['secret']}"]
    for key in ("adopted", "created", "rebuilt", "ended", "removed", "kept_busy"):
        if report[key]:
            lines.append(f"  {key.replace('_', ' ')}: {', '.join(report[key])}")
    lines.extend(f"  pending {p['name']}: {p['reason']}" for p in report["pending"])
    if report["frozen"]:
        lines.append("  a freeze window is active: no Pod was created")
    return "\n".join(lines)


@pools_app.command("sync")
def pools_sync(
    pool: Annotated[str, typer.Argument(help="Pool id or name.")],
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    output: OutputOption = Output.table,
) -> None:
    """Sync the pool's Pods now: token Secret, Pods from the runtime, rebuilds, min_replicas."""
    api = client(url, token)
    try:
        pool_id = api.find_pool(pool)["pool_id"]
        report = api.json("POST", f"/api/v1/agent-pools/{pool_id}/sync-deployment")
    except ApiError as exc:
        raise fail(exc) from None
    if output is Output.table:
        out.print(_sync_lines(report), highlight=False, soft_wrap=True)
    else:
        emit(report, output)


def _events_table(events: list[dict[str, Any]]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("TIME", "ACTION", "REASON", "OUTCOME", "POD"):
        table.add_column(column, no_wrap=True)
    table.add_column("INPUTS", no_wrap=True)
    table.add_column("MESSAGE", overflow="fold")
    for event in events:
        seen = event["inputs"].get("inputs", {})
        pods = seen.get("pods", {})
        inputs = (
            f"q{seen.get('queued', 0)} b{seen.get('busy', 0)} r{seen.get('reserved', 0)} "
            f"i{seen.get('idle', 0)} pods {sum(pods.values())} "
            f"[{seen.get('min_replicas', '?')}..{seen.get('max_replicas', '?')}]"
            + (" frozen" if seen.get("freeze", {}).get("active") else "")
        )
        table.add_row(
            event["at"][:19].replace("T", " "),
            event["action"],
            event["reason"],
            event["outcome"],
            event["pod"] or "-",
            inputs,
            event["message"],
        )
    return table


@pools_app.command("events")
def pools_events(
    pool: Annotated[str, typer.Argument(help="Pool id or name.")],
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 50,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
    output: OutputOption = Output.table,
) -> None:
    """Why the pool scaled: the controller's actions and holds with their inputs and reasons
    (inputs: q queued, b busy, r reserved, i idle slots, Pods, [min..max])."""
    api = client(url, token)
    try:
        pool_id = api.find_pool(pool)["pool_id"]
        path = f"/api/v1/agent-pools/{pool_id}/events"
        events = api.json("GET", path, params={"limit": limit})["items"]
    except ApiError as exc:
        raise fail(exc) from None
    show(events, output, _events_table)


@pools_app.command("rename")
def pools_rename(
    pool: PoolArgument,
    new_name: Annotated[str, typer.Argument(help="The new, unique name.")],
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> None:
    """Rename a pool (its id, Pods and tasks stay)."""
    api = client(url, token)
    found = api.find_pool(pool)
    path = f"/api/v1/agent-pools/{found['pool_id']}"
    renamed = api.json("PATCH", path, json={"name": new_name})
    out.print(f"agent pool {found['name']} ({found['pool_id']}) renamed to {renamed['name']}")


@pools_app.command("delete")
def pools_delete(
    pool: PoolArgument,
    force: Annotated[
        bool, typer.Option("--force", help="Even while tasks are queued, run or await approval.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
    url: UrlOption = DEFAULT_URL,
    token: TokenOption = None,
) -> None:
    """Delete a pool with its Pods and token Secret (refused while it has open tasks)."""
    api = client(url, token)
    found = api.find_pool(pool)
    label = f"agent pool {found['name']} ({found['pool_id']})"
    if not yes and not typer.confirm(f"Delete {label}, its Pods and its token Secret?"):
        raise typer.Exit(code=1)
    params = {"force": "true"} if force else {}
    api.json("DELETE", f"/api/v1/agent-pools/{found['pool_id']}", params=params)
    out.print(f"{label} deleted", soft_wrap=True)


pools_app.add_typer(freeze_app, name="freeze")
pools_app.command("unfreeze")(unfreeze)
