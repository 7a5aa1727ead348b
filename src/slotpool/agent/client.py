"""The agent's HTTP calls, and what keeps them going while the control plane is away.

A control plane restarts, is redeployed or drops a connection now and then; the agent's steps must
not notice. So every call but ``register`` retries connection errors and 5xx answers with
exponential back-off, and a failure marks the connection lost: one root task
(``keep_registered``) then registers again, telling the control plane what still runs, and only
then do the other calls go on. Two answers are final: 401/403 (``AuthError``; a bad token will
not fix itself) and other 4xx (``Rejected``; the request itself is wrong and would be again).

Requests are built, and answers parsed, with the models of ``slotpool.protocol``, the ones the
control plane's routes use; an answer that does not fit them is a ``ProtocolError``.

The pool token only registers: the agent makes its own credential at start (in memory only),
binds it with its first registration, and from then on shows it instead, also when it registers
again after a reconnect (``domain/agent_identity.py``); the token is forgotten then.
"""

from __future__ import annotations

import asyncio
import random
import secrets
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NoReturn, TypeVar
from urllib.parse import quote

import httpx
import structlog
from pydantic import BaseModel, ValidationError

from slotpool.agent.process import StepOutcome
from slotpool.domain.agent_identity import CREDENTIAL_PREFIX
from slotpool.domain.tasks import OutputChunk
from slotpool.protocol import (
    MAX_CLAIM_WAIT,
    BatchedChunk,
    ClaimAnswer,
    ClaimRequest,
    HeartbeatAnswer,
    HeartbeatRequest,
    LogBatch,
    LogChunk,
    ProtocolError,
    RegisterAnswer,
    RegisterRequest,
    ResultAnswer,
    RunningStep,
)

log = structlog.get_logger(__name__)
T = TypeVar("T")
AnswerT = TypeVar("AnswerT", bound=BaseModel)
REQUEST_TIMEOUT = 30.0
# Retried like a server error: the server is overloaded or its proxy timed out.
_TRANSIENT_4XX = frozenset({408, 429})


class AuthError(Exception):
    """401 or 403: the token is wrong, revoked, expired, or of another pool."""


class Rejected(Exception):
    """A 4xx other than 401/403: retrying the same request cannot help."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body}")
        self.status = status


class Aborted(Exception):
    """A call gave up before sending, because the caller no longer wants its answer."""


class _Transient(Exception):
    """A connection error or 5xx: worth retrying once the control plane is back."""


class Backoff:
    """0.2 s doubling up to 10 s, each delay jittered by ±20% so agents do not retry in step."""

    def __init__(self, first: float, cap: float) -> None:
        self._first = first
        self._cap = cap
        self._next = first

    def delay(self) -> float:
        delay = self._next
        self._next = min(self._cap, self._next * 2)
        return delay * random.uniform(0.8, 1.2)

    def reset(self) -> None:
        self._next = self._first


class AgentClient:
    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        pool_id: str,
        token: str,
        register_body: Callable[[str], RegisterRequest],
        defaults: RegisterAnswer,
        retry: tuple[float, float] = (0.2, 10.0),
    ) -> None:
        self._http = http
        self._prefix = f"/api/v1/agent/pools/{quote(pool_id, safe='')}"
        self._register_body = register_body
        self._credential = CREDENTIAL_PREFIX + secrets.token_urlsafe(32)
        self._token: str | None = token  # until the first registration binds the credential
        # What the last register answer said (until then: the agent's own defaults).
        self.settings = defaults
        self._retry = retry
        self._connected = asyncio.Event()
        self._lost = asyncio.Event()
        self._lost.set()

    async def keep_registered(self) -> NoReturn:
        """Root task: (re-)register whenever the connection was lost, until it works again."""
        backoff = Backoff(*self._retry)
        while True:
            await self._lost.wait()
            try:
                body = self._register_body(self._credential)
                answer = await self._attempt("/register", body, REQUEST_TIMEOUT)
            except _Transient as exc:
                await self._pause(backoff, "register", exc)
                continue
            except Rejected as exc:
                log.error("the control plane refused to register this agent", error=str(exc))
                raise
            self.settings = parse(RegisterAnswer, answer)
            self._token = None  # the credential is bound: never needed again
            backoff.reset()
            self._lost.clear()
            self._connected.set()
            log.info("agent registered", name=self.settings.name, url=str(self._http.base_url))

    async def heartbeat(self, running: list[RunningStep], *, draining: bool) -> HeartbeatAnswer:
        body = HeartbeatRequest(running=running, draining=draining)
        answer = await self._post_repeatedly(f"{self._pod_path()}/heartbeat", body)
        return parse(HeartbeatAnswer, answer)

    async def claim(
        self, *, free: list[int], reserved: list[int], abort: asyncio.Event
    ) -> ClaimAnswer:
        wait = max(0.0, min(MAX_CLAIM_WAIT, self.settings.claim_wait_seconds))
        body = ClaimRequest(free_slots=free, reserved_slots=reserved, wait_seconds=wait)
        path = f"{self._pod_path()}/claim"
        answer = await self._post_repeatedly(
            path, body, read_seconds=wait + REQUEST_TIMEOUT, abort=abort
        )
        return parse(ClaimAnswer, answer)

    async def post_logs(self, task_id: str, step_index: int, chunks: Sequence[OutputChunk]) -> None:
        """A batch of the step's output in one request. A control plane of the previous version
        has no such call (404): it gets the chunks one at a time, as it always did."""
        task = f"/tasks/{quote(task_id, safe='')}"
        batch = LogBatch(
            chunks=[BatchedChunk(seq=c.seq, data=c.data, stream=c.stream) for c in chunks]
        )
        try:
            await self._post_repeatedly(f"{task}/steps/{step_index}/logs", batch)
        except Rejected as exc:
            if exc.status != 404:
                raise
            for c in chunks:
                one = LogChunk(step_index=step_index, seq=c.seq, data=c.data, stream=c.stream)
                await self._post_repeatedly(f"{task}/logs", one)

    async def post_result(
        self, task_id: str, *, step_index: int, outcome: StepOutcome, then: bool = False
    ) -> ResultAnswer:
        """``then``: the slot may take a queued task with the answer (``ResultAnswer.then``).
        A control plane of the previous version ignores the question and never sends one."""
        path = f"/tasks/{quote(task_id, safe='')}/steps/{step_index}/result"
        if then:
            path += "?then=1"
        return parse(ResultAnswer, await self._post_repeatedly(path, outcome.result()))

    def _pod_path(self) -> str:
        return f"/pods/{quote(self.settings.name, safe='')}"

    async def _post_repeatedly(
        self,
        path: str,
        body: BaseModel,
        *,
        read_seconds: float = REQUEST_TIMEOUT,
        abort: asyncio.Event | None = None,
    ) -> Any:
        """POST until an answer comes, re-registering first after every lost connection."""
        backoff = Backoff(*self._retry)
        while True:
            await _unless(abort, self._connected.wait())
            try:
                return await self._attempt(path, body, read_seconds)
            except _Transient as exc:
                self._mark_lost()
                await _unless(abort, self._pause(backoff, path, exc))
            except Rejected as exc:
                if not path.startswith("/pods/"):
                    raise
                # The control plane does not know this agent (anymore?): register again.
                self._mark_lost()
                await _unless(abort, self._pause(backoff, path, exc))

    async def _attempt(self, path: str, body: BaseModel, read_seconds: float) -> Any:
        payload = body.model_dump(mode="json")
        bearer = self._token or self._credential
        try:
            response = await self._http.post(
                self._prefix + path,
                json=payload,
                timeout=read_seconds,
                headers={"Authorization": f"Bearer {bearer}"},
            )
        except httpx.TransportError as exc:
            raise _Transient(f"{type(exc).__name__}: {exc}") from exc
        status = response.status_code
        if status in (401, 403):
            raise AuthError(f"HTTP {status} from {path}: {response.text[:500]}")
        if status >= 500 or status in _TRANSIENT_4XX:
            raise _Transient(f"HTTP {status}: {response.text[:200]}")
        if status >= 400:
            raise Rejected(status, response.text[:500])
        if status == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise _Transient(f"HTTP {status} with a body that is not JSON") from exc

    def _mark_lost(self) -> None:
        self._connected.clear()
        self._lost.set()

    async def _pause(self, backoff: Backoff, path: str, exc: Exception) -> None:
        delay = backoff.delay()
        log.warning(
            "control plane call failed", path=path, error=str(exc), retry_in=round(delay, 2)
        )
        await asyncio.sleep(delay)


def parse(model: type[AnswerT], body: Any) -> AnswerT:
    """An answer as the protocol's model; fields this agent does not know are ignored."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise ProtocolError(f"the control plane's answer is no {model.__name__}: {exc}") from exc


async def _unless(abort: asyncio.Event | None, work: Awaitable[T]) -> T:
    """Await ``work``, or raise ``Aborted`` as soon as ``abort`` is set (nothing was sent)."""
    if abort is None:
        return await work
    if abort.is_set():
        _close(work)
        raise Aborted
    task = asyncio.ensure_future(work)
    stop = asyncio.ensure_future(abort.wait())
    try:
        await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()
        if not task.done():
            task.cancel()
    if not task.done() or task.cancelled():
        raise Aborted
    return task.result()


def _close(work: Awaitable[Any]) -> None:
    close = getattr(work, "close", None)
    if close is not None:
        close()
