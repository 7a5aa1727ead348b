"""Pool events: ``pod`` as text. A ``create_pods`` event names every Pod it created, which can be
longer than one Pod name (253 characters), and PostgreSQL refused such events.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("pool_events") as batch:
        batch.alter_column("pod", existing_type=sa.String(length=253), type_=sa.Text())


def downgrade() -> None:
    with op.batch_alter_table("pool_events") as batch:
        batch.alter_column("pod", existing_type=sa.Text(), type_=sa.String(length=253))
