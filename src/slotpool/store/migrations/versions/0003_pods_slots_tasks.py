"""Pods, their slots, tasks and task logs.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

TIMESTAMP = sa.DateTime(timezone=True)
JSON_DOCUMENT = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "k8s_pods",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("pool_id", sa.String(length=21), nullable=False),
        sa.Column("name", sa.String(length=253), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("config_hash", sa.String(length=64), nullable=True),
        sa.Column("slots", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("agent_version", sa.String(length=64), nullable=True),
        sa.Column("registered_at", TIMESTAMP, nullable=True),
        sa.Column("last_heartbeat_at", TIMESTAMP, nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["pool_id"],
            ["agent_pools.pool_id"],
            name=op.f("fk_k8s_pods_pool_id_agent_pools"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_k8s_pods")),
        sa.UniqueConstraint("pool_id", "name", name="uq_k8s_pods_pool_id_name"),
    )
    op.create_index(op.f("ix_k8s_pods_pool_id"), "k8s_pods", ["pool_id"], unique=False)
    op.create_table(
        "pod_slots",
        sa.Column("pod_id", sa.Integer(), nullable=False),
        sa.Column("slot_index", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("task_id", sa.String(length=24), nullable=True),
        sa.Column("since", TIMESTAMP, nullable=False),
        sa.CheckConstraint(
            "state IN ('idle', 'busy', 'reserved')", name=op.f("ck_pod_slots_state")
        ),
        sa.ForeignKeyConstraint(
            ["pod_id"],
            ["k8s_pods.id"],
            name=op.f("fk_pod_slots_pod_id_k8s_pods"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pod_id", "slot_index", name=op.f("pk_pod_slots")),
    )
    op.create_index(op.f("ix_pod_slots_task_id"), "pod_slots", ["task_id"], unique=False)
    op.create_table(
        "tasks",
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("pool_id", sa.String(length=21), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("env", JSON_DOCUMENT, nullable=False),
        sa.Column("labels", JSON_DOCUMENT, nullable=False),
        sa.Column("steps", JSON_DOCUMENT, nullable=False),
        sa.Column("results", JSON_DOCUMENT, nullable=False),
        sa.Column("current_step", sa.Integer(), nullable=False),
        sa.Column("pod_id", sa.Integer(), nullable=True),
        sa.Column("pod_name", sa.String(length=253), nullable=True),
        sa.Column("slot_index", sa.Integer(), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("started_at", TIMESTAMP, nullable=True),
        sa.Column("step_started_at", TIMESTAMP, nullable=True),
        sa.Column("finished_at", TIMESTAMP, nullable=True),
        sa.Column("reserved_until", TIMESTAMP, nullable=True),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["pool_id"],
            ["agent_pools.pool_id"],
            name=op.f("fk_tasks_pool_id_agent_pools"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tasks")),
    )
    op.create_index(
        "ix_tasks_pool_status_created", "tasks", ["pool_id", "status", "created_at"], unique=False
    )
    op.create_table(
        "task_logs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("task_id", sa.String(length=24), nullable=False),
        sa.Column("step_index", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["task_id"], ["tasks.id"], name=op.f("fk_task_logs_task_id_tasks"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_logs")),
        sa.UniqueConstraint("task_id", "step_index", "seq", name="uq_task_logs_task_step_seq"),
    )


def downgrade() -> None:
    op.drop_table("task_logs")
    op.drop_index("ix_tasks_pool_status_created", table_name="tasks")
    op.drop_table("tasks")
    op.drop_index(op.f("ix_pod_slots_task_id"), table_name="pod_slots")
    op.drop_table("pod_slots")
    op.drop_index(op.f("ix_k8s_pods_pool_id"), table_name="k8s_pods")
    op.drop_table("k8s_pods")
