"""The CLI against a real server over HTTP: create, apply, export round trip, preview, errors."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from slotpool.cli import app
from slotpool.store.migrate import current_revision, head_revision
from tests.api.conftest import ADMIN_TOKEN, settings_for
from tests.api.test_pools_api import SEED_RIGHT, SEED_WRONG
from tests.support.agent_python import agent_python
from tests.support.ports import free_port
from tests.support.server import end_local_agents, live_server

runner = CliRunner()


@pytest.fixture
def server(database_url: str) -> Iterator[dict[str, str]]:
    with live_server(settings_for(database_url)) as served:
        yield {"SLOTPOOL_URL": served.url, "SLOTPOOL_ADMIN_TOKEN": ADMIN_TOKEN}


def cli(env: dict[str, str], *args: str, code: int = 0) -> Any:
    result = runner.invoke(app, list(args), env=env)
    assert result.exit_code == code, (result.stdout, result.stderr)
    return result


def test_create_list_get(server: dict[str, str]) -> None:
    cli(server, "pools", "create", "demo", "--type", "local", "--description", "try it")
    listed = yaml.safe_load(cli(server, "pools", "list", "-o", "yaml").stdout)
    assert [(p["name"], p["pool_type"]) for p in listed] == [("demo", "local")]
    table = cli(server, "pools", "list").stdout
    assert "demo" in table
    assert "local" in table
    got = yaml.safe_load(cli(server, "pools", "get", "demo", "-o", "json").stdout)
    assert got["description"] == "try it"
    assert cli(server, "pools", "get", got["pool_id"], "-o", "json").stdout.count("pool-") >= 1


def test_apply_export_round_trip(server: dict[str, str], tmp_path: Path) -> None:
    pools = tmp_path / "pools.yaml"
    docs = [
        {"name": "terraform", "pool_type": "k8s", "k8s_config": SEED_RIGHT},
        {"name": "local", "pool_type": "local", "description": "on this host"},
    ]
    pools.write_text(yaml.safe_dump_all(docs))
    first = cli(server, "pools", "apply", "-f", str(pools)).stdout
    assert first.count("created") == 2
    exported = tmp_path / "exported.yaml"
    exported.write_text(cli(server, "pools", "export").stdout)
    again = cli(server, "pools", "apply", "-f", str(exported)).stdout
    assert again.count("unchanged") == 2, again
    changed = [dict(d) for d in yaml.safe_load_all(exported.read_text())]
    changed[1]["description"] = "moved"
    exported.write_text(yaml.safe_dump_all(changed))
    third = cli(server, "pools", "apply", "-f", str(exported)).stdout
    assert "description updated" in third
    assert third.count("unchanged") == 1


def test_apply_refuses_the_seed_bug_and_says_where(server: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"name": "tf", "k8s_config": SEED_WRONG}))
    result = cli(server, "pools", "apply", "-f", str(bad), code=1)
    assert "resources.limits.cpu" in result.stderr
    assert "resources.limits.memory" in result.stderr
    assert yaml.safe_load(cli(server, "pools", "list", "-o", "yaml").stdout) == []


def test_preview_saved_and_candidate(server: dict[str, str], tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(SEED_RIGHT))
    cli(server, "pools", "create", "tf", "-f", str(config))
    pod = yaml.safe_load(cli(server, "pools", "preview", "tf").stdout)
    assert pod["kind"] == "Pod"
    assert pod["spec"]["containers"][0]["resources"]["limits"]["cpu"] == "500m"
    config.write_text(yaml.safe_dump({**SEED_RIGHT, "image": "hashicorp/terraform:1.9"}))
    candidate = yaml.safe_load(cli(server, "pools", "preview", "tf", "-f", str(config)).stdout)
    assert candidate["spec"]["containers"][0]["image"] == "hashicorp/terraform:1.9"
    saved = yaml.safe_load(cli(server, "pools", "preview", "tf").stdout)
    assert saved["spec"]["containers"][0]["image"] == "hashicorp/terraform:1.6"


def test_errors_are_clear(server: dict[str, str]) -> None:
    missing = cli(server, "pools", "get", "nope", code=1)
    assert "no agent pool named 'nope'" in missing.stderr
    unauthorized = cli({**server, "SLOTPOOL_ADMIN_TOKEN": "wrong"}, "pools", "list", code=1)
    assert "invalid admin token" in unauthorized.stderr
    offline = cli({**server, "SLOTPOOL_URL": "http://127.0.0.1:9"}, "pools", "list", code=1)
    assert "cannot reach" in offline.stderr


def test_migrate_command(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/fresh.db"
    result = cli({"SLOTPOOL_DATABASE_URL": url}, "migrate")
    assert head_revision() in result.stdout
    assert current_revision(url) == head_revision()


def test_tokens(server: dict[str, str]) -> None:
    cli(server, "pools", "create", "static", "--type", "static")
    created = cli(server, "tokens", "create", "static", "laptop")
    value = created.stdout.strip()
    assert value.startswith("spt_")
    assert "shown only this once" in created.stderr
    listed = yaml.safe_load(cli(server, "tokens", "list", "static", "-o", "yaml").stdout)
    assert [(t["name"], t["status"]) for t in listed] == [("laptop", "active")]
    assert value not in cli(server, "tokens", "list", "static").stdout
    cli(server, "tokens", "revoke", "static", "laptop")
    listed = yaml.safe_load(cli(server, "tokens", "list", "static", "-o", "yaml").stdout)
    assert listed[0]["status"] == "revoked"
    missing = cli(server, "tokens", "revoke", "static", "nope", code=1)
    assert "not found" in missing.stderr


def test_sync_and_pods_of_a_local_pool(database_url: str, tmp_path: Path) -> None:
    port = free_port()
    settings = settings_for(
        database_url,
        local_runtime=True,
        local_agent_python=agent_python(),  # as root, agents run as nobody: one it can run
        data_dir=tmp_path / "data",
        public_url=f"http://127.0.0.1:{port}",
        pod_sync_seconds=0,  # only the commands below act
    )
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"min_replicas": 2, "slots_per_pod": 3}))
    try:
        with live_server(settings, port=port) as served:
            env = {"SLOTPOOL_URL": served.url, "SLOTPOOL_ADMIN_TOKEN": ADMIN_TOKEN}
            cli(env, "pools", "create", "here", "--type", "local", "-f", str(config))
            # (The server runs in this process: its log lines may be in the output too.)
            synced = cli(env, "pools", "sync", "here").stdout.splitlines()
            assert "Pod configuration synced successfully" in synced
            assert "  token Secret: created" in synced
            (created,) = [line for line in synced if line.startswith("  created: ")]
            assert created.count("slotpool-pool-") == 2
            report = yaml.safe_load(cli(env, "pools", "sync", "here", "-o", "yaml").stdout)
            assert (report["secret"], report["created"]) == ("unchanged", [])
            pods = yaml.safe_load(cli(env, "pools", "pods", "here", "-o", "yaml").stdout)
            assert len(pods) == 2
            assert all(len(p["slots"]) == 3 for p in pods)
            assert all(p["state"] in ("starting", "ready") for p in pods)
            table = cli({**env, "COLUMNS": "200"}, "pools", "pods", "here").stdout
            header = ["NAME", "STATE", "OUTCOME", "PHASE", "NODE", "SLOTS", "AGE", "REASON"]
            assert any(line.split() == header for line in table.splitlines()), table
            assert table.count("...") == 2  # three idle slots per pod
            for pod in pods:
                assert pod["name"] in table
    finally:
        end_local_agents(settings)


def test_without_a_token_the_cli_uses_the_one_up_keeps_in_slotpool_data_dir(
    server: dict[str, str], tmp_path: Path
) -> None:
    """`slotpool up` writes its admin token into SLOTPOOL_DATA_DIR; the CLI run with the same
    environment finds it there (not in the default data directory)."""
    (tmp_path / "admin-token").write_text(server["SLOTPOOL_ADMIN_TOKEN"] + "\n")
    env = {"SLOTPOOL_URL": server["SLOTPOOL_URL"], "SLOTPOOL_DATA_DIR": str(tmp_path)}
    env["SLOTPOOL_ADMIN_TOKEN"] = ""
    cli(env, "pools", "create", "found-token", "--type", "local")
    assert "found-token" in cli(env, "pools", "list").stdout


def without_server_log(stdout: str) -> Any:
    """A YAML answer of a command, without the log lines of the server in this process."""
    lines = [line for line in stdout.splitlines() if not re.match(r"\d{4}-\d\d-\d\d \d", line)]
    return yaml.safe_load("\n".join(lines))


def test_drain_a_pod_of_a_local_pool(database_url: str, tmp_path: Path) -> None:
    port = free_port()
    settings = settings_for(
        database_url,
        local_runtime=True,
        data_dir=tmp_path / "data",
        public_url=f"http://127.0.0.1:{port}",
        pod_sync_seconds=0,  # only the commands below act
    )
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"min_replicas": 1, "slots_per_pod": 1}))
    try:
        with live_server(settings, port=port) as served:
            env = {"SLOTPOOL_URL": served.url, "SLOTPOOL_ADMIN_TOKEN": ADMIN_TOKEN}
            env["COLUMNS"] = "200"
            cli(env, "pools", "create", "here", "--type", "local", "-f", str(config))
            synced = without_server_log(cli(env, "pools", "sync", "here", "-o", "yaml").stdout)
            (first,) = synced["created"]
            table = cli(env, "pools", "drain", "here", first).stdout
            (line,) = [line for line in table.splitlines() if line.startswith(first)]
            assert line.split()[1:4] == ["draining", "drained", "by"], table
            again = without_server_log(
                cli(env, "pools", "drain", "here", first, "-o", "yaml").stdout
            )
            assert (again["state"], again["outcome"]["text"]) == (
                "draining",
                "drained by configured",
            )

            report = without_server_log(cli(env, "pools", "sync", "here", "-o", "yaml").stdout)
            assert report["removed"] == [first]  # idle: deleted at once, and replaced
            (second,) = report["created"]

            def listed() -> dict[str, Any]:
                pods = without_server_log(cli(env, "pools", "pods", "here", "-o", "yaml").stdout)
                return {p["name"]: p for p in pods}

            deadline = time.monotonic() + 30
            while listed()[first]["state"] != "deleted" and time.monotonic() < deadline:
                cli(env, "pools", "sync", "here")
                time.sleep(0.2)
            gone = listed()[first]
            assert (gone["state"], gone["outcome"]["text"]) == ("deleted", "drained by configured")
            assert listed()[second]["outcome"] is None
            table = cli(env, "pools", "pods", "here").stdout
            (line,) = [line for line in table.splitlines() if line.startswith(first)]
            assert line.split()[1:5] == ["deleted", "drained", "by", "configured"], table
            missing = cli(env, "pools", "drain", "here", "no-such-pod", code=1)
            assert "pod no-such-pod not found" in missing.stderr
    finally:
        end_local_agents(settings)
