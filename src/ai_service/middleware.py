"""A pure ASGI middleware giving every request an id, echoed as `X-Request-ID`."""

from __future__ import annotations

import re
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_VALID = re.compile(rb"^[A-Za-z0-9._:-]{1,64}$")


def new_request_id() -> str:
    return "req_" + uuid.uuid4().hex


class RequestIdMiddleware:
    """Takes a valid client `X-Request-ID` or makes one; stores it in scope state."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                given = value if _VALID.match(value) else None
                break
        echo = given if given is not None else new_request_id().encode()
        scope.setdefault("state", {})["request_id"] = new_request_id()
        scope["state"]["client_request_id"] = echo.decode()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0] != b"x-request-id"]
                headers.append((b"x-request-id", echo))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_id)
