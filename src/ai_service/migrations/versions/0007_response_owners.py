"""Responses API: which user each response created through the gateway belongs to

`api_response_owners` holds one row per response id the gateway relayed (its
user), so that `GET /responses/{id}` and `previous_response_id` serve only the
user a response was made for.

Revision ID: 0007_response_owners
Revises: 0006_request_surface
Create Date: 2026-11-30 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_response_owners"
down_revision: str | None = "0006_request_surface"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "api_response_owners",
        sa.Column("response_id", sa.String(200), primary_key=True),
        sa.Column("user_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["api_users.id"]),
    )
    op.create_index(
        "ix_api_response_owners_user_id", "api_response_owners", ["user_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_api_response_owners_user_id", table_name="api_response_owners")
    op.drop_table("api_response_owners")
