"""credential label: which pool credential served a request

`api_requests.credential` is the label of the upstream credential of the
provider's pool that served the request (never the key); NULL for a provider
without a pool and for the rows written before.

Revision ID: 0012_credential_label
Revises: 0011_webhooks
Create Date: 2026-11-30 14:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_credential_label"
down_revision: str | None = "0011_webhooks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("api_requests") as batch:
        batch.add_column(sa.Column("credential", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_requests") as batch:
        batch.drop_column("credential")
