"""The load generator: N keep-alive connections, each sending one request after another.

Raw asyncio + httptools on uvloop, so that the generator itself costs a few
microseconds per request. It warms up, then measures a bounded window:
requests that complete inside the window give the throughput and the latency
percentiles (for streams also the time to the first content token, the first
event whose text is not empty). The URL's path names the API: Chat Completions,
OpenAI's Responses API (`.../responses`) or Anthropic's Messages API
(`.../messages`). Every non-200 answer, error event, cut connection, timeout,
and stream that did not end with its API's last event (`data: [DONE]`,
`response.completed`, `message_stop`) is a failure, counted over the whole run.
At the window's edges it reads the CPU time of the watched processes (a
server's process tree; the PostgreSQL backends of a database) and of each CPU.
With several `--url`s (instances of one server), the connections are spread
over them evenly, connection i to URL i mod n.

    python -m bench.loadgen --url http://127.0.0.1:8080/ai/openai/chat/completions \
        --body-file body.json --header "X-API-Key: ..." -c 64 --warmup 2 --duration 10
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httptools
import orjson
import uvloop

from bench import procs

CONTENT = re.compile(rb'"content":"[^"]')
DONE_TAIL = b"data: [DONE]\n\n"
ERROR_EVENT = b'data: {"error"'


@dataclass(frozen=True, slots=True)
class Api:
    """How one API's answers look: what the load generator checks."""

    token: re.Pattern[bytes]  # a stream's first content token
    error: bytes  # an in-stream error event
    last: bytes | None  # the first line of a stream's last event (None: `data: [DONE]`)
    body: bytes  # what a non-streamed answer holds


CHAT = Api(CONTENT, ERROR_EVENT, None, b'"choices"')
APIS = {
    "/responses": Api(
        re.compile(rb'"delta":"[^"]'),
        b"event: error\n",
        b"event: response.completed\n",
        b'"output"',
    ),
    "/messages": Api(
        re.compile(rb'"text":"[^"]'), b"event: error\n", b"event: message_stop\n", b'"content"'
    ),
}


def api_of(path: str) -> Api:
    """The API a URL path speaks: Chat Completions unless it ends in one of `APIS`."""
    return next((api for end, api in APIS.items() if path.endswith(end)), CHAT)


@dataclass
class Outcome:
    ok: bool
    reason: str = ""
    ttft: float | None = None


class Conn(asyncio.Protocol):
    """One client connection; `request()` returns the outcome of one exchange."""

    def __init__(self, stream: bool, api: Api = CHAT) -> None:
        self.stream = stream
        self.api = api
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.future: asyncio.Future[Outcome] | None = None
        self.started = 0.0
        self.status = 0
        self.ttft: float | None = None
        self.tail = b""
        self.body: list[bytes] = []
        self.error_event = False
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's own class

    def connection_lost(self, _exc: Exception | None) -> None:
        self.closed = True
        self._finish(Outcome(False, "connection"))

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._finish(Outcome(False, "bad_http"))
            self.close()

    def request(self, payload: bytes) -> asyncio.Future[Outcome]:
        assert self.transport is not None
        self.future = asyncio.get_running_loop().create_future()
        self.status, self.ttft, self.tail, self.body, self.error_event = 0, None, b"", [], False
        self.started = time.perf_counter()
        self.transport.write(payload)
        return self.future

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        self.closed = True

    def _finish(self, outcome: Outcome) -> None:
        future, self.future = self.future, None
        if future is not None and not future.done():
            future.set_result(outcome)

    def whole(self) -> bool:
        """Whether the stream ended with its API's last event, complete."""
        last = self.api.last
        if last is None:
            return self.tail.endswith(DONE_TAIL)
        return self.tail.startswith(last) and self.tail.endswith(b"\n\n")

    # httptools callbacks
    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        if not self.stream:
            self.body.append(body)
            return
        api = self.api
        if self.ttft is None and api.token.search(body):
            self.ttft = time.perf_counter() - self.started
        if api.error in body:
            self.error_event = True
        if api.last is None:
            self.tail = (self.tail + body)[-64:]
        else:  # the bytes from the start of the last event on (it may span pieces)
            data = self.tail + body
            cut = data.rfind(b"\n\n", 0, len(data) - 1)
            self.tail = data[cut + 2 :] if cut >= 0 else data

    def on_message_complete(self) -> None:
        if not self.parser.should_keep_alive():
            self.closed = True
        if self.status != 200:
            outcome = Outcome(False, f"status_{self.status}")
        elif self.stream:
            if self.error_event:
                outcome = Outcome(False, "error_event")
            elif not self.whole():
                outcome = Outcome(False, "truncated")
            else:
                outcome = Outcome(True, ttft=self.ttft)
        elif self.api.body not in b"".join(self.body):
            outcome = Outcome(False, "bad_body")
        else:
            outcome = Outcome(True)
        self._finish(outcome)
        if self.closed:
            self.close()


@dataclass
class Watch:
    """CPU time to read at the window's edges: `name=PID[,PID...]` (process trees, summed)
    or `name=pg:DB`."""

    name: str
    pids: list[int] = field(default_factory=list)
    database: str | None = None

    @classmethod
    def parse(cls, spec: str) -> Watch:
        name, _, target = spec.partition("=")
        if target.startswith("pg:"):
            return cls(name, database=target[3:])
        return cls(name, pids=[int(pid) for pid in target.split(",")])

    def read(self) -> float:
        if self.database is None:
            return sum(procs.tree_cpu(pid) for pid in self.pids)
        return procs.pg_cpu(self.database)


@dataclass(frozen=True)
class Endpoint:
    """One server instance: where to connect, and the request for it."""

    host: str
    port: int
    payload: bytes


@dataclass
class Run:
    endpoints: list[Endpoint]
    stream: bool
    api: Api
    concurrency: int
    warmup: float
    duration: float
    max_requests: int
    timeout: float
    watches: list[Watch]
    latencies: list[float] = field(default_factory=list)
    ttfts: list[float] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)
    sent = 0
    completed = 0
    window_open = False
    stopping = False
    t0 = 0.0
    t1 = 0.0
    conns: list[Conn] = field(default_factory=list)
    # per worker: answers completed in the window, and the times of its first and last
    spans: list[list[float]] = field(default_factory=list)

    def fail(self, reason: str) -> None:
        self.failures[reason] = self.failures.get(reason, 0) + 1

    async def connect(self, endpoint: Endpoint) -> Conn:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(
            lambda: Conn(self.stream, self.api), endpoint.host, endpoint.port
        )
        self.conns.append(conn)
        return conn

    async def worker(self, endpoint: Endpoint) -> None:
        conn: Conn | None = None
        span = [0.0, 0.0, 0.0]
        self.spans.append(span)
        while not self.stopping and self.sent < self.max_requests:
            if conn is None or conn.closed:
                try:
                    conn = await self.connect(endpoint)
                except OSError:
                    self.fail("connect")
                    await asyncio.sleep(0.05)
                    continue
            self.sent += 1
            try:
                outcome = await conn.request(endpoint.payload)
            except Exception:  # a bug here must show as a failure, not as silence
                outcome = Outcome(False, "client_error")
            end = time.perf_counter()
            if not outcome.ok:
                self.fail(outcome.reason)
                conn.close()
                conn = None
                continue
            self.completed += 1
            if self.window_open:
                if not span[0]:
                    span[1] = end
                span[0] += 1
                span[2] = end
                self.latencies.append(end - conn.started)
                if outcome.ttft is not None:
                    self.ttfts.append(outcome.ttft)
        if conn is not None:
            conn.close()

    async def watchdog(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            now = time.perf_counter()
            for conn in self.conns:
                if conn.future is not None and now - conn.started > self.timeout:
                    conn._finish(Outcome(False, "timeout"))
                    conn.close()
            self.conns = [c for c in self.conns if not c.closed]

    def sample(self) -> tuple[dict[str, float], dict[int, float]]:
        return {w.name: w.read() for w in self.watches}, procs.cpu_busy()

    async def run(self) -> dict[str, Any]:
        ends = self.endpoints
        workers = [
            asyncio.ensure_future(self.worker(ends[i % len(ends)])) for i in range(self.concurrency)
        ]
        dog = asyncio.ensure_future(self.watchdog())
        await asyncio.sleep(self.warmup)
        cpu0, busy0 = self.sample()
        self.t0, self.window_open = time.perf_counter(), True
        await asyncio.sleep(self.duration)
        self.t1, self.window_open = time.perf_counter(), False
        cpu1, busy1 = self.sample()
        in_window = len(self.latencies)
        self.stopping = True
        _, pending = await asyncio.wait(workers, timeout=self.timeout + 5)
        for task in pending:
            task.cancel()
            self.fail("unfinished")
        dog.cancel()
        for conn in self.conns:
            conn.close()
        window = self.t1 - self.t0
        return {
            "concurrency": self.concurrency,
            "stream": self.stream,
            "window_s": round(window, 3),
            "requests": in_window,
            "requests_total": self.completed,
            "rps": self.throughput(in_window, window),
            "rps_window": round(in_window / window, 1) if window > 0 else 0.0,
            "latency_ms": percentiles(self.latencies),
            "ttft_ms": percentiles(self.ttfts) if self.stream else None,
            "failures": sum(self.failures.values()),
            "failure_kinds": self.failures,
            "cpu_s": {name: round(cpu1[name] - cpu0[name], 3) for name in cpu0},
            "core_busy_s": {str(c): round(busy1[c] - busy0.get(c, 0.0), 3) for c in busy1},
        }

    def throughput(self, answers: int, window: float) -> float:
        """Answers per second: each worker's rate between its first and last answer of the
        window, summed.

        Counting the answers inside the window is off by up to one answer per
        worker, depending on where the window's edges fall; with every worker's
        requests in step (a fixed-delay upstream) that is up to `concurrency`
        answers at once. A worker's own rate has no such edge.
        """
        rates = [
            (n - 1) / (last - first) for n, first, last in self.spans if n >= 2 and last > first
        ]
        if len(rates) < len(self.spans) or not rates:
            return round(answers / window, 1) if window > 0 else 0.0
        return round(sum(rates), 1)


def percentiles(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 3)

    return {
        "p50": at(0.50),
        "p90": at(0.90),
        "p99": at(0.99),
        "max": round(ordered[-1] * 1000, 3),
        "mean": round(sum(ordered) / len(ordered) * 1000, 3),
    }


def build_request(url: str, body: bytes, headers: list[str]) -> tuple[Endpoint, Api]:
    parts = urlsplit(url)
    if parts.hostname != "127.0.0.1" or parts.port is None:
        raise SystemExit("loopback only: the URL must be http://127.0.0.1:PORT/...")
    lines = [
        f"POST {parts.path} HTTP/1.1",
        f"Host: 127.0.0.1:{parts.port}",
        "Content-Type: application/json",
        "Accept: */*",
        f"Content-Length: {len(body)}",
        *headers,
    ]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode()
    return Endpoint("127.0.0.1", parts.port, head + body), api_of(parts.path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--url", action="append", required=True, help="repeat for instances sharing the load"
    )
    parser.add_argument("--body-file", type=Path, required=True)
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("-c", "--concurrency", type=int, default=1)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--max-requests", type=int, default=2_000_000)
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument(
        "--watch", action="append", default=[], help="name=PID[,PID...] or name=pg:DATABASE"
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    body = args.body_file.read_bytes()
    built = [build_request(url, body, args.header) for url in args.url]
    if len({api for _, api in built}) > 1:
        raise SystemExit("every --url must speak the same API")
    api = built[0][1]
    run = Run(
        endpoints=[endpoint for endpoint, _ in built],
        stream=orjson.loads(body).get("stream") is True,
        api=api,
        concurrency=args.concurrency,
        warmup=args.warmup,
        duration=min(args.duration, 300.0),
        max_requests=args.max_requests,
        timeout=args.timeout,
        watches=[Watch.parse(spec) for spec in args.watch],
    )
    result = uvloop.run(run.run())
    data = orjson.dumps(result, option=orjson.OPT_INDENT_2)
    if args.out is not None:
        args.out.write_bytes(data)
    else:
        sys.stdout.buffer.write(data + b"\n")


if __name__ == "__main__":
    main()
