"""dashboard sessions: signing out ends a session on the server

`api_admin_sessions` holds one row per signed-in dashboard session (the
SHA-256 of the random id in its cookie, and when it expires); signing out
deletes it. Cookies issued before this revision carry no session id and stop
working: operators sign in again.

Revision ID: 0005_admin_sessions
Revises: 0004_client_request_id
Create Date: 2026-12-02 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_admin_sessions"
down_revision: str | None = "0004_client_request_id"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "api_admin_sessions",
        sa.Column("id_hash", sa.String(64), primary_key=True),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("api_admin_sessions")
