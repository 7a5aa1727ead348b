"""Why a Pod ended (``k8s_pods.end_cause``, ``end_by``), and the indexes the retention sweep
deletes by (``tasks.finished_at``, ``pool_events.at``).

Pods slotpool was deleting when this runs (``terminating`` with slotpool's reason) are marked
``removed`` (deleted by slotpool), so they end ``deleted``, not ``failed``; those deleted by
someone else keep no cause.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("k8s_pods") as batch:
        batch.add_column(sa.Column("end_cause", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("end_by", sa.String(length=200), nullable=True))
    op.execute(
        "UPDATE k8s_pods SET end_cause = 'removed' WHERE state = 'terminating' "
        "AND reason <> '' AND reason NOT LIKE '%not by slotpool'"
    )
    op.create_index("ix_tasks_finished_at", "tasks", ["finished_at"])
    op.create_index("ix_pool_events_at", "pool_events", ["at"])


def downgrade() -> None:
    op.drop_index("ix_pool_events_at", table_name="pool_events")
    op.drop_index("ix_tasks_finished_at", table_name="tasks")
    op.execute("UPDATE k8s_pods SET state = 'failed' WHERE state = 'deleted'")
    with op.batch_alter_table("k8s_pods") as batch:
        batch.drop_column("end_by")
        batch.drop_column("end_cause")
