"""Test databases: a migrated SQLite file per test, or a PostgreSQL database per session.

`AI_SERVICE_TEST_DATABASES` picks the backends (comma-separated: `sqlite`,
`postgresql`; default both). `AI_SERVICE_TEST_PG` is the server's URL
(default `postgresql://postgres@127.0.0.1:5432/postgres`).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from pathlib import Path

import asyncpg

from ai_service.storage.db import make_engine, session_factory, upgrade
from ai_service.storage.models import Base

PG_SERVER = os.environ.get("AI_SERVICE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def backends() -> list[str]:
    raw = os.environ.get("AI_SERVICE_TEST_DATABASES", "sqlite,postgresql")
    return [b.strip() for b in raw.split(",") if b.strip()]


async def seed(url: str) -> None:
    """Seed the price catalog of a migrated database."""
    from ai_service.billing import catalog

    engine = make_engine(url)
    try:
        async with session_factory(engine)() as session:
            await catalog.seed(session)
    finally:
        await engine.dispose()


class SqliteTemplate:
    """One migrated, seeded SQLite file, copied for each test."""

    def __init__(self, root: Path) -> None:
        self.path = root / "template.db"
        url = f"sqlite:///{self.path}"
        upgrade(url)
        asyncio.run(seed(url))

    def fresh(self, target: Path) -> str:
        dest = target / "gateway.db"
        shutil.copy(self.path, dest)
        return f"sqlite:///{dest}"


class PostgresDatabase:
    """A database created for the test session, migrated once, truncated per test."""

    def __init__(self) -> None:
        self.name = f"ai_service_test_{uuid.uuid4().hex[:10]}"
        base, _, _ = PG_SERVER.rpartition("/")
        self.url = f"{base}/{self.name}"
        asyncio.run(self._admin(f'CREATE DATABASE "{self.name}"'))
        upgrade(self.url)

    async def _admin(self, sql: str) -> None:
        conn = await asyncpg.connect(PG_SERVER)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    def fresh(self) -> str:
        async def reset() -> None:
            conn = await asyncpg.connect(self.url)
            try:
                tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
                await conn.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
            finally:
                await conn.close()
            await seed(self.url)

        asyncio.run(reset())
        return self.url

    def drop(self) -> None:
        asyncio.run(self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))


def create_postgres_database(prefix: str = "ai_service_faults") -> str:
    """A new PostgreSQL database, migrated and seeded, for tests that start gateway processes.

    Returns its plain `postgresql://` URL; drop it with `drop_postgres_database`.
    """
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    base, _, _ = PG_SERVER.rpartition("/")
    url = f"{base}/{name}"

    async def create() -> None:
        conn = await asyncpg.connect(PG_SERVER)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(create())
    upgrade(url)
    asyncio.run(seed(url))
    return url


def drop_postgres_database(url: str) -> None:
    """Drop a database made by `create_postgres_database` (its connections are closed)."""
    name = url.rpartition("/")[2]

    async def drop() -> None:
        conn = await asyncpg.connect(PG_SERVER)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(drop())
