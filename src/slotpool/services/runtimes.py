"""Which runtime keeps a pool's pods in this server, and in which namespace.

A server has a runtime per pool type it can run (``local`` processes, a Kubernetes cluster),
registered in ``runtime.base.RuntimeRegistry``; static pools have none, their agents are started
by hand. The controller, the deletion of a pool, the token rotation and the preview's dry run all
ask the same questions of a pool, answered once here in the services' terms.
"""

from __future__ import annotations

from collections.abc import Iterator

from slotpool.domain.config import PoolType
from slotpool.domain.pools import Pool
from slotpool.runtime.base import (
    DryRunner,
    ManifestReader,
    NoRuntime,
    PodRuntime,
    PodWatcher,
    RuntimeRegistry,
)
from slotpool.services.errors import Conflict
from slotpool.services.pools import PoolService


class PoolRuntimes:
    def __init__(self, registry: RuntimeRegistry, pools: PoolService) -> None:
        self._registry = registry
        self._pools = pools

    def __bool__(self) -> bool:
        return len(self._registry) > 0

    def items(self) -> Iterator[tuple[PoolType, PodRuntime]]:
        return self._registry.items()

    def of_type(self, pool_type: PoolType) -> PodRuntime | None:
        return self._registry.find(pool_type)

    def watcher(self, pool_type: PoolType) -> PodWatcher | None:
        return self._registry.watcher(pool_type)

    def dry_runner(self, pool_type: PoolType) -> DryRunner | None:
        return self._registry.dry_runner(pool_type)

    def manifest_reader(self, pool_type: PoolType) -> ManifestReader | None:
        return self._registry.manifest_reader(pool_type)

    def can_run(self, pool: Pool) -> bool:
        """Whether this server runs the pool's pods (a runtime for its type, a config)."""
        return pool.pool_type in self._registry and pool.effective_config() is not None

    def why_no_pods(self, pool: Pool) -> str | None:
        """Why this server creates no Pods for the pool, in words that say what to do; None
        when it does, and for static pools (their agents are started by hand)."""
        return self.why_no_pods_of(
            pool.pool_id, pool.pool_type, configured=pool.effective_config() is not None
        )

    def why_no_pods_of(self, pool_id: str, pool_type: PoolType, *, configured: bool) -> str | None:
        """``why_no_pods`` of the pool ``pool_id`` of ``pool_type``, which has an effective
        configuration (``configured``) or not."""
        if pool_type is PoolType.static:
            return None
        try:
            self._registry.get(pool_type, pool_id)
        except NoRuntime as exc:
            return str(exc)
        if not configured:
            return (
                "the pool has no configuration yet: save one (PUT "
                f"/api/v1/agent-pools/{pool_id}/k8s-config, `slotpool pools apply -f`, or "
                "the web UI's Configuration tab)"
            )
        return None

    def for_pool(self, pool: Pool) -> PodRuntime:
        """The pool's runtime; ``Conflict``, in words that say what to do, when there is none."""
        try:
            return self._registry.get(pool.pool_type, pool.pool_id)
        except NoRuntime as exc:
            raise Conflict(str(exc)) from None

    def namespace(self, pool: Pool) -> str | None:
        """Where the pool's pods live; None while it has no configuration."""
        config = pool.effective_config()
        return None if config is None else self._pools.pod_context(pool).namespace_for(config)

    @property
    def default_namespace(self) -> str:
        return self._pools.default_namespace
