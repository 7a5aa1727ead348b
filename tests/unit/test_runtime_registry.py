"""The runtime registry: one runtime per pool type, the reason when there is none, capabilities
checked once when a runtime is added, and every runtime closed at the end."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from lightkube import AsyncClient, KubeConfig
from lightkube.config.models import Cluster, User

from slotpool.api.app import KUBERNETES_OFF, LOCAL_OFF, build_runtimes
from slotpool.domain.agent_spec import AgentSpec
from slotpool.domain.config import PoolType
from slotpool.domain.manifest import pod_manifest
from slotpool.runtime.base import (
    Capability,
    NoRuntime,
    PodRuntime,
    RuntimePod,
    RuntimeRegistry,
    SecretOutcome,
)
from slotpool.runtime.kubernetes import KubernetesRuntime
from slotpool.runtime.local import LocalRuntime
from slotpool.settings import Settings


class Plain:
    """A runtime with no capability beyond the protocol; remembers whether it was closed."""

    name = "plain"
    capabilities: frozenset[Capability] = frozenset()

    def __init__(self, *, fails_to_close: bool = False) -> None:
        self.closed = False
        self._fails_to_close = fails_to_close

    async def prepare(self, namespace: str) -> None:
        return None

    async def read_token(self, namespace: str, pool_id: str) -> str | None:
        return None

    async def write_token(self, namespace: str, pool_id: str, token: str) -> SecretOutcome:
        return "created"

    async def delete_token(self, namespace: str, pool_id: str) -> None:
        return None

    async def pods(self, namespace: str, pool_id: str, *, fresh: bool = False) -> list[RuntimePod]:
        return []

    async def all_pods(self, namespace: str) -> list[RuntimePod]:
        return []

    async def create_agent(self, spec: AgentSpec) -> RuntimePod:
        now = datetime.now(UTC)
        return RuntimePod(
            name=f"{spec.name_prefix}1",
            namespace=spec.namespace,
            pool_id=spec.pool_id,
            config_hash=spec.config_hash,
            phase="Running",
            node=None,
            reason=None,
            message=None,
            created_at=now,
            deleting=False,
            ip=None,
        )

    async def delete_pod(self, namespace: str, name: str) -> None:
        return None

    async def close(self) -> None:
        self.closed = True
        if self._fails_to_close:
            raise OSError(f"{self.name} could not close")


class Watching(Plain):
    name = "watching"
    capabilities = frozenset({Capability.watch, Capability.dry_run, Capability.manifests})

    async def watch_pools(self, namespace: str) -> AsyncIterator[str]:
        yield "pool-1"

    async def dry_run(self, spec: AgentSpec) -> dict[str, Any]:
        return pod_manifest(spec)

    async def read_manifest(self, namespace: str, name: str) -> dict[str, Any] | None:
        return None


class Boasting(Plain):
    """Declares what it cannot do."""

    name = "boasting"
    capabilities = frozenset({Capability.watch})


class Modest(Watching):
    """Can watch and dry-run, but does not say so: it is used as a plain runtime."""

    name = "modest"
    capabilities: frozenset[Capability] = frozenset()


def test_the_runtime_of_a_pool_type() -> None:
    plain, watching = Plain(), Watching()
    registry = RuntimeRegistry({PoolType.local: plain})
    registry.add(PoolType.k8s, watching)

    assert registry.get(PoolType.local, "pool-1") is plain
    assert registry.get(PoolType.k8s, "pool-1") is watching
    assert registry.find(PoolType.static) is None
    assert (PoolType.k8s in registry, PoolType.static in registry, len(registry)) == (
        True,
        False,
        2,
    )
    assert list(registry.items()) == [(PoolType.local, plain), (PoolType.k8s, watching)]


@pytest.mark.parametrize(
    ("pool_type", "message"),
    [
        (PoolType.static, "pool-1 is a static pool: its agents are started by hand, no Pods"),
        (PoolType.k8s, KUBERNETES_OFF),
        (PoolType.local, LOCAL_OFF),
    ],
)
def test_no_runtime_says_why(tmp_path: Path, pool_type: PoolType, message: str) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path}/db", local_runtime=False)
    registry = build_runtimes(settings)

    with pytest.raises(NoRuntime) as missing:
        registry.get(pool_type, "pool-1")

    assert str(missing.value) == message
    assert len(registry) == 0


def test_the_settings_messages_are_the_ones_the_server_always_gave() -> None:
    assert LOCAL_OFF == "the local runtime is off in this server (SLOTPOOL_LOCAL_RUNTIME)"
    assert KUBERNETES_OFF == (
        "no Kubernetes cluster is configured in this server: set SLOTPOOL_KUBECONFIG "
        "(or SLOTPOOL_KUBERNETES_IN_CLUSTER=true) and restart"
    )


def test_a_pool_type_nobody_said_anything_about() -> None:
    with pytest.raises(NoRuntime, match="this server runs no agents of k8s pools"):
        RuntimeRegistry().get(PoolType.k8s, "pool-1")


def test_capabilities_give_the_typed_runtime_only_when_declared() -> None:
    watching, modest = Watching(), Modest()
    registry = RuntimeRegistry({PoolType.k8s: watching, PoolType.local: modest})

    assert registry.capabilities(PoolType.k8s) == {
        Capability.watch,
        Capability.dry_run,
        Capability.manifests,
    }
    assert registry.watcher(PoolType.k8s) is watching
    assert registry.dry_runner(PoolType.k8s) is watching
    assert registry.manifest_reader(PoolType.k8s) is watching
    assert registry.manifest_reader(PoolType.local) is None
    assert registry.capabilities(PoolType.local) == frozenset()
    assert (registry.watcher(PoolType.local), registry.dry_runner(PoolType.local)) == (None, None)
    assert registry.capabilities(PoolType.static) == frozenset()
    assert registry.watcher(PoolType.static) is None


def test_a_runtime_that_declares_what_it_cannot_do_is_refused_when_added() -> None:
    registry = RuntimeRegistry()

    with pytest.raises(TypeError, match="boasting declares watch but is no PodWatcher"):
        registry.add(PoolType.k8s, Boasting())

    assert PoolType.k8s not in registry


async def test_slotpools_runtimes_declare_what_they_can_do(tmp_path: Path) -> None:
    config = KubeConfig.from_one(cluster=Cluster(server="http://127.0.0.1:9"), user=User())
    kubernetes = KubernetesRuntime(client=AsyncClient(config), requests_per_second=1.0)
    local = LocalRuntime(tmp_path)
    registry = RuntimeRegistry({PoolType.k8s: kubernetes, PoolType.local: local})

    assert registry.watcher(PoolType.k8s) is kubernetes
    assert registry.dry_runner(PoolType.k8s) is kubernetes
    assert registry.capabilities(PoolType.local) == frozenset()
    await registry.close_all()


async def test_close_all_closes_every_runtime_even_after_a_failure() -> None:
    failing, plain, watching = Plain(fails_to_close=True), Plain(), Watching()
    runtimes: dict[PoolType, PodRuntime] = {
        PoolType.local: failing,
        PoolType.k8s: plain,
        PoolType.static: watching,
    }

    with pytest.raises(OSError, match="plain could not close"):
        await RuntimeRegistry(runtimes).close_all()

    assert (failing.closed, plain.closed, watching.closed) == (True, True, True)
