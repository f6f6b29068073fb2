"""request surface: which API a request came through

`api_requests.surface` names the API surface of the request (`chat`,
`embeddings`, ...). Rows written before are chat completions, the only
surface there was.

Revision ID: 0006_request_surface
Revises: 0005_admin_sessions
Create Date: 2026-11-30 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_request_surface"
down_revision: str | None = "0005_admin_sessions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("api_requests") as batch:
        batch.add_column(sa.Column("surface", sa.String(32), nullable=False, server_default="chat"))


def downgrade() -> None:
    with op.batch_alter_table("api_requests") as batch:
        batch.drop_column("surface")
