"""A static pool's agent started by hand (``python -m slotpool.agent``), as an operator runs one on
a machine of their own: it registers with the server at ``server_url`` and long-polls it there.
Used where the test or the benchmark must choose which server process the agent talks to."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.support import processes

POOLS = "/api/v1/agent-pools"


def static_pool(client: httpx.Client, name: str) -> tuple[str, str]:
    """A new static pool and a token of it: (pool id, token)."""
    created = client.post(POOLS, json={"name": name, "pool_type": "static"})
    created.raise_for_status()
    pool_id: str = created.json()["pool_id"]
    made = client.post(f"{POOLS}/{pool_id}/tokens", json={"name": "hand"})
    made.raise_for_status()
    token: str = made.json()["token"]
    return pool_id, token


@contextlib.contextmanager
def static_agent(
    server_url: str, pool_id: str, token: str, *, name: str, slots: int, work: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """The agent process, running until the block is left (then it and its steps are killed);
    its log is ``work/<name>.log``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLOTPOOL_")}
    env |= {
        "SLOTPOOL_SERVER_URL": server_url,
        "SLOTPOOL_POOL_ID": pool_id,
        "SLOTPOOL_AGENT_NAME": name,
        "SLOTPOOL_SLOTS": str(slots),
        "SLOTPOOL_AGENT_TOKEN": token,
        "SLOTPOOL_WORK_DIR": str(work / name),
    }
    with (work / f"{name}.log").open("ab") as log:
        agent = subprocess.Popen(
            [sys.executable, "-m", "slotpool.agent"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield agent
    finally:
        processes.kill_all(processes.tree([agent.pid]))
        agent.wait()
