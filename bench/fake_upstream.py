"""A fast fake upstream: raw asyncio + httptools on uvloop, loopback only.

`POST .../chat/completions` answers in OpenAI's wire format: a
`chat.completion` object, or (with `"stream": true`) `chat.completion.chunk`
events (a role chunk, N content chunks, a finish chunk, a usage chunk when
`stream_options.include_usage` is set) and `data: [DONE]`, chunked, on a
keep-alive connection.

`POST .../responses` speaks OpenAI's Responses API: a `response` object, or
named events whose data carry `type` and `sequence_number`
(`response.created`, `response.in_progress`, `response.output_item.added`,
`response.content_part.added`, N `response.output_text.delta`,
`response.output_text.done`, `response.content_part.done`,
`response.output_item.done`, `response.completed` with the usage), no `[DONE]`.

`POST .../messages` speaks Anthropic's Messages API: a `message` object, or
named events (`message_start` with the input usage, `content_block_start`,
`ping`, N `content_block_delta` text deltas, `content_block_stop`,
`message_delta` with the stop reason and the output tokens, `message_stop`).

Every API streams the same N words with the same pause between events.
`POST /_bench/config` sets the reply delay, the chunk count, the pause
between chunks, and whether answers carry OpenAI's rate-limit headers
(`x-ratelimit-*`, limits far above the load: what a pool reads on every
answer); `GET /_bench/stats` counts answers.

    python -m bench.fake_upstream --port 9001
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import time
from collections.abc import Callable
from typing import Any

import httptools
import orjson
import uvloop

TEXT = (
    "The quick brown fox jumps over the lazy dog while the bench counts "
    "every token that the fake upstream sends back to the gateway under test"
)
WORDS = TEXT.split(" ")
DONE = b"data: [DONE]\n\n"
RATE_LIMIT_HEADERS = (
    b"x-ratelimit-limit-requests: 1000000\r\nx-ratelimit-remaining-requests: 999999\r\n"
    b"x-ratelimit-reset-requests: 1ms\r\nx-ratelimit-limit-tokens: 1000000000\r\n"
    b"x-ratelimit-remaining-tokens: 999990000\r\nx-ratelimit-reset-tokens: 1ms\r\n"
)


class Config:
    def __init__(self) -> None:
        self.delay = 0.0  # seconds before the answer (or the first chunk)
        self.chunks = 24  # content chunks of a stream; words of an answer
        self.interval = 0.002  # seconds between stream events
        self.first: float | None = None  # seconds before the second event (None: interval)
        self.answers = 0
        self.serial = 0  # answers of the Responses and Messages APIs, never reset: their ids
        self.headers = b""  # extra header lines of every answer

    def update(self, data: dict[str, Any]) -> None:
        self.delay = float(data.get("delay_ms", self.delay * 1000)) / 1000
        self.chunks = int(data.get("chunks", self.chunks))
        self.interval = float(data.get("interval_ms", self.interval * 1000)) / 1000
        if "rate_limit_headers" in data:
            self.headers = RATE_LIMIT_HEADERS if data["rate_limit_headers"] else b""
        first = data.get("first_ms")
        self.first = None if first is None else float(first) / 1000
        self.answers = 0


def _text(n: int) -> list[str]:
    return [(" " if i else "") + WORDS[i % len(WORDS)] for i in range(n)]


def completion(body: dict[str, Any], cfg: Config, n: int) -> bytes:
    words = _text(cfg.chunks)
    prompt = max(1, len(orjson.dumps(body.get("messages"))) // 4)
    return orjson.dumps(
        {
            "id": f"chatcmpl-bench{n:020d}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(words), "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": len(words),
                "total_tokens": prompt + len(words),
            },
            "system_fingerprint": "fp_bench",
        }
    )


def stream_events(body: dict[str, Any], cfg: Config, n: int) -> list[bytes]:
    head = {
        "id": f"chatcmpl-bench{n:020d}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": body.get("model"),
        "system_fingerprint": "fp_bench",
    }

    def event(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return b"data: " + orjson.dumps({**head, "choices": [choice]}) + b"\n\n"

    words = _text(cfg.chunks)
    events = [event({"role": "assistant", "content": "", "refusal": None})]
    events.extend(event({"content": word}) for word in words)
    events.append(event({}, "stop"))
    options = body.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage") is True:
        prompt = max(1, len(orjson.dumps(body.get("messages"))) // 4)
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": len(words),
            "total_tokens": prompt + len(words),
        }
        events.append(b"data: " + orjson.dumps({**head, "choices": [], "usage": usage}) + b"\n\n")
    events.append(DONE)
    return events


def _named(events: list[tuple[str, dict[str, Any]]], numbered: bool) -> list[bytes]:
    """Named SSE events; `numbered` puts `type` and `sequence_number` first in each data."""
    out = []
    for number, (name, data) in enumerate(events):
        head = {"type": name, "sequence_number": number} if numbered else {"type": name}
        out.append(b"event: %s\ndata: %s\n\n" % (name.encode(), orjson.dumps({**head, **data})))
    return out


def _response(body: dict[str, Any], n: int, output: list[Any], words: int) -> dict[str, Any]:
    """A Responses API `response` object: in progress, or (`words` > 0) final, with usage."""
    final = words > 0
    usage = None
    if final:
        prompt = max(1, len(orjson.dumps([body.get("instructions"), body.get("input")])) // 4)
        usage = {
            "input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": words,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": prompt + words,
        }
    created = int(time.time())
    return {
        "id": f"resp_bench{n:040x}",
        "object": "response",
        "created_at": created,
        "status": "completed" if final else "in_progress",
        "background": False,
        "completed_at": created if final else None,
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "max_tool_calls": None,
        "model": body.get("model"),
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "service_tier": "default" if final else "auto",
        "store": body.get("store", True),
        "temperature": 1.0,
        "text": {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": usage,
        "user": None,
        "metadata": {},
    }


def _message_item(n: int, text: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The Responses API's message output item and its `output_text` part."""
    part = {"type": "output_text", "annotations": [], "logprobs": [], "text": text}
    item = {
        "id": f"msg_bench{n:040x}",
        "type": "message",
        "status": "completed",
        "content": [part],
        "role": "assistant",
    }
    return item, part


def response_object(body: dict[str, Any], cfg: Config, n: int) -> bytes:
    words = _text(cfg.chunks)
    item, _ = _message_item(n, "".join(words))
    return orjson.dumps(_response(body, n, [item], len(words)))


def response_events(body: dict[str, Any], cfg: Config, n: int) -> list[bytes]:
    words = _text(cfg.chunks)
    text = "".join(words)
    item, part = _message_item(n, text)
    opening = _response(body, n, [], 0)
    at = {"item_id": item["id"], "output_index": 0, "content_index": 0}
    added = {**item, "status": "in_progress", "content": []}
    events: list[tuple[str, dict[str, Any]]] = [
        ("response.created", {"response": opening}),
        ("response.in_progress", {"response": opening}),
        ("response.output_item.added", {"output_index": 0, "item": added}),
        ("response.content_part.added", {**at, "part": {**part, "text": ""}}),
    ]
    events.extend(("response.output_text.delta", {**at, "delta": w, "logprobs": []}) for w in words)
    events += [
        ("response.output_text.done", {**at, "text": text, "logprobs": []}),
        ("response.content_part.done", {**at, "part": part}),
        ("response.output_item.done", {"output_index": 0, "item": item}),
        ("response.completed", {"response": _response(body, n, [item], len(words))}),
    ]
    return _named(events, numbered=True)


def _message(body: dict[str, Any], n: int, content: list[Any], output: int) -> dict[str, Any]:
    """A Messages API `message` object."""
    prompt = max(1, len(orjson.dumps([body.get("system"), body.get("messages")])) // 4)
    return {
        "id": f"msg_01Bench{n:016d}",
        "type": "message",
        "role": "assistant",
        "model": body.get("model"),
        "content": content,
        "stop_reason": "end_turn" if content else None,
        "stop_sequence": None,
        "usage": {
            "input_tokens": prompt,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": output,
            "service_tier": "standard",
        },
    }


def message_object(body: dict[str, Any], cfg: Config, n: int) -> bytes:
    words = _text(cfg.chunks)
    content = [{"type": "text", "text": "".join(words)}]
    return orjson.dumps(_message(body, n, content, len(words)))


def message_events(body: dict[str, Any], cfg: Config, n: int) -> list[bytes]:
    words = _text(cfg.chunks)
    events: list[tuple[str, dict[str, Any]]] = [
        ("message_start", {"message": _message(body, n, [], 1)}),
        ("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
        ("ping", {}),
    ]
    events.extend(
        ("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": w}})
        for w in words
    )
    events += [
        ("content_block_stop", {"index": 0}),
        (
            "message_delta",
            {
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": len(words)},
            },
        ),
        ("message_stop", {}),
    ]
    return _named(events, numbered=False)


Answer = Callable[[dict[str, Any], Config, int], bytes]
Events = Callable[[dict[str, Any], Config, int], list[bytes]]
# the path's last segment -> (its answer, its stream); chat's is served first, apart
APIS: dict[bytes, tuple[Answer, Events]] = {
    b"/responses": (response_object, response_events),
    b"/messages": (message_object, message_events),
}
API_PATHS = tuple(APIS)


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


class Handler(asyncio.Protocol):
    """One client connection (HTTP/1.1 keep-alive, no pipelining needed)."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.body: list[bytes] = []
        self.task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's own class

    def connection_lost(self, _exc: Exception | None) -> None:
        self.transport = None
        if self.task is not None:
            self.task.cancel()

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._send(400, b"application/json", b'{"error":{"message":"bad request"}}')
            if self.transport is not None:
                self.transport.close()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.url = b""
        self.body = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        path = self.url.split(b"?", 1)[0]
        raw = b"".join(self.body)
        if path.endswith(b"/chat/completions"):
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError:
                self._send(400, b"application/json", b'{"error":{"message":"invalid json"}}')
                return
            self.cfg.answers += 1
            n = self.cfg.answers
            if body.get("stream") is True:
                self.task = asyncio.ensure_future(self._stream(body, n))
            elif self.cfg.delay > 0:
                self.task = asyncio.ensure_future(self._later(body, n))
            else:
                self._send(200, b"application/json", completion(body, self.cfg, n))
        elif path.endswith(API_PATHS):
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError:
                self._send(400, b"application/json", b'{"error":{"message":"invalid json"}}')
                return
            answer, events = APIS[path[path.rfind(b"/") :]]
            self.cfg.answers += 1
            self.cfg.serial += 1
            n = self.cfg.serial
            if body.get("stream") is True:
                self.task = asyncio.ensure_future(self._stream(body, n, events))
            elif self.cfg.delay > 0:
                self.task = asyncio.ensure_future(self._later(body, n, answer))
            else:
                self._send(200, b"application/json", answer(body, self.cfg, n))
        elif path == b"/_bench/config":
            self.cfg.update(orjson.loads(raw) if raw else {})
            self._send(200, b"application/json", b'{"ok":true}')
        elif path in (b"/_bench/stats", b"/healthz"):
            self._send(200, b"application/json", orjson.dumps({"answers": self.cfg.answers}))
        else:
            self._send(404, b"application/json", b'{"error":{"message":"not found"}}')

    def _send(self, status: int, ctype: bytes, payload: bytes) -> None:
        if self.transport is None:
            return
        reason = b"OK" if status == 200 else b"Error"
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\n%s\r\n%s"
            % (status, reason, ctype, len(payload), self.cfg.headers, payload)
        )

    async def _later(self, body: dict[str, Any], n: int, answer: Answer = completion) -> None:
        await asyncio.sleep(self.cfg.delay)
        self._send(200, b"application/json", answer(body, self.cfg, n))

    async def _stream(self, body: dict[str, Any], n: int, build: Events = stream_events) -> None:
        cfg = self.cfg
        if cfg.delay > 0:
            await asyncio.sleep(cfg.delay)
        events = build(body, cfg, n)
        if self.transport is None:
            return
        self.transport.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
            b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n"
            + cfg.headers
            + b"\r\n"
            + _chunk(events[0])
        )
        for index, event in enumerate(events[1:]):
            pause = cfg.first if index == 0 and cfg.first is not None else cfg.interval
            if pause > 0:
                await asyncio.sleep(pause)
            if self.transport is None:
                return
            self.transport.write(_chunk(event))
        self.transport.write(b"0\r\n\r\n")


async def serve(port: int) -> None:
    cfg = Config()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Handler(cfg), "127.0.0.1", port, backlog=1024)
    stopped = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopped.set)
    async with server:
        await stopped.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve(args.port))


if __name__ == "__main__":
    main()
