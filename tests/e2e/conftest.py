"""The slotpool server as its own process with the local runtime (agents are real processes),
for the end-to-end tests of local pools."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from slotpool.settings import Settings
from tests.support.ports import free_port
from tests.support.server import ServerProcess, server_process

ADMIN = "e2e-admin-token-0123456789abcdef"
Server = ServerProcess


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    port = free_port()
    settings = Settings.model_validate(
        {
            "database_url": f"sqlite:///{tmp_path}/slotpool.db",
            "data_dir": tmp_path / "data",
            "admin_token": ADMIN,
            "public_url": f"http://127.0.0.1:{port}",
            "log_level": "warning",
        }
    )
    # An agent the server cannot reach keeps trying; tests end them through the runtime.
    extra = {"SLOTPOOL_CANCEL_GRACE_SECONDS": "2"}
    with server_process(
        settings, tmp_path / "server.log", port=port, extra_env=extra, grace=0
    ) as running:
        yield running


def api(server: Server) -> httpx.Client:
    return server.client(timeout=30)
