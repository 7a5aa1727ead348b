"""What the controller benchmark's parts share: the goals, the pools' configurations and the
server's settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from tests.support import server as support

from slotpool.settings import Settings

ADMIN = "bench-controller-admin-token-0123456789"
TASKS = "/api/v1/tasks"
POOLS = "/api/v1/agent-pools"
IMAGE = "ghcr.io/acme/agent:1.4"
NAMESPACE = "slotpool-bench"
PUBLIC_URL = "http://slotpool.example:8080"
GOALS = {"reaction_ms": 200.0, "burst_ratio": 1.25}
SERVER_PASS_TIMEOUT = 30.0
REACTION_CONFIG: dict[str, Any] = {
    "image": IMAGE,
    "slots_per_pod": 1,
    "min_replicas": 0,
    "max_replicas": 1000,
    "namespace": "bench-reaction",
}
BURST_CONFIG: dict[str, Any] = {
    "image": IMAGE,
    "resources": {
        "requests": {"cpu": "10m", "memory": "16Mi"},
        "limits": {"cpu": "50m", "memory": "64Mi"},
    },
    "slots_per_pod": 4,
    "min_replicas": 0,
    "max_replicas": 100,
    "namespace": NAMESPACE,
}
RESYNC_CONFIG: dict[str, Any] = {
    "image": IMAGE,
    "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
    "slots_per_pod": 4,
    "min_replicas": 10,
    "max_replicas": 20,
    "namespace": "bench-resync",
}


def server_settings(work: Path, **overrides: Any) -> Settings:
    """A server without local agents, its data in ``work``, its Pods told of ``PUBLIC_URL``."""
    values = {"public_url": PUBLIC_URL, "local_runtime": False, **overrides}
    return support.server_settings(work, admin=ADMIN, **values)


def api_client(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=60)
