"""Pools, freeze schedules and admin tokens.

Revision ID: 0001
Revises:
Create Date: 2026-11-23

Migrations spell their column types out instead of importing the models, so that later model
changes cannot rewrite history.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

TIMESTAMP = sa.DateTime(timezone=True)
JSON_DOCUMENT = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "admin_tokens",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_admin_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_admin_tokens_token_hash")),
    )
    op.create_table(
        "agent_pools",
        sa.Column("pool_id", sa.String(length=21), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("pool_type", sa.String(length=16), nullable=False),
        sa.Column("k8s_config", JSON_DOCUMENT, nullable=True),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("one_time_unfreeze_until", TIMESTAMP, nullable=True),
        sa.Column("one_time_unfreeze_by", sa.String(length=200), nullable=True),
        sa.Column("one_time_unfreeze_at", TIMESTAMP, nullable=True),
        sa.Column("one_time_unfreeze_note", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_by", sa.String(length=200), nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.CheckConstraint(
            "pool_type IN ('k8s', 'local', 'static')", name=op.f("ck_agent_pools_pool_type")
        ),
        sa.PrimaryKeyConstraint("pool_id", name=op.f("pk_agent_pools")),
        sa.UniqueConstraint("name", name=op.f("uq_agent_pools_name")),
    )
    op.create_table(
        "freeze_schedules",
        sa.Column("id", sa.String(length=15), nullable=False),
        sa.Column("pool_id", sa.String(length=21), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("from_time", sa.String(length=5), nullable=False),
        sa.Column("to_time", sa.String(length=5), nullable=False),
        sa.Column("weekdays", JSON_DOCUMENT, nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=True),
        sa.Column("policy", sa.String(length=16), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.CheckConstraint("from_time <> to_time", name=op.f("ck_freeze_schedules_has_length")),
        sa.ForeignKeyConstraint(
            ["pool_id"],
            ["agent_pools.pool_id"],
            name=op.f("fk_freeze_schedules_pool_id_agent_pools"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_freeze_schedules")),
    )
    op.create_index(
        op.f("ix_freeze_schedules_pool_id"), "freeze_schedules", ["pool_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_freeze_schedules_pool_id"), table_name="freeze_schedules")
    op.drop_table("freeze_schedules")
    op.drop_table("agent_pools")
    op.drop_table("admin_tokens")
