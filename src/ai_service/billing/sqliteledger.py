"""The ledger's hot-path operations on SQLite: one thread hop per operation.

Each reservation or settlement runs as one `BEGIN IMMEDIATE ... COMMIT` on a
plain `sqlite3` connection owned by a single worker thread, instead of one
thread hop per statement through the async driver. The statements and the
invariants are those of `ledger` (several processes may share the file:
`BEGIN IMMEDIATE` and the busy timeout make writers queue).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from ai_service.billing.fastledger import SqlLedger
from ai_service.billing.ledger import REVENUE, Hook, Settlement, user_account, utcnow


def _stamp(moment: dt.datetime) -> str:
    """The text SQLAlchemy stores for a DateTime on SQLite."""
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


class SqliteLedger(SqlLedger):
    def __init__(self, engine: AsyncEngine, path: str) -> None:
        super().__init__(engine)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="ai-service-ledger")
        self._path = path
        self._conn: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self._path, timeout=30, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA busy_timeout=30000")
            conn.execute("PRAGMA synchronous=NORMAL")
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

    async def available(self, user_id: int) -> int:
        return int(await self._run(self._transaction, _available, user_id))

    async def settle(
        self, request_id: str, user_id: int, reserved: int, s: Settlement, also: Hook | None
    ) -> bool:
        if also is not None:
            return await super().settle(request_id, user_id, reserved, s, also)
        return bool(await self._run(self._transaction, _settle, request_id, user_id, reserved, s))

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


def _reserve_open(conn: sqlite3.Connection, user_id: int, amount: int, row: dict[str, Any]) -> bool:
    moved = conn.execute(
        "UPDATE api_users SET usd_available = usd_available - ?, usd_reserved = usd_reserved + ?"
        " WHERE id = ? AND usd_available >= ? AND NOT disabled",
        (amount, amount, user_id, amount),
    ).rowcount
    if moved != 1:
        return False
    conn.execute(
        "INSERT INTO api_requests (request_id, user_id, key_id, provider, requested_model,"
        " model, stream, status, prompt_tokens, completion_tokens, cached_tokens,"
        " cache_write_tokens, reasoning_tokens, cost, reserved, usage_estimated, default_price,"
        " attempts, instance_id, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', 0, 0, 0, 0, 0, 0, ?, 0, ?, 0, ?, ?)",
        (
            row["request_id"],
            user_id,
            row["key_id"],
            row["provider"],
            row["requested_model"],
            row["model"],
            int(row["stream"]),
            amount,
            int(row["default_price"]),
            row["instance_id"],
            _stamp(utcnow()),
        ),
    )
    return True


def _settle(
    conn: sqlite3.Connection, request_id: str, user_id: int, reserved: int, s: Settlement
) -> bool:
    charge = min(s.cost, reserved)
    now = _stamp(utcnow())
    done = conn.execute(
        "UPDATE api_requests SET status = ?, http_status = ?, cost = ?,"
        " model = COALESCE(?, model), provider = COALESCE(?, provider), prompt_tokens = ?,"
        " completion_tokens = ?, cached_tokens = ?, cache_write_tokens = ?,"
        " reasoning_tokens = ?, usage_estimated = ?, error = ?, duration_ms = ?,"
        " upstream_latency_ms = ?, ttft_ms = ?, attempts = ?, attempt_log = ?, finished_at = ?,"
        " price_detail = ? WHERE request_id = ? AND status = 'pending'",
        (
            *s.outcome(charge),
            now,
            s.price_detail,
            request_id,
        ),
    ).rowcount
    if done != 1:
        return False
    conn.execute(
        "UPDATE api_users SET usd_reserved = usd_reserved - ?,"
        " usd_available = usd_available + ? WHERE id = ?",
        (reserved, reserved - charge, user_id),
    )
    if charge > 0:
        conn.execute(
            "INSERT INTO api_transactions (user_id, kind, amount, debit_account,"
            " credit_account, request_id, created_at) VALUES (?, 'charge', ?, ?, ?, ?, ?)",
            (user_id, charge, user_account(user_id), REVENUE, request_id, now),
        )
    if s.request_body is not None or s.response_body is not None:
        conn.execute(
            "INSERT INTO api_request_data (request_id, request_body, response_body, truncated)"
            " VALUES (?, ?, ?, ?)",
            (request_id, s.request_body, s.response_body, int(s.truncated)),
        )
    return True
