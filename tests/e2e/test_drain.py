"""A manual drain end to end: the server as its own process, agents as real processes of the
local runtime. A busy Pod drained finishes its task, takes no new one, and only then goes."""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests.e2e.conftest import Server, api
from tests.e2e.helpers import TASKS, submit, task, until_final, wait_for
from tests.e2e.test_local_pool import local_pool


def pods(client: httpx.Client, pool_id: str) -> dict[str, dict[str, Any]]:
    items = client.get(f"/api/v1/agent-pools/{pool_id}/pods").json()["items"]
    return {p["name"]: p for p in items}


def test_a_busy_pod_drained_finishes_its_task_before_it_goes(server: Server) -> None:
    with api(server) as client:
        pool_id = local_pool(client, pods=1, slots=2)
        busy = submit(client, pool_id, command="sleep 4; echo finished")
        wait_for(lambda: task(client, busy)["status"] == "running", what="the task running")
        name = task(client, busy)["pod_name"]

        drained = client.delete(f"/api/v1/agent-pools/{pool_id}/pods/{name}")
        assert drained.status_code == 202, drained.text
        assert drained.json()["state"] == "draining"
        assert drained.json()["outcome"]["text"] == "drained by configured"
        later = submit(client, pool_id, command="echo elsewhere")

        # While its task runs, the drained Pod stays: never deleted with a busy slot.
        while True:
            state = pods(client, pool_id)[name]["state"]
            if task(client, busy)["status"] != "running":  # read after the Pod's state
                break
            assert state == "draining", f"{name} is {state} while its task runs"
            time.sleep(0.2)
        done = until_final(client, busy)
        assert (done["status"], done["pod_name"]) == ("succeeded", name)
        assert client.get(f"{TASKS}/{busy}/logs").text == "finished\n"
        elsewhere = until_final(client, later)
        assert elsewhere["status"] == "succeeded"
        assert elsewhere["pod_name"] != name, "a draining Pod takes no new task"

        wait_for(
            lambda: pods(client, pool_id)[name]["state"] == "deleted",
            what=f"{name} deleted",
            detail=lambda: pods(client, pool_id)[name],
        )
        gone = pods(client, pool_id)[name]
        assert gone["outcome"] == {
            "cause": "drained",
            "deliberate": True,
            "by": "configured",
            "text": "drained by configured",
        }
