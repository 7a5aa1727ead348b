"""A tiny control plane that speaks the agent protocol, on a real port, for the agent's loop tests.

It implements docs/agent-protocol.md minimally (a queue of tasks, results that hand out the next
step, cancellation through heartbeats and claims, logs in batches and, as a control plane of the
previous version took them, one chunk at a time), records every request in order, and can be
stopped and started again on the same port (an outage), made to answer with an error status, or
to know no batches of logs (``batches = False``: a control plane of the previous version).
It runs uvicorn in a thread, so it answers while the test's event loop runs the agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support.ports import free_port

Handler = Callable[[Request], Awaitable[Response]]
PREFIX = "/api/v1/agent/pools/{pool_id}"


@dataclass
class Event:
    kind: str  # register, heartbeat, claim, logs (a batch), log (one chunk), result, or a marker
    params: dict[str, str]
    body: Any
    at: float = field(default_factory=time.monotonic)


@dataclass
class FakeTask:
    task_id: str
    steps: list[dict[str, Any]]
    env: dict[str, str]
    slot: int | None = None
    current: int = 0
    answers: dict[int, dict[str, Any]] = field(default_factory=dict)

    def assignment(self, *, new_workdir: bool) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "slot": self.slot,
            "step_index": self.current,
            "step": self.steps[self.current],
            "env": self.env,
            "new_workdir": new_workdir,
        }


class FakeControlPlane:
    def __init__(
        self, *, token: str = "good", heartbeat_seconds: float = 0.2, claim_wait: float = 0.5
    ) -> None:
        self.token = token
        self.credential: str | None = None  # the agent's own, bound by its first registration
        self.heartbeat_seconds = heartbeat_seconds
        self.claim_wait = claim_wait
        self.events: list[Event] = []
        self.tasks: dict[str, FakeTask] = {}
        self.queued: deque[str] = deque()
        self.cancel: set[str] = set()
        self.drain = False
        self.fail_status: int | None = None
        self.failed_requests = 0
        self.claim_override: Any = None
        self.batches = True  # False: no batches of logs (404), as before they existed
        # Tasks a result that frees a slot gives that slot at once; the agent's pending claim
        # gets the step before the result's answer (they cross), as a control plane may answer:
        # a step placed in a slot is answered once even unoffered, and again whenever a claim
        # offers its slot.
        self.given_on_result: deque[str] = deque()
        self._placed: dict[str, asyncio.Event] = {}  # task id: set once delivered
        self._lock = threading.Lock()
        self._logs: dict[tuple[str, int, int], str] = {}
        self.port = free_port()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- the test's side -----------------------------------------------------------------------

    def add_task(
        self, task_id: str, *steps: dict[str, Any], env: dict[str, str] | None = None
    ) -> None:
        self.tasks[task_id] = FakeTask(task_id, list(steps), env or {})
        self.queued.append(task_id)

    def add_task_for_a_freed_slot(self, task_id: str, *steps: dict[str, Any]) -> None:
        """A task the next result that frees a slot gives that slot (``given_on_result``)."""
        self.tasks[task_id] = FakeTask(task_id, list(steps), {})
        self.given_on_result.append(task_id)

    def mark(self, kind: str) -> None:
        self.events.append(Event(kind, {}, None))

    def of_kind(self, kind: str) -> list[Event]:
        return [e for e in list(self.events) if e.kind == kind]

    def results(self, task_id: str) -> list[dict[str, Any]]:
        return [
            {"step_index": int(e.params["step_index"]), **e.body}
            for e in self.of_kind("result")
            if e.params["task_id"] == task_id
        ]

    def output(self, task_id: str, step_index: int) -> str:
        with self._lock:
            keys = sorted(k for k in self._logs if k[:2] == (task_id, step_index))
            return "".join(self._logs[k] for k in keys)

    def log_requests(self, task_id: str, step_index: int) -> list[list[dict[str, Any]]]:
        """The chunks of every request that carried the step's output (a batch, or one)."""
        sent: list[list[dict[str, Any]]] = []
        for event in list(self.events):
            if event.kind in ("logs", "log") and event.params["task_id"] == task_id:
                step, chunks = _logged(event)
                if step == step_index:
                    sent.append(chunks)
        return sent

    def seqs(self, task_id: str, step_index: int) -> list[int]:
        return [c["seq"] for chunks in self.log_requests(task_id, step_index) for c in chunks]

    # -- life cycle ----------------------------------------------------------------------------

    def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        config = uvicorn.Config(
            self._app(), log_level="warning", lifespan="off", timeout_graceful_shutdown=1
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the fake control plane did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        assert self._server is not None
        assert self._thread is not None
        self._server.should_exit = True
        self._thread.join(10)

    # -- the protocol --------------------------------------------------------------------------

    def _app(self) -> Starlette:
        routes = [
            Route(f"{PREFIX}/register", self._guard("register", self._register), methods=["POST"]),
            Route(
                f"{PREFIX}/pods/{{name}}/heartbeat",
                self._guard("heartbeat", self._heartbeat),
                methods=["POST"],
            ),
            Route(
                f"{PREFIX}/pods/{{name}}/claim", self._guard("claim", self._claim), methods=["POST"]
            ),
            Route(
                f"{PREFIX}/tasks/{{task_id}}/steps/{{step_index}}/logs",
                self._guard("logs", self._log_batch),
                methods=["POST"],
            ),
            Route(
                f"{PREFIX}/tasks/{{task_id}}/logs", self._guard("log", self._log), methods=["POST"]
            ),
            Route(
                f"{PREFIX}/tasks/{{task_id}}/steps/{{step_index}}/result",
                self._guard("result", self._result),
                methods=["POST"],
            ),
        ]
        return Starlette(routes=routes)

    def _guard(self, kind: str, handler: Callable[[Any], Awaitable[Any]]) -> Handler:
        async def endpoint(request: Request) -> Response:
            if self.fail_status is not None:
                self.failed_requests += 1
                return JSONResponse({"error": "failing on purpose"}, status_code=self.fail_status)
            if kind == "logs" and not self.batches:
                return JSONResponse({"detail": "Not Found"}, status_code=404)
            bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
            # As the control plane: the pool token only registers; the rest takes the credential.
            if bearer != self.credential and (kind != "register" or bearer != self.token):
                return JSONResponse({"error": "unknown token"}, status_code=401)
            body = await request.json()
            self.events.append(Event(kind, dict(request.path_params), body))
            answer = await handler(_Call(request.path_params, body))
            if answer is None:
                return Response(status_code=204)
            return JSONResponse(answer)

        return endpoint

    async def _register(self, call: _Call) -> Any:
        self.credential = self.credential or call.body.get("credential")
        return {
            "name": call.body["name"],
            "heartbeat_seconds": self.heartbeat_seconds,
            "claim_wait_seconds": self.claim_wait,
        }

    async def _heartbeat(self, call: _Call) -> Any:
        return {"cancel": sorted(self.cancel), "release": [], "drain": self.drain}

    async def _claim(self, call: _Call) -> Any:
        if self.claim_override is not None:
            return self.claim_override
        deadline = time.monotonic() + float(call.body["wait_seconds"])
        while True:
            answer = self._claim_answer(call.body["free_slots"])
            if answer["assignments"] or answer["cancel"] or time.monotonic() >= deadline:
                return answer
            await asyncio.sleep(0.02)

    def _claim_answer(self, free_slots: list[int]) -> dict[str, Any]:
        assignments = []
        for task_id, delivered in list(self._placed.items()):
            task = self.tasks[task_id]
            if not delivered.is_set() or task.slot in free_slots:
                delivered.set()
                assignments.append(task.assignment(new_workdir=True))
        for slot in free_slots:
            if not self.queued:
                break
            task = self.tasks[self.queued.popleft()]
            task.slot = slot
            assignments.append(task.assignment(new_workdir=True))
        return {"assignments": assignments, "cancel": sorted(self.cancel), "release": []}

    async def _log_batch(self, call: _Call) -> Any:
        step = int(call.params["step_index"])
        with self._lock:
            for chunk in call.body["chunks"]:
                key = (call.params["task_id"], step, chunk["seq"])
                self._logs.setdefault(key, chunk["data"])  # a chunk sent twice is stored once
        return None

    async def _log(self, call: _Call) -> Any:
        key = (call.params["task_id"], call.body["step_index"], call.body["seq"])
        with self._lock:
            self._logs.setdefault(key, call.body["data"])  # a chunk sent twice is stored once
        return None

    async def _result(self, call: _Call) -> Any:
        task = self.tasks[call.params["task_id"]]
        step = int(call.params["step_index"])
        if step not in task.answers:
            task.answers[step] = self._after(task, step, call.body["status"])
            if task.answers[step]["release"] and self.given_on_result:
                following = self.tasks[self.given_on_result.popleft()]
                following.slot = task.slot
                delivered = self._placed[following.task_id] = asyncio.Event()
                with contextlib.suppress(TimeoutError):  # the pending claim answers it first
                    await asyncio.wait_for(delivered.wait(), 2)
        return task.answers[step]

    @staticmethod
    def _after(task: FakeTask, step: int, status: str) -> dict[str, Any]:
        if status == "succeeded" and step + 1 < len(task.steps):
            task.current = step + 1
            return {"next": task.assignment(new_workdir=False), "reserve": False, "release": False}
        return {"next": None, "reserve": False, "release": True}


def _logged(event: Event) -> tuple[int, list[dict[str, Any]]]:
    """The step and chunks of a ``logs`` (batch) or ``log`` (one chunk) event."""
    if event.kind == "logs":
        return int(event.params["step_index"]), list(event.body["chunks"])
    return int(event.body["step_index"]), [event.body]


@dataclass(frozen=True)
class _Call:
    params: dict[str, Any]
    body: Any
