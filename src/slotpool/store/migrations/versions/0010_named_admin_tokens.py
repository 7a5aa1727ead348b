"""Admin tokens: names made unique (they are what audit fields record), who made each, expiry,
revocation and last use.

Names given twice before (every generated token was "admin") keep their first holder; the others
get their row id appended, as does any token named "configured" (the name of the settings' token).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | None = None
depends_on: str | None = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.execute(
        "UPDATE admin_tokens SET name = SUBSTR(name, 1, 80) || '-' || CAST(id AS VARCHAR(20)) "
        "WHERE name = 'configured' "
        "OR id NOT IN (SELECT MIN(id) FROM admin_tokens GROUP BY name)"
    )
    with op.batch_alter_table("admin_tokens") as batch:
        batch.add_column(
            sa.Column(
                "created_by", sa.String(length=200), server_default="slotpool", nullable=False
            )
        )
        batch.add_column(sa.Column("expires_at", TIMESTAMP, nullable=True))
        batch.add_column(sa.Column("revoked_at", TIMESTAMP, nullable=True))
        batch.add_column(sa.Column("last_used_at", TIMESTAMP, nullable=True))
        batch.create_unique_constraint(op.f("uq_admin_tokens_name"), ["name"])


def downgrade() -> None:
    with op.batch_alter_table("admin_tokens") as batch:
        batch.drop_constraint(op.f("uq_admin_tokens_name"), type_="unique")
        batch.drop_column("last_used_at")
        batch.drop_column("revoked_at")
        batch.drop_column("expires_at")
        batch.drop_column("created_by")
