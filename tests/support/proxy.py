"""A TCP round-robin proxy in front of several servers, as a Kubernetes Service is in front of a
Deployment's Pods: the one address agents and clients are given.

Each new connection goes to the next backend in turn; a backend that refuses the connection (it
is down, or restarting) is skipped for the next one, and a backend whose ``/readyz`` does not
answer 200 (checked every ``probe_seconds``, as a readiness probe takes a Pod out of a Service's
endpoints) gets no new connections until it does again. A connection stays with its backend for
its whole life, keep-alive requests included: when that backend dies the connection is closed,
and the client's next connection goes to another one.

It runs on an event loop in a thread of the test process (``with RoundRobinProxy(...)``), and
counts the connections it gave each backend, so a test can see that they were spread.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import Counter
from collections.abc import Sequence
from types import TracebackType

import httpx

from tests.support.ports import free_port

CONNECT_SECONDS = 2.0
PROBE_SECONDS = 0.5
_CHUNK = 65536


class RoundRobinProxy:
    """``url`` forwards to ``127.0.0.1:<port>`` of each of ``ports`` in turn (see the module)."""

    def __init__(
        self, ports: Sequence[int], *, port: int | None = None, probe_seconds: float = PROBE_SECONDS
    ) -> None:
        self.port = port or free_port()
        self.backends: list[int] = list(ports)
        self.connections: Counter[int] = Counter()  # per backend port, since the start
        self.probe_seconds = probe_seconds
        self._unready: set[int] = set()
        self._next = 0
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=f"proxy-{self.port}", daemon=True)
        self._started = threading.Event()
        self._stopping: asyncio.Event | None = None
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> RoundRobinProxy:
        self._thread.start()
        self._started.wait(10)
        if self._error is not None:
            raise RuntimeError(f"the proxy did not start: {self._error!r}")
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(timeout=10)

    def set_backends(self, ports: Sequence[int]) -> None:
        """Forward new connections to ``ports`` from now on (open ones are left alone)."""
        with self._lock:
            self.backends = list(ports)

    def ready(self) -> list[int]:
        """The backends that get new connections now (those whose last probe passed)."""
        with self._lock:
            return [p for p in self.backends if p not in self._unready]

    # -- the loop ------------------------------------------------------------------------------

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as exc:  # the test sees it at the start; later ones end the proxy
            self._error = exc
        finally:
            self._started.set()
            self._loop.close()

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()
        handlers: set[asyncio.Task[None]] = set()

        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            handlers.add(task)
            try:
                await self._forward(reader, writer)
            finally:
                handlers.discard(task)

        server = await asyncio.start_server(accept, "127.0.0.1", self.port)
        prober = asyncio.create_task(self._probe())
        self._started.set()
        async with server:
            await self._stopping.wait()
            prober.cancel()
            server.close()
            for task in list(handlers):
                task.cancel()
            await asyncio.gather(prober, *handlers, return_exceptions=True)

    def _order(self) -> list[int]:
        """The backends to try for a new connection: the ready ones from the next in turn, then
        the others (a probe may be stale: an unready backend beats refusing the client)."""
        with self._lock:
            ready = [p for p in self.backends if p not in self._unready]
            others = [p for p in self.backends if p in self._unready]
            start = self._next % len(ready) if ready else 0
            self._next += 1
        return ready[start:] + ready[:start] + others

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        for port in self._order():
            with contextlib.suppress(OSError, TimeoutError):
                upstream = await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", port), CONNECT_SECONDS
                )
                with self._lock:
                    self.connections[port] += 1
                break
        if upstream is None:  # nobody is there: the client sees its connection closed
            writer.close()
            return
        back_reader, back_writer = upstream
        try:
            pipes = [
                asyncio.create_task(_pipe(reader, back_writer)),
                asyncio.create_task(_pipe(back_reader, writer)),
            ]
            try:
                await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for pipe in pipes:
                    pipe.cancel()
                await asyncio.gather(*pipes, return_exceptions=True)
        finally:
            for end in (writer, back_writer):
                with contextlib.suppress(Exception):
                    end.close()

    async def _probe(self) -> None:
        async with httpx.AsyncClient(timeout=max(self.probe_seconds * 2, 1.0)) as client:
            while True:
                with self._lock:
                    ports = list(self.backends)
                answers = await asyncio.gather(
                    *(client.get(f"http://127.0.0.1:{p}/readyz") for p in ports),
                    return_exceptions=True,
                )
                unready = {
                    port
                    for port, answer in zip(ports, answers, strict=True)
                    if not isinstance(answer, httpx.Response) or answer.status_code != 200
                }
                with self._lock:
                    self._unready = unready
                await asyncio.sleep(self.probe_seconds)


async def _pipe(source: asyncio.StreamReader, target: asyncio.StreamWriter) -> None:
    """Copy until ``source`` ends or either side fails; then the connection is closed whole."""
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        while data := await source.read(_CHUNK):
            target.write(data)
            await target.drain()
