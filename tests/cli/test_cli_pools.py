"""`pools apply` idempotent for exported and hand-written files, `--dry-run` with a diff that
changes nothing, bad files in one line; rename, delete, freeze windows, unfreeze once, names
wherever ids are."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from slotpool.cli import app
from tests.api.conftest import ADMIN_TOKEN, settings_for
from tests.support.server import live_server

runner = CliRunner()
HAND_WRITTEN = """\
name: infra
pool_type: static
description: hand-written
k8s_config:
  max_replicas: 3
  freeze_schedules:
    - from_time: "22:00"
      to_time: "06:00"
      weekdays: [5]
      timezone: Europe/Berlin
    - from_time: "12:00"
      to_time: "13:00"
      weekdays: [1, 2, 3]
      policy: no_new_tasks
      note: lunch
"""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[dict[str, str]]:
    with live_server(settings_for(f"sqlite:///{tmp_path}/slotpool.db")) as served:
        yield {"SLOTPOOL_URL": served.url, "SLOTPOOL_ADMIN_TOKEN": ADMIN_TOKEN, "COLUMNS": "200"}


def cli(env: dict[str, str], *args: str, code: int = 0) -> Any:
    result = runner.invoke(app, list(args), env=env)
    assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
    return result


def pool(env: dict[str, str], name: str) -> Any:
    """The pool as the API has it (the server runs in this process: its log lines may be in the
    CLI's output)."""
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with httpx.Client(base_url=env["SLOTPOOL_URL"], headers=headers) as api:
        (found,) = api.get("/api/v1/agent-pools", params={"name": name}).json()["items"]
    return found


def test_a_hand_written_file_applies_once(server: dict[str, str], tmp_path: Path) -> None:
    file = tmp_path / "pools.yaml"
    file.write_text(HAND_WRITTEN)
    assert "created" in cli(server, "pools", "apply", "-f", str(file)).stdout
    created = pool(server, "infra")
    for _ in range(2):
        again = cli(server, "pools", "apply", "-f", str(file)).stdout
        assert again.strip() == f"agent pool infra ({created['pool_id']}) unchanged"
    assert pool(server, "infra")["revision"] == created["revision"]
    # The windows in another order, one with the id the server gave it: the same windows.
    doc = yaml.safe_load(HAND_WRITTEN)
    windows = doc["k8s_config"]["freeze_schedules"]
    windows[1]["id"] = created["k8s_config"]["freeze_schedules"][1]["id"]
    doc["k8s_config"]["freeze_schedules"] = windows[::-1]
    file.write_text(yaml.safe_dump(doc))
    assert "unchanged" in cli(server, "pools", "apply", "-f", str(file)).stdout
    # What export writes applies unchanged too.
    file.write_text(cli(server, "pools", "export").stdout)
    assert "unchanged" in cli(server, "pools", "apply", "-f", str(file)).stdout
    assert pool(server, "infra")["revision"] == created["revision"]
    # A window that differs in its note is a change, and ids of the others stay.
    windows[0]["note"] = "moved"
    file.write_text(yaml.safe_dump(doc))
    assert "k8s_config updated" in cli(server, "pools", "apply", "-f", str(file)).stdout
    after = pool(server, "infra")
    assert after["revision"] == created["revision"] + 1
    ids = {w["id"] for w in created["k8s_config"]["freeze_schedules"]}
    assert len(ids & {w["id"] for w in after["k8s_config"]["freeze_schedules"]}) == 1


def test_dry_run_prints_a_diff_and_changes_nothing(server: dict[str, str], tmp_path: Path) -> None:
    file = tmp_path / "pools.yaml"
    file.write_text(HAND_WRITTEN)
    planned = cli(server, "pools", "apply", "-f", str(file), "--dry-run").stdout
    assert planned.startswith("agent pool infra would be created\n--- /dev/null\n+++ infra (file)")
    assert "+  max_replicas: 3\n" in planned
    assert cli(server, "pools", "list", "-o", "json").stdout.strip() == "[]"
    cli(server, "pools", "apply", "-f", str(file))
    before = pool(server, "infra")
    file.write_text(HAND_WRITTEN.replace("max_replicas: 3", "max_replicas: 5"))
    planned = cli(server, "pools", "apply", "-f", str(file), "--dry-run").stdout
    first, *diff = planned.splitlines()
    assert first == f"agent pool infra ({before['pool_id']}) k8s_config would be updated"
    assert "-  max_replicas: 3" in diff
    assert "+  max_replicas: 5" in diff
    assert sum(1 for line in diff if line[:1] in "+-" and line[:3] not in ("+++", "---")) == 2
    assert pool(server, "infra") == before
    file.write_text(HAND_WRITTEN)
    unchanged = cli(server, "pools", "apply", "-f", str(file), "--dry-run").stdout
    assert unchanged == f"agent pool infra ({before['pool_id']}) unchanged\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "error: cannot read {file}: No such file or directory"),
        ("name: [unclosed\n", "error: {file}, line 2: expected ',' or ']', but got '<stream end>'"),
        (b"name: \xff\xfe\n", "error: {file}: not UTF-8 text"),
        ("", "error: {file}: no YAML document in it"),
        (
            "- just\n- a list\n",
            "error: {file}, document 1: a pool is a mapping with at least a name",
        ),
        ("name: x\ncolour: red\n", "error: {file}, document 1: unknown key colour; valid keys:"),
    ],
)
def test_a_bad_file_is_one_line(
    server: dict[str, str], tmp_path: Path, text: str | bytes | None, message: str
) -> None:
    file = tmp_path / "pools.yaml"
    if isinstance(text, bytes):
        file.write_bytes(text)
    elif text is not None:
        file.write_text(text)
    for command in (["pools", "apply", "-f"], ["pools", "apply", "--dry-run", "-f"]):
        result = cli(server, *command, str(file), code=1)
        assert result.stderr.count("\n") == 1, result.stderr
        assert result.stderr.startswith(message.format(file=file)), result.stderr
    if text is None:
        created = cli(server, "pools", "create", "x", "-f", str(file), code=1)
        assert created.stderr == f"error: cannot read {file}: No such file or directory\n"
    directory = cli(server, "pools", "apply", "-f", str(tmp_path), code=1)
    assert directory.stderr == f"error: cannot read {tmp_path}: Is a directory\n"


def test_rename_delete_and_names_wherever_ids_are(server: dict[str, str]) -> None:
    # A name that looks like an id is still a name.
    looks_like_an_id = "pool-0123456789abcdef"
    cli(server, "pools", "create", looks_like_an_id, "--type", "static")
    assert pool(server, looks_like_an_id)["name"] == looks_like_an_id
    cli(server, "pools", "pods", looks_like_an_id)
    cli(server, "tasks", "list", "--pool", looks_like_an_id)
    renamed = cli(server, "pools", "rename", looks_like_an_id, "ci")
    pool_id = pool(server, "ci")["pool_id"]
    assert (
        renamed.stdout.splitlines()[-1]
        == f"agent pool {looks_like_an_id} ({pool_id}) renamed to ci"
    )
    cli(server, "tasks", "submit", "--pool", "ci", "--", "true")
    listed = yaml.safe_load(cli(server, "tasks", "list", "--pool", "ci", "-o", "yaml").stdout)
    assert [t["pool_id"] for t in listed] == [pool_id]
    taken = cli(server, "pools", "rename", pool_id, "ci", code=0)  # the same name: no change
    assert "renamed to ci" in taken.stdout
    busy = cli(server, "pools", "delete", "ci", "--yes", code=1)
    assert "open tasks" in busy.stderr or "force" in busy.stderr, busy.stderr
    refused = runner.invoke(app, ["pools", "delete", "ci"], env=server, input="n\n")
    assert refused.exit_code == 1
    assert pool(server, "ci")["pool_id"] == pool_id
    deleted = cli(server, "pools", "delete", "ci", "--yes", "--force")
    # (The server runs in this process: its log lines may be in the output too.)
    assert deleted.stdout.splitlines()[-1] == f"agent pool ci ({pool_id}) deleted"
    assert "no agent pool named 'ci'" in cli(server, "pools", "get", "ci", code=1).stderr


def test_freeze_windows_and_a_one_time_unfreeze(server: dict[str, str]) -> None:
    cli(server, "pools", "create", "tf", "--type", "static")
    added = yaml.safe_load(
        cli(
            server,
            *("pools", "freeze", "add", "tf", "--from", "00:00", "--to", "23:59"),
            *("--days", "Mon-Sun", "--timezone", "UTC", "--note", "always", "-o", "yaml"),
        ).stdout
    )
    assert added["weekdays"] == [1, 2, 3, 4, 5, 6, 7]
    table = cli(server, "pools", "freeze", "list", "tf").stdout
    assert added["id"] in table
    assert "Mon,Tue,Wed,Thu,Fri,Sat,Sun" in table
    assert "frozen (scale_to_zero) until" in table
    lifted = cli(server, "pools", "unfreeze", "tf", "--note", "hotfix").stdout
    assert lifted.startswith("not frozen: the windows are lifted until ")
    assert cli(server, "pools", "unfreeze", "tf", "--cancel").stdout.startswith("frozen")
    bad = cli(server, "pools", "freeze", "add", "tf", "--from", "1", "--to", "2", code=1)
    assert "from_time" in bad.stderr
    days = cli(
        server,
        *("pools", "freeze", "add", "tf", "--from", "01:00", "--to", "02:00"),
        "--days",
        "Funday",
        code=1,
    )
    assert days.stderr.startswith("error: --days: 'funday' is not a weekday")
    cli(server, "pools", "freeze", "remove", "tf", added["id"])
    assert cli(server, "pools", "freeze", "list", "tf").stdout.splitlines()[-1] == "not frozen"
    gone = cli(server, "pools", "freeze", "remove", "tf", added["id"], code=1)
    assert "not found" in gone.stderr
