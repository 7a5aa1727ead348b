"""Pools and their configuration: create, read, rename, delete, save a config, preview its Pod."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from slotpool.clock import Clock
from slotpool.domain.agent_spec import AgentSpec, PodContext, agent_spec
from slotpool.domain.audit import AuditEntry
from slotpool.domain.config import PoolConfig, PoolType, check_config, config_hash_of
from slotpool.domain.errors import ConfigInvalid
from slotpool.domain.freeze import FreezeSchedule
from slotpool.domain.leadership import PodSettings
from slotpool.domain.manifest import pod_manifest
from slotpool.domain.pools import Pool, StoredConfig, has_effective_config
from slotpool.domain.signals import Signal
from slotpool.services.errors import Conflict, Invalid, NotFound, PreconditionFailed
from slotpool.services.ids import new_pool_id, new_schedule_id
from slotpool.settings import Settings
from slotpool.store.errors import Conflict as StoreConflict
from slotpool.store.errors import StaleRevision
from slotpool.store.pools import NewPool, PoolPage, StoredPool
from slotpool.store.uow import Store, UnitOfWork


@dataclass(frozen=True)
class Preview:
    """The agent a config makes, and its Pod as the Kubernetes runtime would create it."""

    spec: AgentSpec
    manifest: dict[str, Any]

    @property
    def config_hash(self) -> str:
        return self.spec.config_hash


def invalid(exc: ConfigInvalid) -> Invalid:
    return Invalid(f"{exc.summary}: nothing was saved", exc.issues)


async def require_pool(uow: UnitOfWork, pool_id: str) -> Pool:
    pool = await uow.pools.get(pool_id)
    if pool is None:
        raise NotFound(f"agent pool {pool_id} not found")
    return pool


def stale(pool_id: str, current: int, expected: int) -> PreconditionFailed:
    return PreconditionFailed(
        f"agent pool {pool_id} is at revision {current}, not {expected}: "
        "it was changed meanwhile; read it again and retry"
    )


def check_revision(pool: Pool, expected: int | None) -> None:
    """Refuse early what the conditional write (``edit_pool``) would refuse anyway."""
    if expected is not None and expected != pool.revision:
        raise stale(pool.pool_id, pool.revision, expected)


def audit_pool(
    uow: UnitOfWork,
    action: str,
    pool: Pool,
    *,
    by: str,
    before: int | None,
    after: int | None,
    **target: str | list[str] | None,
) -> None:
    """The audit line of a change of ``pool`` (written once the unit of work commits)."""
    named = {"pool_id": pool.pool_id, "pool_name": pool.name, **target}
    uow.audit(AuditEntry(action, by, named, revision_before=before, revision_after=after))


async def edit_pool(
    uow: UnitOfWork,
    pool_id: str,
    *,
    action: str,
    by: str,
    now: datetime,
    expected_revision: int | None = None,
    audited: dict[str, str | list[str] | None] | None = None,
    **fields: Any,
) -> Pool:
    """Every edit of a pool starts here: one conditional UPDATE moves its revision by one (only
    from ``expected_revision``, when given: 412 otherwise) and sets ``fields``. Whatever else the
    edit changes (its windows) is read from the pool this returns, which nobody else can edit
    until the unit of work ends. Its audit line (``action``, by whom, the revision before and
    after, and what ``audited`` adds) is written here too, once the unit of work commits."""
    try:
        pool = await uow.pools.update(
            pool_id, by=by, now=now, expected_revision=expected_revision, **fields
        )
    except StoreConflict as exc:
        raise Conflict(str(exc)) from None
    except StaleRevision as exc:
        assert expected_revision is not None  # only a conditional write finds a stale one
        raise stale(pool_id, exc.current, expected_revision) from None
    if pool is None:
        raise NotFound(f"agent pool {pool_id} not found")
    audit_pool(
        uow, action, pool, by=by, before=pool.revision - 1, after=pool.revision, **(audited or {})
    )
    return pool


def with_schedule_ids(
    schedules: list[FreezeSchedule], existing: Sequence[FreezeSchedule] = ()
) -> list[FreezeSchedule]:
    """Give windows sent without an id one. A window equal to a stored one keeps that one's id,
    so re-sending the same configuration (as the seed's client does) leaves the ids alone."""
    named = {s.id for s in schedules if s.id}
    free = [s for s in existing if s.id not in named]
    out = []
    for schedule in schedules:
        if not schedule.id:
            same = next((s for s in free if s.model_copy(update={"id": None}) == schedule), None)
            if same is not None:
                free.remove(same)
            schedule = schedule.model_copy(update={"id": same.id if same else new_schedule_id()})
        out.append(schedule)
    return out


class PoolService:
    def __init__(self, store: Store, settings: Settings, clock: Clock) -> None:
        self._store = store
        self._settings = settings
        self._clock = clock
        self.own_pod_settings = PodSettings(
            public_url=settings.public_url, default_namespace=settings.default_namespace
        )
        self._pod_settings = self.own_pod_settings

    def now(self) -> datetime:
        return self._clock()

    def use_pod_settings(self, settings: PodSettings) -> None:
        """Build Pods (their previews and config hashes) with ``settings``: the leader's, which
        the election (``services/cluster.py``) reads; this server's own until a leader is
        known. Replicas configured differently so build the same Pods, and do not rebuild each
        other's."""
        self._pod_settings = settings

    @property
    def pod_settings(self) -> PodSettings:
        return self._pod_settings

    @property
    def default_namespace(self) -> str:
        return self._pod_settings.default_namespace

    def pod_context(self, pool: Pool) -> PodContext:
        return PodContext(
            pool_id=pool.pool_id,
            control_plane_url=self._pod_settings.public_url,
            default_namespace=self._pod_settings.default_namespace,
            token_generation=pool.token_generation,
        )

    def config_hash(self, pool: Pool) -> str | None:
        """The config hash of the Pods this server builds for ``pool`` now (their
        ``slotpool.io/config-hash``): the pool's stored Pod fields in this server's context,
        no dump of its configuration."""
        return pool.config_hash(self.pod_context(pool))

    def stored_config_hash(self, pool: StoredPool) -> str | None:
        """``config_hash`` of a pool as stored, without rebuilding it: its Pod fields, and the
        namespace its stored configuration names, in this server's context."""
        row = pool.columns
        saved = row["k8s_config"]
        pool_type = PoolType(row["pool_type"])
        if pool.pod_fields is None or not has_effective_config(pool_type, saved=bool(saved)):
            return None
        context = PodContext(
            pool_id=row["pool_id"],
            control_plane_url=self._pod_settings.public_url,
            default_namespace=self._pod_settings.default_namespace,
            token_generation=row["token_generation"] or 0,
        )
        namespace = None if saved is None else saved.get("namespace")
        return config_hash_of(pool.pod_fields, context=context.hash_inputs_for(namespace))

    async def list(self, *, limit: int, offset: int, name: str | None) -> tuple[list[Pool], int]:
        async with self._store.reading() as uow:
            return await uow.pools.list(limit=limit, offset=offset, name=name)

    async def page(self, *, limit: int, offset: int, name: str | None) -> PoolPage:
        """The same page as ``list``, as stored (the pool list shows it without rebuilding)."""
        async with self._store.reading() as uow:
            return await uow.pools.page(limit=limit, offset=offset, name=name)

    async def get(self, pool_id: str) -> Pool:
        async with self._store.reading() as uow:
            pool = await uow.pools.read(pool_id)
        if pool is None:
            raise NotFound(f"agent pool {pool_id} not found")
        return pool

    async def create(
        self,
        *,
        name: str,
        description: str,
        pool_type: PoolType,
        config: PoolConfig | None,
        by: str,
    ) -> Pool:
        if config is not None:
            config = self._checked(config, pool_type)
        new = NewPool(
            pool_id=new_pool_id(),
            name=name,
            description=description,
            pool_type=pool_type,
            config=config,
            by=by,
            now=self._clock(),
        )
        async with self._store.unit_of_work() as uow:
            try:
                await uow.pools.add(new)
            except StoreConflict as exc:
                raise Conflict(str(exc)) from None
            if config is not None and config.freeze_schedules:
                await uow.pools.replace_schedules(
                    new.pool_id, with_schedule_ids(config.freeze_schedules), now=new.now
                )
            uow.signal(Signal.pool_config(new.pool_id))  # its controller starts now if it can run
            pool = await require_pool(uow, new.pool_id)
            audit_pool(uow, "pool.create", pool, by=by, before=None, after=pool.revision)
            return pool

    async def update(
        self, pool_id: str, *, changes: dict[str, str], by: str, expected_revision: int | None
    ) -> Pool:
        async with self._store.unit_of_work() as uow:
            return await edit_pool(
                uow,
                pool_id,
                action="pool.rename" if "name" in changes else "pool.edit",
                by=by,
                now=self._clock(),
                expected_revision=expected_revision,
                audited={"fields": sorted(changes)},
                **changes,
            )

    async def delete(self, pool_id: str, *, by: str) -> None:
        async with self._store.unit_of_work() as uow:
            pool = await require_pool(uow, pool_id)
            if not await uow.pools.delete(pool_id):
                raise NotFound(f"agent pool {pool_id} not found")
            audit_pool(uow, "pool.delete", pool, by=by, before=pool.revision, after=None)

    async def save_config(
        self, pool_id: str, config: PoolConfig, *, by: str, expected_revision: int | None
    ) -> Pool:
        """Validate and store; windows are replaced only when the payload carries the key."""
        now = self._clock()
        async with self._store.unit_of_work() as uow:
            pool = await require_pool(uow, pool_id)
            check_revision(pool, expected_revision)
            config = self._checked(config, pool.pool_type)
            saved = await edit_pool(
                uow,
                pool_id,
                action="pool.config.save",
                by=by,
                now=now,
                expected_revision=expected_revision,
                config=StoredConfig.of(pool.pool_type, config),
            )
            if config.freeze_schedules is not None:
                windows = with_schedule_ids(config.freeze_schedules, saved.freeze_schedules)
                await uow.pools.replace_schedules(pool_id, windows, now=now)
            uow.signal(Signal.pool_config(pool_id))  # read again: it may have become one to keep
            return await require_pool(uow, pool_id)

    async def preview(self, pool_id: str, candidate: PoolConfig | None) -> Preview:
        pool = await self.get(pool_id)
        if pool.pool_type is PoolType.static:
            raise Conflict(f"{pool_id} is a static pool: its agents are started by hand, no Pods")
        config = pool.effective_config()
        if candidate is not None:
            config = self._checked(candidate, pool.pool_type)
        if config is None:
            raise Conflict(
                f"agent pool {pool_id} has no configuration yet: PUT /k8s-config first, "
                "or POST a candidate configuration to /pod-preview"
            )
        spec = agent_spec(config, self.pod_context(pool))
        return Preview(spec=spec, manifest=pod_manifest(spec))

    @staticmethod
    def _checked(config: PoolConfig, pool_type: PoolType) -> PoolConfig:
        try:
            return check_config(config, pool_type=pool_type)
        except ConfigInvalid as exc:
            raise invalid(exc) from None
