"""A real slotpool server on a loopback port, for tests and benchmarks that speak real HTTP: in a
thread of this process (``live_server``), or as its own process as deployed (``server_process``).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import uvicorn
from pydantic import SecretStr

from slotpool.api.app import create_app
from slotpool.settings import Settings
from slotpool.store.migrate import upgrade


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def live_server(settings: Settings, port: int | None = None) -> Iterator[str]:
    """Migrates the database, serves slotpool on 127.0.0.1, yields its base URL."""
    upgrade(settings.database_url)
    port = port or free_port()
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)


def settings_env(settings: Settings) -> dict[str, str]:
    """This process's environment without its ``SLOTPOOL_*`` variables, plus ``settings`` as the
    ``SLOTPOOL_*`` variables a server process reads them from."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLOTPOOL_")}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        elif isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, list | dict):
            continue  # none of these is needed to start a server here
        env[f"SLOTPOOL_{name.upper()}"] = str(value)
    return env


@dataclass
class ServerProcess:
    url: str
    process: subprocess.Popen[bytes]

    def cpu_seconds(self) -> float:
        """User and system CPU of the server process so far."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def server_process(
    settings: Settings, log: Path, port: int | None = None
) -> Iterator[ServerProcess]:
    """``python -m slotpool.cli server`` with ``settings``; waits for ``/healthz``, yields, then
    stops it (SIGTERM, SIGKILL after 10 s). Its output goes to ``log``."""
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "slotpool.cli", "server", "--port", str(port)],
            env=settings_env(settings),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the server exited ({process.returncode}); see {log}")
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not answer /healthz in 60 s; see {log}")
            time.sleep(0.1)
        yield ServerProcess(url, process)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
