"""Tasks and the agent protocol over HTTP on both databases; the test plays the agent."""

from __future__ import annotations

import asyncio
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from slotpool.controller import sweeper
from slotpool.controller.sweeper import Sweeper
from slotpool.protocol import MAX_LOG_BATCH, MAX_LOG_BATCH_CHARS, MAX_LOG_CHUNK
from tests.api.conftest import Api
from tests.api.test_pools_api import POOLS, create_pool

TASKS = "/api/v1/tasks"


def new_credential() -> str:
    """An agent's own credential, made as the agent makes it."""
    return "spa_" + secrets.token_urlsafe(32)


@dataclass
class FakeAgent:
    """Speaks the protocol from a test: every call is a real HTTP request to the real app.
    ``http`` carries the pool token, which only registers; after that every call shows the
    agent's own credential."""

    http: httpx.AsyncClient
    pool_id: str
    name: str
    uid: str | None = None  # its pod's uid, in pools whose pods slotpool launches
    credential: str = field(default_factory=new_credential)
    registered: bool = False

    @property
    def base(self) -> str:
        return f"/api/v1/agent/pools/{self.pool_id}"

    @property
    def headers(self) -> dict[str, str]:
        """The agent's own credential as bearer, once it registered."""
        return {"Authorization": f"Bearer {self.credential}"} if self.registered else {}

    async def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return await self.http.post(f"{self.base}/{path}", json=body, headers=self.headers)

    async def register(self, slots: int, running: list[dict[str, Any]] | None = None) -> Any:
        body = {
            "name": self.name,
            "slots": slots,
            "version": "test",
            "running": running or [],
            "pod_uid": self.uid,
            "credential": self.credential,
        }
        response = await self.post("register", body)
        assert response.status_code == 200, response.text
        self.registered = True
        return response.json()

    async def claim(self, free: list[int], reserved: list[int] = (), wait: float = 0) -> Any:  # type: ignore[assignment]
        body = {"free_slots": free, "reserved_slots": list(reserved), "wait_seconds": wait}
        response = await self.post(f"pods/{self.name}/claim", body)
        assert response.status_code == 200, response.text
        return response.json()

    async def log(
        self, task_id: str, step: int, seq: int, data: str, stream: str | None = None
    ) -> None:
        body: dict[str, Any] = {"step_index": step, "seq": seq, "data": data}
        if stream is not None:
            body["stream"] = stream
        response = await self.post(f"tasks/{task_id}/logs", body)
        assert response.status_code == 204, response.text

    async def post_logs(self, task_id: str, step: int, chunks: list[Any]) -> httpx.Response:
        """A batch of the step's output: ``chunks`` of ``{seq, data, stream?}``."""
        return await self.post(f"tasks/{task_id}/steps/{step}/logs", {"chunks": chunks})

    async def logs(self, task_id: str, step: int, chunks: list[Any]) -> None:
        response = await self.post_logs(task_id, step, chunks)
        assert response.status_code == 204, response.text

    async def result(
        self, task_id: str, step: int, status: str, code: int | None = 0, *, then: bool = False
    ) -> Any:
        """``then``: take a queued task for the freed slot with the answer."""
        body = {"status": status, "exit_code": code}
        query = "?then=1" if then else ""
        response = await self.post(f"tasks/{task_id}/steps/{step}/result{query}", body)
        assert response.status_code == 200, response.text
        return response.json()

    async def heartbeat(self, running: list[dict[str, Any]] | None = None) -> Any:
        body = {"running": running or [], "draining": False}
        response = await self.post(f"pods/{self.name}/heartbeat", body)
        assert response.status_code == 200, response.text
        return response.json()


async def pool_with_token(api: Api, name: str = "work") -> tuple[str, str]:
    pool = await create_pool(api, name, pool_type="static")
    token = await api.client.post(f"{POOLS}/{pool['pool_id']}/tokens", json={"name": "t"})
    return pool["pool_id"], token.json()["token"]


def agent_client(api: Api, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=api.client._transport,
        base_url="http://slotpool.test",
        headers={"Authorization": f"Bearer {token}"},
    )


async def submit(api: Api, pool_id: str, **body: Any) -> dict[str, Any]:
    response = await api.client.post(TASKS, json={"pool_id": pool_id, **body})
    assert response.status_code == 201, response.text
    task: dict[str, Any] = response.json()
    return task


async def task(api: Api, task_id: str) -> dict[str, Any]:
    found: dict[str, Any] = (await api.client.get(f"{TASKS}/{task_id}")).json()
    return found


async def test_a_task_runs_in_a_slot_with_logs(api: Api) -> None:
    pool_id, token = await pool_with_token(api)
    async with agent_client(api, token) as http:
        agent = FakeAgent(http, pool_id, "agent-1")
        await agent.register(2)
        queued = await submit(api, pool_id, command="echo hello")
        assert queued["status"] == "running"  # an idle slot was waiting
        claim = await agent.claim([0, 1])
        (work,) = claim["assignments"]
        assert work["task_id"] == queued["id"]
        assert work["step"] == {"name": "main", "run": "echo hello"}
        assert work["new_workdir"] is True
        await agent.log(work["task_id"], 0, 0, "hel")
        await agent.log(work["task_id"], 0, 1, "lo\n")
        await agent.log(work["task_id"], 0, 1, "lo\n")  # resent: stored once
        answer = await agent.result(work["task_id"], 0, "succeeded")
        assert answer == {"next": None, "reserve": False, "release": True, "then": None}
    done = await task(api, queued["id"])
    assert done["status"] == "succeeded"
    assert done["results"][0]["exit_code"] == 0
    logs = await api.client.get(f"{TASKS}/{queued['id']}/logs")
    assert logs.text == "hello\n"
    pods = (await api.client.get(f"{POOLS}/{pool_id}/pods")).json()["items"]
    assert [s["state"] for s in pods[0]["slots"]] == ["idle", "idle"]


async def test_logs_keep_the_stream_and_a_follower_hears_what_the_task_waits_for(
    api: Api,
) -> None:
    pool_id, token = await pool_with_token(api)
    queued = await submit(api, pool_id, command="x")
    assert queued["status"] == "queued"  # no agent yet
    params = {"follow": "true", "format": "ndjson"}

    async def follow() -> list[dict[str, Any]]:
        # (The ASGI transport gives the body once the answer is complete: all of it at the end.)
        followed = await api.client.get(f"{TASKS}/{queued['id']}/logs", params=params)
        assert followed.headers["content-type"] == "application/x-ndjson"
        return [json.loads(line) for line in followed.text.splitlines()]

    follower = asyncio.create_task(follow())
    await asyncio.sleep(0.3)  # it has read the queued task
    async with agent_client(api, token) as http:
        agent = FakeAgent(http, pool_id, "agent-1")
        await agent.register(1)
        (work,) = (await agent.claim([0]))["assignments"]
        await agent.log(work["task_id"], 0, 0, "out\n")
        await agent.log(work["task_id"], 0, 1, "err\n", stream="stderr")
        await agent.result(work["task_id"], 0, "failed", code=3)
    records = await asyncio.wait_for(follower, 10)
    assert records[0] == {"type": "task", "status": "queued", "reason": "", "step_index": 0}
    states = [(r["status"], r["step_index"]) for r in records if r["type"] == "task"]
    assert (states[0], states[-1]) == (("queued", 0), ("failed", 0))  # "running" may be between
    assert len(states) == len(set(states))  # told only when it changed
    chunks = [(r["stream"], r["data"], r["seq"]) for r in records if r["type"] == "log"]
    assert chunks == [("stdout", "out\n", 0), ("stderr", "err\n", 1)]
    plain = await api.client.get(f"{TASKS}/{queued['id']}/logs")
    assert plain.text == "out\nerr\n"  # the text form: both, in order
    page = await api.client.get(
        f"{TASKS}/{queued['id']}/logs", params={"after": 0, "format": "ndjson"}
    )
    assert [json.loads(line)["stream"] for line in page.text.splitlines()] == ["stdout", "stderr"]


async def test_a_batch_of_both_streams_is_stored_in_order_and_a_resent_chunk_once(
    api: Api,
) -> None:
    pool_id, token = await pool_with_token(api)
    async with agent_client(api, token) as http:
        agent = FakeAgent(http, pool_id, "agent-1")
        await agent.register(1)
        queued = await submit(api, pool_id, command="x")
        (work,) = (await agent.claim([0]))["assignments"]
        first = [{"seq": 0, "data": "out\n"}, {"seq": 1, "data": "err\n", "stream": "stderr"}]
        await agent.logs(work["task_id"], 0, first)
        # The answer was lost: sent again, with what was read since.
        await agent.logs(work["task_id"], 0, [*first, {"seq": 2, "data": "more\n"}])
        await agent.log(work["task_id"], 0, 2, "more\n")  # and by the one-chunk call
        await agent.result(work["task_id"], 0, "succeeded")
    page = await api.client.get(
        f"{TASKS}/{queued['id']}/logs", params={"after": 0, "format": "ndjson"}
    )
    records = [json.loads(line) for line in page.text.splitlines()]
    assert [(r["seq"], r["stream"], r["data"]) for r in records] == [
        (0, "stdout", "out\n"),
        (1, "stderr", "err\n"),
        (2, "stdout", "more\n"),
    ]


@pytest.mark.parametrize(
    ("chunks", "field", "says"),
    [
        ([], "chunks", "at least 1"),
        ([{"seq": 0, "data": "a"}, {"seq": 0, "data": "b"}], "chunks", "both have seq 0"),
        ([{"seq": i, "data": "x"} for i in range(MAX_LOG_BATCH + 1)], "chunks", "at most"),
        (
            [{"seq": 0, "data": "x" * MAX_LOG_CHUNK}, {"seq": 1, "data": "y"}],
            "chunks",
            f"at most {MAX_LOG_BATCH_CHARS} are accepted in one batch",
        ),
        ([{"seq": 0, "data": "x" * (MAX_LOG_CHUNK + 1)}], "chunks.0.data", "at most"),
        ([{"seq": -1, "data": "x"}], "chunks.0.seq", "greater than or equal to 0"),
        ([{"seq": 0, "data": "x", "step_index": 0}], "chunks.0.step_index", ""),
    ],
)
async def test_a_bad_batch_is_refused_with_its_field(
    api: Api, chunks: list[Any], field: str, says: str
) -> None:
    pool_id, token = await pool_with_token(api)
    async with agent_client(api, token) as http:
        agent = FakeAgent(http, pool_id, "agent-1")
        await agent.register(1)
        await submit(api, pool_id, command="x")
        (work,) = (await agent.claim([0]))["assignments"]
        response = await agent.post_logs(work["task_id"], 0, chunks)
        await agent.logs(work["task_id"], 0, [{"seq": 5, "data": "fine"}])
    assert response.status_code == 422, response.text
    details = {d["field"]: d for d in response.json()["details"]}
    assert field in details, details
    assert says in json.dumps(details[field]), details[field]
    logs = await api.client.get(f"{TASKS}/{work['task_id']}/logs")
    assert logs.text == "fine"  # nothing of the refused batch


async def test_queued_work_waits_for_a_slot_and_packs_the_fullest_pod(api: Api) -> None:
    pool_id, token = await pool_with_token(api)
    async with agent_client(api, token) as http:
        a, b = FakeAgent(http, pool_id, "a"), FakeAgent(http, pool_id, "b")
        await a.register(2)
        await b.register(2)
        first = await submit(api, pool_id, command="one")
        second = await submit(api, pool_id, command="two")
        placed = {(await task(api, t["id"]))["pod_name"] for t in (first, second)}
        assert placed == {"a"}, "the second task goes to the pod that is already in use"
        third = await submit(api, pool_id, command="three")
        assert (await task(api, third["id"]))["pod_name"] == "b"
        fourth = await submit(api, pool_id, command="four")
        fifth = await submit(api, pool_id, command="five")
        assert (await task(api, fifth["id"]))["status"] == "queued"
        claim = await a.claim([0, 1])
        await a.result(claim["assignments"][0]["task_id"], 0, "succeeded")
        await asyncio.sleep(0.05)
        statuses = {(await task(api, t["id"]))["status"] for t in (fourth, fifth)}
        assert statuses == {"running"}


async def test_approval_keeps_the_same_pod_slot_and_workdir(api: Api) -> None:
    pool_id, token = await pool_with_token(api)
    steps = [
        {"name": "plan", "run": "terraform plan"},
        {"name": "apply", "run": "terraform apply", "requires_approval": True},
    ]
    async with agent_client(api, token) as http:
        agent = FakeAgent(http, pool_id, "agent-1")
        await agent.register(2)
        queued = await submit(api, pool_id, name="tf", steps=steps)
        plan = (await agent.claim([0, 1]))["assignments"][0]
        answer = await agent.result(queued["id"], 0, "succeeded")
        assert answer == {"next": None, "reserve": True, "release": False, "then": None}
        waiting = await task(api, queued["id"])
        assert waiting["status"] == "awaiting_approval"
        assert waiting["reserved_until"] is not None
        other = await submit(api, pool_id, command="other")
        assert (await task(api, other["id"]))["slot_index"] != plan["slot"], "slot is reserved"
        free = [s for s in (0, 1) if s != plan["slot"]]
        before = (await agent.claim([], reserved=[plan["slot"]]))["assignments"]
        # Only the other task (placed in the other slot) comes; nothing for the reserved slot.
        assert [a["task_id"] for a in before] == [other["id"]]
        approved = await api.client.post(f"{TASKS}/{queued['id']}/approve")
        assert approved.json()["status"] == "running"
        (apply,) = (await agent.claim([], reserved=[plan["slot"]]))["assignments"]
        assert apply["task_id"] == queued["id"]
        assert (apply["slot"], apply["step_index"], apply["new_workdir"]) == (
            plan["slot"],
            1,
            False,
        )
        assert apply["step"]["run"] == "terraform apply"
        assert (await agent.result(queued["id"], 1, "succeeded"))["release"] is True
        assert free  # the other slot stayed usable throughout
    assert (await task(api, queued["id"]))["status"] == "succeeded"


async def test_cancel_in_every_state(api: Api) -> None:
    pool_id, token = await pool_with_token(api)
    queued = await submit(api, pool_id, command="never runs")
    cancelled = await api.client.post(f"{TASKS}/{queued['id']}/cancel")
    assert cancelled.json()["status"] == "cancelled"
    again = await api.client.post(f"{TASKS}/{queued['id']}/cancel")
    assert again.status_code == 409
    async with agent_client(api, token) as http:
        agent = FakeAgent(http, pool_id, "agent-1")
        await agent.register(1)
        running = await submit(api, pool_id, command="sleep 100")
        (work,) = (await agent.claim([0]))["assignments"]
        asked = await api.client.post(f"{TASKS}/{running['id']}/cancel")
        assert asked.json()["cancel_requested"] is True
        assert (await agent.heartbeat())["cancel"] == [running["id"]]
        await agent.result(work["task_id"], 0, "cancelled", None)
    assert (await task(api, running["id"]))["status"] == "cancelled"


async def test_a_failing_step_ends_the_task(api: Api) -> None:
    pool_id, token = await pool_with_token(api)
    steps = [{"run": "false"}, {"run": "never"}]
    async with agent_client(api, token) as http:
        agent = FakeAgent(http, pool_id, "agent-1")
        await agent.register(1)
        queued = await submit(api, pool_id, steps=steps)
        await agent.claim([0])
        assert (await agent.result(queued["id"], 0, "failed", 1))["release"] is True
        # A retried result (its answer was lost) gets the same answer and changes nothing.
        assert (await agent.result(queued["id"], 0, "failed", 1))["release"] is True
    done = await task(api, queued["id"])
    assert (done["status"], done["results"][0]["exit_code"], len(done["results"])) == (
        "failed",
        1,
        1,
    )


async def test_a_lost_claim_answer_is_answered_again(api: Api) -> None:
    pool_id, token = await pool_with_token(api)
    async with agent_client(api, token) as http:
        agent = FakeAgent(http, pool_id, "agent-1")
        await agent.register(1)
        queued = await submit(api, pool_id, command="x")
        first = await agent.claim([0])
        second = await agent.claim([0])  # the agent never saw the first answer
        assert first["assignments"] == second["assignments"]
        assert (await agent.claim([]))["assignments"] == []
        assert queued["id"] == first["assignments"][0]["task_id"]


async def test_reregistering_without_a_running_step_loses_it(api: Api) -> None:
    pool_id, token = await pool_with_token(api)
    async with agent_client(api, token) as http:
        agent = FakeAgent(http, pool_id, "agent-1")
        await agent.register(2)
        kept = await submit(api, pool_id, command="kept")
        gone = await submit(api, pool_id, command="gone")
        assignments = (await agent.claim([0, 1]))["assignments"]
        kept_slot = next(a["slot"] for a in assignments if a["task_id"] == kept["id"])
        await agent.register(
            2, running=[{"task_id": kept["id"], "step_index": 0, "slot": kept_slot}]
        )
    assert (await task(api, kept["id"]))["status"] == "running"
    lost = await task(api, gone["id"])
    assert lost["status"] == "lost"
    assert "re-registered" in lost["reason"]


async def test_long_poll_wakes_up_when_work_arrives(api: Api) -> None:
    pool_id, token = await pool_with_token(api)
    async with agent_client(api, token) as http:
        agent = FakeAgent(http, pool_id, "agent-1")
        await agent.register(1)
        waiting = asyncio.create_task(agent.claim([0], wait=10))
        await asyncio.sleep(0.2)
        queued = await submit(api, pool_id, command="x")
        answer = await asyncio.wait_for(waiting, timeout=5)
        assert answer["assignments"][0]["task_id"] == queued["id"]


async def test_tokens_are_scoped_for_every_protocol_call(api: Api) -> None:
    _pool_a, token_a = await pool_with_token(api, "a")
    pool_b, token_b = await pool_with_token(api, "b")
    async with agent_client(api, token_b) as http_b:
        b = FakeAgent(http_b, pool_b, "agent-b")
        await b.register(1)
        task_b = await submit(api, pool_b, command="x")
    async with agent_client(api, token_a) as http:
        base = f"/api/v1/agent/pools/{pool_b}"
        calls = [
            ("register", {"name": "intruder", "slots": 1}),
            ("pods/agent-b/claim", {"free_slots": [0]}),
            ("pods/agent-b/heartbeat", {}),
            (f"tasks/{task_b['id']}/logs", {"step_index": 0, "seq": 0, "data": "x"}),
            (f"tasks/{task_b['id']}/steps/0/result", {"status": "succeeded", "exit_code": 0}),
        ]
        for path, body in calls:
            response = await http.post(f"{base}/{path}", json=body)
            assert response.status_code == 403, (path, response.text)
    revoked = await api.client.delete(f"{POOLS}/{pool_b}/tokens/t")
    assert revoked.status_code == 200
    async with agent_client(api, token_b) as http_b:
        response = await http_b.post(
            f"/api/v1/agent/pools/{pool_b}/pods/agent-b/claim", json={"free_slots": [0]}
        )
        assert response.status_code == 401
    assert (await task(api, task_b["id"]))["status"] == "running"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"command": "x"}, "pool_id"),
        ({"pool_id": "pool-0000000000000000", "command": "x"}, "pool_id"),
        ({"pool_id": "pool-0000000000000000"}, "(body)"),
        ({"pool_id": "pool-0000000000000000", "steps": [{"name": "no command"}]}, "steps.0"),
        ({"pool_id": "pool-0000000000000000", "command": "x", "colour": 1}, "colour"),
    ],
)
async def test_bad_submissions_are_refused(api: Api, body: dict[str, Any], field: str) -> None:
    response = await api.client.post(TASKS, json=body)
    assert response.status_code == 422, response.text
    assert field in [d["field"] for d in response.json()["details"]]
    assert (await api.client.get(TASKS)).json()["total"] == 0


async def eventually(check: Any, seconds: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.1)


async def test_an_unapproved_reservation_expires_and_frees_the_slot(api: Api) -> None:
    pool_id, token = await pool_with_token(api)
    steps = [{"run": "plan"}, {"run": "apply", "requires_approval": True}]
    async with agent_client(api, token) as http:
        agent = FakeAgent(http, pool_id, "agent-1")
        await agent.register(1)
        queued = await submit(api, pool_id, steps=steps)
        await agent.claim([0])
        await agent.result(queued["id"], 0, "succeeded")
        api.clock.advance(hours=25)  # reservation_ttl_seconds defaults to 24 h

        async def expired() -> bool:
            return bool((await task(api, queued["id"]))["status"] == "expired")

        await eventually(expired)
        assert (await agent.claim([], reserved=[0]))["release"] == [queued["id"]]
    pods = (await api.client.get(f"{POOLS}/{pool_id}/pods")).json()["items"]
    assert pods[0]["slots"][0]["state"] == "idle"
    assert "reservation expired" in (await task(api, queued["id"]))["reason"]


@pytest.mark.parametrize("trouble", ["none", "another step fails", "another step hangs"])
async def test_a_silent_agent_loses_its_tasks_with_the_reason(
    api: Api, monkeypatch: pytest.MonkeyPatch, trouble: str
) -> None:
    """Also when another sweeper step fails on every pass, or hangs: the steps are independent,
    and a hung one is given up so that the sweeper's next passes come."""
    if trouble == "another step fails":

        async def broken(self: Sweeper, now: object) -> None:
            raise RuntimeError("reservation step broken for this test")

        monkeypatch.setattr(Sweeper, "_expire_reservations", broken)
    hanging = asyncio.Event()
    if trouble == "another step hangs":

        async def hung(self: Sweeper, now: object) -> None:
            hanging.set()
            await asyncio.Event().wait()

        # Every step gets this timeout: short enough for the test, long enough that the real
        # steps finish within it on a busy machine.
        monkeypatch.setattr(sweeper, "STEP_TIMEOUT_SECONDS", 1.0)
        monkeypatch.setattr(Sweeper, "_dispatch_queued", hung)
    pool_id, token = await pool_with_token(api)
    async with agent_client(api, token) as http:
        agent = FakeAgent(http, pool_id, "agent-1")
        await agent.register(1)
        queued = await submit(api, pool_id, command="sleep 100")
        await agent.claim([0])
    if trouble == "another step hangs":  # a sweep hangs before the agent falls silent
        hanging.clear()
        await asyncio.wait_for(hanging.wait(), timeout=5)
    api.clock.advance(seconds=31)  # SLOTPOOL_AGENT_TIMEOUT_SECONDS defaults to 30

    async def lost() -> bool:
        return bool((await task(api, queued["id"]))["status"] == "lost")

    await eventually(lost, seconds=15)
    found = await task(api, queued["id"])
    assert "agent agent-1 stopped heartbeating" in found["reason"]
    pods = (await api.client.get(f"{POOLS}/{pool_id}/pods")).json()["items"]
    assert pods[0]["state"] == "failed"


async def test_a_step_placed_while_a_claim_waits_is_answered_at_once(api: Api) -> None:
    """The agent's waiting claim offered slot 1 only; slot 0 came free meanwhile (its result was
    reported) and got the next queued task: the waiting claim answers with it, not 25 s later."""
    pool_id, token = await pool_with_token(api)
    async with agent_client(api, token) as http:
        agent = FakeAgent(http, pool_id, "agent-1")
        await agent.register(2)
        first = await submit(api, pool_id, command="first")
        second = await submit(api, pool_id, command="second")
        claimed = {a["slot"]: a["task_id"] for a in (await agent.claim([0, 1]))["assignments"]}
        assert set(claimed.values()) == {first["id"], second["id"]}
        freed = next(slot for slot, task_id in claimed.items() if task_id == first["id"])
        waiting = asyncio.create_task(agent.claim([], wait=20))
        await asyncio.sleep(0.2)
        third = await submit(api, pool_id, command="third")
        assert (await task(api, third["id"]))["status"] == "queued"
        await agent.result(first["id"], 0, "succeeded")
        answer = await asyncio.wait_for(waiting, timeout=5)
    (work,) = answer["assignments"]
    assert (work["task_id"], work["slot"], work["new_workdir"]) == (third["id"], freed, True)


async def test_a_cancelled_reservation_is_released_when_its_slot_was_given_away(
    api: Api,
) -> None:
    """A task awaiting approval is cancelled, and a new task takes its slot before the agent
    claims again: the agent still holds the old reservation there. The next claim releases it
    (and hands out the new task), where it used to answer the new task only, over and over, to
    an agent that could never start it (the Terraform example's refused approval hit this)."""
    pool_id, token = await pool_with_token(api)
    steps = [{"run": "plan"}, {"run": "apply", "requires_approval": True}]
    async with agent_client(api, token) as http:
        agent = FakeAgent(http, pool_id, "agent-1")
        await agent.register(1)
        refused = await submit(api, pool_id, steps=steps)
        await agent.claim([0])
        await agent.result(refused["id"], 0, "succeeded")
        assert (await api.client.post(f"{TASKS}/{refused['id']}/cancel")).status_code == 200
        following = await submit(api, pool_id, command="true")
        assert following["status"] == "running"  # on the slot the agent still holds

        answer = await agent.claim([], reserved=[0])
        assert answer["release"] == [refused["id"]]
        assert [a["task_id"] for a in answer["assignments"]] == [following["id"]]
