"""webhooks: the outbox of alert events, the state of balance alerts, job leases

`api_webhook_events` is the durable outbox the delivery workers claim events
from; `api_balance_alerts` remembers, per user, whether the current
`balance.low` alert has fired; `api_leases` lets one instance at a time run
the scan that finds the events due. `api_users.low_balance_nano` is a user's
own `balance.low` threshold (NULL: the configured default).

Revision ID: 0011_webhooks
Revises: 0009_budgets
Create Date: 2026-12-03 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_webhooks"
down_revision: str | None = "0009_budgets"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("api_users") as batch:
        batch.add_column(sa.Column("low_balance_nano", sa.BigInteger(), nullable=True))
    op.create_table(
        "api_webhook_events",
        sa.Column("id", BIGINT, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(40), nullable=False, unique=True),
        sa.Column("type", sa.String(40), nullable=False),
        sa.Column("dedup_key", sa.String(200), nullable=False, unique=True),
        sa.Column("user_id", BIGINT, sa.ForeignKey("api_users.id"), nullable=True),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("next_attempt_at", WHEN, nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("delivered_at", WHEN, nullable=True),
    )
    op.create_index(
        "ix_api_webhook_events_due", "api_webhook_events", ["status", "next_attempt_at"]
    )
    op.create_table(
        "api_balance_alerts",
        sa.Column("user_id", BIGINT, sa.ForeignKey("api_users.id"), primary_key=True),
        sa.Column("episode", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("fired", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.create_table(
        "api_leases",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("holder", sa.String(64), nullable=False),
        sa.Column("expires_at", WHEN, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("api_leases")
    op.drop_table("api_balance_alerts")
    op.drop_index("ix_api_webhook_events_due", table_name="api_webhook_events")
    op.drop_table("api_webhook_events")
    with op.batch_alter_table("api_users") as batch:
        batch.drop_column("low_balance_nano")
