"""The local runtime starts an agent process from the domain's spec, no Pod manifest in between:
the spec's environment with the token resolved from the pool's secret file and the agent's own
name, nothing of the server's ``SLOTPOOL_*`` settings. (The whole path, server and tasks, runs in
``tests/e2e/test_local_pool.py``.)"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from slotpool.agent.config import AgentConfig
from slotpool.domain.agent_spec import PodContext, agent_spec
from slotpool.domain.config import PoolType, parse_config
from slotpool.runtime.local import LocalRuntime

# Nobody listens there: the agent keeps trying to register until it is stopped.
CONTEXT = PodContext("pool-local1", control_plane_url="http://127.0.0.1:9", default_namespace="")


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[LocalRuntime]:
    runtime = LocalRuntime(tmp_path / "local-runtime")
    try:
        yield runtime
    finally:
        for pod in runtime.list_pods():
            await runtime.stop_pod(pod.name, grace_seconds=5.0)
        await runtime.close()


def environment_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    pairs = (entry.split("=", 1) for entry in raw.decode().split("\0") if "=" in entry)
    return dict(pairs)


async def test_an_agent_is_started_from_the_spec(
    runtime: LocalRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLOTPOOL_ADMIN_TOKEN", "the server's, never the agent's")
    await runtime.write_token("", CONTEXT.pool_id, "the-agent-token")
    raw = {"slots_per_pod": 3, "env": {"TF_LOG": "INFO"}, "image": "ignored:1"}
    spec = agent_spec(parse_config(raw, pool_type=PoolType.local), CONTEXT)

    pod = await runtime.create_agent(spec)

    (local,) = runtime.list_pods(CONTEXT.pool_id)
    environ = environment_of(local.pid)
    agent = AgentConfig.from_env(environ)
    assert pod.name.startswith(spec.name_prefix)
    assert (pod.pool_id, pod.config_hash, pod.phase) == (spec.pool_id, spec.config_hash, "Running")
    assert (agent.name, agent.pool_id, agent.slots) == (pod.name, CONTEXT.pool_id, 3)
    assert (agent.token, agent.server_url) == ("the-agent-token", "http://127.0.0.1:9")
    assert environ["TF_LOG"] == "INFO"
    assert environ["SLOTPOOL_WORK_DIR"].endswith(pod.name)
    assert "SLOTPOOL_ADMIN_TOKEN" not in environ
    assert [p.name for p in await runtime.pods("", CONTEXT.pool_id)] == [pod.name]


async def test_a_deleted_agent_ends_and_its_record_goes(runtime: LocalRuntime) -> None:
    spec = agent_spec(parse_config({}, pool_type=PoolType.local), CONTEXT)
    pod = await runtime.create_agent(spec)
    (local,) = runtime.list_pods()

    await runtime.stop_pod(pod.name, grace_seconds=5.0)

    assert runtime.list_pods() == []
    with contextlib.suppress(ProcessLookupError):
        os.kill(local.pid, 0)
        pytest.fail(f"the agent process {local.pid} still runs")
