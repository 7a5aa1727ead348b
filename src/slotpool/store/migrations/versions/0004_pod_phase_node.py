"""Pods: the runtime's phase and the Node a Pod runs on.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("k8s_pods") as batch:
        batch.add_column(sa.Column("phase", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("node", sa.String(length=253), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("k8s_pods") as batch:
        batch.drop_column("node")
        batch.drop_column("phase")
