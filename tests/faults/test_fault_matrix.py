"""The fault matrix: each upstream fault, what the client saw, and what was charged.

Against a real gateway process (`ai-service serve`) on PostgreSQL, each case
sends one request whose upstream misbehaves in one way (DESIGN §8, §9, issue 6):
failures cost 0, a retried request is charged once, a stalled or cut stream
ends with an SSE error event and is logged `error` at cost 0, and a client that
hangs up mid-stream is charged for what was generated, logged `cancelled`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest

from tests.fakes.tokens import prompt_tokens, split_chunks
from tests.faults.conftest import Edge
from tests.faults.plans import LONG_TEXT, MAX_TOKENS, TEN_WORDS, chat_body
from tests.support.directed import new_nonce, nonce_of
from tests.support.invariants import NANO_PER_TOKEN

DEFAULT_TEXT = "Hello from openai!"
BALANCE_USD = "1"
BALANCE_NANO = 1_000_000_000


@dataclass(frozen=True)
class Case:
    """One row of the matrix: the fault, and what DESIGN says must come of it."""

    name: str
    plan: str
    stream: bool
    status: int  # the HTTP status the client sees
    error_type: str | None = None  # the error body's (or SSE error event's) type
    sse_error: bool = False  # a 200 stream ending in an error event
    row: str = "error"  # the log row's status
    row_http: int | None = None  # the log row's http_status (default: `status`)
    charge: str = "none"  # none | exact | partial
    upstream_calls: int = 1
    answer_text: str = DEFAULT_TEXT
    disconnect_after: int | None = None
    provider: str = "openai"
    min_seconds: float = 0.0
    max_seconds: float = 15.0
    extra: dict[str, Any] = field(default_factory=dict)


CASES = [
    Case("ok", "ok", False, 200, row="ok", charge="exact"),
    Case("ok-stream", "ok", True, 200, row="ok", charge="exact"),
    Case(
        "5xx-burst-recovers",
        "burst-recovers",
        False,
        200,
        row="ok",
        charge="exact",
        upstream_calls=3,
    ),
    Case(
        "5xx-burst-recovers-stream",
        "burst-recovers",
        True,
        200,
        row="ok",
        charge="exact",
        upstream_calls=3,
    ),
    Case("5xx-burst-exhausted", "burst-exhausted", False, 502, "upstream_error", upstream_calls=3),
    Case(
        "5xx-burst-exhausted-stream",
        "burst-exhausted",
        True,
        502,
        "upstream_error",
        upstream_calls=3,
    ),
    Case("529-overloaded", "overloaded-529", False, 503, "service_unavailable", upstream_calls=3),
    Case(
        "429-retry-after-recovers",
        "rate-limited-recovers",
        False,
        200,
        row="ok",
        charge="exact",
        upstream_calls=2,
        min_seconds=0.95,
    ),
    Case("429-exhausted", "rate-limited-exhausted", False, 429, upstream_calls=3),
    Case(
        "429-retry-after-beyond-budget",
        "rate-limited-too-long",
        False,
        429,
        upstream_calls=1,
        max_seconds=2.0,
    ),
    Case(
        "reset-recovers-stream",
        "reset-recovers",
        True,
        200,
        row="ok",
        charge="exact",
        upstream_calls=2,
    ),
    Case("reset-always", "reset-always", False, 502, "upstream_error", upstream_calls=3),
    Case(
        "connection-refused",
        "ok",
        False,
        502,
        "upstream_error",
        upstream_calls=0,
        provider="mistral",
    ),
    Case("hang-before-first-byte", "hang", False, 504, "timeout_error", max_seconds=5),
    Case("hang-before-first-byte-stream", "hang", True, 504, "timeout_error", max_seconds=5),
    Case(
        "slow-drip-stream-outlives-first-byte-timeout",
        "slow-drip",
        True,
        200,
        row="ok",
        charge="exact",
        answer_text=TEN_WORDS,
        min_seconds=2.5,
    ),
    Case(
        "stall-mid-stream",
        "stall",
        True,
        200,
        "timeout_error",
        sse_error=True,
        row_http=504,
        max_seconds=6,
    ),
    Case("cut-mid-stream", "cut", True, 200, "upstream_error", sse_error=True, row_http=502),
    Case("error-event-mid-stream", "error-event", True, 200, sse_error=True, row_http=502),
    Case("malformed-json", "malformed", False, 502, "upstream_error"),
    Case(
        "malformed-json-stream",
        "malformed-stream",
        True,
        200,
        "upstream_error",
        sse_error=True,
        row_http=502,
    ),
    Case("wrong-content-type", "wrong-content-type", False, 502, "upstream_error"),
    Case("wrong-content-type-stream", "wrong-content-type", True, 502, "upstream_error"),
    Case("upstream-400-passed-on", "upstream-400", False, 400, "invalid_request_error"),
    Case(
        "client-disconnect-mid-stream",
        "long-drip",
        True,
        200,
        row="cancelled",
        row_http=499,
        charge="partial",
        answer_text=LONG_TEXT,
        disconnect_after=3,
    ),
]


@dataclass
class Seen:
    status: int
    error: dict[str, Any] | None = None
    events: list[Any] = field(default_factory=list)
    done: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    text: str = ""
    seconds: float = 0.0


def call(edge: Edge, key: str, case: Case, body: dict[str, Any]) -> Seen:
    url = f"{edge.url}/ai/{case.provider}/chat/completions"
    started = time.monotonic()
    with (
        httpx.Client(timeout=20) as client,
        client.stream("POST", url, json=body, headers={"X-API-Key": key}) as r,
    ):
        seen = Seen(r.status_code, headers=dict(r.headers))
        if not r.headers.get("content-type", "").startswith("text/event-stream"):
            seen.text = r.read().decode()
            data = orjson.loads(seen.text)
            seen.error = data if r.status_code != 200 else None
        else:
            for line in r.iter_lines():
                if not line.startswith("data: "):
                    continue
                if line == "data: [DONE]":
                    seen.done = True
                    break
                event = orjson.loads(line[6:])
                seen.events.append(event)
                if isinstance(event, dict) and "error" in event:
                    seen.error = event
                if case.disconnect_after and len(seen.events) >= case.disconnect_after:
                    break  # leaving the block closes the connection mid-stream
    seen.seconds = time.monotonic() - started
    return seen


def assert_openai_error(body: dict[str, Any] | None, error_type: str | None) -> None:
    assert isinstance(body, dict), body
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert isinstance(error["message"], str) and error["message"]
    assert "Traceback" not in error["message"]
    if error_type is not None:
        assert error["type"] == error_type, error


def expected_cost(body: dict[str, Any], answer: str) -> int:
    tokens = prompt_tokens(body["messages"]) + min(len(split_chunks(answer)), MAX_TOKENS)
    return tokens * NANO_PER_TOKEN


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_fault_matrix(edge: Edge, case: Case, record_property: Any) -> None:
    books, fake = edge.books, edge.upstream
    user = f"matrix-{case.name}"
    key = books.create_user(user, BALANCE_USD)
    nonce = new_nonce()
    body = chat_body(case.plan, nonce, case.stream)
    if case.provider == "mistral":
        body["model"] = "test-model"

    seen = call(edge, key, case, body)

    # what the client saw
    assert seen.status == case.status, (seen.status, seen.text, seen.events[-2:])
    assert case.min_seconds <= seen.seconds <= case.max_seconds, seen.seconds
    if case.status != 200:
        assert_openai_error(seen.error, case.error_type)
        assert not seen.events
    elif case.sse_error:
        assert seen.done, "a stream that failed must still end with [DONE]"
        assert seen.events and seen.events[-1] is seen.error, "the error is the last event"
        assert_openai_error(seen.error, case.error_type)
    elif case.disconnect_after:
        assert seen.error is None and not seen.done
    else:
        assert seen.error is None, seen.error
        if case.stream:
            assert seen.done
            text = "".join(e.get("content") or "" for e in seen.events)
            assert text == case.answer_text
        else:
            assert orjson.loads(seen.text)["choices"][0]["message"]["content"] == case.answer_text
    if case.status == 429:
        assert int(seen.headers["retry-after"]) >= 1

    # what the upstream saw: retries of one request, never more
    calls = [r for r in fake.requests if nonce_of(r.body) == nonce]
    assert len(calls) == case.upstream_calls, [r.status for r in calls]
    if case.disconnect_after:
        assert calls[0].wait_done(5), "the upstream request was not cancelled"
        assert calls[0].disconnected and not calls[0].completed

    # what was logged and charged
    books.wait_settled(10, user=user)
    (row,) = books.rows("u.name = :u", u=user)
    assert row.status == case.row, row
    assert row.http_status == (case.row_http or case.status), row
    charges = books.charges(row.request_id)
    if case.charge == "none":
        assert row.cost == 0 and charges == []
    elif case.charge == "exact":
        assert row.cost == expected_cost(body, case.answer_text), row
        assert charges == [row.cost], "charged exactly once"
        assert row.attempts == case.upstream_calls
    else:  # partial: the client went away; what was generated so far, estimated
        assert charges == [row.cost] and 0 < row.cost < expected_cost(body, case.answer_text)
        assert row.usage_estimated
    assert books.balance(user) == (BALANCE_NANO - row.cost, 0)

    record_property(
        "fault_matrix",
        {
            "client": seen.error["error"]["type"] if seen.error else f"{seen.status} ok",
            "status": seen.status,
            "row": row.status,
            "cost": row.cost,
        },
    )
