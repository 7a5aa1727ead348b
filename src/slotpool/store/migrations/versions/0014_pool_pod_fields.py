"""Pools keep their configuration's part of the config hash: ``agent_pools.pod_fields`` (the Pod
fields as hashed, ``domain.config.pod_fields``) and ``pod_fields_revision`` (the pool's revision
they were written at), so reading a pool's hash no longer dumps its configuration.

Existing rows are filled here with the code's own functions, the ones the server writes with:
a stored configuration is rebuilt as the server reads it (``domain.trusted``), and its Pod fields
are taken from what it makes effective for the pool's type. Down: the columns are dropped.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

from slotpool.domain.config import PoolConfig, PoolType
from slotpool.domain.pools import stored_pod_fields
from slotpool.domain.trusted import trusted

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | None = None
depends_on: str | None = None

POOLS = sa.table(
    "agent_pools",
    sa.column("pool_id", sa.String()),
    sa.column("pool_type", sa.String()),
    sa.column("k8s_config", sa.JSON()),
    sa.column("revision", sa.Integer()),
    sa.column("pod_fields", sa.Text()),
    sa.column("pod_fields_revision", sa.Integer()),
)


def upgrade() -> None:
    with op.batch_alter_table("agent_pools") as batch:
        batch.add_column(sa.Column("pod_fields", sa.Text(), nullable=True))
        batch.add_column(sa.Column("pod_fields_revision", sa.Integer(), nullable=True))
    backfill(op.get_bind())


def backfill(connection: sa.Connection) -> None:
    """Every pool's ``pod_fields`` as the server computes them now, at its current revision."""
    rows = connection.execute(
        sa.select(POOLS.c.pool_id, POOLS.c.pool_type, POOLS.c.k8s_config, POOLS.c.revision)
    ).all()
    values = [
        {"id": pool_id, "fields": pod_fields_of(pool_type, stored), "at": at}
        for pool_id, pool_type, stored, at in rows
    ]
    if values:
        connection.execute(
            POOLS.update()
            .where(POOLS.c.pool_id == sa.bindparam("id"))
            .values(pod_fields=sa.bindparam("fields"), pod_fields_revision=sa.bindparam("at")),
            values,
        )


def pod_fields_of(pool_type: str, stored: dict[str, Any] | None) -> str | None:
    config = None if stored is None else trusted(PoolConfig, stored)
    return stored_pod_fields(PoolType(pool_type), config)


def downgrade() -> None:
    with op.batch_alter_table("agent_pools") as batch:
        batch.drop_column("pod_fields_revision")
        batch.drop_column("pod_fields")
