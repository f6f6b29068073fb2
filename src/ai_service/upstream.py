"""HTTP I/O with the providers, for every adapter, over one shared aiohttp client.

Transport failures are mapped here, at one boundary, to the gateway's errors:
a refused or reset connection is a retryable `UpstreamError` (502), a timeout
an `UpstreamTimeoutError` (504), a cut stream an `UpstreamError`.

The client's pool has no ceiling of its own: a request never waits unseen for
a connection. The one limit is `waits.HostLimits` (`upstream_max_connections`
per host), which holds each connection's place from the request until its
answer was read or its stream closed, and whose waits are measured and bounded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass

import aiohttp
import orjson
from multidict import CIMultiDictProxy

from ai_service.errors import ServiceError, UpstreamError, UpstreamTimeoutError
from ai_service.providers.base import (
    Adapter,
    ChatRequest,
    ChatResult,
    JsonObject,
    StreamEvent,
    StreamParser,
    UpstreamRequest,
)
from ai_service.waits import FREE, HostLimits, Slot

log = logging.getLogger("ai_service.upstream")


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float
    first_byte: float
    stream_idle: float


# a stream's bytes read ahead of its client: aiohttp stops reading the socket past twice
# this (its default, 64 KiB, let a client that reads slowly hold some 300 KiB a stream)
READ_BUFFER = 16 * 1024


def make_client(connect_timeout: float) -> aiohttp.ClientSession:
    """The shared pooled client (call inside a running loop; close it in the lifespan).

    Its connector has no limit (aiohttp's would queue requests unseen, and
    count the wait as the connect timeout): `HostLimits` is the limit.
    """
    connector = aiohttp.TCPConnector(
        limit=0, limit_per_host=0, ttl_dns_cache=300, enable_cleanup_closed=True
    )
    timeout = aiohttp.ClientTimeout(total=None, connect=connect_timeout)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        json_serialize=lambda obj: orjson.dumps(obj).decode(),
        auto_decompress=True,
        skip_auto_headers=("User-Agent",),
        read_bufsize=READ_BUFFER,
    )


# told every answer's headers, with the adapter that sent it (the pools' headroom)
Observer = Callable[[Adapter, Mapping[str, str]], None]
# the headers to send a request with (tracing's: its attempt's `traceparent` added)
Headers = Callable[[UpstreamRequest], dict[str, str]]


def _status_error(
    adapter: Adapter, status: int, body: bytes, headers: CIMultiDictProxy[str]
) -> ServiceError:
    error = adapter.map_error(status, body, headers)
    error.upstream_status = status
    return error


def _transport_error(adapter: Adapter, exc: BaseException) -> ServiceError:
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return UpstreamTimeoutError(f"The {adapter.name} provider did not answer in time.")
    return UpstreamError(f"Could not reach the {adapter.name} provider.", retryable=True)


class Upstream:
    """Sends adapters' requests and reads their answers."""

    def __init__(
        self, client: aiohttp.ClientSession, timeouts: Timeouts, limits: HostLimits | None = None
    ) -> None:
        self.client = client
        self.timeouts = timeouts
        self.observe: Observer | None = None
        self.trace: Headers | None = None
        self.limits = limits
        # a whole non-streamed answer, sent and read, within the first-byte timeout
        self._answer_timeout = aiohttp.ClientTimeout(
            total=timeouts.first_byte, connect=timeouts.connect
        )

    async def complete(
        self, adapter: Adapter, req: ChatRequest, request: UpstreamRequest | None = None
    ) -> ChatResult:
        """A non-streamed answer. Raises `ServiceError` for any upstream failure.

        `request` is `req` already built by the adapter, if it was.
        """
        data = await self.exchange(adapter, request or adapter.build_request(req))
        return adapter.parse_response(data, req)

    async def exchange(self, adapter: Adapter, request: UpstreamRequest) -> JsonObject:
        """Send `request` and read its JSON object answer. Raises `ServiceError` for any
        upstream failure (an error status, a timeout, an answer that is not a JSON object)."""
        slot = await self._slot(adapter, request)
        sent = request.headers if self.trace is None else self.trace(request)
        try:
            async with self.client.request(
                request.method,
                request.url,
                data=request.body or None,
                headers=sent,
                timeout=self._answer_timeout,
            ) as resp:
                body = await resp.read()
                status = resp.status
                headers = resp.headers
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise _transport_error(adapter, exc) from exc
        finally:
            slot.release()
        if self.observe is not None:
            self.observe(adapter, headers)
        if status >= 400:
            raise _status_error(adapter, status, body, headers)
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise UpstreamError(f"The {adapter.name} provider sent an invalid answer.") from exc
        if not isinstance(data, dict):
            raise UpstreamError(f"The {adapter.name} provider sent an invalid answer.")
        return data

    async def open_stream(
        self, adapter: Adapter, req: ChatRequest, request: UpstreamRequest | None = None
    ) -> UpstreamStream:
        """Send a streaming request and wait for a successful status line."""
        request = request or adapter.build_request(req)
        return await self.open_events(adapter, request, adapter.stream_parser(req))

    async def open_events(
        self, adapter: Adapter, request: UpstreamRequest, parser: StreamParser
    ) -> UpstreamStream:
        """Send `request`, wait for a successful status line; its events go to `parser`.
        Raises `ServiceError` for any upstream failure before the stream began."""
        slot = await self._slot(adapter, request)
        sent = request.headers if self.trace is None else self.trace(request)
        try:
            async with asyncio.timeout(self.timeouts.first_byte):
                resp = await self.client.post(request.url, data=request.body, headers=sent)
        except BaseException as exc:
            slot.release()
            if isinstance(exc, aiohttp.ClientError | TimeoutError | OSError):
                raise _transport_error(adapter, exc) from exc
            raise
        if self.observe is not None:
            self.observe(adapter, resp.headers)
        if resp.status >= 400 or not resp.content_type.startswith("text/event-stream"):
            slot.release()
        if resp.status >= 400:
            try:
                async with asyncio.timeout(self.timeouts.stream_idle):
                    body = await resp.read()
            except (aiohttp.ClientError, TimeoutError, OSError):
                body = b""
            finally:
                resp.release()
            raise _status_error(adapter, resp.status, body, resp.headers)
        if not resp.content_type.startswith("text/event-stream"):
            resp.close()
            raise UpstreamError(f"The {adapter.name} provider did not answer with a stream.")
        return UpstreamStream(adapter, resp, parser, self.timeouts, slot)

    async def _slot(self, adapter: Adapter, request: UpstreamRequest) -> Slot:
        """The request's place under its host's connection limit (waits, bounded)."""
        if self.limits is None:
            return FREE
        return await self.limits.acquire(request.url, adapter.name)


class UpstreamStream:
    """An open upstream event stream; iterate it for normalized events, then close it."""

    def __init__(
        self,
        adapter: Adapter,
        resp: aiohttp.ClientResponse,
        parser: StreamParser,
        timeouts: Timeouts,
        slot: Slot = FREE,
    ) -> None:
        self.adapter = adapter
        self.resp = resp
        self.parser = parser
        self.timeouts = timeouts
        self.slot = slot

    def close(self) -> None:
        """Drop the connection at once (the upstream sees the cancellation)."""
        self.resp.close()
        self.slot.release()

    def finish(self) -> None:
        """After a complete stream: hand the connection back to the pool for the next request.

        The upstream's last event can arrive a moment before the end of its
        body (the last chunk of a chunked body); that end is then awaited in
        the background, briefly, so the connection is kept rather than dropped.
        """
        resp = self.resp
        if resp.content.is_eof():
            resp.release()
        elif self.parser.done:
            task = asyncio.get_running_loop().create_task(_release_at_end(resp, self.slot))
            _RELEASING.add(task)
            task.add_done_callback(_RELEASING.discard)
            return
        else:
            resp.close()
        self.slot.release()

    async def events(self) -> AsyncIterator[list[StreamEvent]]:
        """Yield the events of each read from the upstream; raises when it fails or stalls.

        The body is read in whatever pieces the socket delivers and split into
        SSE messages (blank-line separated) here. Only the time spent waiting
        for the upstream counts towards the idle timeout, not the client's pace.
        """
        content = self.resp.content
        parser = self.parser
        loop = asyncio.get_running_loop()
        watchdog = Watchdog(loop, self.timeouts.stream_idle, content)
        buffer = b""
        try:
            while True:
                watchdog.since = loop.time()
                try:
                    piece = await content.readany()
                except Stalled as exc:
                    raise UpstreamTimeoutError(
                        f"The {self.adapter.name} stream stalled for {watchdog.idle:g} s."
                    ) from exc
                except (aiohttp.ClientError, OSError) as exc:
                    raise UpstreamError(f"The {self.adapter.name} stream was cut.") from exc
                watchdog.since = None
                if not piece:
                    if parser.done:
                        return
                    raise UpstreamError(f"The {self.adapter.name} stream ended before it was done.")
                if not buffer and piece.find(b"\n\n") == len(piece) - 2 and b"\r" not in piece:
                    # the common read: exactly one whole message, its bytes the frame
                    batch = parse_message(parser, piece[:-2], piece)
                    if batch:
                        yield batch
                    if parser.done:
                        return
                    continue
                buffer += piece
                if b"\r" in buffer:
                    buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
                if b"\n\n" not in buffer:
                    continue
                *messages, buffer = buffer.split(b"\n\n")
                if len(messages) == 1:
                    batch = parse_message(parser, messages[0])
                else:
                    batch = []
                    for message in messages:
                        try:
                            batch.extend(parse_message(parser, message))
                        except ServiceError:
                            if batch:  # what came before the error reaches the client first
                                yield batch
                            raise
                        if parser.done:
                            break
                if batch:
                    yield batch
                if parser.done:
                    return
        finally:
            watchdog.stop()


_RELEASING: set[asyncio.Task[None]] = set()
END_WAIT_SECONDS = 1.0


async def _release_at_end(resp: aiohttp.ClientResponse, slot: Slot) -> None:
    """Read a finished stream's body to its end, then release its connection (else drop it)."""
    try:
        await _read_to_end(resp)
    finally:
        slot.release()


async def _read_to_end(resp: aiohttp.ClientResponse) -> None:
    try:
        async with asyncio.timeout(END_WAIT_SECONDS):
            while piece := await resp.content.readany():
                if piece.strip():
                    break  # more than the end after the last event: not a connection to reuse
            else:
                resp.release()
                return
    except Exception as exc:  # any failure here only costs the connection
        log.debug("upstream connection dropped after a stream: %r", exc)
    resp.close()


class Stalled(Exception):
    """Raised into a stream's pending read by its `Watchdog`."""


class Watchdog:
    """Fails a stream's pending read once it has waited `idle` seconds, with one timer.

    The reader sets `since` to the loop time before each read and to None
    after it; the timer, re-armed from those marks, costs nothing per read.
    """

    __slots__ = ("_handle", "_loop", "content", "idle", "since")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, idle: float, content: aiohttp.StreamReader
    ) -> None:
        self._loop = loop
        self.idle = idle
        self.content = content
        self.since: float | None = None
        self._handle: asyncio.TimerHandle | None = loop.call_at(loop.time() + idle, self._check)

    def _check(self) -> None:
        now = self._loop.time()
        since = self.since
        if since is not None and now - since >= self.idle - 0.001:  # timers fire to the ms
            self._handle = None
            self.content.set_exception(Stalled())
            return
        start = now if since is None else since
        self._handle = self._loop.call_at(start + self.idle, self._check)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


def parse_message(
    parser: StreamParser, message: bytes, frame: bytes | None = None
) -> list[StreamEvent]:
    """Feed one SSE message (its `event:` and `data:` lines, without the blank line that
    ends it; `frame`, if given, is the message with it) to the parser. The two shapes
    providers send, `data: X` and `event: N` + `data: X`, are read without the line
    parser and handed over with their bytes, so a parser that relays an event needs not
    encode it again.
    """
    if message[:6] == b"data: ":
        if b"\n" not in message:
            return parser.feed(None, message[6:].decode(), frame or message + b"\n\n")
    elif message[:7] == b"event: ":
        end = message.find(b"\n")
        if message[end + 1 : end + 7] == b"data: " and message.find(b"\n", end + 1) < 0:
            event = message[7:end].decode()
            return parser.feed(event, message[end + 7 :].decode(), frame or message + b"\n\n")
    event_name: str | None = None
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
            event_name = value
    if not data:
        return []
    return parser.feed(event_name, "\n".join(data))
