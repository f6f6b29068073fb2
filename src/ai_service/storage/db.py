"""Engine and session factory: URL mapping to the async drivers, SQLite pragmas, migrations.

`sqlite:///path` becomes `sqlite+aiosqlite:///path` and `postgresql://...`
becomes `postgresql+asyncpg://...`. SQLite runs in WAL mode with a busy
timeout, and every transaction starts with `BEGIN IMMEDIATE` so that
concurrent writers queue instead of failing.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import asyncpg
from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DataError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from ai_service.storage.models import Base

# what a database outage raises, through SQLAlchemy or straight from asyncpg
DB_ERRORS: tuple[type[Exception], ...] = (
    SQLAlchemyError,
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    sqlite3.Error,
)

# what a database raises for a value it cannot store (retrying cannot help)
DATA_ERRORS: tuple[type[Exception], ...] = (DataError, asyncpg.DataError, sqlite3.DataError)

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def async_url(url: str) -> str:
    """Map a plain database URL to the async driver SQLAlchemy should use."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite" and parsed.drivername != "sqlite+aiosqlite":
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    elif backend in ("postgresql", "postgres") and parsed.drivername != "postgresql+asyncpg":
        parsed = parsed.set(drivername="postgresql+asyncpg")
    return parsed.render_as_string(hide_password=False)


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def make_engine(url: str, *, pool_size: int = 20, durable: bool = True) -> AsyncEngine:
    """Create the async engine for a (plain or async) database URL.

    `durable`: on PostgreSQL a commit returns only once it is flushed
    (`synchronous_commit` on; see `billing_synchronous_commit`). SQLite runs
    WAL with synchronous NORMAL (`sqliteledger.SQLITE_SYNCHRONOUS`): its commits
    survive a crash of the process, not necessarily of the machine.
    """
    full = async_url(url)
    if is_sqlite(full):
        engine = create_async_engine(full, connect_args={"timeout": 30})
        _sqlite_pragmas(engine, "NORMAL")
        return engine
    return create_async_engine(
        full,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args={
            "server_settings": {
                "synchronous_commit": "on" if durable else "off",
                # the usage pages' aggregates over many rows are estimated dear enough to be
                # JIT-compiled, which costs more than it saves at every size measured
                "jit": "off",
            }
        },
    )


def _sqlite_pragmas(engine: AsyncEngine, synchronous: str) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def session_factory(engine: AsyncEngine) -> async_sessionmaker[Any]:
    return async_sessionmaker(engine, expire_on_commit=False)


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", async_url(url).replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Run the Alembic migrations up to `revision` (blocking; call from sync code)."""
    command.upgrade(alembic_config(url), revision)


__all__ = ["Base", "async_url", "is_sqlite", "make_engine", "session_factory", "upgrade"]
