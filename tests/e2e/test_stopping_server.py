"""A server told to stop (SIGTERM: a restart, a replica handing over) answers its long polls at
once instead of holding its exit for them, and a client following a task's log carries on across
the restart, on whichever server answers next, without reading anything twice.

The pool is static, its agent started by hand: the agent and its step outlive the server, as
agents in Pods outlive a replica of the control plane.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.helpers import submit, until_final, wait_for
from tests.e2e.test_local_pool import ready_pods
from tests.support.ports import free_port
from tests.support.server import ServerProcess, server_process, server_settings
from tests.support.static_agent import static_agent, static_pool

ADMIN = "stopping-admin-token-0123456789"
CLAIM_WAIT = 60  # the longest claim the server allows: far above the grace below
GRACE = 8.0  # what the harness gives SIGTERM before SIGKILL


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    work = tmp_path / "server"
    work.mkdir()
    port = free_port()
    settings = server_settings(
        work, admin=ADMIN, port=port, claim_wait_seconds=CLAIM_WAIT, local_runtime=False
    )
    with server_process(settings, work / "server.log", port=port, grace=GRACE) as running:
        yield running


def test_a_stopping_server_answers_its_waiting_claims_and_exits_by_itself(
    server: ServerProcess, tmp_path: Path
) -> None:
    with server.client() as api:
        pool_id, token = static_pool(api, "stopping")
        with static_agent(server.url, pool_id, token, name="waiting", slots=1, work=tmp_path):
            wait_for(lambda: ready_pods(api, pool_id) == 1, what="the agent registered")
            time.sleep(1.0)  # its claim is waiting now (for up to a minute)
            started = time.monotonic()
            server.stop(grace=GRACE)
            took = time.monotonic() - started
    process = server.process
    assert process is not None
    # Exited by itself (uvicorn re-raises SIGTERM once it is done), not killed after the grace.
    assert process.returncode != -signal.SIGKILL, (took, server.tail())


def test_a_followed_log_carries_on_across_a_server_restart(
    server: ServerProcess, tmp_path: Path, shared: Path
) -> None:
    release = shared / "release"
    command = (
        f"echo before; while [ ! -f {release} ]; do sleep 0.1; done; echo after; echo oops >&2"
    )
    env = {
        **os.environ,
        "SLOTPOOL_URL": server.url,
        "SLOTPOOL_ADMIN_TOKEN": ADMIN,
    }
    with server.client() as api:
        pool_id, token = static_pool(api, "restarted")
        with static_agent(server.url, pool_id, token, name="outlives", slots=1, work=tmp_path):
            wait_for(lambda: ready_pods(api, pool_id) == 1, what="the agent registered")
            task_id = submit(api, pool_id, command=command)
            wait_for(
                lambda: api.get(f"/api/v1/tasks/{task_id}/logs").text == "before\n",
                what="the step's first line",
            )
            follower = subprocess.Popen(
                [sys.executable, "-m", "slotpool.cli", "tasks", "logs", "-f", task_id],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            time.sleep(1.0)  # following: the first line read
            server.stop(grace=GRACE)
            time.sleep(1.0)  # the follower finds nobody answering for a while
            release.touch()
            server.start_again()
            try:
                out, err = follower.communicate(timeout=90)
            finally:
                follower.kill()
            with server.client() as again:
                done = until_final(again, task_id)
    assert done["status"] == "succeeded", done
    assert follower.returncode == 0, err
    assert out == "before\nafter\n"  # each line once, none lost
    assert "oops" in err
