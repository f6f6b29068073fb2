"""queue wait: how long a request waited in the gateway's queues

`api_requests.queue_ms` is the time a request waited for a place under a
configured limit (`upstream_max_connections`) before its upstream call, 0 when
it did not wait; NULL on the rows written before this revision.

Revision ID: 0014_queue_wait
Revises: 0013_credential_label
Create Date: 2026-11-30 14:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014_queue_wait"
down_revision: str | None = "0013_credential_label"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("api_requests") as batch:
        batch.add_column(sa.Column("queue_ms", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_requests") as batch:
        batch.drop_column("queue_ms")
