"""The slotpool server as its own process with the local runtime (agents are real processes),
for the end-to-end tests of local pools."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.ports import free_port
from tests.support.server import ServerProcess, server_process, server_settings

ADMIN = "e2e-admin-token-0123456789abcdef"
Server = ServerProcess


@pytest.fixture(scope="session")
def _shared_root() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="slotpool-e2e-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def shared(_shared_root: Path, tmp_path: Path) -> Path:
    """A directory both the test and its tasks' steps write to: an agent running as root runs
    its steps as ``nobody`` (agent/isolation.py), who cannot reach the test's ``tmp_path``.
    Kept until the session ends: a step may still look for a file in it after its test."""
    path = _shared_root / tmp_path.name
    path.mkdir(mode=0o1777)
    path.chmod(0o1777)  # whatever the umask
    return path


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    port = free_port()
    settings = server_settings(tmp_path, admin=ADMIN, port=port)
    # An agent the server cannot reach keeps trying; tests end them through the runtime.
    extra = {"SLOTPOOL_CANCEL_GRACE_SECONDS": "2"}
    with server_process(
        settings, tmp_path / "server.log", port=port, extra_env=extra, grace=0
    ) as running:
        yield running


def api(server: Server) -> httpx.Client:
    return server.client(timeout=30)
