"""What the bench measures: the scenarios, the request bodies, and the run's timing."""

from __future__ import annotations

from dataclasses import dataclass

import orjson

CHUNKS = 24  # content chunks of every streamed answer (and words of every answer)
CHUNK_INTERVAL_MS = 2.0  # pause between two stream events of the fake upstream
MODEL = "gpt-5.4-mini"
CLAUDE_MODEL = "claude-haiku-4-5-20251001"  # priced by genai-prices, as MODEL
# the APIs: (path of the fake upstream, path of the gateway)
APIS = {
    "chat": ("/v1/chat/completions", "/ai/openai/chat/completions"),
    "responses": ("/v1/responses", "/ai/openai/responses"),
    "messages": ("/v1/messages", "/ai/claude/v1/messages"),
}
ANTHROPIC_VERSION = "anthropic-version: 2023-06-01"

MESSAGES = [
    {
        "role": "system",
        "content": "You are a concise assistant. Answer in one or two sentences, "
        "without lists, and say so when you do not know.",
    },
    {"role": "user", "content": "What is the capital of France, and why is it famous?"},
    {"role": "assistant", "content": "Paris; it is known for its art, food and history."},
    {"role": "user", "content": "Name one museum there that I should visit first."},
]


@dataclass(frozen=True, slots=True)
class Scenario:
    key: str
    title: str
    stream: bool
    concurrency: int
    delay_ms: float = 0.0
    workers_row: bool = False  # also run against the --workers N gateway
    api: str = "chat"  # of APIS

    def body(self) -> bytes:
        """The request: the same conversation and output limit in every API's shape."""
        if self.api == "chat":
            body: dict[str, object] = {"model": MODEL, "messages": MESSAGES, "max_tokens": 256}
            if self.stream:
                body["stream"] = True
                body["stream_options"] = {"include_usage": True}
            return orjson.dumps(body)
        system, *turns = MESSAGES
        if self.api == "responses":
            body = {
                "model": MODEL,
                "instructions": system["content"],
                "input": turns,
                "max_output_tokens": 256,
            }
        else:
            body = {
                "model": CLAUDE_MODEL,
                "system": system["content"],
                "messages": turns,
                "max_tokens": 256,
            }
        if self.stream:
            body["stream"] = True
        return orjson.dumps(body)

    def headers(self) -> list[str]:
        """Headers the API asks for beyond the key."""
        return [ANTHROPIC_VERSION] if self.api == "messages" else []


SCENARIOS = [
    Scenario("json-c1", "non-streamed, 1 concurrent request", False, 1),
    Scenario("json-c64", "non-streamed, 64 concurrent requests", False, 64, workers_row=True),
    Scenario(
        "json-c64-delay200",
        "non-streamed, upstream answers after 200 ms, 64 concurrent requests",
        False,
        64,
        delay_ms=200.0,
        workers_row=True,
    ),
    Scenario("sse-c1", f"stream of {CHUNKS} chunks, 1 concurrent stream", True, 1),
    Scenario("sse-c16", f"stream of {CHUNKS} chunks, 16 concurrent streams", True, 16),
    Scenario(
        "sse-c64", f"stream of {CHUNKS} chunks, 64 concurrent streams", True, 64, workers_row=True
    ),
    Scenario(
        "resp-sse-c1",
        f"Responses API stream of {CHUNKS} text deltas, 1 concurrent stream",
        True,
        1,
        api="responses",
    ),
    Scenario(
        "resp-sse-c16",
        f"Responses API stream of {CHUNKS} text deltas, 16 concurrent streams",
        True,
        16,
        api="responses",
    ),
    Scenario(
        "resp-sse-c64",
        f"Responses API stream of {CHUNKS} text deltas, 64 concurrent streams",
        True,
        64,
        api="responses",
    ),
    Scenario(
        "msg-sse-c1",
        f"Messages API stream of {CHUNKS} text deltas, 1 concurrent stream",
        True,
        1,
        api="messages",
    ),
    Scenario(
        "msg-sse-c16",
        f"Messages API stream of {CHUNKS} text deltas, 16 concurrent streams",
        True,
        16,
        api="messages",
    ),
    Scenario(
        "msg-sse-c64",
        f"Messages API stream of {CHUNKS} text deltas, 64 concurrent streams",
        True,
        64,
        api="messages",
    ),
]


@dataclass(frozen=True, slots=True)
class Timing:
    warmup: float
    duration: float  # measured seconds of one run
    rounds: int = 1  # runs of every (target, scenario), targets in alternating order


FULL = Timing(warmup=2.0, duration=5.0, rounds=2)
QUICK = Timing(warmup=0.5, duration=1.5)
