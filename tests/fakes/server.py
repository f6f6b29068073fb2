"""The machinery every fake upstream shares: a real aiohttp server on loopback.

``FakeServer`` runs an ``aiohttp.web`` app on ``127.0.0.1`` (ephemeral port) in
a background thread with its own event loop, so sync tests (official SDKs) and
async tests (any loop) can talk to it. It records every request, serves the
queued behaviours (``behaviours.py``) in FIFO order and carries out the
transport-level faults itself; subclasses (one per provider) only say how to
authenticate, validate and render answers, errors and stream frames.

A stream with no ``chunk_delay`` and no fault goes out in one write (cheap for
benchmarks); give ``Answer(chunk_delay=...)`` to see chunk-by-chunk timing.

The fake counts its streams open at once (``streams_open``, ``streams_peak``),
and ``hold()`` keeps every stream that begins after its status line until
``release()``: a test can see how many streams the gateway has open at the
upstream at the same moment.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from types import TracebackType
from typing import Any, ClassVar, Protocol, Self, TypeVar

import orjson
from aiohttp import web

from .behaviours import (
    Answer,
    Behaviour,
    ErrorReply,
    Hang,
    Malformed,
    ResetConnection,
    WrongContentType,
)
from .limits import KeyLimit, Verdict, openai_headers, request_tokens
from .records import RecordedRequest

# One frame of an SSE stream and whether it is a "delta chunk" (counted for
# cut_after / error_after / chunk_delay and in RecordedRequest.chunks_sent).
Frame = tuple[bytes, bool]

_DEFAULT_ANSWER = Answer()


class Surface(Protocol):
    """One endpoint that answers requests with queued behaviours (chat, responses, ...).

    The fake itself is the surface of its chat endpoint; other endpoints are small
    objects that ``FakeServer.surface`` returns for their path.
    """

    def streaming(self, body: dict[str, Any]) -> bool:
        """Whether this request is answered as an SSE stream."""
        ...

    def validate(self, body: Any, headers: dict[str, str]) -> ErrorReply | None: ...

    def answer_json(self, body: dict[str, Any], answer: Answer) -> object: ...

    def answer_frames(self, body: dict[str, Any], answer: Answer) -> Sequence[Frame]: ...

    def stream_error_frame(self, error: ErrorReply | None) -> bytes: ...


def dumps(obj: object) -> bytes:
    """Encode JSON compactly (the fakes' hot path)."""
    return orjson.dumps(obj)


def sse(data: object, event: str | None = None) -> bytes:
    """Encode one server-sent event whose data is ``data`` as JSON."""
    head = b"event: " + event.encode() + b"\n" if event else b""
    return head + b"data: " + dumps(data) + b"\n\n"


class FakeServer:
    """Base of the fake providers; use as a context manager or ``start()``/``stop()``."""

    flavour: ClassVar[str] = "fake"

    def __init__(
        self,
        api_key: str = "test-key",
        *,
        text: str | None = None,
        delay: float = 0.0,
        host: str = "127.0.0.1",
    ) -> None:
        self.api_key = api_key
        self.text = text if text is not None else f"Hello from {self.flavour}!"
        self.delay = delay
        self.host = host
        self.port: int | None = None
        self.created = int(time.time())
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._records: list[RecordedRequest] = []
        self._queue: deque[Behaviour] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self.key_limit: KeyLimit | None = None
        self.failing: ErrorReply | None = None
        self._gate: asyncio.Event | None = None  # set: streams run; clear: held (`hold`)
        self.streams_open = 0  # streams between their status line and their end, now
        self.streams_peak = 0  # the most open at once since the last `reset`

    # ---- lifecycle ---------------------------------------------------------

    @property
    def origin(self) -> str:
        if self.port is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The provider base URL a gateway would be configured with."""
        return self.origin

    def start(self) -> Self:
        """Start serving in a background thread; returns self. Raises if it cannot bind."""
        if self._thread is not None:
            return self
        loop = _new_loop()
        ready: asyncio.Future[int] = loop.create_future()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(self._serve(ready))
            loop.run_forever()
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name=f"fake-{self.flavour}", daemon=True)
        self._thread.start()
        self.port = asyncio.run_coroutine_threadsafe(_wait(ready), loop).result(timeout=10)
        return self

    def stop(self) -> None:
        """Stop serving; hung handlers are cancelled. Safe to call twice."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if self._runner is not None:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        self._loop = self._thread = self._runner = None
        self.port = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def _serve(self, ready: asyncio.Future[int]) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.on_response_prepare.append(_limit_headers)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        runner = web.AppRunner(
            app, handler_cancellation=True, access_log=None, shutdown_timeout=0.2
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, 0)
        await site.start()
        self._runner = runner
        self._gate = asyncio.Event()
        self._gate.set()
        ready.set_result(runner.addresses[0][1])  # the port the OS picked for port 0

    # ---- scripting and records ----------------------------------------------

    def enqueue(self, *behaviours: Behaviour) -> None:
        """Queue behaviours for the next valid requests, oldest first."""
        with self._lock:
            self._queue.extend(behaviours)

    @property
    def pending(self) -> int:
        """How many queued behaviours are still unused."""
        with self._lock:
            return len(self._queue)

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request received so far, oldest first."""
        with self._lock:
            return list(self._records)

    @property
    def last_request(self) -> RecordedRequest:
        with self._lock:
            if not self._records:
                raise AssertionError(f"{type(self).__name__} received no request")
            return self._records[-1]

    def limit(self, rpm: int, tpm: int = 1_000_000, window: float = 60.0) -> None:
        """Enforce a rate limit on the key: 429 once spent, the provider's headers always."""
        self.key_limit = KeyLimit(rpm, tpm, window)

    def fail(self, error: ErrorReply) -> None:
        """Answer every valid request with ``error`` until ``heal()``."""
        self.failing = error

    def heal(self) -> None:
        self.failing = None

    def limit_headers(self, verdict: Verdict) -> dict[str, str]:
        """The provider's rate-limit headers (OpenAI's; Anthropic's fake has its own)."""
        return openai_headers(verdict)

    def reset(self) -> None:
        """Forget recorded requests, queued behaviours, the key's limit and any failure
        (releases held streams)."""
        with self._lock:
            self._records.clear()
            self._queue.clear()
        self.key_limit = None
        self.failing = None
        if self._loop is not None:
            self.release()
        self.streams_peak = self.streams_open

    def hold(self) -> None:
        """Hold every stream after its status line, from now until `release()`."""
        self._in_loop(lambda gate: gate.clear())

    def release(self) -> None:
        """Let the held streams (and the next ones) run."""
        self._in_loop(lambda gate: gate.set())

    def _in_loop(self, change: Callable[[asyncio.Event], None]) -> None:
        async def run() -> None:
            assert self._gate is not None
            change(self._gate)

        assert self._loop is not None, "the fake is not started"
        asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=10)

    def _next(self) -> Behaviour:
        with self._lock:
            return self._queue.popleft() if self._queue else _DEFAULT_ANSWER

    def next_id(self) -> int:
        return next(self._ids)

    # ---- what a provider subclass supplies ----------------------------------

    def route(self, method: str, path: str) -> bool:
        """Whether ``method path`` is the provider's chat endpoint."""
        raise NotImplementedError

    def surface(self, method: str, path: str) -> Surface | None:
        """The endpoint that serves ``method path`` (the chat endpoint by default)."""
        return self if self.route(method, path) else None

    def reader(self, method: str, path: str) -> Callable[[], web.Response] | None:
        """A read (e.g. ``GET`` of a stored object): answered after authentication,
        without a body and without taking a queued behaviour."""
        return None

    def streaming(self, body: dict[str, Any]) -> bool:
        return body.get("stream") is True

    def not_found(self, method: str, path: str) -> web.Response:
        raise NotImplementedError

    def authenticate(self, headers: dict[str, str]) -> web.Response | None:
        """Return the provider's rejection, or None when the credentials are good."""
        raise NotImplementedError

    def validate(self, body: Any, headers: dict[str, str]) -> ErrorReply | None:
        """Return the provider's rejection of this body, or None when it is accepted."""
        raise NotImplementedError

    def error_response(self, error: ErrorReply) -> web.Response:
        raise NotImplementedError

    def answer_json(self, body: dict[str, Any], answer: Answer) -> dict[str, Any]:
        raise NotImplementedError

    def answer_frames(self, body: dict[str, Any], answer: Answer) -> Sequence[Frame]:
        raise NotImplementedError

    def stream_error_frame(self, error: ErrorReply | None) -> bytes:
        raise NotImplementedError

    # ---- request handling ----------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body: Any = orjson.loads(raw) if raw else None
        except ValueError:
            body = None
        record = RecordedRequest(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
            raw=raw,
            peer=request.transport.get_extra_info("peername") if request.transport else None,
        )
        with self._lock:
            self._records.append(record)
        try:
            response = await self._handle(request, record)
            if record.status is None and not record.cut:
                record.status = response.status
                record.completed = True
            return response
        except asyncio.CancelledError:
            record.disconnected = not record.cut
            raise
        except ConnectionError:
            record.disconnected = not record.cut
            raise
        finally:
            record._done.set()

    async def _handle(self, request: web.Request, record: RecordedRequest) -> web.StreamResponse:
        surface = self.surface(request.method, request.path)
        reader = self.reader(request.method, request.path)
        if surface is None and reader is None:
            return self.not_found(request.method, request.path)
        denied = self.authenticate(record.headers)
        if denied is not None:
            return denied
        if reader is not None:
            return reader()
        assert surface is not None
        if not isinstance(record.body, dict):
            return self.error_response(
                ErrorReply(400, "We could not parse the JSON body of your request.")
            )
        problem = surface.validate(record.body, record.headers)
        if problem is not None:
            return self.error_response(problem)
        if self.failing is not None:
            return self.error_response(self.failing)
        if self.key_limit is not None:
            verdict = self.key_limit.take(request_tokens(record.body, record.raw))
            headers = self.limit_headers(verdict)
            request[LIMIT_HEADERS] = headers
            if not verdict.allowed:
                wait = max(round(verdict.reset, 3), 0.001)
                return self.error_response(ErrorReply(429, retry_after=wait, headers=headers))
        behaviour = self._next()
        if self.delay:
            await asyncio.sleep(self.delay)
        while isinstance(behaviour, Hang):
            await asyncio.sleep(behaviour.seconds)
            behaviour = behaviour.then or _DEFAULT_ANSWER
        return await self._perform(request, record, behaviour, surface)

    async def _perform(
        self,
        request: web.Request,
        record: RecordedRequest,
        behaviour: Behaviour,
        surface: Surface,
    ) -> web.StreamResponse:
        body: dict[str, Any] = record.body
        streaming = surface.streaming(body)
        if isinstance(behaviour, ErrorReply):
            return self.error_response(behaviour)
        if isinstance(behaviour, WrongContentType):
            return web.Response(
                status=behaviour.status,
                text=behaviour.body,
                headers={"Content-Type": behaviour.content_type},
            )
        if isinstance(behaviour, ResetConnection):
            _reset(request, record)
            return web.Response()
        if isinstance(behaviour, Malformed):
            if not streaming:
                return web.Response(
                    body=b'{"id": "broken", "choices": [{"message": ',
                    content_type="application/json",
                )
            frames = surface.answer_frames(body, _DEFAULT_ANSWER)
            return await self._stream(request, record, surface, frames, Answer(), broken=behaviour)
        assert isinstance(behaviour, Answer)
        if not streaming:
            return web.Response(
                body=dumps(surface.answer_json(body, behaviour)), content_type="application/json"
            )
        frames = surface.answer_frames(body, behaviour)
        return await self._stream(request, record, surface, frames, behaviour)

    async def _stream(
        self,
        request: web.Request,
        record: RecordedRequest,
        surface: Surface,
        frames: Sequence[Frame],
        answer: Answer,
        broken: Malformed | None = None,
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
            }
        )
        await response.prepare(request)
        record.status = response.status
        self.streams_open += 1
        self.streams_peak = max(self.streams_peak, self.streams_open)
        try:
            assert self._gate is not None
            await self._gate.wait()
            return await self._frames(request, record, surface, response, frames, answer, broken)
        finally:
            self.streams_open -= 1

    async def _frames(
        self,
        request: web.Request,
        record: RecordedRequest,
        surface: Surface,
        response: web.StreamResponse,
        frames: Sequence[Frame],
        answer: Answer,
        broken: Malformed | None,
    ) -> web.StreamResponse:
        for _ in range(answer.keepalive):
            await response.write(b": keep-alive\n\n")
        if broken is None and not answer.chunk_delay and _no_faults(answer):
            # Fast path (benchmarks): nothing to interleave, so one write.
            await response.write(b"".join(frame for frame, _ in frames))
            record.chunks_sent = sum(1 for _, is_delta in frames if is_delta)
            record.completed = True
            await response.write_eof()
            return response
        last_delta = max((i for i, (_, is_delta) in enumerate(frames) if is_delta), default=-1)
        deltas = 0
        for index, (frame, is_delta) in enumerate([*frames, (b"", False)]):
            if is_delta or index == last_delta + 1:
                if _reached(deltas, answer.cut_after):
                    _cut(request, record)
                    return response
                if _reached(deltas, answer.error_after):
                    await response.write(surface.stream_error_frame(answer.error))
                    break
                if broken is not None and deltas >= broken.after_chunks:
                    await response.write(b'data: {"id": "broken", "choices": [{"delta": \n\n')
                    break
            if is_delta and answer.chunk_delay and deltas:
                await asyncio.sleep(answer.chunk_delay)
            if is_delta and answer.first_delay and not deltas:
                await asyncio.sleep(answer.first_delay)
            if index == len(frames) - 1 and answer.done_delay:
                await asyncio.sleep(answer.done_delay)
            if frame:
                await response.write(frame)
            if is_delta:
                deltas += 1
                record.chunks_sent = deltas
        else:
            record.completed = True
        if answer.end_delay:
            await asyncio.sleep(answer.end_delay)
        await response.write_eof()
        return response


FakeT = TypeVar("FakeT", bound=FakeServer)


@contextlib.contextmanager
def started(fakes: dict[str, FakeT]) -> Iterator[dict[str, FakeT]]:
    """Several fakes (one per key, say), started together and stopped together."""
    try:
        yield {name: fake.start() for name, fake in fakes.items()}
    finally:
        for fake in fakes.values():
            fake.stop()


LIMIT_HEADERS = web.RequestKey("limit_headers", dict[str, str])


async def _limit_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Every answer of a limited key carries the provider's rate-limit headers."""
    headers = request.get(LIMIT_HEADERS)
    if headers:
        for name, value in headers.items():
            response.headers.setdefault(name, value)


def _no_faults(answer: Answer) -> bool:
    return (
        answer.cut_after is None
        and answer.error_after is None
        and not answer.end_delay
        and not answer.first_delay
        and not answer.done_delay
    )


def _reached(deltas: int, limit: int | None) -> bool:
    return limit is not None and deltas >= limit


def _new_loop() -> asyncio.AbstractEventLoop:
    """uvloop when installed (it is, with uvicorn[standard]): the fakes stay cheap in benchmarks."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


async def _wait(future: asyncio.Future[int]) -> int:
    return await future


def _cut(request: web.Request, record: RecordedRequest) -> None:
    """Close the connection mid-body: what was written arrives, the terminator never does."""
    record.cut = True
    if request.transport is not None:
        request.transport.close()


def _reset(request: web.Request, record: RecordedRequest) -> None:
    """Abort the connection with a TCP RST (SO_LINGER 0) before any response byte."""
    record.cut = True
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
