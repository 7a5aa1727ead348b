"""The test cluster as the Kubernetes benchmarks use it (``tests.support.kube``): started for
one run, a namespace enforcing the ``restricted`` Pod Security Standard, a watch that records
when each slotpool Pod was first seen and first ``Running``, every Pod deleted between rounds,
and Pods created directly with lightkube (the baseline the runtime and the controller are
measured against)."""

from __future__ import annotations

import contextlib
import copy
import json
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import httpx
from lightkube import AsyncClient
from lightkube.resources.core_v1 import Pod
from tests.support.kube import K8sTestEnv, bin_dir

from slotpool.domain.config import PoolType, parse_config
from slotpool.domain.manifest import MANAGED_BY, MANAGED_BY_LABEL, PodContext, build_pod_manifest
from slotpool.runtime.kubernetes import KubernetesRuntime, TokenBucket

RESTRICTED = {"pod-security.kubernetes.io/enforce": "restricted"}
SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY}"
CONTROL_PLANE_URL = "http://slotpool.example:8080"
WATCH_WINDOW_SECONDS = 5  # each watch request ends after this long and is reopened
DELETE_TIMEOUT = 120.0


@dataclass
class Cluster:
    env: K8sTestEnv
    start_seconds: float
    version: dict[str, str]

    def node_capacity(self) -> list[str]:
        nodes = self.env.client.get("/api/v1/nodes").json()["items"]
        return [
            f"{n['metadata']['name']}: {n['status']['capacity'].get('cpu')} CPU, "
            f"{n['status']['capacity'].get('pods')} Pods"
            for n in nodes
        ]

    def prepare(self, namespace: str) -> None:
        """The namespace, enforcing ``restricted``, with its default service account."""
        body = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": namespace, "labels": RESTRICTED},
        }
        response = self.env.client.post("/api/v1/namespaces", json=body)
        if response.status_code not in (201, 409):
            raise RuntimeError(f"create namespace: HTTP {response.status_code}: {response.text}")
        self.env.wait_for_service_account(namespace)

    def delete_all(self, namespace: str) -> None:
        """Delete every slotpool Pod of ``namespace`` at once (grace 0); wait until none is left."""
        path = f"/api/v1/namespaces/{namespace}/pods"
        client = self.env.client
        params: dict[str, str | int] = {"labelSelector": SELECTOR, "gracePeriodSeconds": 0}
        client.delete(path, params=params).raise_for_status()
        deadline = time.monotonic() + DELETE_TIMEOUT
        while client.get(path, params={"labelSelector": SELECTOR, "limit": 1}).json()["items"]:
            if time.monotonic() > deadline:
                raise RuntimeError(f"Pods still present {DELETE_TIMEOUT} s after deleting them")
            time.sleep(0.1)


@contextlib.contextmanager
def started_cluster(prefix: str) -> Iterator[Cluster]:
    """The test cluster of ``tests.support.kube``, started in a new directory, stopped after."""
    started = time.monotonic()
    base = Path(tempfile.mkdtemp(prefix=prefix))
    print(f"starting the test cluster in {base} ...", flush=True)
    env = K8sTestEnv.start(base, bin_dir())
    try:
        env.wait_for_nodes_ready()
        version = env.client.get("/version").json()
        cluster = Cluster(env, time.monotonic() - started, version)
        print(f"cluster ready in {cluster.start_seconds:.1f} s: {env.server}", flush=True)
        yield cluster
    finally:
        env.stop()


class PodWatch:
    """Watches a namespace's slotpool Pods from a thread of its own (a plain ``httpx`` stream, so
    it costs the measuring thread nothing) and records when each Pod was first seen (``added``)
    and first seen Running (``running``), in ``time.monotonic()`` seconds (one clock for every
    thread)."""

    def __init__(self, env: K8sTestEnv, namespace: str) -> None:
        self.added: dict[str, float] = {}
        self.running: dict[str, float] = {}
        self.events = 0
        self.error: BaseException | None = None
        self._env = env
        self._path = f"/api/v1/namespaces/{namespace}/pods"
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pod-watch", daemon=True)

    def __enter__(self) -> PodWatch:
        self._thread.start()
        if not self._ready.wait(30.0):
            raise RuntimeError("the Pod watch did not start")
        self.check()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=WATCH_WINDOW_SECONDS + 10.0)

    def check(self) -> None:
        if self.error is not None:
            raise RuntimeError(f"the Pod watch failed: {self.error!r}") from self.error

    def of_pool(self, pool_id: str) -> tuple[list[float], list[float]]:
        """When the pool's Pods were first seen, and first seen Running: sorted."""
        prefix = f"slotpool-{pool_id}-"
        # Copied first, in one step: the watch's thread adds to them meanwhile.
        added = [t for name, t in list(self.added.items()) if name.startswith(prefix)]
        running = [t for name, t in list(self.running.items()) if name.startswith(prefix)]
        return sorted(added), sorted(running)

    def wait_running(
        self, pool_id: str, pods: int, timeout: float
    ) -> tuple[list[float], list[float]]:
        """``of_pool`` once ``pods`` of the pool's Pods are Running."""
        deadline = time.monotonic() + timeout
        while True:
            self.check()
            added, running = self.of_pool(pool_id)
            if len(running) >= pods:
                return added, running
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(running)} of {pods} Pods Running after {timeout} s")
            time.sleep(0.01)

    def _run(self) -> None:
        try:
            timeout = httpx.Timeout(10.0, read=WATCH_WINDOW_SECONDS + 30.0)
            with httpx.Client(
                base_url=self._env.server, verify=self._env.ssl_context(), timeout=timeout
            ) as client:
                listing = client.get(self._path, params={"labelSelector": SELECTOR})
                listing.raise_for_status()
                version: str = listing.json()["metadata"]["resourceVersion"]
                while not self._stop.is_set():
                    version = self._watch(client, version)
        except BaseException as exc:
            self.error = exc
        finally:
            self._ready.set()

    def _watch(self, client: httpx.Client, version: str) -> str:
        params = {
            "watch": "true",
            "labelSelector": SELECTOR,
            "resourceVersion": version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(WATCH_WINDOW_SECONDS),
        }
        with client.stream("GET", self._path, params=params) as response:
            response.raise_for_status()
            self._ready.set()
            for line in response.iter_lines():
                if line:
                    version = self._seen(json.loads(line), time.monotonic())
        return version

    def _seen(self, event: dict[str, Any], at: float) -> str:
        pod = event["object"]
        if event["type"] == "ERROR":
            raise RuntimeError(f"watch error: {pod.get('message')}")
        self.events += 1
        if event["type"] in ("ADDED", "MODIFIED"):
            name = pod["metadata"]["name"]
            self.added.setdefault(name, at)
            if (pod.get("status") or {}).get("phase") == "Running":
                self.running.setdefault(name, at)
        version: str = pod["metadata"]["resourceVersion"]
        return version


def pod_manifest(raw: dict[str, Any], pool_id: str, namespace: str) -> dict[str, Any]:
    """The one builder's Pod for a pool with ``raw`` config."""
    config = parse_config(copy.deepcopy(raw), pool_type=PoolType.k8s)
    context = PodContext(pool_id, control_plane_url=CONTROL_PLANE_URL, default_namespace=namespace)
    return build_pod_manifest(config, context)


Create = Callable[[int], Awaitable[tuple[str, Any]]]


def creator(client: AsyncClient, mode: str, rate: float, manifests: list[dict[str, Any]]) -> Create:
    """The create of one Pod, by index: through the runtime (``runtime``), or the least a caller
    must do (``direct``: the runtime's ``TokenBucket`` at the same rate, then ``client.create``
    with ``Pod`` objects made here, before the clock starts)."""
    if mode == "runtime":
        runtime = KubernetesRuntime(client=client, requests_per_second=rate)

        async def through_runtime(i: int) -> tuple[str, Any]:
            created = await runtime.create_pod(manifests[i])
            return created.name, created

        return through_runtime
    bucket = TokenBucket(rate)
    objects = [cast(Pod, Pod.from_dict(manifest)) for manifest in manifests]

    async def directly(i: int) -> tuple[str, Any]:
        await bucket.acquire()
        created = await client.create(objects[i])
        return (created.metadata.name if created.metadata else None) or "", created

    return directly
