"""Task logs: the ``stream`` a chunk comes from (stdout or stderr); chunks stored before are
standard output, as the agent mixed both into it.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("task_logs") as batch:
        batch.add_column(
            sa.Column("stream", sa.String(length=8), nullable=False, server_default="stdout")
        )


def downgrade() -> None:
    with op.batch_alter_table("task_logs") as batch:
        batch.drop_column("stream")
