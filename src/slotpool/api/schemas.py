"""Request and response models: separate shapes for create, update and read.

The agent protocol's models are not here but in ``slotpool.protocol``, which the agent shares.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any, Self

from pydantic import AwareDatetime, BaseModel, Field, field_validator

from slotpool.domain.bounds import StrictModel
from slotpool.domain.config import PoolConfig, PoolType, stored_form
from slotpool.domain.events import PoolEvent
from slotpool.domain.freeze import FreezePolicy, FreezeSchedule, FreezeState
from slotpool.domain.pools import POOL_NAME_PATTERN, POOL_NAME_RULE, Pool
from slotpool.domain.tasks import Task, TaskStatus
from slotpool.domain.text import Text
from slotpool.domain.tokens import (
    TOKEN_NAME_PATTERN,
    TOKEN_NAME_RULE,
    AdminToken,
    PoolToken,
    TokenStatus,
)
from slotpool.domain.trusted import trusted
from slotpool.services.cluster import ClusterView, ReplicaView
from slotpool.services.stats import PoolCounts


def _pool_name(**kwargs: Any) -> Any:
    return Field(pattern=POOL_NAME_PATTERN, min_length=1, max_length=63, **kwargs)


class _In(StrictModel):
    pass


class PoolCreate(_In):
    name: str = _pool_name(description="Unique; " + POOL_NAME_RULE)
    description: Text = Field(default="", max_length=2000)
    pool_type: PoolType = PoolType.k8s
    k8s_config: PoolConfig | None = None


class PoolPatch(_In):
    name: str | None = _pool_name(default=None)
    description: Text | None = Field(default=None, max_length=2000)

    @field_validator("name", "description", mode="before")
    @classmethod
    def _not_null(cls, value: object) -> object:
        # Omit a field to keep it; an explicit null would otherwise be dropped without a word.
        if value is None:
            raise ValueError("cannot be null; omit the field to keep its value")
        return value

    def changes(self) -> dict[str, str]:
        return {k: v for k, v in self.model_dump(exclude_unset=True).items() if v is not None}


class UnfreezeIn(_In):
    until: AwareDatetime | None = Field(
        default=None, description="Lift the windows until then; default: the end of the freeze."
    )
    note: Text = Field(default="", max_length=500)


class WindowOut(BaseModel):
    schedule_id: str | None
    start: datetime
    end: datetime
    policy: FreezePolicy


class FreezeStateOut(BaseModel):
    active: bool
    policy: FreezePolicy | None
    until: datetime | None
    lifted_until: datetime | None
    windows: list[WindowOut]
    reason: str

    @classmethod
    def of(cls, state: FreezeState) -> FreezeStateOut:
        return trusted(cls, freeze_view(state))


def freeze_view(state: FreezeState) -> dict[str, Any]:
    """``FreezeStateOut``'s values (its enums as members: they serialise as their values)."""
    windows = [
        {"schedule_id": w.schedule_id, "start": w.start, "end": w.end, "policy": w.policy}
        for w in state.windows
    ]
    return {
        "active": state.active,
        "policy": state.policy,
        "until": state.until,
        "lifted_until": state.lifted_until,
        "windows": windows,
        "reason": state.reason(),
    }


class UnfreezeOut(BaseModel):
    until: datetime
    by: str
    at: datetime
    note: str


def schedule_view(schedule: FreezeSchedule) -> dict[str, Any]:
    return schedule.model_dump(mode="json", exclude_none=True)


def config_view(pool: Pool) -> dict[str, Any] | None:
    """The seed's ``k8s_config``: what was saved, with the pool's freeze windows inside it."""
    if pool.config is None and not pool.freeze_schedules:
        return None
    view = {} if pool.config is None else stored_form(pool.config)
    if pool.freeze_schedules:
        view["freeze_schedules"] = [schedule_view(s) for s in pool.freeze_schedules]
    return view


class PoolOut(BaseModel):
    pool_id: str
    name: str
    description: str
    pool_type: PoolType
    k8s_config: dict[str, Any] | None
    config_hash: str | None
    freeze: FreezeStateOut
    one_time_unfreeze: UnfreezeOut | None
    revision: int
    created_by: str
    created_at: datetime
    updated_by: str
    updated_at: datetime
    pods_ready: int = Field(description="Pods whose agent is registered and heartbeating.")
    pods_total: int = Field(description="Pods of the pool in any state (failed ones too).")
    slots_busy: int = Field(description="Slots running a task step.")
    slots_reserved: int = Field(description="Slots kept for a task awaiting approval.")
    slots_total: int = Field(description="Slots of the Pods not failed or terminating.")
    queued_tasks: int = Field(description="Tasks waiting for a slot.")
    agent_token: str | None = Field(
        default=None, description="The name of the token the pool's Secret holds."
    )
    token_generation: int = Field(
        default=0, description="Rotations of the Secret's token (part of the Pods' hash)."
    )
    no_pods_reason: str | None = Field(
        default=None,
        description=(
            "Why this server creates no Pods for the pool, and what to do: no runtime for its "
            "type (a k8s pool on a server without a cluster), no configuration, its runtime "
            "failing. null when nothing stands in the way (and for static pools)."
        ),
    )

    @classmethod
    def of(
        cls,
        pool: Pool,
        *,
        config_hash: str | None,
        freeze: FreezeState,
        counts: PoolCounts,
        no_pods_reason: str | None = None,
    ) -> PoolOut:
        """Built from the pool and what was worked out for it, without validating them again
        (``trusted``: every value here comes from slotpool itself)."""
        unfreeze = pool.unfreeze
        return trusted(
            cls,
            {
                "pool_id": pool.pool_id,
                "name": pool.name,
                "description": pool.description,
                "pool_type": pool.pool_type,
                "k8s_config": config_view(pool),
                "config_hash": config_hash,
                "freeze": FreezeStateOut.of(freeze),
                "one_time_unfreeze": None
                if unfreeze is None
                else {
                    "until": unfreeze.until,
                    "by": unfreeze.by,
                    "at": unfreeze.at,
                    "note": unfreeze.note,
                },
                "revision": pool.revision,
                "created_by": pool.created_by,
                "created_at": pool.created_at,
                "updated_by": pool.updated_by,
                "updated_at": pool.updated_at,
                **counts.fields(),
                "agent_token": pool.agent_token,
                "token_generation": pool.token_generation,
                "no_pods_reason": no_pods_reason,
            },
        )


class PoolList(BaseModel):
    items: list[PoolOut]
    total: int
    limit: int
    offset: int


class EventFields(BaseModel):
    """An answer made of a pool event's fields (the decision log, the history's marks): each
    field of the model taken from the event by its name."""

    @classmethod
    def of(cls, event: PoolEvent) -> Self:
        return cls(**{name: getattr(event, name) for name in cls.model_fields})


class RebuildOut(BaseModel):
    rebuilt: list[str] = Field(description="Idle Pods with the old config, deleted.")
    created: list[str] = Field(description="Their replacements, built from the saved config.")
    kept_busy: list[str] = Field(
        description="Outdated Pods kept because a slot is busy or reserved; rebuilt once idle."
    )


class ConfigSaved(BaseModel):
    message: str
    pool_id: str
    k8s_config: dict[str, Any] | None
    config_hash: str | None
    revision: int
    rebuild: RebuildOut | None = Field(
        default=None, description="What the save did to the pool's Pods (pools with a runtime)."
    )


class ErrorDetail(BaseModel):
    field: str
    message: str
    hint: str | None = None


class ErrorBody(BaseModel):
    error: str
    details: list[ErrorDetail]


class ScheduleList(BaseModel):
    items: list[dict[str, Any]]
    freeze: FreezeStateOut


class Message(BaseModel):
    message: str


class TokenCreate(_In):
    name: str = Field(
        pattern=TOKEN_NAME_PATTERN, description="Unique in the pool; " + TOKEN_NAME_RULE
    )
    expires_at: AwareDatetime | None = Field(default=None, description="Default: never expires.")


class TokenOut(BaseModel):
    id: str
    pool_id: str
    name: str
    status: TokenStatus
    created_by: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None

    @classmethod
    def of(cls, token: PoolToken, *, now: datetime) -> TokenOut:
        return cls.model_validate({**asdict(token), "status": token.status(now)})


class TokenCreated(TokenOut):
    token: str = Field(description="The token's value. Shown only in this answer; keep it.")


class TokenList(BaseModel):
    items: list[TokenOut]


class TokenRotate(_In):
    overlap_seconds: int = Field(
        default=3600,
        ge=0,
        le=7 * 86_400,
        description="How long the old token stays valid at most (the Secret's token: or until "
        "no Pod runs with it, whichever is first).",
    )


class TokenRotated(BaseModel):
    message: str
    old: TokenOut = Field(description="The rotated-out token, now expiring.")
    new: TokenOut
    token: str | None = Field(
        description="The new token's value, shown only in this answer; None for the Secret's "
        "token, whose value only the Secret holds."
    )
    secret: bool = Field(description="Whether this was the token in the pool's Secret.")
    rebuild: RebuildOut | None = Field(
        description="For the Secret's token: the Pods rebuilt to take the new token."
    )


class AdminTokenCreate(_In):
    name: str = Field(
        pattern=TOKEN_NAME_PATTERN,
        description="Unique; what audit fields record for this token's actions. "
        + TOKEN_NAME_RULE
        + "; not 'configured' (the name of SLOTPOOL_ADMIN_TOKEN)",
    )
    expires_at: AwareDatetime | None = Field(default=None, description="Default: never expires.")


class AdminTokenOut(BaseModel):
    name: str
    status: TokenStatus
    configured: bool = Field(
        description="SLOTPOOL_ADMIN_TOKEN of the server's settings: changed there, not here."
    )
    created_by: str | None
    created_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None = Field(description="Recorded at most once a minute.")

    @classmethod
    def of(cls, token: AdminToken, *, now: datetime) -> AdminTokenOut:
        return cls.model_validate(
            {**asdict(token), "status": token.status(now), "configured": token.configured}
        )


class AdminTokenCreated(AdminTokenOut):
    token: str = Field(description="The token's value. Shown only in this answer; keep it.")


class AdminTokenList(BaseModel):
    items: list[AdminTokenOut]


class StepOut(BaseModel):
    name: str
    run: str | None = None
    command: list[str] | None = None
    requires_approval: bool
    timeout_seconds: int | None = None


class TaskOut(BaseModel):
    id: str
    pool_id: str
    name: str
    status: TaskStatus
    reason: str
    env: dict[str, str]
    labels: dict[str, str]
    steps: list[StepOut]
    results: list[dict[str, Any]]
    current_step: int
    pod_name: str | None
    slot_index: int | None
    cancel_requested: bool
    created_by: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    reserved_until: datetime | None
    updated_at: datetime

    @classmethod
    def of(cls, task: Task) -> TaskOut:
        """The task's fields as they are, not validated again: a ``Task`` is typed, and its
        steps were validated when it was submitted (FastAPI's ``response_model`` takes an
        instance of its own class as it is, and serialises it once, to JSON)."""
        fields = {name: getattr(task, name) for name in _TASK_FIELDS}
        steps = [StepOut.model_construct(**step.model_dump()) for step in task.steps]
        return cls.model_construct(**fields, steps=steps, results=list(task.results))


_TASK_FIELDS = tuple(name for name in TaskOut.model_fields if name not in ("steps", "results"))


class TaskList(BaseModel):
    items: list[TaskOut]
    total: int
    limit: int
    offset: int


class LeaderOut(BaseModel):
    replica_id: str
    term: int = Field(description="Grows by one at each election.")
    since: datetime | None = Field(description="When this replica was elected.")
    lease_expires_at: datetime | None = Field(description="When its lease runs out unrenewed.")
    first_pass_at: datetime | None = Field(
        description="When its controller had passed over every pool once after its election "
        "(null until then)."
    )


class PodSettingsOut(BaseModel):
    public_url: str
    default_namespace: str


class ReplicaOut(BaseModel):
    replica_id: str
    host: str
    pid: int
    version: str
    started_at: datetime
    last_seen_at: datetime
    leader: bool
    stopping: bool = Field(description="It received SIGTERM: it hands over and drains.")
    pod_settings: PodSettingsOut | None = Field(
        description="Its own settings that shape a Pod (every replica builds with the leader's)."
    )
    agrees_with_leader: bool
    disagreements: list[str] = Field(
        description="Each Pod setting of this replica that is not the leader's, in words."
    )

    @classmethod
    def of(cls, view: ReplicaView) -> Self:
        r = view.replica
        return cls(
            replica_id=r.replica_id,
            host=r.host,
            pid=r.pid,
            version=r.version,
            started_at=r.started_at,
            last_seen_at=r.last_seen_at,
            leader=view.leader,
            stopping=r.stopping,
            pod_settings=(
                None if r.pod_settings is None else PodSettingsOut(**r.pod_settings.as_dict())
            ),
            agrees_with_leader=not view.disagreements,
            disagreements=view.disagreements,
        )


class ClusterOut(BaseModel):
    """The server processes on this database, and which one leads (runs the controller)."""

    database: str = Field(description="sqlite or postgresql.")
    lease_seconds: float
    self_: str = Field(alias="self", description="The replica that answered.")
    leader: LeaderOut | None = Field(description="Null while nobody leads.")
    replicas: list[ReplicaOut] = Field(
        description="Those heard from within the last three leases, by name."
    )

    model_config = {"populate_by_name": True, "serialize_by_alias": True}

    @classmethod
    def of(cls, view: ClusterView) -> Self:
        leader = view.leader
        return cls(
            database=view.database,
            lease_seconds=view.lease_seconds,
            self_=view.self_id,
            leader=(
                None
                if leader is None or leader.replica_id is None
                else LeaderOut(
                    replica_id=leader.replica_id,
                    term=leader.term,
                    since=leader.acquired_at,
                    lease_expires_at=leader.expires_at,
                    first_pass_at=leader.first_pass_at,
                )
            ),
            replicas=[ReplicaOut.of(r) for r in view.replicas],
        )
