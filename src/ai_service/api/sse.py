"""Server-sent events: an ASGI response that notices disconnects at once.

`SSEResponse` sends frames from an async iterator while a small task listens
for the client's `http.disconnect`; on disconnect the sending task is
cancelled, so the upstream request is dropped without waiting for the next
chunk. The disconnect can land at any await of the frames' generator, its
settlement included: the generator must not lose work to that cancellation
(`respond.Relay` settles in a shielded task), and `on_close` is called once
the response is over, whether or not the generator ever ran.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


class SSEResponse(Response):
    """An ASGI response streaming `frames` as `text/event-stream`."""

    def __init__(
        self,
        frames: AsyncIterator[bytes],
        headers: Mapping[str, str],
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.frames = frames
        self.on_close = on_close
        self.status_code = 200
        self.background = None
        self.raw_headers = HEADERS + [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        self._sending = True  # until the last frame is handed to the server
        self._gone = False  # the client disconnected while frames were still being sent

    async def __call__(self, _scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            task = asyncio.current_task()
            assert task is not None
            watcher = asyncio.ensure_future(self._watch(receive, task))
            try:
                await self._send_all(send)
            except asyncio.CancelledError:
                if not self._gone:
                    raise  # cancelled from outside (shutdown): not ours to swallow
                task.uncancel()
            finally:
                watcher.cancel()
        finally:
            if self.on_close is not None:
                self.on_close()  # whatever happened to the frames' generator

    async def _send_all(self, send: Send) -> None:
        try:
            async for chunk in self.frames:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            self._sending = False
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            pass  # the client went away; the frames' generator settles as cancelled
        finally:
            await self.frames.aclose()  # type: ignore[attr-defined]  # async generator

    async def _watch(self, receive: Receive, sender: asyncio.Task[object]) -> None:
        """Cancel the sending task as soon as the client disconnects mid-stream."""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                if self._sending:
                    self._gone = True
                    sender.cancel()
                return
