"""The preview is the Pod that runs, on the real test API server: for a few configurations, the
manifest the pool's preview shows (``PoolService.preview``, what ``/pod-preview`` renders) is
exactly the body the Kubernetes runtime sends when the controller creates the pool's Pod, and the
Pod the server stored holds all of it (the server adds its defaults, nothing else changes)."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
from lightkube import AsyncClient, KubeConfig

from slotpool.api.app import build_services
from slotpool.api.deps import Services
from slotpool.clock import utc_now
from slotpool.domain.config import PoolType, parse_config
from slotpool.domain.manifest import CONFIG_HASH_ANNOTATION
from slotpool.runtime.base import RuntimeRegistry
from slotpool.runtime.kubernetes import FIELD_MANAGER, KubernetesRuntime
from slotpool.settings import Settings
from slotpool.store.migrate import upgrade
from slotpool.store.uow import Store
from tests.support.kube import K8sTestEnv

SUFFIX = secrets.token_hex(3)
DEFAULT_NAMESPACE = f"slotpool-preview-{SUFFIX}"
OWN_NAMESPACE = f"slotpool-preview-own-{SUFFIX}"
RUNS = {"min_replicas": 1, "max_replicas": 1, "pending_timeout_seconds": 3600}
CONFIGS: dict[str, dict[str, Any]] = {
    "minimal": {"image": "busybox"},
    "everything": {
        "image": "ghcr.io/acme/agent:1.4",
        "image_pull_policy": "Always",
        "command": ["slotpool", "agent"],
        "args": ["--verbose"],
        "env": {"ZED": "1", "ALPHA": "two", "REF": "$(SLOTPOOL_POOL_ID)"},
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "1"}},
        "slots_per_pod": 3,
        "service_account": "runner",
        "node_selector": {"kubernetes.io/os": "linux"},
        "tolerations": [
            {"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"},
            {"key": "k", "value": "v", "effect": "NoExecute", "toleration_seconds": 30},
        ],
        "labels": {"team": "infra"},
        "annotations": {"owner": "ops@example.com"},
    },
    "own namespace": {"image": "busybox", "namespace": OWN_NAMESPACE, "slots_per_pod": 1},
}


class Recorder(httpx2.AsyncBaseTransport):
    """The HTTP boundary in front of the real API server: keeps the body of every Pod create
    (dry runs aside) as sent, and passes every request on."""

    def __init__(self, inner: httpx2.AsyncHTTPTransport) -> None:
        self._inner = inner
        self.created: list[dict[str, Any]] = []

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        creates_pod = request.method == "POST" and request.url.path.endswith("/pods")
        if creates_pod and "dryRun" not in request.url.params:
            self.created.append(json.loads(await request.aread()))
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


@dataclass
class World:
    k8s: K8sTestEnv
    services: Services
    recorder: Recorder
    runtime: KubernetesRuntime


@pytest.fixture(scope="module")
async def namespaces(k8s: K8sTestEnv) -> AsyncIterator[None]:
    """Both namespaces made and their service accounts there (Pods are refused until then)."""
    runtime = KubernetesRuntime.from_kubeconfig(k8s.kubeconfig, requests_per_second=100.0)
    try:
        for namespace in (DEFAULT_NAMESPACE, OWN_NAMESPACE):
            await runtime.prepare(namespace)
            await asyncio.to_thread(k8s.wait_for_service_account, namespace)
        account = {"metadata": {"name": "runner"}}
        path = f"/api/v1/namespaces/{DEFAULT_NAMESPACE}/serviceaccounts"
        response = await asyncio.to_thread(k8s.client.post, path, json=account)
        assert response.status_code == 201, response.text
        yield
    finally:
        await runtime.close()
        for namespace in (DEFAULT_NAMESPACE, OWN_NAMESPACE):  # the Pods go with them
            await asyncio.to_thread(k8s.client.delete, f"/api/v1/namespaces/{namespace}")


@pytest.fixture
async def world(k8s: K8sTestEnv, namespaces: None, tmp_path: Path) -> AsyncIterator[World]:
    url = f"sqlite:///{tmp_path}/slotpool.db"
    upgrade(url)
    settings = Settings(
        database_url=url,
        local_runtime=False,
        public_url="http://slotpool.example:8080",
        default_namespace=DEFAULT_NAMESPACE,
    )
    recorder = Recorder(httpx2.AsyncHTTPTransport(verify=k8s.ssl_context()))
    client = AsyncClient(
        KubeConfig.from_file(k8s.kubeconfig), transport=recorder, field_manager=FIELD_MANAGER
    )
    runtime = KubernetesRuntime(client=client, requests_per_second=100.0)
    store = Store(url)
    services = build_services(store, settings, utc_now, RuntimeRegistry({PoolType.k8s: runtime}))
    try:
        yield World(k8s, services, recorder, runtime)
    finally:
        await runtime.close()
        await store.close()


def holds(stored: Any, sent: Any) -> bool:
    """Whether ``stored`` has everything ``sent`` has: the server may only add to it (defaults,
    and to lists only at their end, as its default tolerations)."""
    if isinstance(sent, dict):
        return isinstance(stored, dict) and all(holds(stored.get(k), v) for k, v in sent.items())
    if isinstance(sent, list):
        return (
            isinstance(stored, list)
            and len(stored) >= len(sent)
            and all(holds(a, b) for a, b in zip(stored, sent, strict=False))
        )
    return bool(stored == sent)


@pytest.mark.parametrize("name", list(CONFIGS))
async def test_the_preview_is_the_pod_the_kubernetes_runtime_creates(
    world: World, name: str
) -> None:
    config = parse_config({**CONFIGS[name], **RUNS}, pool_type=PoolType.k8s)
    pool = await world.services.pools.create(
        name=f"preview-{name.replace(' ', '-')}",
        description="",
        pool_type=PoolType.k8s,
        config=config,
        by="test",
    )
    saved = await world.services.pools.preview(pool.pool_id, None)
    candidate = await world.services.pools.preview(pool.pool_id, config)

    report = await world.services.controller.sync(pool)

    (created,) = report.created
    (sent,) = world.recorder.created
    assert candidate.manifest == saved.manifest
    assert sent == saved.manifest
    assert json.dumps(sent, sort_keys=True) == json.dumps(saved.manifest, sort_keys=True)
    namespace = saved.manifest["metadata"]["namespace"]
    path = f"/api/v1/namespaces/{namespace}/pods/{created}"
    stored = (await asyncio.to_thread(world.k8s.client.get, path)).json()
    assert stored["metadata"]["annotations"][CONFIG_HASH_ANNOTATION] == saved.config_hash
    assert holds(stored, saved.manifest), json.dumps(stored, indent=1)
