"""The local runtime starts an agent process from the domain's spec, no Pod manifest in between:
the spec's environment with the token resolved from the pool's secret file and the agent's own
name, nothing else of the server's environment; as root, as an unprivileged user. A pid is
signalled only while it is still the agent's. (The whole path, server and tasks, runs in
``tests/e2e/test_local_pool.py``; what a task can reach in ``tests/e2e/test_local_isolation.py``.)
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from slotpool.agent.config import AgentConfig
from slotpool.domain.agent_spec import PodContext, agent_spec
from slotpool.domain.config import PoolType, parse_config
from slotpool.runtime.errors import TemporaryRuntimeError
from slotpool.runtime.local import LocalRuntime, agent_user
from tests.support import processes
from tests.support.agent_python import agent_python

# Nobody listens there: the agent keeps trying to register until it is stopped.
CONTEXT = PodContext("pool-local1", control_plane_url="http://127.0.0.1:9", default_namespace="")


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[LocalRuntime]:
    runtime = LocalRuntime(tmp_path / "local-runtime", user=agent_user(None), python=agent_python())
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
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "the server's cloud key")
    monkeypatch.setenv("LC_TIME", "C.UTF-8")
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
    assert pod.name in environ["SLOTPOOL_WORK_DIR"]
    assert "SLOTPOOL_ADMIN_TOKEN" not in environ
    assert "AWS_SECRET_ACCESS_KEY" not in environ
    assert environ["LC_TIME"] == "C.UTF-8"
    passed_on = {"PATH", "HOME", "PYTHONPATH", "LC_TIME", "LANG", "TZ", "SLOTPOOL_WORK_DIR"}
    assert set(environ) <= passed_on | set(spec.environment)
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


@pytest.mark.skipif(os.geteuid() != 0, reason="only a server running as root changes user")
async def test_as_root_an_agent_runs_as_nobody_in_a_work_directory_of_its_own(
    runtime: LocalRuntime, tmp_path: Path
) -> None:
    spec = agent_spec(parse_config({}, pool_type=PoolType.local), CONTEXT)
    await runtime.create_agent(spec)
    (local,) = runtime.list_pods()

    ids = process_ids(local.pid)
    work = Path(environment_of(local.pid)["SLOTPOOL_WORK_DIR"])
    assert runtime.user is not None
    assert runtime.user.name == "nobody"
    assert ids["Uid"][0] == ids["Gid"][0] == "65534"
    assert ids["Groups"] == []  # root's supplementary groups are not kept
    assert owner_and_mode(work) == (65534, 0o700)
    assert not work.is_relative_to(tmp_path / "local-runtime")  # closed to the agent


def process_ids(pid: int) -> dict[str, list[str]]:
    """The Uid, Gid and Groups lines (and the others) of ``/proc/<pid>/status``."""
    status = Path(f"/proc/{pid}/status").read_text()
    return {line.split(":")[0]: line.split()[1:] for line in status.splitlines()}


def owner_and_mode(path: Path) -> tuple[int, int]:
    found = path.stat()
    return found.st_uid, found.st_mode & 0o777


def sleeper() -> subprocess.Popen[bytes]:
    """A process that is no agent, as its own process group leader (as an agent is)."""
    return subprocess.Popen(["sleep", "60"], start_new_session=True)


async def test_a_pid_reused_by_another_process_is_not_signalled(
    runtime: LocalRuntime, tmp_path: Path
) -> None:
    spec = agent_spec(parse_config({}, pool_type=PoolType.local), CONTEXT)
    pod = await runtime.create_agent(spec)
    record_path = tmp_path / "local-runtime" / "pods" / f"{pod.name}.json"
    record = json.loads(record_path.read_text())
    # A restarted server knows the agent by its record only; the agent ended and the kernel gave
    # its pid to an unrelated process (here: the record now names that process's pid).
    await runtime.stop_pod(pod.name, grace_seconds=5.0)
    unrelated = sleeper()
    try:
        record["pid"] = unrelated.pid
        record_path.write_text(json.dumps(record))
        restarted = LocalRuntime(tmp_path / "local-runtime", python=agent_python())

        assert [p.alive for p in restarted.list_pods()] == [False]
        await restarted.stop_pod(pod.name, grace_seconds=0.5)

        assert unrelated.poll() is None, "the process that got the pid was signalled"
        assert processes.alive(unrelated.pid)
        assert restarted.list_pods() == []
    finally:
        unrelated.kill()
        unrelated.wait()


async def test_a_closed_runtime_starts_no_agent_and_has_stopped_every_one(
    runtime: LocalRuntime,
) -> None:
    spec = agent_spec(parse_config({}, pool_type=PoolType.local), CONTEXT)
    await runtime.create_agent(spec)
    await runtime.create_agent(spec)
    pids = [pod.pid for pod in runtime.list_pods()]

    await runtime.close()

    with pytest.raises(TemporaryRuntimeError, match="shutting down"):
        await runtime.create_agent(spec)
    assert runtime.list_pods() == []
    assert not any(processes.alive(pid) for pid in pids)


async def test_token_files_and_directories_are_the_server_s_alone(tmp_path: Path) -> None:
    base = tmp_path / "local-runtime"
    (base / "secrets").mkdir(parents=True, mode=0o755)
    older = base / "secrets" / "older.json"
    older.write_text("{}")
    older.chmod(0o644)  # as an older version left it

    runtime = LocalRuntime(base)
    await runtime.write_token("", "pool-1", "a-token")

    modes = {p.name: owner_and_mode(p)[1] for p in [base, *base.iterdir()]}
    files = {p.name: owner_and_mode(p)[1] for p in (base / "secrets").iterdir()}
    assert modes == {"local-runtime": 0o700, "pods": 0o700, "secrets": 0o700, "work": 0o700}
    assert files == {"older.json": 0o600, "slotpool-agent-token-pool-1.json": 0o600}
