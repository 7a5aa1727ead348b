"""Pools: the token their Secret holds, its generation, and the token a rotation replaces.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("agent_pools") as batch:
        batch.add_column(sa.Column("agent_token", sa.String(length=63), nullable=True))
        batch.add_column(
            sa.Column("token_generation", sa.Integer(), server_default="0", nullable=False)
        )
        batch.add_column(sa.Column("rotating_from", sa.String(length=63), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("agent_pools") as batch:
        batch.drop_column("rotating_from")
        batch.drop_column("token_generation")
        batch.drop_column("agent_token")
