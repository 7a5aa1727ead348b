"""The controller and the cluster over time, on the real test API server.

* A Pod changed behind slotpool's back wakes its pool's worker through the namespace's watch,
  long before the next resync: the controller runs as in the server (``PoolController.run_forever``)
  with a resync of an hour, so only a wake-up explains a reaction within seconds.
* A pool configured while the controller runs gets its worker at once.
* The creation back-off survives a restart of the controller.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import secrets
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest
from lightkube import AsyncClient, KubeConfig
from lightkube.resources.core_v1 import Namespace, Pod

from slotpool.api.app import build_services
from slotpool.api.deps import Services
from slotpool.controller.assembly import PoolController
from slotpool.domain.config import PoolConfig, PoolType, parse_config
from slotpool.domain.manifest import POOL_LABEL
from slotpool.runtime.base import PodWatcher, RuntimeRegistry
from slotpool.runtime.kubernetes import KubernetesRuntime
from slotpool.settings import Settings
from slotpool.store.migrate import upgrade
from slotpool.store.uow import Store
from tests.support.kube import K8sTestEnv

RESYNC_SECONDS = 3600.0
REACTION_LIMIT_SECONDS = 20.0


class Clock:
    """The controller's clock: the real time, moved forward by ``ahead`` when a test says so."""

    def __init__(self) -> None:
        self.ahead = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.ahead


@dataclass
class World:
    """A database, a namespace of its own on the test cluster, and controllers built on them."""

    k8s: K8sTestEnv
    store: Store
    settings: Settings
    kube: AsyncClient
    namespace: str
    clock: Clock = field(default_factory=Clock)
    runtimes: list[KubernetesRuntime] = field(default_factory=list)

    def services(self) -> Services:
        """A fresh set (as after a restart: nothing remembered in memory), with its own runtime."""
        runtime = KubernetesRuntime.from_kubeconfig(self.k8s.kubeconfig, requests_per_second=100.0)
        self.runtimes.append(runtime)
        runtimes = RuntimeRegistry({PoolType.k8s: runtime})
        return build_services(self.store, self.settings, self.clock, runtimes)

    def config(self, **values: Any) -> PoolConfig:
        raw = {"image": "ghcr.io/acme/agent:1.4", "namespace": self.namespace, **values}
        return parse_config(raw, pool_type=PoolType.k8s)

    async def names(self, pool_id: str) -> set[str]:
        """The pool's Pods in the cluster, not being deleted."""
        return {
            p.metadata.name
            for p in [pod async for pod in self.kube.list(Pod, namespace=self.namespace)]
            if p.metadata is not None
            and p.metadata.name is not None
            and p.metadata.deletionTimestamp is None
            and (p.metadata.labels or {}).get(POOL_LABEL) == pool_id
        }

    async def one_pod(self, pool_id: str) -> bool:
        return len(await self.names(pool_id)) == 1


@pytest.fixture
async def world(k8s: K8sTestEnv, tmp_path: Path) -> AsyncIterator[World]:
    url = f"sqlite:///{tmp_path}/slotpool.db"
    upgrade(url)
    settings = Settings(
        database_url=url,
        local_runtime=False,
        public_url="http://127.0.0.1:9",
        pod_sync_seconds=RESYNC_SECONDS,
    )
    kube = AsyncClient(KubeConfig.from_file(k8s.kubeconfig), field_manager="slotpool-tests")
    world = World(k8s, Store(url), settings, kube, f"slotpool-ctl-{secrets.token_hex(3)}")
    try:
        yield world
    finally:
        for runtime in world.runtimes:
            await runtime.close()
        await world.store.close()
        with contextlib.suppress(Exception):
            await kube.delete(Namespace, world.namespace)
        await kube.close()


@contextlib.asynccontextmanager
async def running(keeper: PoolController) -> AsyncIterator[None]:
    """The controller as the server runs it, with a resync of an hour."""
    controller = asyncio.create_task(keeper.run_forever(RESYNC_SECONDS))
    try:
        yield
    finally:
        controller.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await controller


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + REACTION_LIMIT_SECONDS
    while not await check():
        assert time.monotonic() < deadline, f"not within {REACTION_LIMIT_SECONDS:.0f} s: {what}"
        await asyncio.sleep(0.1)


async def test_a_pod_deleted_behind_slotpools_back_is_replaced_without_waiting_for_the_resync(
    world: World,
) -> None:
    services = world.services()
    assert isinstance(world.runtimes[0], PodWatcher)
    config = world.config(
        min_replicas=1,
        max_replicas=1,
        pending_timeout_seconds=3600,  # no agent registers here: not judged stuck
        resources={"requests": {"cpu": "10m", "memory": "16Mi"}},
    )
    pool = await services.pools.create(
        name="watched", description="", pool_type=PoolType.k8s, config=config, by="test"
    )
    async with running(services.controller):
        await until(lambda: world.one_pod(pool.pool_id), "the first Pod for min_replicas 1")
        (first,) = await world.names(pool.pool_id)
        await asyncio.sleep(1.0)  # the watch is open (it started with the Pod's namespace)

        await world.kube.delete(Pod, first, namespace=world.namespace, grace_period=0)
        began = time.monotonic()

        async def replaced() -> bool:
            now = await world.names(pool.pool_id)
            return len(now) == 1 and first not in now

        await until(replaced, f"a new Pod instead of {first}")
        reaction = time.monotonic() - began
    async with world.store.unit_of_work() as uow:
        pods = {p.name: p for p in await uow.pods.of_pool(pool.pool_id)}
    assert pods[first].state.value == "failed"
    assert "vanished" in pods[first].reason or "being deleted" in pods[first].reason
    print(f"replaced {first} {reaction:.2f} s after its deletion (resync: 1 h)")


async def test_a_pool_configured_while_the_controller_runs_gets_its_worker_at_once(
    world: World,
) -> None:
    """A k8s pool created without a configuration is seen and left alone; once a configuration
    is saved and the pool poked to be read again (as ``PUT k8s-config`` does), its worker starts
    at once and creates the Pod for ``min_replicas``, long before the next listing of pools."""
    services = world.services()
    pool = await services.pools.create(
        name="later", description="", pool_type=PoolType.k8s, config=None, by="test"
    )
    async with running(services.controller):
        services.controller.poke(pool.pool_id)  # seen: no configuration, nothing to keep
        await asyncio.sleep(1.0)
        config = world.config(
            min_replicas=1,
            pending_timeout_seconds=3600,
            resources={"requests": {"cpu": "10m", "memory": "16Mi"}},
        )
        await services.pools.save_config(pool.pool_id, config, by="test", expected_revision=None)
        services.controller.poke(pool.pool_id, reread=True)
        await until(lambda: world.one_pod(pool.pool_id), "the Pod for min_replicas 1")


async def test_a_restart_resumes_the_creation_back_off(world: World) -> None:
    """A Pod no Node can take is deleted at its pending timeout and creation backs off; a new
    controller on the same database (a restart) keeps backing off instead of creating a Pod that
    cannot start at once. The clock is the controller's own, moved by the test."""
    clock = world.clock
    config = world.config(
        min_replicas=1,
        max_replicas=1,
        pending_timeout_seconds=10,
        resources={"requests": {"cpu": "64"}},  # more than any Node has
    )
    services = world.services()
    first = services.controller
    pool = await services.pools.create(
        name="backoff", description="", pool_type=PoolType.k8s, config=config, by="test"
    )
    created = await first.sync(pool)
    assert len(created.created) == 1, created
    clock.ahead += timedelta(seconds=11)  # past the pending timeout
    unstuck = await first.sync(pool)
    assert unstuck.removed == created.created, unstuck
    assert unstuck.created == [], "backing off: nothing is created in the same pass"

    restarted = world.services().controller
    clock.ahead += timedelta(seconds=2)  # the back-off (10 s) still runs
    after = await restarted.sync(pool)
    assert after.created == [], f"a restart forgot the back-off: {after}"
    holds = [h["reason"] for h in after.decision.get("holds", [])]
    assert "backoff" in holds, after.decision

    clock.ahead += timedelta(seconds=10)  # the back-off is over
    assert len((await restarted.sync(pool)).created) == 1


class InFlight(httpx2.AsyncBaseTransport):
    """The HTTP boundary in front of the real API server: the most Pod creations it had in
    flight at once."""

    def __init__(self, tls: ssl.SSLContext) -> None:
        self._inner = httpx2.AsyncHTTPTransport(verify=tls)
        self.creating = self.most = 0

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if request.method != "POST" or not request.url.path.endswith("/pods"):
            return await self._inner.handle_async_request(request)
        self.creating += 1
        self.most = max(self.most, self.creating)
        try:
            return await self._inner.handle_async_request(request)
        finally:
            self.creating -= 1

    async def aclose(self) -> None:
        await self._inner.aclose()


async def test_a_pass_issues_its_creations_at_once_within_the_rate_limit(world: World) -> None:
    boundary = InFlight(world.k8s.ssl_context())
    client = AsyncClient(KubeConfig.from_file(world.k8s.kubeconfig), transport=boundary)
    runtime = KubernetesRuntime(client=client, requests_per_second=math.inf)
    world.runtimes.append(runtime)
    services = build_services(
        world.store, world.settings, world.clock, RuntimeRegistry({PoolType.k8s: runtime})
    )
    config = world.config(min_replicas=20, max_replicas=20)
    pool = await services.pools.create(
        name="wide", description="", pool_type=PoolType.k8s, config=config, by="t"
    )

    report = await services.controller.run_pass(pool.pool_id, check_secret=True)

    assert len(report.created) == 20
    assert len(await world.names(pool.pool_id)) == 20
    # Not one after the other, nor 8 at a time: as many at once as the (unlimited) rate allows.
    assert boundary.most > 8, boundary.most
