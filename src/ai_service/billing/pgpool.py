"""A minimal asyncpg connection pool for the ledger's hot path.

It does only what the hot path needs: hand out an idle connection (or open
one, up to `size`), run one statement on a prepared statement of that
connection, and take the connection back. A connection whose statement was
interrupted (cancellation, a network error) is closed, never reused. It costs
a fraction of asyncpg's general pool per statement, which matters twice a
request.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import asyncpg

BROKEN = (
    asyncio.CancelledError,
    OSError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.PostgresConnectionError,
)


def broken(exc: BaseException) -> bool:
    """Whether `exc` leaves its connection unusable and its statement's outcome unknown.

    Besides transport errors, a FATAL or PANIC error from the server (a backend
    told to exit because its postmaster died, an administrator's termination)
    ends the session: the statement may or may not have committed.
    """
    if isinstance(exc, BROKEN):
        return True
    return isinstance(exc, asyncpg.PostgresError) and getattr(exc, "severity", None) in (
        "FATAL",
        "PANIC",
    )


class Connections:
    def __init__(self, dsn: str, size: int, server_settings: dict[str, str]) -> None:
        self._dsn = dsn
        self._size = size
        self._settings = server_settings
        self._idle: list[asyncpg.Connection] = []
        self._waiters: deque[asyncio.Future[asyncpg.Connection | None]] = deque()
        self._open = 0
        self._statements: dict[tuple[int, str], Any] = {}

    async def fetchval(self, sql: str, *args: Any) -> Any:
        """Run one statement and return the first column of its first row."""
        return await self._run(sql, "fetchval", args)

    async def fetchcol(self, sql: str, *args: Any) -> list[Any]:
        """Run one statement and return the first column of every row."""
        rows = await self._run(sql, "fetch", args)
        return [row[0] for row in rows]

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        """Run one statement and return its first row (None without one)."""
        return await self._run(sql, "fetchrow", args)

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        """Run one statement and return every row."""
        return list(await self._run(sql, "fetch", args))

    async def _run(self, sql: str, how: str, args: tuple[Any, ...]) -> Any:
        conn = await self._acquire()
        try:
            key = (id(conn), sql)
            statement = self._statements.get(key)
            if statement is None:
                statement = self._statements[key] = await conn.prepare(sql)
            value = await getattr(statement, how)(*args)
        except BaseException as exc:
            # only a clean server error (the statement rolled back) leaves the connection usable
            if broken(exc) or not isinstance(exc, asyncpg.PostgresError):
                self._discard(conn)
            else:
                self._release(conn)
            raise
        self._release(conn)
        return value

    async def _acquire(self) -> asyncpg.Connection:
        while True:
            if self._idle:
                return self._idle.pop()
            if self._open < self._size:
                self._open += 1
                try:
                    conn: asyncpg.Connection = await asyncpg.connect(
                        self._dsn, server_settings=self._settings
                    )
                except BaseException:
                    self._open -= 1
                    self._wake(None)
                    raise
                return conn
            waiter: asyncio.Future[asyncpg.Connection | None] = (
                asyncio.get_running_loop().create_future()
            )
            self._waiters.append(waiter)
            handed = await waiter
            if handed is not None:
                return handed

    def _wake(self, conn: asyncpg.Connection | None) -> bool:
        """Hand `conn` (or, with None, the right to open one) to a waiting caller."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return True
        return False

    def _release(self, conn: asyncpg.Connection) -> None:
        if conn.is_closed():
            self._discard(conn)
        elif not self._wake(conn):
            self._idle.append(conn)

    def _discard(self, conn: asyncpg.Connection) -> None:
        self._open -= 1
        self._statements = {k: v for k, v in self._statements.items() if k[0] != id(conn)}
        conn.terminate()
        self._wake(None)

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            self._open -= 1
            await conn.close()
        self._statements.clear()
