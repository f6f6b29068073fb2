"""The revisions go up and down on both databases."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command

from ai_service.storage.db import alembic_config, make_engine, upgrade
from ai_service.storage.models import ApiSpendHourly
from tests.support.databases import PostgresDatabase, backends


def _schema(url: str, table: str = "api_requests") -> tuple[set[str], set[str]]:
    """(the tables, the columns of `table`)."""

    async def inspect() -> tuple[set[str], set[str]]:
        engine = make_engine(url)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(
                    lambda sync: (
                        set(sa.inspect(sync).get_table_names()),
                        {c["name"] for c in sa.inspect(sync).get_columns(table)},
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


@pytest.mark.parametrize("backend", backends())
def test_budgets_fill_the_hourly_spend_from_the_settled_requests(
    backend: str, tmp_path: Path
) -> None:
    database = PostgresDatabase() if backend == "postgresql" else None
    url = database.url if database is not None else f"sqlite:///{tmp_path / 'migrate.db'}"
    rows = [
        # (request id, key, started, status, cost)
        ("r1", 1, "2026-11-29 10:05:00", "ok", 300),
        ("r2", 1, "2026-11-29 10:55:00", "cancelled", 200),
        ("r3", 1, "2026-11-29 11:00:00", "ok", 50),
        ("r4", 2, "2026-11-29 10:30:00", "ok", 7),
        ("r5", 1, "2026-11-29 10:40:00", "pending", 0),
        ("r6", 2, "2026-11-29 10:31:00", "error", 0),
    ]

    async def seed() -> None:
        engine = make_engine(url)
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    sa.text(
                        "INSERT INTO api_users (id, name, usd_available, usd_reserved, disabled,"
                        " created_at) VALUES (1, 'u', 0, 0, false, :t)"
                    ),
                    {"t": dt.datetime(2026, 11, 1, tzinfo=dt.UTC)},
                )
                for key in (1, 2):
                    await conn.execute(
                        sa.text(
                            "INSERT INTO api_keys (id, user_id, prefix, key_hash, created_at)"
                            " VALUES (:k, 1, :p, :h, :t)"
                        ),
                        {
                            "k": key,
                            "p": f"ais-{key}",
                            "h": f"hash{key}",
                            "t": dt.datetime(2026, 11, 1, tzinfo=dt.UTC),
                        },
                    )
                for request_id, key, started, status, cost in rows:
                    await conn.execute(
                        sa.text(
                            "INSERT INTO api_requests (request_id, user_id, key_id, status,"
                            " cost, created_at, provider, stream, prompt_tokens,"
                            " completion_tokens, cached_tokens, cache_write_tokens,"
                            " reasoning_tokens, reserved, usage_estimated, default_price,"
                            " attempts) VALUES (:r, 1, :k, :s, :c, :t, 'openai', false,"
                            " 0, 0, 0, 0, 0, 0, false, false, 1)"
                        ),
                        {
                            "r": request_id,
                            "k": key,
                            "s": status,
                            "c": cost,
                            "t": dt.datetime.fromisoformat(started).replace(tzinfo=dt.UTC),
                        },
                    )
        finally:
            await engine.dispose()

    async def spend() -> list[tuple[int, str, int]]:
        engine = make_engine(url)
        try:
            async with engine.connect() as conn:
                found = await conn.execute(
                    sa.select(ApiSpendHourly.key_id, ApiSpendHourly.hour, ApiSpendHourly.spent)
                )
                return sorted((k, h.strftime("%H:%M"), s) for k, h, s in found.all())
        finally:
            await engine.dispose()

    try:
        command.upgrade(alembic_config(url), "0007_response_owners")
        command.downgrade(alembic_config(url), "0007_response_owners")  # a created one is at head
        asyncio.run(seed())
        upgrade(url)
        assert asyncio.run(spend()) == [(1, "10:00", 500), (1, "11:00", 50), (2, "10:00", 7)]
        command.downgrade(alembic_config(url), "0007_response_owners")
        assert "api_spend_hourly" not in _schema(url)[0]
    finally:
        if database is not None:
            database.drop()


@pytest.mark.parametrize("backend", backends())
def test_key_policies_migrate_up_and_down(backend: str, tmp_path: Path) -> None:
    database = PostgresDatabase() if backend == "postgresql" else None
    url = database.url if database is not None else f"sqlite:///{tmp_path / 'migrate.db'}"
    policies = {"allowed_models", "expires_at"}
    try:
        upgrade(url)
        assert policies <= _schema(url, "api_keys")[1]
        command.downgrade(alembic_config(url), "0007_response_owners")
        columns = _schema(url, "api_keys")[1]
        assert not policies & columns and {"rpm_limit", "tpm_limit"} <= columns
        upgrade(url)
        assert policies <= _schema(url, "api_keys")[1]
    finally:
        if database is not None:
            database.drop()


@pytest.mark.parametrize("backend", backends())
def test_webhooks_migrate_up_and_down(backend: str, tmp_path: Path) -> None:
    database = PostgresDatabase() if backend == "postgresql" else None
    url = database.url if database is not None else f"sqlite:///{tmp_path / 'migrate.db'}"
    tables = {"api_webhook_events", "api_balance_alerts", "api_leases"}
    try:
        upgrade(url)
        assert tables <= _schema(url)[0]
        command.downgrade(alembic_config(url), "0009_budgets")
        assert not tables & _schema(url)[0]
        upgrade(url)
        assert tables <= _schema(url)[0]
    finally:
        if database is not None:
            database.drop()


def _indexes(url: str, table: str) -> set[str]:
    async def inspect() -> set[str]:
        engine = make_engine(url)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(
                    lambda sync: {i["name"] for i in sa.inspect(sync).get_indexes(table)}
                )
        finally:
            await engine.dispose()

    return asyncio.run(inspect())


@pytest.mark.parametrize("backend", backends())
def test_usage_totals_and_retention_migrate_up_and_down(backend: str, tmp_path: Path) -> None:
    database = PostgresDatabase() if backend == "postgresql" else None
    url = database.url if database is not None else f"sqlite:///{tmp_path / 'migrate.db'}"
    tables = {"api_usage_daily", "api_retention"}
    brin = {"ix_api_requests_created_brin"} if backend == "postgresql" else set()
    try:
        upgrade(url)
        assert tables <= _schema(url)[0]
        assert brin <= _indexes(url, "api_requests")
        command.downgrade(alembic_config(url), "0011_webhooks")
        assert not tables & _schema(url)[0]
        assert not brin & _indexes(url, "api_requests")
        upgrade(url)
        assert tables <= _schema(url)[0]
        assert brin <= _indexes(url, "api_requests")
    finally:
        if database is not None:
            database.drop()


@pytest.mark.parametrize("backend", backends())
def test_credential_label_migrates_up_and_down(backend: str, tmp_path: Path) -> None:
    database = PostgresDatabase() if backend == "postgresql" else None
    url = database.url if database is not None else f"sqlite:///{tmp_path / 'migrate.db'}"
    try:
        upgrade(url)
        tables, columns = _schema(url)
        assert "credential" in columns and "api_upstream_credentials" in tables
        command.downgrade(alembic_config(url), "0012_usage_daily")
        tables, columns = _schema(url)
        assert "credential" not in columns and "api_upstream_credentials" not in tables
        upgrade(url)
        tables, columns = _schema(url)
        assert "credential" in columns and "api_upstream_credentials" in tables
    finally:
        if database is not None:
            database.drop()


@pytest.mark.parametrize("backend", backends())
def test_queue_wait_migrates_up_and_down(backend: str, tmp_path: Path) -> None:
    database = PostgresDatabase() if backend == "postgresql" else None
    url = database.url if database is not None else f"sqlite:///{tmp_path / 'migrate.db'}"
    try:
        upgrade(url)
        assert "queue_ms" in _schema(url)[1]
        command.downgrade(alembic_config(url), "0013_credential_label")
        assert "queue_ms" not in _schema(url)[1]
        upgrade(url)
        assert "queue_ms" in _schema(url)[1]
    finally:
        if database is not None:
            database.drop()
