"""Agent tokens per pool.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "pool_tokens",
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("pool_id", sa.String(length=21), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("expires_at", TIMESTAMP, nullable=True),
        sa.Column("revoked_at", TIMESTAMP, nullable=True),
        sa.Column("last_used_at", TIMESTAMP, nullable=True),
        sa.ForeignKeyConstraint(
            ["pool_id"],
            ["agent_pools.pool_id"],
            name=op.f("fk_pool_tokens_pool_id_agent_pools"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pool_tokens")),
        sa.UniqueConstraint("pool_id", "name", name="uq_pool_tokens_pool_id_name"),
        sa.UniqueConstraint("token_hash", name=op.f("uq_pool_tokens_token_hash")),
    )
    op.create_index(op.f("ix_pool_tokens_pool_id"), "pool_tokens", ["pool_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_pool_tokens_pool_id"), table_name="pool_tokens")
    op.drop_table("pool_tokens")
