"""The revisions of the request id and dashboard sessions go up and down on both databases."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command

from ai_service.storage.db import alembic_config, make_engine, upgrade
from tests.support.databases import PostgresDatabase, backends


def _schema(url: str) -> tuple[set[str], set[str]]:
    """(the tables, the columns of `api_requests`)."""

    async def inspect() -> tuple[set[str], set[str]]:
        engine = make_engine(url)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(
                    lambda sync: (
                        set(sa.inspect(sync).get_table_names()),
                        {c["name"] for c in sa.inspect(sync).get_columns("api_requests")},
                    )
                )
        finally:
            await engine.dispose()

    return asyncio.run(inspect())


@pytest.mark.parametrize("backend", backends())
def test_client_request_id_and_admin_sessions_migrate_up_and_down(
    backend: str, tmp_path: Path
) -> None:
    database = PostgresDatabase() if backend == "postgresql" else None
    url = database.url if database is not None else f"sqlite:///{tmp_path / 'migrate.db'}"
    try:
        upgrade(url)
        tables, columns = _schema(url)
        assert "api_admin_sessions" in tables and "client_request_id" in columns
        command.downgrade(alembic_config(url), "0003_exact_billing")
        tables, columns = _schema(url)
        assert "api_admin_sessions" not in tables and "client_request_id" not in columns
        upgrade(url)
        tables, columns = _schema(url)
        assert "api_admin_sessions" in tables and "client_request_id" in columns
    finally:
        if database is not None:
            database.drop()


@pytest.mark.parametrize("backend", backends())
def test_response_owners_migrate_up_and_down(backend: str, tmp_path: Path) -> None:
    database = PostgresDatabase() if backend == "postgresql" else None
    url = database.url if database is not None else f"sqlite:///{tmp_path / 'migrate.db'}"
    try:
        upgrade(url)
        assert "api_response_owners" in _schema(url)[0]
        command.downgrade(alembic_config(url), "0006_request_surface")
        assert "api_response_owners" not in _schema(url)[0]
        upgrade(url)
        assert "api_response_owners" in _schema(url)[0]
    finally:
        if database is not None:
            database.drop()
