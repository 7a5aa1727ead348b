"""A step's result that frees a slot, asked with ``?then=1``, comes back with a queued task put
in that slot (``ResultAnswer.then``), handed over: the agent needs no claim for it. Without the
question, or with nothing queued, the answer is as before and the task waits for a claim."""

from __future__ import annotations

from tests.api.conftest import Api
from tests.api.test_tasks_protocol import FakeAgent, agent_client, pool_with_token, submit, task


async def test_a_freed_slot_gets_the_next_queued_task_with_the_result_s_answer(api: Api) -> None:
    pool_id, token = await pool_with_token(api)
    async with agent_client(api, token) as http:
        agent = FakeAgent(http, pool_id, "agent-1")
        await agent.register(1)
        first = await submit(api, pool_id, command="echo one")
        second = await submit(api, pool_id, command="echo two", env={"K": "v"})
        assert (first["status"], second["status"]) == ("running", "queued")  # one slot
        (work,) = (await agent.claim([0]))["assignments"]

        answer = await agent.result(work["task_id"], 0, "succeeded", then=True)

        assert answer["release"] is True
        assert answer["then"] == {
            "task_id": second["id"],
            "slot": 0,
            "step_index": 0,
            "step": {"name": "main", "run": "echo two"},
            "env": {"K": "v"},
            "new_workdir": True,
        }
        assert (await task(api, second["id"]))["status"] == "running"
        # Handed over: a claim that does not offer the slot (the agent runs the task there) is
        # not given it again, as it would be a step not delivered yet.
        assert (await agent.claim([]))["assignments"] == []
        # Its own result, asked the same way with nothing queued: released, no task.
        last = await agent.result(second["id"], 0, "succeeded", then=True)
        assert (last["release"], last["then"]) == (True, None)
    assert (await task(api, second["id"]))["status"] == "succeeded"


async def test_without_the_question_the_next_task_waits_for_a_claim(api: Api) -> None:
    pool_id, token = await pool_with_token(api)
    async with agent_client(api, token) as http:
        agent = FakeAgent(http, pool_id, "agent-1")
        await agent.register(1)
        await submit(api, pool_id, command="echo one")
        second = await submit(api, pool_id, command="echo two")
        (work,) = (await agent.claim([0]))["assignments"]

        answer = await agent.result(work["task_id"], 0, "succeeded")

        assert (answer["release"], answer["then"]) == (True, None)
        claimed = (await agent.claim([0], wait=5))["assignments"]
        assert [a["task_id"] for a in claimed] == [second["id"]]


async def test_a_step_that_continues_its_task_brings_no_new_task(api: Api) -> None:
    pool_id, token = await pool_with_token(api)
    async with agent_client(api, token) as http:
        agent = FakeAgent(http, pool_id, "agent-1")
        await agent.register(1)
        steps = [{"run": "echo a"}, {"run": "echo b"}]
        first = await submit(api, pool_id, steps=steps)
        queued = await submit(api, pool_id, command="echo later")
        await agent.claim([0])

        answer = await agent.result(first["id"], 0, "succeeded", then=True)

        assert answer["next"]["step_index"] == 1
        assert answer["then"] is None
        assert (await task(api, queued["id"]))["status"] == "queued"
