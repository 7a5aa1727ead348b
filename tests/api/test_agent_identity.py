"""Agent identity over HTTP on both databases: what the pool token may register, and what an
agent's own credential reaches (domain/agent_identity.py). The live attacks, with real agents,
are in tests/e2e/test_agent_identity.py."""

from __future__ import annotations

from tests.api.conftest import Api
from tests.api.test_tasks_protocol import (
    FakeAgent,
    agent_client,
    new_credential,
    pool_with_token,
    submit,
    task,
)

REGISTER = "/api/v1/agent/pools/{}/register"


async def test_a_first_registration_needs_the_agents_credential(api: Api) -> None:
    pool_id, token = await pool_with_token(api)
    async with agent_client(api, token) as http:
        response = await http.post(REGISTER.format(pool_id), json={"name": "a", "slots": 1})
        assert response.status_code == 422, response.text
        assert [d["field"] for d in response.json()["details"]] == ["credential"]
        weak = await http.post(
            REGISTER.format(pool_id), json={"name": "a", "slots": 1, "credential": "spa_short"}
        )
        assert weak.status_code == 422, weak.text


async def test_a_first_registration_sent_again_is_the_same_registration(api: Api) -> None:
    """Its answer was lost: the agent sends it again, still with the pool token, and the same
    credential; its pod and its running step stay."""
    pool_id, token = await pool_with_token(api)
    async with agent_client(api, token) as http:
        agent = FakeAgent(http, pool_id, "agent-1")
        await agent.register(1)
        queued = await submit(api, pool_id, command="sleep 100")
        (work,) = (await agent.claim([0]))["assignments"]
        agent.registered = False  # the pool token again, as before the lost answer
        running = [{"task_id": work["task_id"], "step_index": 0, "slot": 0}]
        await agent.register(1, running=running)
        assert (await task(api, queued["id"]))["status"] == "running"
        assert (await agent.heartbeat(running))["cancel"] == []


async def test_a_credential_is_one_agents_and_registers_no_other_name(api: Api) -> None:
    pool_id, token = await pool_with_token(api)
    async with agent_client(api, token) as http:
        a = FakeAgent(http, pool_id, "a")
        await a.register(1)
        # a's credential with the pool token, for another name: refused, not a new agent.
        body = {"name": "b", "slots": 1, "credential": a.credential}
        refused = await http.post(REGISTER.format(pool_id), json=body)
        assert refused.status_code == 403, refused.text
        assert "agent a's" in refused.json()["error"]
        # a's credential as bearer, for another name, or with another credential in the body.
        for other in [{"name": "b"}, {"name": "a", "credential": new_credential()}]:
            response = await a.post("register", {"slots": 1, "name": "a", **other})
            assert response.status_code == 403, response.text
    pods = (await api.client.get(f"/api/v1/agent-pools/{pool_id}/pods")).json()["items"]
    assert [p["name"] for p in pods] == ["a"]


async def test_a_static_name_is_free_again_once_its_agent_went_silent(api: Api) -> None:
    """A live name is refused (409, saying how to go on); once its agent is declared gone, a
    new agent takes it with a new credential, and the old credential is worth nothing."""
    pool_id, token = await pool_with_token(api)
    async with agent_client(api, token) as http:
        first = FakeAgent(http, pool_id, "agent-1")
        await first.register(1)
        queued = await submit(api, pool_id, command="sleep 100")
        await first.claim([0])
        second = FakeAgent(http, pool_id, "agent-1")
        body = {"name": "agent-1", "slots": 1, "credential": second.credential}
        alive = await http.post(REGISTER.format(pool_id), json=body)
        assert alive.status_code == 409, alive.text
        assert "another name" in alive.json()["error"]
        assert (await task(api, queued["id"]))["status"] == "running"

        api.clock.advance(seconds=31)  # SLOTPOOL_AGENT_TIMEOUT_SECONDS defaults to 30
        await second.register(1)
        assert (await task(api, queued["id"]))["status"] == "lost"
        old = await first.post("pods/agent-1/heartbeat", {})
        assert old.status_code == 401, old.text
        next_task = await submit(api, pool_id, command="echo again")
        assert [a["task_id"] for a in (await second.claim([0]))["assignments"]] == [next_task["id"]]
