"""The ledger on SQLite: one thread hop per operation.

Each reservation or settlement runs as one `BEGIN IMMEDIATE ... COMMIT` on a
plain `sqlite3` connection owned by a single worker thread, instead of one
thread hop per statement through the async driver. `BEGIN IMMEDIATE` takes
the database's write lock first, so the balance read inside is the locked
one; several processes may share the file (the busy timeout makes writers
queue). The statements are generated from the column lists of `ledger`
(`OPENING`, `OUTCOME`) and apply its rule of collection (`ledger.collect`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from ai_service.billing.ledger import (
    KEPT_WHEN_NONE,
    NOT_PENDING,
    OPENING,
    OUTCOME,
    Hook,
    Outcome,
    Settlement,
    collect,
    transfers,
    utcnow,
)
from ai_service.billing.sqlledger import SqlLedger

RESERVE = (
    "UPDATE api_users SET usd_available = usd_available - ?, usd_reserved = usd_reserved + ?"
    " WHERE id = ? AND usd_available >= ? AND NOT disabled"
)
OPEN = (
    f"INSERT INTO api_requests (user_id, reserved, created_at,"
    f" {', '.join(n for n, _ in OPENING)}, status, prompt_tokens, completion_tokens,"
    " cached_tokens, cache_write_tokens, reasoning_tokens, cost, uncollected,"
    " usage_estimated, attempts)"
    f" VALUES (?, ?, ?, {', '.join('?' for _ in OPENING)}, 'pending', 0, 0, 0, 0, 0, 0, 0, 0, 0)"
)
SETTLE = (
    "UPDATE api_requests SET "
    + ", ".join(
        f"{n} = COALESCE(?, {n})" if n in KEPT_WHEN_NONE else f"{n} = ?" for n, _ in OUTCOME
    )
    + ", uncollected = ?, finished_at = ?"
    " WHERE request_id = ? AND user_id = ? AND status = 'pending'"
)
RELEASE = (
    "UPDATE api_users SET usd_reserved = usd_reserved - ?, usd_available = usd_available + ?"
    " WHERE id = ?"
)
TRANSFER = (
    "INSERT INTO api_transactions (user_id, kind, amount, debit_account, credit_account,"
    " request_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
PAYLOADS = (
    "INSERT INTO api_request_data (request_id, request_body, response_body, truncated)"
    " VALUES (?, ?, ?, ?)"
)


def _stamp(moment: dt.datetime) -> str:
    """The text SQLAlchemy stores for a DateTime on SQLite."""
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


# WAL with synchronous NORMAL: a commit survives a crash of the gateway's process (the
# write is in the operating system's hands before it is acknowledged); a crash of the
# machine itself may undo the last commits, whole transactions. FULL (an fsync a commit)
# halves the embedded default's throughput; `billing_synchronous_commit` is PostgreSQL's.
SQLITE_SYNCHRONOUS = "NORMAL"


class SqliteLedger(SqlLedger):
    def __init__(self, engine: AsyncEngine, path: str) -> None:
        super().__init__(engine)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="ai-service-ledger")
        self._path = path
        self._synchronous = SQLITE_SYNCHRONOUS
        self._conn: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self._path, timeout=30, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA busy_timeout=30000")
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
            conn.execute("PRAGMA foreign_keys=ON")
            self._conn = conn
        return self._conn

    async def _run(self, work: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, work, *args)

    def _transaction(self, work: Any, *args: Any) -> Any:
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = work(conn, *args)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result

    async def reserve_open(self, user_id: int, amount: int, row: dict[str, Any]) -> bool:
        return bool(await self._run(self._transaction, _reserve_open, user_id, amount, row))

    async def spendable(self, user_id: int) -> int | None:
        value: int | None = await self._run(self._transaction, _spendable, user_id)
        return value

    async def settle(
        self, request_id: str, user_id: int, reserved: int, s: Settlement, also: Hook | None
    ) -> Outcome:
        if also is not None:
            return await super().settle(request_id, user_id, reserved, s, also)
        outcome: Outcome = await self._run(
            self._transaction, _settle, request_id, user_id, reserved, s
        )
        return outcome

    async def close(self) -> None:
        def shut() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        await self._run(shut)
        self._executor.shutdown(wait=True)


def _available(conn: sqlite3.Connection, user_id: int) -> int:
    row = conn.execute("SELECT usd_available FROM api_users WHERE id = ?", (user_id,)).fetchone()
    return int(row[0]) if row else 0


def _spendable(conn: sqlite3.Connection, user_id: int) -> int | None:
    row = conn.execute(
        "SELECT usd_available FROM api_users WHERE id = ? AND NOT disabled", (user_id,)
    ).fetchone()
    return None if row is None else int(row[0])


def _reserve_open(conn: sqlite3.Connection, user_id: int, amount: int, row: dict[str, Any]) -> bool:
    if conn.execute(RESERVE, (amount, amount, user_id, amount)).rowcount != 1:
        return False
    opened = [row[name] for name, _ in OPENING]
    conn.execute(OPEN, (user_id, amount, _stamp(utcnow()), *opened))
    return True


def _settle(
    conn: sqlite3.Connection, request_id: str, user_id: int, reserved: int, s: Settlement
) -> Outcome:
    charged, uncollected = collect(s.cost, reserved, _available(conn, user_id))
    now = _stamp(utcnow())
    done = conn.execute(SETTLE, (*s.outcome(), uncollected, now, request_id, user_id)).rowcount
    if done != 1:
        return NOT_PENDING
    conn.execute(RELEASE, (reserved, reserved - charged, user_id))
    for transfer in transfers(user_id, charged, uncollected):
        conn.execute(TRANSFER, (user_id, *transfer, request_id, now))
    if s.request_body is not None or s.response_body is not None:
        conn.execute(PAYLOADS, (request_id, s.request_body, s.response_body, int(s.truncated)))
    return Outcome(True, charged, uncollected)
