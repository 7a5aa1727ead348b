"""Pool events: the controller's decisions and actions, with their inputs and reasons.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None

TIMESTAMP = sa.DateTime(timezone=True)
JSON_DOCUMENT = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "pool_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("pool_id", sa.String(length=21), nullable=False),
        sa.Column("at", TIMESTAMP, nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("pod", sa.String(length=253), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("inputs", JSON_DOCUMENT, nullable=False),
        sa.ForeignKeyConstraint(
            ["pool_id"],
            ["agent_pools.pool_id"],
            name=op.f("fk_pool_events_pool_id_agent_pools"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pool_events")),
    )
    op.create_index("ix_pool_events_pool_id_id", "pool_events", ["pool_id", "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_pool_events_pool_id_id", table_name="pool_events")
    op.drop_table("pool_events")
