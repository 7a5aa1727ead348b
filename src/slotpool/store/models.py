"""Tables. Names follow the seed (``agent_pools``) so its verification queries still work.

Timestamps are stored timezone-aware on PostgreSQL and as UTC on SQLite, and always come back
aware; JSON is JSONB on PostgreSQL. Constraint names follow one convention on both databases.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on both databases."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; pass an aware one")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JSONDocument = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class AgentPoolRow(Base):
    __tablename__ = "agent_pools"
    __table_args__ = (CheckConstraint("pool_type IN ('k8s', 'local', 'static')", name="pool_type"),)

    pool_id: Mapped[str] = mapped_column(String(21), primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    pool_type: Mapped[str] = mapped_column(String(16))
    k8s_config: Mapped[dict[str, Any] | None] = mapped_column(JSONDocument, nullable=True)
    revision: Mapped[int] = mapped_column(Integer, default=1)
    # The configuration's Pod fields as hashed (domain.config.pod_fields), written with it; read
    # as the pool's only while ``pod_fields_revision`` is the pool's revision (an edit by code
    # that does not know these columns leaves them behind, and they are computed again).
    pod_fields: Mapped[str | None] = mapped_column(Text, nullable=True)
    pod_fields_revision: Mapped[int | None] = mapped_column(Integer, nullable=True)
    one_time_unfreeze_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    one_time_unfreeze_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    one_time_unfreeze_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    one_time_unfreeze_note: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The pool's token Secret: which token it holds, its generation (counted in the Pods' config
    # hash once rotated), and the token a rotation replaced, revoked once no Pod runs with it.
    agent_token: Mapped[str | None] = mapped_column(String(63), nullable=True)
    token_generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    rotating_from: Mapped[str | None] = mapped_column(String(63), nullable=True)
    # The controller's back-off on Pod creation (domain.scaling.Backoff), kept across restarts.
    backoff_failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    backoff_last_failure_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_by: Mapped[str] = mapped_column(String(200))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    freeze_schedules: Mapped[list[FreezeScheduleRow]] = relationship(
        back_populates="pool",
        cascade="all, delete-orphan",
        order_by="FreezeScheduleRow.position",
        lazy="selectin",
        passive_deletes=True,
    )


class FreezeScheduleRow(Base):
    __tablename__ = "freeze_schedules"
    __table_args__ = (CheckConstraint("from_time <> to_time", name="has_length"),)

    id: Mapped[str] = mapped_column(String(15), primary_key=True)
    pool_id: Mapped[str] = mapped_column(
        ForeignKey("agent_pools.pool_id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column(Integer)
    from_time: Mapped[str] = mapped_column(String(5))
    to_time: Mapped[str] = mapped_column(String(5))
    weekdays: Mapped[list[int]] = mapped_column(JSONDocument)
    timezone: Mapped[str | None] = mapped_column(String(64), nullable=True)
    policy: Mapped[str] = mapped_column(String(16))
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    pool: Mapped[AgentPoolRow] = relationship(back_populates="freeze_schedules")


class AdminTokenRow(Base):
    """An admin token: only its hash is kept; its name is what audit fields record."""

    __tablename__ = "admin_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_by: Mapped[str] = mapped_column(String(200), server_default="slotpool")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class PoolTokenRow(Base):
    """An agent token of one pool: only its hash is kept; the value is shown once."""

    __tablename__ = "pool_tokens"
    __table_args__ = (UniqueConstraint("pool_id", "name", name="uq_pool_tokens_pool_id_name"),)

    id: Mapped[str] = mapped_column(String(24), primary_key=True)
    pool_id: Mapped[str] = mapped_column(
        ForeignKey("agent_pools.pool_id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(63))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class PodRow(Base):
    """A "pod" of a pool: a Kubernetes Pod, a local agent process, or a static agent."""

    __tablename__ = "k8s_pods"
    __table_args__ = (UniqueConstraint("pool_id", "name", name="uq_k8s_pods_pool_id_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    pool_id: Mapped[str] = mapped_column(
        ForeignKey("agent_pools.pool_id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(253))
    state: Mapped[str] = mapped_column(String(16))
    config_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    slots: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text, default="")
    # As the runtime last reported it: the Kubernetes phase and the Node it was scheduled to.
    phase: Mapped[str | None] = mapped_column(String(16), nullable=True)
    node: Mapped[str | None] = mapped_column(String(253), nullable=True)
    # Why slotpool ended it or is ending it (domain.pods.EndCause), and who asked, if someone did.
    end_cause: Mapped[str | None] = mapped_column(String(32), nullable=True)
    end_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    agent_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    registered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # What proves the pod is one slotpool launched: the SHA-256 of the Kubernetes Pod's UID or of
    # a local agent's launch secret (None for static agents and pods recorded before 0011).
    uid_digest: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # The SHA-256 of the credential its agent got at registration; None until it registered.
    credential_digest: Mapped[str | None] = mapped_column(
        String(64), nullable=True, unique=True, index=True
    )


class SlotRow(Base):
    """One slot of a pod. The dispatcher takes it with a conditional UPDATE (state = 'idle'),
    so two dispatchers can never give the same slot twice."""

    __tablename__ = "pod_slots"
    __table_args__ = (CheckConstraint("state IN ('idle', 'busy', 'reserved')", name="state"),)

    pod_id: Mapped[int] = mapped_column(
        ForeignKey("k8s_pods.id", ondelete="CASCADE"), primary_key=True
    )
    slot_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    task_id: Mapped[str | None] = mapped_column(String(24), nullable=True, index=True)
    since: Mapped[datetime] = mapped_column(UTCDateTime)


class TaskRow(Base):
    __tablename__ = "tasks"
    __table_args__ = (Index("ix_tasks_pool_status_created", "pool_id", "status", "created_at"),)

    id: Mapped[str] = mapped_column(String(24), primary_key=True)
    pool_id: Mapped[str] = mapped_column(ForeignKey("agent_pools.pool_id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(24))
    env: Mapped[dict[str, str]] = mapped_column(JSONDocument)
    labels: Mapped[dict[str, str]] = mapped_column(JSONDocument)
    steps: Mapped[list[dict[str, Any]]] = mapped_column(JSONDocument)
    results: Mapped[list[dict[str, Any]]] = mapped_column(JSONDocument)
    current_step: Mapped[int] = mapped_column(Integer)
    pod_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    pod_name: Mapped[str | None] = mapped_column(String(253), nullable=True)
    slot_index: Mapped[int | None] = mapped_column(Integer, nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    step_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True, index=True)
    reserved_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class TaskLogRow(Base):
    """Log chunks as the agent ships them; (task, step, seq) makes a resent chunk harmless."""

    __tablename__ = "task_logs"
    __table_args__ = (
        UniqueConstraint("task_id", "step_index", "seq", name="uq_task_logs_task_step_seq"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    step_index: Mapped[int] = mapped_column(Integer)
    seq: Mapped[int] = mapped_column(Integer)
    stream: Mapped[str] = mapped_column(String(8), server_default="stdout")  # or stderr
    data: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class PoolEventRow(Base):
    """One decision or action of a pool's controller: the inputs it saw, what, and why."""

    __tablename__ = "pool_events"
    __table_args__ = (Index("ix_pool_events_pool_id_id", "pool_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    pool_id: Mapped[str] = mapped_column(ForeignKey("agent_pools.pool_id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    action: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text)
    pod: Mapped[str | None] = mapped_column(Text, nullable=True)  # one name, or several
    outcome: Mapped[str] = mapped_column(String(16))
    inputs: Mapped[dict[str, Any]] = mapped_column(JSONDocument)


class PoolSampleRow(Base):
    """A pool's slots, queue and Pods at one instant (the history chart), written by the sampler
    when they changed, and at least every few minutes. ``at`` is on the sampling grid, so
    servers sampling one database write each instant once. No foreign key: a sample written
    while its pool is being deleted must not fail the batch; the pool's deletion deletes its
    samples, and retention any written after it."""

    __tablename__ = "pool_samples"

    pool_id: Mapped[str] = mapped_column(String(21), primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True, index=True)
    slots_busy: Mapped[int] = mapped_column(Integer)
    slots_reserved: Mapped[int] = mapped_column(Integer)
    slots_idle: Mapped[int] = mapped_column(Integer)
    tasks_queued: Mapped[int] = mapped_column(Integer)
    tasks_awaiting_approval: Mapped[int] = mapped_column(Integer)
    pods_pending: Mapped[int] = mapped_column(Integer)
    pods_starting: Mapped[int] = mapped_column(Integer)
    pods_ready: Mapped[int] = mapped_column(Integer)
    pods_stopping: Mapped[int] = mapped_column(Integer)
    pods_desired: Mapped[int | None] = mapped_column(Integer, nullable=True)


class LeadershipRow(Base):
    """The controller's lease: one row per name ('controller', inserted by the migration),
    naming the replica that leads and its term, which grows by one at each election. Times
    come from the database's clock on PostgreSQL, so replicas' clocks do not matter.
    ``pod_settings`` is the leader's Pod-shaping settings (JSON), which every replica builds
    with; ``first_pass_at`` is when its controller had passed over every pool once."""

    __tablename__ = "leadership"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    replica_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    term: Mapped[int] = mapped_column(BigInteger, default=0)
    acquired_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    renewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    pod_settings: Mapped[str | None] = mapped_column(Text, nullable=True)
    first_pass_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class ReplicaRow(Base):
    """A server process on this database, as it said at its last renewal (every
    ``SLOTPOOL_LEADER_RENEW_SECONDS``)."""

    __tablename__ = "replicas"

    replica_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    version: Mapped[str] = mapped_column(String(60))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    stopping: Mapped[bool] = mapped_column(Boolean, default=False)
    pod_settings: Mapped[str | None] = mapped_column(Text, nullable=True)
