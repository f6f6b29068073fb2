"""exact billing: uncollected amounts, the price applied, price data files

`api_requests.uncollected` is the part of a request's cost that its user's
balance could not pay; `api_requests.price_detail` records the rates applied
and the cost of each kind of token. `api_models.cache_write_1h_price` is an
operator's 1-hour cache-write rate. `api_price_data` holds the price data files
loaded by `ai-service models sync`. Rows of `api_models` that the packaged
catalog seeded are removed: prices come from the price data, and `api_models`
keeps operators' overrides only.

Revision ID: 0003_exact_billing
Revises: 0002_rate_limits
Create Date: 2026-11-30 05:00:00
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_exact_billing"
down_revision: str | None = "0002_rate_limits"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# the date every row of the packaged catalog of 0001/0002 carried
SEEDED_ON = dt.date(2026, 11, 27)


def upgrade() -> None:
    with op.batch_alter_table("api_requests") as batch:
        batch.add_column(
            sa.Column("uncollected", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("price_detail", sa.Text(), nullable=True))
    with op.batch_alter_table("api_models") as batch:
        batch.add_column(sa.Column("cache_write_1h_price", sa.BigInteger(), nullable=True))
    op.create_table(
        "api_price_data",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("source", sa.String(500), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column(
            "loaded_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
    )
    models = sa.table("api_models", sa.column("price_checked_on", sa.Date()))
    op.execute(
        models.delete().where(
            sa.or_(models.c.price_checked_on.is_(None), models.c.price_checked_on == SEEDED_ON)
        )
    )


def downgrade() -> None:
    op.drop_table("api_price_data")
    with op.batch_alter_table("api_models") as batch:
        batch.drop_column("cache_write_1h_price")
    with op.batch_alter_table("api_requests") as batch:
        batch.drop_column("price_detail")
        batch.drop_column("uncollected")
