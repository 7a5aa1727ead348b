"""A real slotpool server for tests and benchmarks: the app in this process over ASGI
(``asgi_client``: no port, the test's event loop), on a loopback port in a thread of this
process (``live_server``: the bench can time and profile it, a test can hand it its runtimes), or
as its own process as deployed (``ServerProcess``: it can be SIGKILLed and started again on the
same data, and its log is kept).

Agents of local pools outlive the server on purpose (a restarted server finds them again); the
harness ends them, and their steps, when it stops the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import httpx
import uvicorn
from fastapi import FastAPI
from pydantic import SecretStr

from slotpool.api.app import create_app
from slotpool.domain.config import PoolType
from slotpool.runtime.base import PodRuntime
from slotpool.settings import Settings
from slotpool.store.migrate import upgrade
from tests.support import processes
from tests.support.agent_python import agent_python
from tests.support.ports import free_port

READY_SECONDS = 60.0
HAND_OVER_SECONDS = 20.0  # a test server's hand-over (the lease it gives up, its claims answered)
LOCAL_PODS = Path("local-runtime") / "pods"  # under the data directory: the local pods' records


# -- in this process ------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def asgi_client(app: FastAPI, token: str) -> AsyncIterator[httpx.AsyncClient]:
    """The app started (its lifespan: store, background loops) and a client of it as ``token``."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://slotpool.test",
            headers={"Authorization": f"Bearer {token}"},
        ) as client:
            yield client


# -- in a thread of this process -----------------------------------------------------------------


@dataclass
class LiveServer:
    """The server running in a thread of this process; ``loop`` is that thread's event loop."""

    url: str
    loop: asyncio.AbstractEventLoop

    def run_in_loop(self, call: Callable[[], object], timeout: float = 10.0) -> None:
        """Run ``call`` in the server's thread and wait for it (to profile that thread)."""
        done = threading.Event()

        def step() -> None:
            try:
                call()
            finally:
                done.set()

        self.loop.call_soon_threadsafe(step)
        if not done.wait(timeout):
            raise RuntimeError("the server's loop did not run the call")


@contextlib.contextmanager
def live_server(
    settings: Settings,
    port: int | None = None,
    *,
    runtimes: Mapping[PoolType, PodRuntime] | None = None,
) -> Iterator[LiveServer]:
    """Migrates the database and serves slotpool on 127.0.0.1 from a thread; with ``runtimes``,
    the app uses those instead of building its own from ``settings``."""
    upgrade(settings.database_url)
    port = port or free_port()
    app = create_app(settings, runtimes=runtimes)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    loops: list[asyncio.AbstractEventLoop] = []

    def serve() -> None:
        with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
            loops.append(runner.get_loop())
            runner.run(server.serve())

    thread = threading.Thread(target=serve, name=f"slotpool-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + READY_SECONDS
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", loops[0])
    finally:
        # As ``slotpool server`` stops at a signal: the app hands over first, and its waiting
        # claims answer then. Without it, uvicorn waits for an agent's long poll (up to 25 s)
        # past the join below, and the server's thread outlives the test (and its database).
        stopping = getattr(app.state, "stopping", None)
        if stopping is not None:
            with contextlib.suppress(Exception):
                stopping().result(timeout=HAND_OVER_SECONDS)
        server.should_exit = True
        thread.join(timeout=20)


# -- as its own process ----------------------------------------------------------------------------


def server_settings(
    work: Path, *, admin: str, port: int | None = None, **values: object
) -> Settings:
    """The settings of a server whose data (SQLite, the local runtime's) is in ``work`` and whose
    agents reach it on ``port``; ``values`` add to them. The test process's environment is not
    read: a developer's ``SLOTPOOL_*`` variables do not leak into the server under test."""
    found: dict[str, object] = {
        "database_url": f"sqlite:///{work}/slotpool.db",
        "data_dir": work / "data",
        "admin_token": admin,
        "log_level": "warning",
        "local_agent_python": agent_python(),  # as root, agents run as nobody: one it can run
    }
    if port is not None:
        found["public_url"] = f"http://127.0.0.1:{port}"
    return Settings.model_validate({**found, **values})


def settings_env(settings: Settings) -> dict[str, str]:
    """This process's environment without its ``SLOTPOOL_*`` variables, plus ``settings`` as the
    ``SLOTPOOL_*`` variables a server process reads them from."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLOTPOOL_")}
    for name, value in settings.model_dump().items():
        if value is None or isinstance(value, list | dict):
            continue  # none of the lists or maps is needed to start a server here
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        elif isinstance(value, bool):
            value = "true" if value else "false"
        env[f"SLOTPOOL_{name.upper()}"] = str(value)
    return env


@dataclass
class ServerProcess:
    """``python -m slotpool.cli server`` with ``settings``: started, waited for (``/readyz``),
    killed and started again on the same port and data, stopped with every agent it started."""

    settings: Settings
    log: Path
    port: int
    env: dict[str, str]
    errors: Path | None = None  # standard error in a file of its own (default: in ``log``)
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @classmethod
    def of(
        cls,
        settings: Settings,
        log: Path,
        *,
        port: int | None = None,
        extra_env: Mapping[str, str] | None = None,
        errors: Path | None = None,
    ) -> Self:
        """Not started yet (``start_again`` starts it); ``settings.public_url`` should name
        ``port`` when agents are to reach it."""
        port = port or free_port()
        env = {**settings_env(settings), **(extra_env or {})}
        if "replica_id" not in settings.model_fields_set:
            # Not this test process's ``<host>-<pid>``: a name of its own, kept when it is
            # started again on the same port (it takes its own lease over at once).
            env["SLOTPOOL_REPLICA_ID"] = f"server-{port}"
        return cls(settings, log, port, env, errors)

    def started(self) -> Self:
        """Started (returns once it answers ``/readyz``)."""
        self.start_again()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def client(self, token: str | None = None, timeout: float = 60.0) -> httpx.Client:
        """A client of the API, with the settings' admin token unless ``token`` is given."""
        secret = self.settings.admin_token
        bearer = token or (secret.get_secret_value() if secret is not None else "")
        headers = {"Authorization": f"Bearer {bearer}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def start_again(self, ready_seconds: float = READY_SECONDS) -> None:
        """Start the process (the first time, or after ``kill`` on the same port and data)."""
        with contextlib.ExitStack() as files:
            out = files.enter_context(self.log.open("ab"))
            err = (
                subprocess.STDOUT
                if self.errors is None
                else files.enter_context(self.errors.open("ab"))
            )
            self.process = subprocess.Popen(
                [sys.executable, "-m", "slotpool.cli", "server", "--port", str(self.port)],
                env=self.env,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C reaches the harness, which ends it
            )
        try:
            self._wait_ready(ready_seconds)
        except BaseException:
            self.kill()
            raise

    def _wait_ready(self, seconds: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + seconds
        while self.process.poll() is None:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server was not ready in {seconds:.0f} s:\n{self.tail()}")
            time.sleep(0.05)
        raise RuntimeError(f"the server exited ({self.process.returncode}):\n{self.tail()}")

    def kill(self) -> None:
        """SIGKILL, as a crash: its agents go on (they reconnect to the next start)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait(timeout=20)

    def stop(self, *, grace: float = 10.0) -> None:
        """SIGTERM (SIGKILL after ``grace`` seconds; at once with 0), then every agent of its
        local pools and every process any of them started."""
        process = self.process
        if process is not None and process.poll() is None and grace > 0:
            process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=grace)
        running = process is not None and process.poll() is None
        if process is not None and running:
            process.send_signal(signal.SIGSTOP)  # it starts no agent while its tree is read
        # Not a reaped server's pid: the kernel may have given it to another process.
        roots = [process.pid] if process is not None and running else []
        processes.kill_all(processes.tree([*roots, *local_agents(self.settings)]))
        if process is not None:
            process.wait(timeout=20)

    def cpu_seconds(self) -> float:
        """User and system CPU of the server process so far."""
        user, system, _ = processes.cpu_seconds(self.pid)
        return user + system

    def tail(self, chars: int = 4000, *, skip: str | None = None) -> str:
        """The end of its log, without the lines containing ``skip``."""
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except OSError as exc:
            return f"(no server log: {exc})"
        return "\n".join(line for line in lines if skip is None or skip not in line)[-chars:]


@contextlib.contextmanager
def server_process(
    settings: Settings,
    log: Path,
    *,
    port: int | None = None,
    extra_env: Mapping[str, str] | None = None,
    grace: float = 10.0,
    errors: Path | None = None,
) -> Iterator[ServerProcess]:
    """A started ``ServerProcess``, stopped (``grace``: see ``stop``) on the way out."""
    server = ServerProcess.of(
        settings, log, port=port, extra_env=extra_env, errors=errors
    ).started()
    try:
        yield server
    finally:
        server.stop(grace=grace)


def local_agents(settings: Settings) -> list[int]:
    """The pids of the agent processes recorded by the local runtime of ``settings`` that still
    run that agent (a record may outlive its agent, and the pid be someone else's by now: the
    start time the runtime recorded says whose it is)."""
    found = []
    for record in (settings.data_dir / LOCAL_PODS).glob("*.json"):
        with contextlib.suppress(OSError, ValueError, KeyError):
            recorded = json.loads(record.read_text())
            pid = int(recorded["pid"])
            now = processes.stat(pid)
            if now is not None and now.state != "Z" and now.start_time == recorded["start_time"]:
                found.append(pid)
    return found


def kill_local_agents(settings: Settings) -> None:
    """SIGKILL every recorded agent of the local runtime, as a crash: their steps go on (they run
    in sessions of their own) until the test or ``end_local_agents`` ends them."""
    agents = [processes.Started.of("agent", pid) for pid in local_agents(settings)]
    processes.kill_all(agents, group=True)


def end_local_agents(settings: Settings) -> None:
    """SIGKILL every recorded agent of the local runtime and whatever it started (its steps)."""
    processes.kill_all(processes.tree(local_agents(settings)))
