"""A pure ASGI middleware: the request ids (the gateway's echoed as `X-Request-ID`) and counts.

Chat requests pass straight through: their endpoint sets the header and
counts itself, so the frames of a stream cross no extra wrapper.
"""

from __future__ import annotations

import itertools
import os
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ai_service.metrics import CHAT_PATH, Metrics, route_of

_VALID = re.compile(rb"^[A-Za-z0-9._:-]{1,64}$")


_PROCESS = os.urandom(8).hex()
_COUNTER = itertools.count(1)


def new_request_id() -> str:
    """A unique id: 64 random bits a process, then a counter (cheaper than a uuid4 each)."""
    return f"req_{_PROCESS}{next(_COUNTER):08x}"


def request_context(scope: Scope) -> bytes:
    """Give the request its ids in scope state; returns the id to echo as `X-Request-ID`.

    The echoed id is the gateway's own (`request_id`): the one its row and log
    lines carry. A valid client `X-Request-ID` is kept beside it
    (`client_request_id`), stored and logged with it.
    """
    given: str | None = None
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            given = value.decode() if _VALID.match(value) else None
            break
    request_id = new_request_id()
    state = scope.setdefault("state", {})
    state["request_id"] = request_id
    state["client_request_id"] = given
    return request_id.encode()


class RequestContextMiddleware:
    """Makes the request's id (echoed as `X-Request-ID`), keeps a valid client one beside it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        echo = request_context(scope)
        path: str = scope["path"]
        if CHAT_PATH.match(path):
            await self.app(scope, receive, send)
            return
        code = "500"

        async def send_with_id(message: Message) -> None:
            nonlocal code
            if message["type"] == "http.response.start":
                code = str(message["status"])
                headers = [h for h in message.get("headers", []) if h[0] != b"x-request-id"]
                headers.append((b"x-request-id", echo))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            app_state = getattr(scope.get("app"), "state", None)
            metrics: Metrics | None = getattr(getattr(app_state, "ai", None), "metrics", None)
            if metrics is not None:
                metrics.child(metrics.responses, route_of(path), code).inc()
