"""Pools: the controller's creation back-off (failed rounds, the last failure), so a restart
resumes it instead of creating Pods that cannot start at full speed again.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("agent_pools") as batch:
        batch.add_column(
            sa.Column("backoff_failures", sa.Integer(), server_default="0", nullable=False)
        )
        batch.add_column(
            sa.Column("backoff_last_failure_at", sa.DateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("agent_pools") as batch:
        batch.drop_column("backoff_last_failure_at")
        batch.drop_column("backoff_failures")
