"""retention: daily usage totals, the retention job's state, a time index on requests

`api_usage_daily` keeps what the settled requests of each UTC day came to (by
user, key, provider, model and status), written by the retention job, so that
usage over whole days reads a few rows and survives the pruning of the day's
request rows; `api_retention` is where the job stands. On PostgreSQL a BRIN
index on `api_requests.created_at` finds a time range among millions of rows.

Revision ID: 0012_usage_daily
Revises: 0011_webhooks
Create Date: 2026-11-30 15:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_usage_daily"
down_revision: str | None = "0011_webhooks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "api_usage_daily",
        sa.Column("id", BIGINT, primary_key=True, autoincrement=True),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("user_id", BIGINT, nullable=True),
        sa.Column("key_id", BIGINT, nullable=True),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("model", sa.String(200), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("prompt_tokens", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("completion_tokens", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("cached_tokens", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("cost", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("uncollected", sa.BigInteger(), nullable=False, server_default="0"),
    )
    op.create_index("ix_api_usage_daily_day", "api_usage_daily", ["day"])
    op.create_table(
        "api_retention",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("rolled_until", sa.Date(), nullable=True),
        sa.Column("pruned_until", sa.Date(), nullable=True),
        sa.Column("payloads_checked_id", sa.BigInteger(), nullable=False, server_default="0"),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.create_index(
            "ix_api_requests_created_brin",
            "api_requests",
            ["created_at"],
            postgresql_using="brin",
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_api_requests_created_brin", table_name="api_requests")
    op.drop_table("api_retention")
    op.drop_index("ix_api_usage_daily_day", table_name="api_usage_daily")
    op.drop_table("api_usage_daily")
