"""A webhook receiver on loopback: a real aiohttp server in a thread of its own.

It answers each delivery with the next queued behaviour (`ok` once the queue
is empty): `ok` (204), a status (`500`), `slow` (answers after `slow_seconds`,
past the gateway's timeout), `drop` (closes the connection without an
answer) or `hold` (keeps the request open until `release()`). Every delivery
is verified with the Standard Webhooks reference library (`standardwebhooks`)
and recorded, verified or not. `stop()` kills the server with its connections
open; `start()` brings it back on the same port.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web
from standardwebhooks import Webhook, WebhookVerificationError


@dataclass(frozen=True)
class Delivery:
    event_id: str
    timestamp: int
    headers: dict[str, str]
    body: bytes
    verified: bool
    behaviour: str

    @property
    def payload(self) -> Any:
        return orjson.loads(self.body)


class Receiver:
    def __init__(self, secret: str, slow_seconds: float = 3.0) -> None:
        self.verifier = Webhook(secret)
        self.slow_seconds = slow_seconds
        self.plan: deque[str] = deque()
        self.deliveries: list[Delivery] = []
        self.lock = threading.Lock()
        self.held = threading.Event()  # a `hold` delivery arrived
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/hooks"
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None
        self.release_event: asyncio.Event | None = None
        self.runner: web.AppRunner | None = None

    # ---- what it answers ----------------------------------------------------------

    def queue(self, *behaviours: str) -> None:
        with self.lock:
            self.plan.extend(behaviours)

    def received(self) -> list[Delivery]:
        with self.lock:
            return list(self.deliveries)

    def verified_ids(self) -> list[str]:
        return [d.event_id for d in self.received() if d.verified and d.behaviour == "ok"]

    def wait_for(self, count: int, timeout: float = 20, accepted: bool = True) -> list[Delivery]:
        """Wait for `count` deliveries (answered 2xx when `accepted`)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [d for d in self.received() if d.behaviour == "ok" or not accepted]
            if len(found) >= count:
                return found
            time.sleep(0.02)
        raise AssertionError(f"{count} deliveries expected, got {self.received()}")

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            self.verifier.verify(body, headers)
            verified = True
        except WebhookVerificationError:
            verified = False
        with self.lock:
            behaviour = self.plan.popleft() if self.plan else "ok"
            self.deliveries.append(
                Delivery(
                    headers.get("webhook-id", ""),
                    int(headers.get("webhook-timestamp", "0")),
                    headers,
                    body,
                    verified,
                    behaviour,
                )
            )
        if behaviour == "ok":
            return web.Response(status=204 if verified else 401)
        if behaviour == "slow":
            await asyncio.sleep(self.slow_seconds)
            return web.Response(status=204)
        if behaviour == "drop":
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=204)  # never written: the connection is gone
        if behaviour == "hold":
            self.held.set()
            assert self.release_event is not None
            await self.release_event.wait()
            return web.Response(status=204)
        return web.Response(status=int(behaviour), headers={"Retry-After": "0"})

    # ---- its life -------------------------------------------------------------------

    def start(self) -> Receiver:
        started = threading.Event()

        def run() -> None:
            self.loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self.loop)
            self.release_event = asyncio.Event()
            app = web.Application()
            app.router.add_post("/hooks", self.handle)
            self.runner = web.AppRunner(
                app, handle_signals=False, shutdown_timeout=0.1, access_log=None
            )
            self.loop.run_until_complete(self.runner.setup())
            site = web.SockSite(self.runner, self.sock)
            self.loop.run_until_complete(site.start())
            started.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert started.wait(10)
        return self

    def release(self) -> None:
        assert self.loop is not None and self.release_event is not None
        self.loop.call_soon_threadsafe(self.release_event.set)

    def stop(self) -> None:
        """Kill the server: its open connections are cut, nothing more is answered."""
        if self.loop is None or self.thread is None:
            return
        loop, runner = self.loop, self.runner
        assert runner is not None

        async def shutdown() -> None:
            await runner.shutdown()
            await runner.cleanup()

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        self.thread.join(10)
        loop.close()
        self.loop = None
        # the same port again, for start()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", self.port))
