"""Which runtime keeps a pool's pods in this server, and in which namespace.

A server has a runtime per pool type it can run (``local`` processes, a Kubernetes cluster);
static pools have none, their agents are started by hand. The controller, the deletion of a pool,
the token rotation and the preview's dry run all ask the same questions, answered once here.
"""

from __future__ import annotations

from collections.abc import ItemsView, Mapping

from slotpool.domain.config import PoolType
from slotpool.domain.pools import Pool
from slotpool.runtime.base import PodRuntime
from slotpool.services.errors import Conflict
from slotpool.services.pools import PoolService

NO_CLUSTER = (
    "no Kubernetes cluster is configured in this server: set SLOTPOOL_KUBECONFIG "
    "(or SLOTPOOL_KUBERNETES_IN_CLUSTER=true) and restart"
)
NO_LOCAL = "the local runtime is off in this server (SLOTPOOL_LOCAL_RUNTIME)"


class PoolRuntimes:
    def __init__(self, runtimes: Mapping[PoolType, PodRuntime], pools: PoolService) -> None:
        self._runtimes = dict(runtimes)
        self._pools = pools

    def __bool__(self) -> bool:
        return bool(self._runtimes)

    def items(self) -> ItemsView[PoolType, PodRuntime]:
        return self._runtimes.items()

    def of_type(self, pool_type: PoolType) -> PodRuntime | None:
        return self._runtimes.get(pool_type)

    def can_run(self, pool: Pool) -> bool:
        """Whether this server runs the pool's pods (a runtime for its type, a config)."""
        return pool.pool_type in self._runtimes and pool.effective_config() is not None

    def for_pool(self, pool: Pool) -> PodRuntime:
        """The pool's runtime; ``Conflict``, in words that say what to do, when there is none."""
        if pool.pool_type is PoolType.static:
            raise Conflict(
                f"{pool.pool_id} is a static pool: its agents are started by hand, no Pods"
            )
        runtime = self._runtimes.get(pool.pool_type)
        if runtime is None:
            raise Conflict(NO_CLUSTER if pool.pool_type is PoolType.k8s else NO_LOCAL)
        return runtime

    def namespace(self, pool: Pool) -> str | None:
        """Where the pool's pods live; None while it has no configuration."""
        config = pool.effective_config()
        return None if config is None else self._pools.pod_context(pool).namespace_for(config)

    @property
    def default_namespace(self) -> str:
        return self._pools.default_namespace
