"""rate limits per user and per key

Nullable requests-per-minute and tokens-per-minute limits on `api_users` and
`api_keys` (see `ai_service.ratelimit`). NULL on a user means the Settings
default, NULL on a key means no limit beyond its user's; 0 means unlimited.

Revision ID: 0002_rate_limits
Revises: 0001_initial
Create Date: 2026-11-28 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_rate_limits"
down_revision: str | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("api_users", "api_keys")
COLUMNS = ("rpm_limit", "tpm_limit")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            for column in COLUMNS:
                batch.add_column(sa.Column(column, sa.Integer(), nullable=True))


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            for column in reversed(COLUMNS):
                batch.drop_column(column)
