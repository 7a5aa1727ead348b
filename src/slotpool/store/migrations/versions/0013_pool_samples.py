"""Pool history: ``pool_samples``, a pool's slots, queue and Pods over time (the pool page's
chart), one row per pool and sampling instant; retention deletes by ``at``.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | None = None
depends_on: str | None = None

TIMESTAMP = sa.DateTime(timezone=True)
COUNTS = (
    "slots_busy",
    "slots_reserved",
    "slots_idle",
    "tasks_queued",
    "tasks_awaiting_approval",
    "pods_pending",
    "pods_starting",
    "pods_ready",
    "pods_stopping",
)


def upgrade() -> None:
    op.create_table(
        "pool_samples",
        sa.Column("pool_id", sa.String(length=21), nullable=False),
        sa.Column("at", TIMESTAMP, nullable=False),
        *(sa.Column(name, sa.Integer(), nullable=False) for name in COUNTS),
        sa.Column("pods_desired", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("pool_id", "at", name=op.f("pk_pool_samples")),
    )
    op.create_index("ix_pool_samples_at", "pool_samples", ["at"])


def downgrade() -> None:
    op.drop_index("ix_pool_samples_at", table_name="pool_samples")
    op.drop_table("pool_samples")
