"""Replicas on one database: ``leadership``, the controller's lease (one row, 'controller',
inserted here: nobody leads yet, term 0), and ``replicas``, the server processes as each last
said. Down: both tables are dropped.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | None = None
depends_on: str | None = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    leadership = op.create_table(
        "leadership",
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("replica_id", sa.String(length=200), nullable=True),
        sa.Column("term", sa.BigInteger(), nullable=False),
        sa.Column("acquired_at", TIMESTAMP, nullable=True),
        sa.Column("renewed_at", TIMESTAMP, nullable=True),
        sa.Column("expires_at", TIMESTAMP, nullable=True),
        sa.Column("pod_settings", sa.Text(), nullable=True),
        sa.Column("first_pass_at", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_leadership")),
    )
    op.bulk_insert(leadership, [{"name": "controller", "term": 0}])
    op.create_table(
        "replicas",
        sa.Column("replica_id", sa.String(length=200), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(length=60), nullable=False),
        sa.Column("started_at", TIMESTAMP, nullable=False),
        sa.Column("last_seen_at", TIMESTAMP, nullable=False),
        sa.Column("stopping", sa.Boolean(), nullable=False),
        sa.Column("pod_settings", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("replica_id", name=op.f("pk_replicas")),
    )


def downgrade() -> None:
    op.drop_table("replicas")
    op.drop_table("leadership")
