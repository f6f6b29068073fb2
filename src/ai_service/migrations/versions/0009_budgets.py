"""Budgets: spend limits per period on users and keys, and the hourly spend they read

`api_budgets` holds the limits; `api_spend_hourly` what each key's settled
requests cost per hour of their start, kept by every settlement and filled
here from the requests already settled; a partial index finds the requests
in flight of a user or key.

Revision ID: 0009_budgets
Revises: 0008_key_policies
Create Date: 2026-11-30 11:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_budgets"
down_revision: str | None = "0008_key_policies"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
PENDING = sa.text("status = 'pending'")


def upgrade() -> None:
    op.create_table(
        "api_budgets",
        sa.Column("id", BIGINT, primary_key=True, autoincrement=True),
        sa.Column("user_id", BIGINT, sa.ForeignKey("api_users.id"), nullable=False),
        sa.Column("key_id", BIGINT, sa.ForeignKey("api_keys.id"), nullable=True),
        sa.Column("period", sa.String(16), nullable=False),
        sa.Column("rolling", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("limit_nano", sa.BigInteger(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
    )
    op.create_index("ix_api_budgets_user_id", "api_budgets", ["user_id"])
    op.create_index("ix_api_budgets_key_id", "api_budgets", ["key_id"])
    op.create_table(
        "api_spend_hourly",
        sa.Column("key_id", BIGINT, primary_key=True),
        sa.Column("hour", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("user_id", BIGINT, nullable=False),
        sa.Column("spent", sa.BigInteger(), nullable=False, server_default="0"),
    )
    op.create_index("ix_api_spend_hourly_user_hour", "api_spend_hourly", ["user_id", "hour"])
    op.create_index(
        "ix_api_requests_pending",
        "api_requests",
        ["user_id", "key_id"],
        postgresql_where=PENDING,
        sqlite_where=PENDING,
    )
    hour = (
        "date_trunc('hour', created_at, 'UTC')"
        if op.get_bind().dialect.name == "postgresql"
        else "substr(created_at, 1, 13) || ':00:00.000000'"
    )
    # `hour` is one of the two constant expressions above
    backfill = f"""
        INSERT INTO api_spend_hourly (key_id, hour, user_id, spent)
        SELECT key_id, {hour}, min(user_id), sum(cost) FROM api_requests
         WHERE status <> 'pending' AND cost > 0 AND key_id IS NOT NULL
         GROUP BY key_id, {hour}
    """  # noqa: S608
    op.execute(backfill)


def downgrade() -> None:
    op.drop_index("ix_api_requests_pending", table_name="api_requests")
    op.drop_index("ix_api_spend_hourly_user_hour", table_name="api_spend_hourly")
    op.drop_table("api_spend_hourly")
    op.drop_index("ix_api_budgets_key_id", table_name="api_budgets")
    op.drop_index("ix_api_budgets_user_id", table_name="api_budgets")
    op.drop_table("api_budgets")
