"""a key's model allow-list and expiry

Two nullable columns on `api_keys`: `allowed_models`, the JSON list of
`PROVIDER:MODEL` patterns the key may use (see `ai_service.allowlist`; NULL =
every model), and `expires_at`, when the key stops working (NULL = never).

Revision ID: 0008_key_policies
Revises: 0007_response_owners
Create Date: 2026-12-02 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_key_policies"
down_revision: str | None = "0007_response_owners"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("allowed_models", sa.JSON(none_as_null=True), nullable=True))
        batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("expires_at")
        batch.drop_column("allowed_models")
