"""HTTP I/O with the providers, for every adapter, over one shared aiohttp client.

Transport failures are mapped here, at one boundary, to the gateway's errors:
a refused or reset connection is a retryable `UpstreamError` (502), a timeout
an `UpstreamTimeoutError` (504), a cut stream an `UpstreamError`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import orjson

from ai_service.errors import ServiceError, UpstreamError, UpstreamTimeoutError
from ai_service.providers.base import Adapter, ChatRequest, ChatResult, StreamEvent, StreamParser


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float
    first_byte: float
    stream_idle: float


def make_client(pool_size: int, connect_timeout: float) -> aiohttp.ClientSession:
    """The shared pooled client (call inside a running loop; close it in the lifespan)."""
    connector = aiohttp.TCPConnector(
        limit=pool_size, limit_per_host=pool_size, ttl_dns_cache=300, enable_cleanup_closed=True
    )
    timeout = aiohttp.ClientTimeout(total=None, connect=connect_timeout)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        json_serialize=lambda obj: orjson.dumps(obj).decode(),
        auto_decompress=True,
        skip_auto_headers=("User-Agent",),
    )


def _transport_error(adapter: Adapter, exc: BaseException) -> ServiceError:
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return UpstreamTimeoutError(f"The {adapter.name} provider did not answer in time.")
    return UpstreamError(f"Could not reach the {adapter.name} provider.", retryable=True)


class Upstream:
    """Sends adapters' requests and reads their answers."""

    def __init__(self, client: aiohttp.ClientSession, timeouts: Timeouts) -> None:
        self.client = client
        self.timeouts = timeouts

    async def complete(self, adapter: Adapter, req: ChatRequest) -> ChatResult:
        """A non-streamed answer. Raises `ServiceError` for any upstream failure."""
        request = adapter.build_request(req)
        try:
            async with asyncio.timeout(self.timeouts.first_byte):
                async with self.client.post(
                    request.url, data=request.body, headers=request.headers
                ) as resp:
                    body = await resp.read()
                    status = resp.status
                    headers = resp.headers
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise _transport_error(adapter, exc) from exc
        if status >= 400:
            raise adapter.map_error(status, body, headers)
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise UpstreamError(f"The {adapter.name} provider sent an invalid answer.") from exc
        if not isinstance(data, dict):
            raise UpstreamError(f"The {adapter.name} provider sent an invalid answer.")
        return adapter.parse_response(data, req)

    async def open_stream(self, adapter: Adapter, req: ChatRequest) -> UpstreamStream:
        """Send a streaming request and wait for a successful status line."""
        request = adapter.build_request(req)
        try:
            async with asyncio.timeout(self.timeouts.first_byte):
                resp = await self.client.post(
                    request.url, data=request.body, headers=request.headers
                )
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise _transport_error(adapter, exc) from exc
        if resp.status >= 400:
            try:
                async with asyncio.timeout(self.timeouts.stream_idle):
                    body = await resp.read()
            except (aiohttp.ClientError, TimeoutError, OSError):
                body = b""
            finally:
                resp.release()
            raise adapter.map_error(resp.status, body, resp.headers)
        if not resp.content_type.startswith("text/event-stream"):
            resp.close()
            raise UpstreamError(f"The {adapter.name} provider did not answer with a stream.")
        return UpstreamStream(adapter, resp, adapter.stream_parser(req), self.timeouts)


class UpstreamStream:
    """An open upstream event stream; iterate it for normalized events, then close it."""

    def __init__(
        self,
        adapter: Adapter,
        resp: aiohttp.ClientResponse,
        parser: StreamParser,
        timeouts: Timeouts,
    ) -> None:
        self.adapter = adapter
        self.resp = resp
        self.parser = parser
        self.timeouts = timeouts

    def close(self) -> None:
        """Drop the connection at once (the upstream sees the cancellation)."""
        self.resp.close()

    async def events(self) -> AsyncIterator[list[StreamEvent]]:
        """Yield the events of each read from the upstream; raises when it fails or stalls.

        The body is read in whatever pieces the socket delivers and split into
        SSE messages (blank-line separated) here, with one idle timer
        rescheduled before each read.
        """
        content = self.resp.content
        idle = self.timeouts.stream_idle
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(None) as timer:
                async for batch in self._batches(content, timer, loop, idle):
                    yield batch
        except TimeoutError as exc:
            raise UpstreamTimeoutError(
                f"The {self.adapter.name} stream stalled for {idle:g} s."
            ) from exc

    async def _batches(
        self,
        content: aiohttp.StreamReader,
        timer: asyncio.Timeout,
        loop: asyncio.AbstractEventLoop,
        idle: float,
    ) -> AsyncIterator[list[StreamEvent]]:
        parser = self.parser
        buffer = b""
        while True:
            timer.reschedule(loop.time() + idle)
            try:
                piece = await content.readany()
            except (aiohttp.ClientError, OSError) as exc:
                raise UpstreamError(f"The {self.adapter.name} stream was cut.") from exc
            if not piece:
                if parser.done:
                    return
                raise UpstreamError(f"The {self.adapter.name} stream ended before it was done.")
            buffer += piece
            if b"\r" in buffer:
                buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            if b"\n\n" not in buffer:
                continue
            *messages, buffer = buffer.split(b"\n\n")
            batch: list[StreamEvent] = []
            for message in messages:
                batch.extend(parse_message(parser, message))
                if parser.done:
                    break
            if batch:
                timer.reschedule(None)  # the client's pace is not the upstream's stall
                yield batch
            if parser.done:
                return


def parse_message(parser: StreamParser, message: bytes) -> list[StreamEvent]:
    """Feed one SSE message (its `event:` and `data:` lines) to the parser."""
    if message[:6] == b"data: " and b"\n" not in message:
        return parser.feed(None, message[6:].decode())
    event: str | None = None
    data: list[str] = []
    for line in message.decode().split("\n"):
        if not line or line[0] == ":":
            continue
        name, _, value = line.partition(":")
        if value[:1] == " ":
            value = value[1:]
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
    if not data:
        return []
    return parser.feed(event, "\n".join(data))
