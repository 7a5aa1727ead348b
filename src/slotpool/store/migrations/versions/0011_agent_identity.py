"""Agent identity: what proves a pod is one slotpool launched (``uid_digest``: the SHA-256 of
the Kubernetes Pod's UID, or of a local agent's launch secret), and the SHA-256 of the
credential its agent got when it registered (``credential_digest``; every later agent call
shows that credential, never the pool token).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("k8s_pods") as batch:
        batch.add_column(sa.Column("uid_digest", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("credential_digest", sa.String(length=64), nullable=True))
        batch.create_index("ix_k8s_pods_credential_digest", ["credential_digest"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("k8s_pods") as batch:
        batch.drop_index("ix_k8s_pods_credential_digest")
        batch.drop_column("credential_digest")
        batch.drop_column("uid_digest")
