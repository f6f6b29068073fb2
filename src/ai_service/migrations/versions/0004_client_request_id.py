"""client request ids: the `X-Request-ID` a client sent, beside the gateway's own

`api_requests.client_request_id` keeps the client's id (at most 64 characters
of `[A-Za-z0-9._:-]`), so a row is found by the gateway's `request_id` (echoed
as `X-Request-ID`) and still carries the id the client logged. Rows written
before have none.

Revision ID: 0004_client_request_id
Revises: 0003_exact_billing
Create Date: 2026-12-02 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_client_request_id"
down_revision: str | None = "0003_exact_billing"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("api_requests") as batch:
        batch.add_column(sa.Column("client_request_id", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_requests") as batch:
        batch.drop_column("client_request_id")
