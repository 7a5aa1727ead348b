"""What the multi-replica tests share: a replica set on a fresh PostgreSQL database with the test
cluster's kubeconfig and the test kubelet of one namespace, a k8s pool, and a watcher of the
API server's Pods (the ground truth of what was created and deleted, whichever replica did it).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from lightkube import ApiError, Client, KubeConfig
from lightkube.resources.core_v1 import Namespace, Pod

from tests.support.kube import K8sTestEnv
from tests.support.kubelet import AgentKubelet
from tests.support.postgres import PostgresServer
from tests.support.replicas import ReplicaSet

ADMIN = "replicas-admin-token-0123456789abcdef"
POOLS = "/api/v1/agent-pools"
TASKS = "/api/v1/tasks"
AGENT_TIMEOUT_SECONDS = 10
_namespaces = itertools.count(1)


def new_namespace(what: str) -> str:
    return f"slotpool-replicas-{what}-{os.getpid()}-{next(_namespaces)}"


def k8s_config(namespace: str, **overrides: Any) -> dict[str, Any]:
    return {
        "image": "registry.example/slotpool-agent:1",
        "resources": {
            "requests": {"cpu": "50m", "memory": "32Mi"},
            "limits": {"cpu": "200m", "memory": "128Mi"},
        },
        "slots_per_pod": 2,
        "min_replicas": 1,
        "max_replicas": 3,
        "scale_down_delay_seconds": 3,
        "namespace": namespace,
        **overrides,
    }


def create_pool(client: httpx.Client, config: dict[str, Any]) -> str:
    body = {"name": config["namespace"], "pool_type": "k8s", "k8s_config": config}
    answer = client.post(POOLS, json=body)
    assert answer.status_code == 201, answer.text
    pool_id: str = answer.json()["pool_id"]
    return pool_id


def pool_pods(client: httpx.Client, pool_id: str) -> list[dict[str, Any]]:
    answer = client.get(f"{POOLS}/{pool_id}/pods")
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


def ready_pods(client: httpx.Client, pool_id: str) -> set[str]:
    return {p["name"] for p in pool_pods(client, pool_id) if p["state"] == "ready"}


def pool_tasks(client: httpx.Client, pool_id: str) -> list[dict[str, Any]]:
    answer = client.get(TASKS, params={"pool_id": pool_id, "limit": 1000})
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


@contextlib.contextmanager
def replica_set(
    pg_server: PostgresServer,
    k8s: K8sTestEnv,
    work: Path,
    namespace: str,
    *,
    count: int = 3,
    public_urls: dict[int, str] | None = None,
    **values: object,
) -> Iterator[tuple[ReplicaSet, AgentKubelet]]:
    """``count`` replicas on a new database of ``pg_server``, managing Pods on the test
    cluster, and the test kubelet of ``namespace`` (deleted on the way out)."""
    kube = Client(KubeConfig.from_file(k8s.kubeconfig), field_manager="slotpool-replicas")
    settings: dict[str, object] = {
        "kubeconfig": k8s.kubeconfig,
        "pod_sync_seconds": 1,
        "agent_timeout_seconds": AGENT_TIMEOUT_SECONDS,
        "heartbeat_seconds": 2,
        "claim_wait_seconds": 5,
        **values,
    }
    # The first decoding of a Pod list builds msgspec's type information; two threads doing it
    # at once (the kubelet's and a PodWatch's) crashed the interpreter: done once here first.
    list(kube.list(Pod, namespace=namespace))
    try:
        with (
            pg_server.temporary_database() as url,
            ReplicaSet.of(
                work, url, count=count, admin=ADMIN, public_urls=public_urls, settings=settings
            ) as replicas,
            AgentKubelet(k8s.kubeconfig, work / "agents", namespace=namespace) as kubelet,
        ):
            try:
                yield replicas, kubelet
            except BaseException:
                print(replicas.logs())
                raise
            assert kubelet.errors == [], kubelet.errors
    finally:
        with contextlib.suppress(ApiError):
            kube.delete(Namespace, namespace)


# -- the API server's Pods, watched ---------------------------------------------------------------


@dataclass
class PodWatch:
    """Lists the namespace's Pods every ``every`` seconds in a thread: when each Pod was first
    seen, first seen deleting (or gone), and the most Pods alive at once (not deleting)."""

    kube: Client
    namespace: str
    every: float = 0.2
    first_seen: dict[str, datetime] = field(default_factory=dict)
    deleted_at: dict[str, datetime] = field(default_factory=dict)
    most_alive: int = 0
    samples: int = 0
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="pod-watch", daemon=True)

    @classmethod
    def of(cls, k8s: K8sTestEnv, namespace: str) -> PodWatch:
        kube = Client(KubeConfig.from_file(k8s.kubeconfig), field_manager="slotpool-replicas")
        return cls(kube, namespace)

    def __enter__(self) -> PodWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def alive(self) -> set[str]:
        """The Pods seen and not (yet) seen deleting."""
        with self._lock:
            return set(self.first_seen) - set(self.deleted_at)

    def created_since(self, since: datetime) -> set[str]:
        with self._lock:
            return {name for name, at in self.first_seen.items() if at >= since}

    def deleted_since(self, since: datetime) -> set[str]:
        with self._lock:
            return {name for name, at in self.deleted_at.items() if at >= since}

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._sample()
            except Exception as exc:  # kept for the test to see; the watch goes on
                self.errors.append(repr(exc))
            self._stop.wait(self.every)

    def _sample(self) -> None:
        pods = list(self.kube.list(Pod, namespace=self.namespace))
        now = datetime.now(UTC)
        listed: set[str] = set()
        alive = 0
        with self._lock:
            for pod in pods:
                if pod.metadata is None or pod.metadata.name is None:
                    continue
                name = pod.metadata.name
                listed.add(name)
                self.first_seen.setdefault(name, now)
                if pod.metadata.deletionTimestamp is not None:
                    self.deleted_at.setdefault(name, now)
                else:
                    alive += 1
            for name in set(self.first_seen) - listed:
                self.deleted_at.setdefault(name, now)
            self.most_alive = max(self.most_alive, alive)
            self.samples += 1


def deleted_while_held(watch: PodWatch, tasks: list[dict[str, Any]]) -> list[str]:
    """Pods the API server saw deleted while a task held one of their slots (running or
    reserved: from its start to its end), whoever deleted them."""
    found = []
    for task in tasks:
        pod, started = task["pod_name"], task["started_at"]
        if pod is None or started is None or pod not in watch.deleted_at:
            continue
        at = watch.deleted_at[pod]
        finished = task["finished_at"]
        if datetime.fromisoformat(started) <= at and (
            finished is None or at < datetime.fromisoformat(finished)
        ):
            found.append(f"{pod} deleted at {at.isoformat()} while task {task['id']} held it")
    return found
