"""The slotpool server as its own process with the local runtime (agents are real processes),
for the end-to-end tests of local pools."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.live import free_port

ADMIN = "e2e-admin-token-0123456789abcdef"


@dataclass
class Server:
    url: str
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    log: Path

    def start_again(self) -> None:
        self.process = _spawn(self.env, self.url, self.log)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)


def _spawn(env: dict[str, str], url: str, log: Path) -> subprocess.Popen[bytes]:
    port = url.rsplit(":", 1)[1]
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "slotpool.cli", "server", "--port", port],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"server did not start: {log.read_text()[-2000:]}")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    url = f"http://127.0.0.1:{free_port()}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SLOTPOOL_")},
        "SLOTPOOL_DATABASE_URL": f"sqlite:///{tmp_path}/slotpool.db",
        "SLOTPOOL_DATA_DIR": str(tmp_path / "data"),
        "SLOTPOOL_ADMIN_TOKEN": ADMIN,
        "SLOTPOOL_PUBLIC_URL": url,
        "SLOTPOOL_LOG_LEVEL": "warning",
        # An agent the server cannot reach keeps trying; tests end them through the runtime.
        "SLOTPOOL_CANCEL_GRACE_SECONDS": "2",
    }
    running = Server(url, env, _spawn(env, url, tmp_path / "server.log"), tmp_path / "server.log")
    try:
        yield running
    finally:
        running.process.kill()
        running.process.wait(timeout=10)
        end_agents(tmp_path / "data" / "local-runtime" / "pods")


def end_agents(pods: Path) -> None:
    for record in pods.glob("*.json"):
        pid = json.loads(record.read_text())["pid"]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


def api(server: Server) -> httpx.Client:
    return httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30
    )
