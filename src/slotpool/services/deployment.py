"""A pool's Pods following its configuration: saving a configuration (then a pass that rebuilds
the idle outdated Pods), the ``sync-deployment`` pass, and the Pod preview with the cluster's
dry run. (The names keep the seed's ``sync-deployment``; slotpool never makes a Deployment.)

The pass itself is the controller's; it reaches it through ``PoolPasses``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import structlog

from slotpool.domain.agent_spec import POOL_LABEL, AgentSpec
from slotpool.domain.audit import AuditEntry
from slotpool.domain.config import PoolConfig, PoolType
from slotpool.domain.errors import Issue
from slotpool.domain.pools import Pool
from slotpool.runtime.errors import PermanentRuntimeError, RuntimeApiError
from slotpool.services.errors import Conflict, Invalid, NotFound, RuntimeUnavailable
from slotpool.services.no_pods import NoPods
from slotpool.services.pools import PoolService, Preview
from slotpool.services.ports import PoolPasses, RuntimeFailed, SyncReport
from slotpool.services.runtimes import PoolRuntimes
from slotpool.store.uow import write_audit

log = structlog.get_logger(__name__)
REBUILD_FAILED = "K8s config updated but failed to rebuild idle pods: {}"


@dataclass(frozen=True)
class ConfigSaved:
    """The pool as saved, and the pass that followed (None: this server runs no Pods for it)."""

    pool: Pool
    report: SyncReport | None


class DeploymentService:
    def __init__(
        self,
        *,
        pools: PoolService,
        runtimes: PoolRuntimes,
        passes: PoolPasses,
        no_pods: NoPods,
    ) -> None:
        self._pools = pools
        self._runtimes = runtimes
        self._passes = passes
        self._no_pods = no_pods

    async def save_config(
        self, pool_id: str, config: PoolConfig, *, by: str, expected_revision: int | None
    ) -> ConfigSaved:
        """Validate and save, then rebuild every idle Pod whose config is now outdated (busy
        and reserved ones are rebuilt by the controller once idle). A runtime failure after
        the save is ``RuntimeUnavailable`` in the seed's words: the config stays saved, and
        the controller keeps trying."""
        pool = await self._pools.save_config(
            pool_id, config, by=by, expected_revision=expected_revision
        )
        await self._no_pods.note(pool)  # why it gets no Pods, or that it now may
        if not self._runtimes.can_run(pool):
            return ConfigSaved(pool, None)
        try:
            return ConfigSaved(pool, await self._rebuild_idle(pool))
        except RuntimeFailed as exc:
            raise RuntimeUnavailable(REBUILD_FAILED.format(exc)) from exc

    async def _rebuild_idle(self, pool: Pool) -> SyncReport:
        log.info("Rebuilding idle pods for pool after config update", pool_id=pool.pool_id)
        report = await self._pass(pool, check_secret=False)
        if not report.frozen:
            log.info(
                f"Successfully rebuilt {len(report.rebuilt)} idle pods for pool "
                "with updated configuration",
                pool_id=pool.pool_id,
                rebuilt=report.rebuilt,
                kept_busy=report.kept_busy,
            )
        return report

    async def sync(self, pool_id: str, *, by: str) -> SyncReport:
        """A full pass now, the Secret checked whatever the last check said."""
        pool = await self._pools.get(pool_id)
        try:
            report = await self._pass(pool, check_secret=True)
        except RuntimeFailed as exc:
            raise RuntimeUnavailable(f"failed to sync Pods: {exc}") from exc
        # The pass wrote what it did in units of work of its own: the request is audited here.
        target = {"pool_id": pool.pool_id, "pool_name": pool.name}
        write_audit(AuditEntry("pool.sync", by, target))
        return report

    async def _pass(self, pool: Pool, *, check_secret: bool) -> SyncReport:
        self._runtimes.for_pool(pool)  # refused at once where this server keeps no Pods
        return await self._passes.run_pass(pool.pool_id, check_secret=check_secret)

    async def preview(
        self, pool_id: str, candidate: PoolConfig | None, *, dry_run: bool
    ) -> Preview:
        """The Pod the saved (or a candidate) configuration makes; with ``dry_run`` also as
        the cluster would admit it (nothing is created), a refusal ``Invalid`` in its words."""
        preview = await self._pools.preview(pool_id, candidate)
        if dry_run:
            await self._dry_run(await self._pools.get(pool_id), preview.spec)
        return preview

    async def running_manifest(self, pool_id: str, name: str) -> dict[str, Any]:
        """One of the pool's Pods as the cluster holds it now (what it actually runs, which
        the saved configuration's Pod may no longer be). ``NotFound`` for a Pod the pool does
        not have; ``Conflict`` for a pool whose agents have no manifest (local processes, agents
        started by hand)."""
        pool = await self._pools.get(pool_id)
        reader = self._runtimes.manifest_reader(pool.pool_type)
        if reader is None:
            if pool.pool_type is PoolType.k8s:
                self._runtimes.for_pool(pool)  # no cluster configured: it says how to add one
            raise Conflict(
                f"{pool.pool_id} is a {pool.pool_type} pool: its agents are processes, not Pods, "
                "and have no manifest"
            )
        namespace = self._runtimes.namespace(pool) or self._runtimes.default_namespace
        try:
            manifest = await reader.read_manifest(namespace, name)
        except RuntimeApiError as exc:
            raise RuntimeUnavailable(f"the Pod could not be read: {exc}") from exc
        labels = (manifest or {}).get("metadata", {}).get("labels") or {}
        if manifest is None or labels.get(POOL_LABEL) != pool.pool_id:
            raise NotFound(f"pool {pool.pool_id} has no Pod {name} in namespace {namespace}")
        return manifest

    async def _dry_run(self, pool: Pool, spec: AgentSpec) -> dict[str, Any]:
        runtime = self._runtimes.dry_runner(pool.pool_type)
        if runtime is None:
            if pool.pool_type is PoolType.k8s:
                self._runtimes.for_pool(pool)  # no cluster configured: it says how to add one
            raise Conflict(f"a dry run needs a k8s pool; {pool.pool_id} is {pool.pool_type}")
        try:
            admitted = await runtime.dry_run(spec)
        except PermanentRuntimeError as exc:
            detail = Issue("k8s_config", f"the API server refused the Pod: {exc.message}")
            raise Invalid("the cluster refused the Pod (dry run)", [detail]) from exc
        except RuntimeApiError as exc:
            raise RuntimeUnavailable(f"the dry run could not reach a verdict: {exc}") from exc
        return admitted
