"""credential label: which pool credential served a request, and the stored credentials

`api_requests.credential` is the label of the upstream credential of the
provider's pool that served the request (never the key); NULL for a provider
without a pool and for the rows written before. `api_upstream_credentials`
holds the pool credentials operators add at run time (admin API, CLI,
dashboard): each key as a Fernet token or the name of an environment
variable, never in clear.

Revision ID: 0013_credential_label
Revises: 0012_usage_daily
Create Date: 2026-11-30 14:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013_credential_label"
down_revision: str | None = "0012_usage_daily"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("api_requests") as batch:
        batch.add_column(sa.Column("credential", sa.String(64), nullable=True))
    op.create_table(
        "api_upstream_credentials",
        sa.Column("id", BIGINT, primary_key=True, autoincrement=True),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("label", sa.String(64), nullable=False),
        sa.Column("key_encrypted", sa.Text(), nullable=True),
        sa.Column("key_env", sa.String(128), nullable=True),
        sa.Column("base_url", sa.Text(), nullable=True),
        sa.Column("weight", sa.Integer(), nullable=False, server_default="1"),
        sa.Column("rpm", sa.Integer(), nullable=True),
        sa.Column("tpm", sa.Integer(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.UniqueConstraint("provider", "label"),
    )


def downgrade() -> None:
    op.drop_table("api_upstream_credentials")
    with op.batch_alter_table("api_requests") as batch:
        batch.drop_column("credential")
