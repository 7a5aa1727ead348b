"""The controller and the cluster over time, on the real test API server.

* A Pod changed behind slotpool's back wakes its pool's worker through the namespace's watch,
  long before the next resync: the controller runs as in the server (``PodKeeper.run_forever``)
  with a resync of an hour, so only a wake-up explains a reaction within seconds.
* The creation back-off survives a restart of the controller.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from lightkube import AsyncClient, KubeConfig
from lightkube.resources.core_v1 import Namespace, Pod

from slotpool.api.app import build_services, utc_now
from slotpool.domain.config import PoolType, parse_config
from slotpool.domain.pods import POOL_LABEL
from slotpool.runtime.base import PodWatcher
from slotpool.runtime.kubernetes import KubernetesRuntime
from slotpool.services.pod_keeper import PodKeeper
from slotpool.settings import Settings
from slotpool.store.migrate import upgrade
from slotpool.store.uow import Store
from tests.k8s_env import K8sTestEnv

RESYNC_SECONDS = 3600.0
REACTION_LIMIT_SECONDS = 20.0


async def names(kube: AsyncClient, namespace: str, pool_id: str) -> set[str]:
    return {
        p.metadata.name
        for p in [pod async for pod in kube.list(Pod, namespace=namespace)]
        if p.metadata is not None
        and p.metadata.name is not None
        and p.metadata.deletionTimestamp is None
        and (p.metadata.labels or {}).get(POOL_LABEL) == pool_id
    }


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + REACTION_LIMIT_SECONDS
    while not await check():
        assert time.monotonic() < deadline, f"not within {REACTION_LIMIT_SECONDS:.0f} s: {what}"
        await asyncio.sleep(0.1)


async def test_a_pod_deleted_behind_slotpools_back_is_replaced_without_waiting_for_the_resync(
    k8s: K8sTestEnv, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path}/slotpool.db"
    upgrade(url)
    settings = Settings(
        database_url=url,
        local_runtime=False,
        public_url="http://127.0.0.1:9",
        pod_sync_seconds=RESYNC_SECONDS,
    )
    namespace = f"slotpool-watch-{secrets.token_hex(3)}"
    runtime = KubernetesRuntime.from_kubeconfig(k8s.kubeconfig, requests_per_second=100.0)
    assert isinstance(runtime, PodWatcher)
    store = Store(url)
    kube = AsyncClient(KubeConfig.from_file(k8s.kubeconfig), field_manager="slotpool-tests")
    services = build_services(store, settings, utc_now, {PoolType.k8s: runtime})
    config = parse_config(
        {
            "image": "ghcr.io/acme/agent:1.4",
            "namespace": namespace,
            "min_replicas": 1,
            "max_replicas": 1,
            "pending_timeout_seconds": 3600,  # no agent registers here: not judged stuck
            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
        },
        pool_type=PoolType.k8s,
    )
    pool = await services.pools.create(
        name="watched", description="", pool_type=PoolType.k8s, config=config, by="test"
    )
    controller = asyncio.create_task(services.pods.run_forever(RESYNC_SECONDS))
    try:
        await until(lambda: _one(kube, namespace, pool.pool_id), "the first Pod for min_replicas 1")
        (first,) = await names(kube, namespace, pool.pool_id)
        await asyncio.sleep(1.0)  # the watch is open (it started with the Pod's namespace)

        await kube.delete(Pod, first, namespace=namespace, grace_period=0)
        began = time.monotonic()

        async def replaced() -> bool:
            now = await names(kube, namespace, pool.pool_id)
            return len(now) == 1 and first not in now

        await until(replaced, f"a new Pod instead of {first}")
        reaction = time.monotonic() - began
        async with store.unit_of_work() as uow:
            pods = {p.name: p for p in await uow.pods.of_pool(pool.pool_id)}
        assert pods[first].state.value == "failed"
        assert "vanished" in pods[first].reason or "being deleted" in pods[first].reason
        print(f"replaced {first} {reaction:.2f} s after its deletion (resync: 1 h)")
    finally:
        controller.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await controller
        await runtime.aclose()
        await store.close()
        with contextlib.suppress(Exception):
            await kube.delete(Namespace, namespace)
        await kube.close()


async def _one(kube: AsyncClient, namespace: str, pool_id: str) -> bool:
    return len(await names(kube, namespace, pool_id)) == 1


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


async def test_a_restart_resumes_the_creation_back_off(k8s: K8sTestEnv, tmp_path: Path) -> None:
    """A Pod no Node can take is deleted at its pending timeout and creation backs off; a new
    controller on the same database (a restart) keeps backing off instead of creating a Pod that
    cannot start at once. The clock is the controller's own, moved by the test."""
    url = f"sqlite:///{tmp_path}/slotpool.db"
    upgrade(url)
    settings = Settings(database_url=url, local_runtime=False, public_url="http://127.0.0.1:9")
    namespace = f"slotpool-backoff-{secrets.token_hex(3)}"
    clock = Clock()
    store = Store(url)
    kube = AsyncClient(KubeConfig.from_file(k8s.kubeconfig), field_manager="slotpool-tests")
    runtimes: list[KubernetesRuntime] = []

    def controller() -> PodKeeper:  # a fresh one: nothing remembered in memory
        runtime = KubernetesRuntime.from_kubeconfig(k8s.kubeconfig, requests_per_second=100.0)
        runtimes.append(runtime)
        return build_services(store, settings, clock, {PoolType.k8s: runtime}).pods

    config = parse_config(
        {
            "image": "ghcr.io/acme/agent:1.4",
            "namespace": namespace,
            "min_replicas": 1,
            "max_replicas": 1,
            "pending_timeout_seconds": 10,
            "resources": {"requests": {"cpu": "64"}},  # more than any Node has
        },
        pool_type=PoolType.k8s,
    )
    try:
        first = controller()
        pool = await build_services(store, settings, clock).pools.create(
            name="backoff", description="", pool_type=PoolType.k8s, config=config, by="test"
        )
        created = await first.sync(pool)
        assert len(created.created) == 1, created
        clock.now += timedelta(seconds=11)  # past the pending timeout
        unstuck = await first.sync(pool)
        assert unstuck.removed == created.created, unstuck
        assert unstuck.created == [], "backing off: nothing is created in the same pass"

        restarted = controller()
        clock.now += timedelta(seconds=2)  # the back-off (10 s) still runs
        after = await restarted.sync(pool)
        assert after.created == [], f"a restart forgot the back-off: {after}"
        holds = [h["reason"] for h in after.decision.get("holds", [])]
        assert "backoff" in holds, after.decision

        clock.now += timedelta(seconds=10)  # the back-off is over
        assert len((await restarted.sync(pool)).created) == 1
    finally:
        for runtime in runtimes:
            await runtime.aclose()
        await store.close()
        with contextlib.suppress(Exception):
            await kube.delete(Namespace, namespace)
        await kube.close()


async def test_a_pool_configured_while_the_controller_runs_gets_its_worker_at_once(
    k8s: K8sTestEnv, tmp_path: Path
) -> None:
    """A k8s pool created without a configuration is seen and left alone; once a configuration
    is saved and the pool poked to be read again (as ``PUT k8s-config`` does), its worker starts
    at once and creates the Pod for ``min_replicas``, long before the next listing of pools."""
    url = f"sqlite:///{tmp_path}/slotpool.db"
    upgrade(url)
    settings = Settings(
        database_url=url,
        local_runtime=False,
        public_url="http://127.0.0.1:9",
        pod_sync_seconds=RESYNC_SECONDS,
    )
    namespace = f"slotpool-configured-{secrets.token_hex(3)}"
    runtime = KubernetesRuntime.from_kubeconfig(k8s.kubeconfig, requests_per_second=100.0)
    store = Store(url)
    kube = AsyncClient(KubeConfig.from_file(k8s.kubeconfig), field_manager="slotpool-tests")
    services = build_services(store, settings, utc_now, {PoolType.k8s: runtime})
    pool = await services.pools.create(
        name="later", description="", pool_type=PoolType.k8s, config=None, by="test"
    )
    controller = asyncio.create_task(services.pods.run_forever(RESYNC_SECONDS))
    try:
        services.pods.poke(pool.pool_id)  # seen: no configuration, nothing to keep
        await asyncio.sleep(1.0)
        config = parse_config(
            {
                "image": "ghcr.io/acme/agent:1.4",
                "namespace": namespace,
                "min_replicas": 1,
                "pending_timeout_seconds": 3600,
                "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
            },
            pool_type=PoolType.k8s,
        )
        await services.pools.save_config(pool.pool_id, config, by="test", expected_revision=None)
        services.pods.poke(pool.pool_id, reread=True)
        await until(lambda: _one(kube, namespace, pool.pool_id), "the Pod for min_replicas 1")
    finally:
        controller.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await controller
        await runtime.aclose()
        await store.close()
        with contextlib.suppress(Exception):
            await kube.delete(Namespace, namespace)
        await kube.close()
