"""A worker's pass hands its Pod creations over (``controller/creations.py``), against the real
API server of ``tests/support/kube.py`` and the runtime's token bucket: the pass returns before
its Pods exist, the next pass creates none of them again, and a pool deleted while they are in
flight keeps no Pod."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from slotpool.api.app import build_services
from slotpool.api.deps import Services
from slotpool.clock import utc_now
from slotpool.domain.config import PoolType, parse_config
from slotpool.domain.pools import Pool
from slotpool.domain.tasks import TaskSubmit
from slotpool.runtime.base import RuntimeRegistry
from slotpool.runtime.kubernetes import KubernetesRuntime
from slotpool.settings import Settings
from slotpool.store.migrate import upgrade
from slotpool.store.uow import Store
from tests.support.kube import K8sTestEnv

NAMESPACE = "slotpool-creations"
RATE = 20.0  # requests per second: 8 creations take 0.35 s at least
IMAGE = "ghcr.io/acme/agent:1.4"
RESOURCES = {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "50m"}}


@pytest.fixture(scope="module")
async def runtime(k8s: K8sTestEnv) -> AsyncIterator[KubernetesRuntime]:
    runtime = KubernetesRuntime.from_kubeconfig(k8s.kubeconfig, requests_per_second=RATE)
    await runtime.prepare(NAMESPACE)
    await asyncio.to_thread(k8s.wait_for_service_account, NAMESPACE)
    yield runtime
    await runtime.close()
    await asyncio.to_thread(k8s.client.delete, f"/api/v1/namespaces/{NAMESPACE}")


@pytest.fixture
async def services(runtime: KubernetesRuntime, tmp_path: Path) -> AsyncIterator[Services]:
    url = f"sqlite:///{tmp_path}/slotpool.db"
    upgrade(url)
    settings = Settings(
        database_url=url,
        local_runtime=False,
        public_url="http://slotpool.test:8080",
        default_namespace=NAMESPACE,
    )
    store = Store(url)
    try:
        yield build_services(store, settings, utc_now, RuntimeRegistry({PoolType.k8s: runtime}))
    finally:
        await store.close()


async def new_pool(services: Services, **config: object) -> Pool:
    parsed = parse_config(
        {"image": IMAGE, "resources": RESOURCES, "slots_per_pod": 1, **config},
        pool_type=PoolType.k8s,
    )
    name = f"p-{secrets.token_hex(4)}"
    return await services.pools.create(
        name=name, description="", pool_type=PoolType.k8s, config=parsed, by="test"
    )


async def standing(runtime: KubernetesRuntime, pool_id: str) -> list[str]:
    """The pool's Pods the API server lists that are not being deleted."""
    pods, _version = await runtime.list_pods(NAMESPACE, pool_id)
    return sorted(p.name for p in pods if not p.deleting)


async def test_a_pass_returns_before_its_pods_exist_and_the_next_creates_none_again(
    services: Services, runtime: KubernetesRuntime
) -> None:
    pool = await new_pool(services, min_replicas=0, max_replicas=8)
    reconciler = services.controller.reconciler
    await reconciler.run_pass(pool.pool_id, check_secret=True)  # the Secret: not timed
    body = TaskSubmit(pool_id=pool.pool_id, command="true")
    for _ in range(20):
        await services.tasks.submit(body, by="t")

    began = time.monotonic()
    first = await reconciler.run_pass(pool.pool_id, check_secret=False, settle=False)
    handed_over = time.monotonic() - began
    second = await reconciler.run_pass(pool.pool_id, check_secret=False, settle=False)
    await reconciler.settle(pool.pool_id)
    settled = time.monotonic() - began

    assert [a["count"] for a in first.decision["actions"]] == [8]
    assert handed_over < (8 - 1) / RATE < settled
    assert second.decision["actions"] == []
    assert second.decision["pods_after"] == 8
    assert second.adopted == []
    listed = await standing(runtime, pool.pool_id)
    assert len(listed) == 8
    booked = sorted(p.name for p in await services.agents.pods(pool.pool_id))
    assert booked == listed
    third = await reconciler.run_pass(pool.pool_id, check_secret=False, settle=False)
    assert third.decision["actions"] == []
    assert third.adopted == []
    assert third.decision["inputs"]["creating"] == 0
    await services.removal.remove(pool.pool_id, force=True, by="t")


async def test_a_pool_deleted_while_its_pods_are_created_keeps_none(
    services: Services, runtime: KubernetesRuntime
) -> None:
    pool = await new_pool(services, min_replicas=0)
    reconciler = services.controller.reconciler
    await reconciler.run_pass(pool.pool_id, check_secret=True)  # the Secret first
    body = TaskSubmit(pool_id=pool.pool_id, command="true")
    for _ in range(6):
        await services.tasks.submit(body, by="t")
    await reconciler.run_pass(pool.pool_id, check_secret=False, settle=False)

    deleted = await services.removal.remove(pool.pool_id, force=True, by="t")

    assert len(deleted) == 6
    assert await standing(runtime, pool.pool_id) == []
