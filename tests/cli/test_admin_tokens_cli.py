"""`slotpool admin-tokens` against a real server over HTTP, on SQLite and PostgreSQL, and
`slotpool admin-token create` on its database directly."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.api.conftest import ADMIN_TOKEN, settings_for
from tests.cli.test_cli import cli
from tests.support.server import live_server


@pytest.fixture
def server(database_url: str) -> Iterator[dict[str, str]]:
    with live_server(settings_for(database_url)) as served:
        yield {
            "SLOTPOOL_URL": served.url,
            "SLOTPOOL_ADMIN_TOKEN": ADMIN_TOKEN,
            "SLOTPOOL_DATABASE_URL": database_url,
        }


def test_create_use_list_and_revoke_a_named_token(server: dict[str, str]) -> None:
    created = cli(server, "admin-tokens", "create", "release-bot")
    value = created.stdout.splitlines()[-1]  # after the in-process server's log lines
    assert value.startswith("spa_")
    assert "release-bot (shown only this once)" in created.stderr
    as_bot = {**server, "SLOTPOOL_ADMIN_TOKEN": value}
    cli(as_bot, "pools", "create", "made-by-bot", "--type", "static")
    pool = json.loads(cli(server, "pools", "get", "made-by-bot", "-o", "json").stdout)
    assert pool["created_by"] == "release-bot"
    table = cli(server, "admin-tokens", "list").stdout
    assert "configured" in table
    assert "(settings)" in table
    assert "release-bot" in table
    assert value not in table
    listed = json.loads(cli(server, "admin-tokens", "list", "-o", "json").stdout)
    bot = next(t for t in listed if t["name"] == "release-bot")
    assert (bot["status"], bot["created_by"]) == ("active", "configured")
    assert bot["last_used_at"] is not None
    assert "revoked" in cli(server, "admin-tokens", "revoke", "release-bot").stdout
    refused = cli(as_bot, "pools", "list", code=1)
    assert "admin token release-bot was revoked at" in refused.stderr
    configured = cli(server, "admin-tokens", "revoke", "configured", code=1)
    assert "SLOTPOOL_ADMIN_TOKEN" in configured.stderr


def test_admin_token_create_works_on_the_database(server: dict[str, str]) -> None:
    made = cli(server, "admin-token", "create", "--name", "break-glass")
    value = made.stdout.strip()  # the value alone: the command's log line is on stderr
    assert value.startswith("spa_")
    as_it = {**server, "SLOTPOOL_ADMIN_TOKEN": value}
    listed = json.loads(cli(as_it, "admin-tokens", "list", "-o", "json").stdout)
    glass = next(t for t in listed if t["name"] == "break-glass")
    assert glass["created_by"] == "slotpool admin-token create"
    again = cli(server, "admin-token", "create", "--name", "break-glass", code=1)
    assert "'break-glass' already exists" in again.stderr
