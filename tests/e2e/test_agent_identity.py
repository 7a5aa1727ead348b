"""Agent identity end to end (issue 12, finding 1): a real server, real agent processes, and the
attacks a step made with its agent's token, each of which must now fail.

The local runtime keeps a pool's token and each agent's launch secret (its pod's uid) in files
of the server's data directory: the test reads them there, as an attacker who got hold of them
would use them. A static pool's agent is started here by hand (``python -m slotpool.agent``).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Server, api
from tests.e2e.helpers import TASKS, submit, task, until_final, wait_for
from tests.e2e.test_local_pool import local_pool, ready_pods
from tests.support import processes

POOLS = "/api/v1/agent-pools"


def pool_token(server: Server, pool_id: str) -> str:
    secret = server.settings.data_dir / "local-runtime" / "secrets"
    data = json.loads((secret / f"slotpool-agent-token-{pool_id}.json").read_text())
    token: str = data["token"]
    return token


def launch_uid(server: Server, pod: str) -> str:
    record = server.settings.data_dir / "local-runtime" / "pods" / f"{pod}.json"
    uid: str = json.loads(record.read_text())["uid"]
    return uid


def new_credential() -> str:
    return "spa_" + secrets.token_urlsafe(32)


def agent_post(
    server: Server, bearer: str, pool_id: str, path: str, body: dict[str, Any]
) -> httpx.Response:
    """One agent call with ``bearer``, as a step that stole it would make it."""
    with httpx.Client(base_url=server.url, timeout=30) as http:
        return http.post(
            f"/api/v1/agent/pools/{pool_id}/{path}",
            json=body,
            headers={"Authorization": f"Bearer {bearer}"},
        )


def register(server: Server, bearer: str, pool_id: str, name: str, **extra: Any) -> httpx.Response:
    body = {"name": name, "slots": 1, "credential": new_credential(), **extra}
    return agent_post(server, bearer, pool_id, "register", body)


def waiting(release: Path) -> str:
    return f"while [ ! -f {release} ]; do sleep 0.1; done; echo finished"


def test_a_step_reads_neither_the_pool_token_nor_its_agents_secrets(server: Server) -> None:
    """The step of the issue: ``tr '\\0' '\\n' </proc/$PPID/environ``, its own environment,
    and the agent's memory."""
    with api(server) as client:
        pool_id = local_pool(client, pods=1, slots=1)
        pod = client.get(f"{POOLS}/{pool_id}/pods").json()["items"][0]["name"]
        script = (
            "echo own:; env; echo parent:; tr '\\0' '\\n' </proc/$PPID/environ; "
            "echo memory:; head -c 64 /proc/$PPID/mem | wc -c; exit 0"
        )
        task_id = submit(client, pool_id, command=script)
        done = until_final(client, task_id)
        log = client.get(f"{TASKS}/{task_id}/logs").text
    assert done["status"] == "succeeded", done
    assert "parent:" in log, log
    assert "Permission denied" in log, log  # it tried, and was refused
    for secret in (pool_token(server, pool_id), launch_uid(server, pod)):
        assert secret not in log
    for name in ("SLOTPOOL_AGENT_TOKEN", "SLOTPOOL_POD_UID", "spa_"):
        assert name not in log, log


def test_the_pool_token_registers_no_made_up_name_and_no_live_pod(
    server: Server, shared: Path
) -> None:
    release = shared / "release"
    with api(server) as client:
        pool_id = local_pool(client, pods=1, slots=1)
        task_id = submit(client, pool_id, command=waiting(release))
        wait_for(lambda: task(client, task_id)["status"] == "running", what="the task runs")
        pod = task(client, task_id)["pod_name"]
        token = pool_token(server, pool_id)

        made_up = register(server, token, pool_id, "slotpool-made-up-name")
        assert made_up.status_code == 403, made_up.text
        assert "launched no pod named slotpool-made-up-name" in made_up.json()["error"]
        no_proof = register(server, token, pool_id, pod)
        assert no_proof.status_code == 403, no_proof.text
        assert "pod_uid" in no_proof.json()["error"]
        wrong = register(server, token, pool_id, pod, pod_uid="not-its-uid")
        assert wrong.status_code == 403, wrong.text
        # Even with the pod's own uid: its agent registered already.
        taken = register(server, token, pool_id, pod, pod_uid=launch_uid(server, pod))
        assert taken.status_code == 409, taken.text
        assert "its own credential" in taken.json()["error"]

        # The pool token does nothing else: no heartbeat, claim, log or result.
        calls: list[tuple[str, dict[str, Any]]] = [
            (f"pods/{pod}/heartbeat", {}),
            (f"pods/{pod}/claim", {"free_slots": [0]}),
            (f"tasks/{task_id}/logs", {"step_index": 0, "seq": 99, "data": "forged"}),
            (f"tasks/{task_id}/steps/0/logs", {"chunks": [{"seq": 99, "data": "forged"}]}),
            (f"tasks/{task_id}/steps/0/result", {"status": "succeeded", "exit_code": 0}),
        ]
        for path, body in calls:
            refused = agent_post(server, token, pool_id, path, body)
            assert refused.status_code == 403, (path, refused.text)
            assert "only registers" in refused.json()["error"]

        assert task(client, task_id)["status"] == "running"
        assert ready_pods(client, pool_id) == 1
        release.touch()
        done = until_final(client, task_id)
        log = client.get(f"{TASKS}/{task_id}/logs").text
    assert done["status"] == "succeeded"
    assert log == "finished\n"


@pytest.fixture
def static_agent(server: Server, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A static pool, its token, and an agent of it named ``victim`` started by hand."""
    with api(server) as client:
        created = client.post(POOLS, json={"name": "static", "pool_type": "static"})
        assert created.status_code == 201, created.text
        pool_id = created.json()["pool_id"]
        token = client.post(f"{POOLS}/{pool_id}/tokens", json={"name": "hand"}).json()["token"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLOTPOOL_")}
    env |= {
        "SLOTPOOL_SERVER_URL": server.url,
        "SLOTPOOL_POOL_ID": pool_id,
        "SLOTPOOL_AGENT_NAME": "victim",
        "SLOTPOOL_SLOTS": "1",
        "SLOTPOOL_AGENT_TOKEN": token,
        "SLOTPOOL_WORK_DIR": str(tmp_path / "victim"),
    }
    with (tmp_path / "victim.log").open("ab") as log:
        agent = subprocess.Popen(
            [sys.executable, "-m", "slotpool.agent"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        with api(server) as client:
            wait_for(lambda: ready_pods(client, pool_id) == 1, what="the victim registered")
        yield pool_id, token
    finally:
        processes.kill_all(processes.tree([agent.pid]))
        agent.wait()


def test_an_agent_credential_reaches_only_its_own_pod_tasks_and_running_steps(
    server: Server, shared: Path, static_agent: tuple[str, str]
) -> None:
    pool_id, token = static_agent
    release = shared / "release"
    with api(server) as client:
        victim_task = submit(client, pool_id, command=waiting(release))
        wait_for(lambda: task(client, victim_task)["status"] == "running", what="victim runs")

        # Re-registering the live agent's name with the pool token would make its task lost.
        again = register(server, token, pool_id, "victim")
        assert again.status_code == 409, again.text
        assert "registered and alive" in again.json()["error"]

        # A new name is a static pool's to register: the intruder gets a credential of its own.
        credential = new_credential()
        joined = agent_post(
            server,
            token,
            pool_id,
            "register",
            {"name": "intruder", "slots": 1, "credential": credential},
        )
        assert joined.status_code == 200, joined.text
        calls: list[tuple[str, dict[str, Any]]] = [
            ("pods/victim/heartbeat", {}),
            ("pods/victim/claim", {"free_slots": [0]}),
            (f"tasks/{victim_task}/logs", {"step_index": 0, "seq": 99, "data": "forged"}),
            (f"tasks/{victim_task}/steps/0/logs", {"chunks": [{"seq": 99, "data": "forged"}]}),
            (f"tasks/{victim_task}/steps/0/result", {"status": "succeeded", "exit_code": 0}),
            ("register", {"name": "victim", "slots": 1}),
        ]
        for path, body in calls:
            refused = agent_post(server, credential, pool_id, path, body)
            assert refused.status_code == 403, (path, refused.text)

        # Its own task: logs only for the running step that exists, none once it is over.
        own_task = submit(client, pool_id, command="true")
        claim = agent_post(server, credential, pool_id, "pods/intruder/claim", {"free_slots": [0]})
        assert [a["task_id"] for a in claim.json()["assignments"]] == [own_task]
        no_step = agent_post(
            server,
            credential,
            pool_id,
            f"tasks/{own_task}/logs",
            {"step_index": 7, "seq": 0, "data": "x"},
        )
        assert no_step.status_code == 404, no_step.text
        assert "has no step 7" in no_step.json()["error"]
        no_step = agent_post(
            server,
            credential,
            pool_id,
            f"tasks/{own_task}/steps/7/logs",
            {"chunks": [{"seq": 0, "data": "x"}]},
        )
        assert no_step.status_code == 404, no_step.text
        assert "has no step 7" in no_step.json()["error"]
        ended = agent_post(
            server,
            credential,
            pool_id,
            f"tasks/{own_task}/steps/0/result",
            {"status": "succeeded", "exit_code": 0},
        )
        assert ended.status_code == 200, ended.text
        late = agent_post(
            server,
            credential,
            pool_id,
            f"tasks/{own_task}/logs",
            {"step_index": 0, "seq": 1, "data": "after the end"},
        )
        assert late.status_code == 409, late.text
        assert "takes no more logs" in late.json()["error"]
        late = agent_post(
            server,
            credential,
            pool_id,
            f"tasks/{own_task}/steps/0/logs",
            {"chunks": [{"seq": 1, "data": "after the end"}]},
        )
        assert late.status_code == 409, late.text
        assert "takes no more logs" in late.json()["error"]

        assert task(client, victim_task)["status"] == "running"
        release.touch()
        done = until_final(client, victim_task)
        log = client.get(f"{TASKS}/{victim_task}/logs").text
    assert (done["status"], done["pod_name"]) == ("succeeded", "victim")
    assert log == "finished\n"
