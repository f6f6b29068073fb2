"""A real gateway on a loopback port: uvicorn serving `create_app(settings)` in a thread.

Tests talk to it over HTTP (raw `httpx`, the official `openai` SDK) and use
`Gateway.call()` to run coroutines on the server's own loop against its state
(create users, read rows) without a second connection pool.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import uvicorn
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from ai_service import auth
from ai_service.app import create_app
from ai_service.billing import ledger
from ai_service.billing.money import usd_to_nano
from ai_service.config import Settings
from ai_service.services import accounts
from ai_service.state import AppState
from ai_service.storage.db import DB_ERRORS
from ai_service.storage.models import ApiRequest, ApiRequestData, ApiUser

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

T = TypeVar("T")


class Gateway:
    def __init__(self, settings: Settings, span_exporter: SpanExporter | None = None) -> None:
        self.settings = settings
        self.app = create_app(settings, span_exporter)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            self.app, log_level="warning", lifespan="on", loop="asyncio", http="httptools"
        )
        self.server = uvicorn.Server(config)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.server.serve(sockets=[self.sock]))

    def start(self) -> Gateway:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the gateway did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)
        self.sock.close()

    @property
    def state(self) -> AppState:
        state: AppState = self.app.state.ai
        return state

    def call(self, coro: Awaitable[T], timeout: float = 30) -> T:
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)  # type: ignore[arg-type]

    def session(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        async def run() -> T:
            async with self.state.sessions() as session:
                return await work(session)

        return self.call(run())

    # ---- operator helpers ---------------------------------------------------

    def create_user(self, name: str, balance: str = "10") -> str:
        """A user with `balance` USD; returns the key."""
        key = self.session(lambda s: accounts.create_user(s, name, usd_to_nano(balance)))
        return key.secret

    def create_key(self, user: str, **policy: Any) -> str:
        """Another key for `user`, with an allow-list (`allowed`) or expiry (`expires`)."""
        change = accounts.Policy(**policy)
        return self.session(lambda s: accounts.create_key(s, user, None, change)).secret

    def set_key_policy(self, key: str, **policy: Any) -> None:
        """Set a key's allow-list (`allowed`) or expiry (`expires`) in the database, as the
        CLI does: the gateways' key caches learn it when their entries expire."""
        change = accounts.Policy(**policy)
        self.session(lambda s: accounts.update_key(s, key[: auth.VISIBLE_CHARS], change))

    def balance(self, name: str) -> tuple[int, int]:
        """(available, reserved) nano-USD."""

        async def work(s: AsyncSession) -> tuple[int, int]:
            row = (
                await s.execute(
                    select(ApiUser.usd_available, ApiUser.usd_reserved).where(ApiUser.name == name)
                )
            ).one()
            return int(row[0]), int(row[1])

        return self.session(work)

    def requests(self, **where: Any) -> list[ApiRequest]:
        async def work(s: AsyncSession) -> list[ApiRequest]:
            stmt = select(ApiRequest).order_by(ApiRequest.id)
            for key, value in where.items():
                stmt = stmt.where(getattr(ApiRequest, key) == value)
            return list((await s.scalars(stmt)).all())

        return self.session(work)

    def payload(self, request_id: str) -> ApiRequestData | None:
        return self.session(lambda s: s.get(ApiRequestData, request_id))

    def reconcile(self) -> list[ledger.Discrepancy]:
        async def work() -> list[ledger.Discrepancy]:
            async with self.state.engine.connect() as conn:
                return await ledger.reconcile(conn)

        return self.call(work())

    def scalar(self, sql: str) -> Any:
        async def work() -> Any:
            async with self.state.engine.connect() as conn:
                return await conn.scalar(text(sql))

        return self.call(work())

    def books_problems(self, timeout: float = 10) -> list[str]:
        """What is wrong with the books once every request settled (empty when they balance).

        Requests still pending after `timeout`, reservations still held once
        none is, and every discrepancy `ledger.reconcile()` finds.
        """
        try:
            self.wait_settled(timeout)
        except AssertionError:
            return ["requests still pending"]
        except DB_ERRORS:
            return []  # a test of an unreachable database: there are no books to check
        problems = [f"reconcile: {d}" for d in self.reconcile()]
        held = self.scalar("SELECT count(*) FROM api_users WHERE usd_reserved <> 0")
        if held:
            problems.append(f"{held} user(s) hold a reservation with no request pending")
        return problems

    def wait_settled(self, timeout: float = 10) -> None:
        """Wait until no request row is pending (streams settle after the last byte)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.scalar("SELECT count(*) FROM api_requests WHERE status = 'pending'"):
                return
            time.sleep(0.02)
        raise AssertionError("requests still pending")
