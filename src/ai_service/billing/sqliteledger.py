"""The ledger on SQLite: one thread hop and one commit for every operation waiting.

Reservations and settlements run on a plain `sqlite3` connection owned by a
single worker thread, instead of one thread hop per statement through the
async driver. Operations that arrive while the thread is busy wait in a queue;
the thread then runs all of them in one `BEGIN IMMEDIATE ... COMMIT` (group
commit), each inside a savepoint of its own, so one operation's error rolls
back that operation only, and hands every outcome back to the event loop at
once. Nothing is acknowledged before the commit that carries it. `BEGIN
IMMEDIATE` takes the database's write lock first, so the balance read inside
is the locked one; several processes may share the file (the busy timeout
makes writers queue). The wait of an operation in the queue, until the thread
takes it, is the `database` queue of `waits`; a reservation still queued after
`patience` leaves it unrun (`DatabaseBusyError`). The statements are
generated from the column lists of `ledger` (`OPENING`, `OUTCOME`) and apply
its rule of collection (`ledger.collect`).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from ai_service.billing.ledger import (
    KEPT_WHEN_NONE,
    NOT_PENDING,
    OPENING,
    OUTCOME,
    Budgets,
    Hook,
    Outcome,
    Settlement,
    collect,
    transfers,
    utcnow,
)
from ai_service.billing.sqlledger import SqlLedger
from ai_service.waits import UNMETERED, DatabaseQueue, Ticket

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
# the settled cost, added to the key's hour of the request's start (`budgets`)
SPEND = (
    "INSERT INTO api_spend_hourly (key_id, hour, user_id, spent)"
    " SELECT key_id, substr(created_at, 1, 13) || ':00:00.000000', user_id, cost"
    " FROM api_requests WHERE request_id = ? AND cost > 0 AND key_id IS NOT NULL"
    " ON CONFLICT (key_id, hour) DO UPDATE SET spent = spent + excluded.spent"
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


Work = tuple[Callable[..., Any], tuple[Any, ...], asyncio.Future[Any], Ticket]


class SqliteLedger(SqlLedger):
    def __init__(self, engine: AsyncEngine, path: str, queue: DatabaseQueue = UNMETERED) -> None:
        super().__init__(engine)
        self._waits = queue
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="ai-service-ledger")
        self._path = path
        self._synchronous = SQLITE_SYNCHRONOUS
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._queue: list[Work] = []  # guarded by _lock
        self._draining = False  # guarded by _lock: the worker owns the queue

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

    async def _transaction(
        self, work: Callable[..., Any], *args: Any, patience: float | None = None
    ) -> Any:
        """`work(conn, *args)` in a committed transaction, shared with the others waiting.

        A caller that is cancelled does not stop its work: it may still commit.
        With `patience`, work still queued after that long is dropped unrun
        (`DatabaseBusyError`).
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        queued: Work = (work, args, future, self._waits.joined())
        with self._lock:
            self._queue.append(queued)
            start = not self._draining
            self._draining = True
        if start:
            loop.run_in_executor(self._executor, self._drain, loop)
        if patience is None:
            return await future
        timer = loop.call_later(patience, self._expire, queued)
        try:
            return await asyncio.shield(future)
        finally:
            timer.cancel()

    def _expire(self, queued: Work) -> None:
        """Work still queued after its patience leaves the queue unrun, refused (one timer,
        cheaper than a timeout scope per call); work the thread took keeps its outcome."""
        with self._lock:
            dropped = queued in self._queue
            if dropped:
                self._queue.remove(queued)
        if dropped:
            self._waits.left(queued[3])
            queued[2].set_exception(self._waits.refusal())

    def _left(self, group: list[Work], taken: float) -> None:
        for *_, ticket in group:
            self._waits.left(ticket, taken)

    def _drain(self, loop: asyncio.AbstractEventLoop) -> None:
        """Worker thread: commit every queued operation, a group at a time, until none is left."""
        while True:
            with self._lock:
                group, self._queue = self._queue, []
                if not group:
                    self._draining = False
                    return
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting
                loop.call_soon_threadsafe(self._left, group, time.monotonic())
            outcomes = self._commit(group)
            try:
                loop.call_soon_threadsafe(_deliver, outcomes)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                with self._lock:
                    self._draining = False
                return

    def _commit(self, group: list[Work]) -> list[tuple[asyncio.Future[Any], Any, bool]]:
        """One transaction for `group`: (future, result or exception, failed) of each."""
        done: list[tuple[asyncio.Future[Any], Any, bool]] = []
        try:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                for work, args, future, _ in group:
                    conn.execute("SAVEPOINT op")
                    try:
                        done.append((future, work(conn, *args), False))
                    except Exception as exc:
                        conn.execute("ROLLBACK TO op")
                        done.append((future, exc, True))
                    conn.execute("RELEASE op")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except Exception as exc:  # nothing of the group committed
            self._discard()
            return [(future, exc, True) for _, _, future, _ in group]
        return done

    def _discard(self) -> None:
        """Close the connection after a failed transaction: the next group opens a fresh one."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    async def reserve_open(
        self, user_id: int, amount: int, row: dict[str, Any], budgets: Budgets = ()
    ) -> bool:
        if budgets:
            return await super().reserve_open(user_id, amount, row, budgets)
        reserved = await self._transaction(
            _reserve_open, user_id, amount, row, patience=self._waits.patience
        )
        return bool(reserved)

    async def spendable(self, user_id: int) -> int | None:
        value: int | None = await self._transaction(_spendable, user_id)
        return value

    async def settle(
        self, request_id: str, user_id: int, reserved: int, s: Settlement, also: Hook | None
    ) -> Outcome:
        if also is not None:
            return await super().settle(request_id, user_id, reserved, s, also)
        outcome: Outcome = await self._transaction(_settle, request_id, user_id, reserved, s)
        return outcome

    async def close(self) -> None:
        def shut() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        await self._run(shut)
        self._executor.shutdown(wait=True)


def _deliver(outcomes: list[tuple[asyncio.Future[Any], Any, bool]]) -> None:
    """Event loop: hand each operation of a committed (or failed) group its outcome."""
    for future, value, failed in outcomes:
        if future.done():  # its caller was cancelled
            continue
        if failed:
            future.set_exception(value)
        else:
            future.set_result(value)


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
    # the balance outside the reservation matters only for a cost beyond the reservation
    available = 0 if s.cost <= reserved else _available(conn, user_id)
    charged, uncollected = collect(s.cost, reserved, available)
    now = _stamp(utcnow())
    done = conn.execute(SETTLE, (*s.outcome(), uncollected, now, request_id, user_id)).rowcount
    if done != 1:
        return NOT_PENDING
    conn.execute(RELEASE, (reserved, reserved - charged, user_id))
    if s.cost > 0:
        conn.execute(SPEND, (request_id,))
    for transfer in transfers(user_id, charged, uncollected):
        conn.execute(TRANSFER, (user_id, *transfer, request_id, now))
    if s.request_body is not None or s.response_body is not None:
        conn.execute(PAYLOADS, (request_id, s.request_body, s.response_body, int(s.truncated)))
    return Outcome(True, charged, uncollected)
