"""Tracing on: the spans of every surface, retries, fallbacks, pools and `traceparent`, read
from an in-memory exporter of a real gateway in front of the fake providers; tracing off:
no span, no `traceparent` upstream."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from tests.conftest import UPSTREAM_KEY
from tests.fakes.anthropic_messages import FakeAnthropic
from tests.fakes.behaviours import Answer, ErrorReply
from tests.fakes.openai_flavours import FakeOpenAI
from tests.support.databases import SqliteTemplate
from tests.support.gateway import Gateway

CHAT = "/ai/openai/chat/completions"
BODY = {"model": "gpt-5.4-mini", "messages": [{"role": "user", "content": "hi"}]}
ANTHROPIC_KEY = "sk-ant-upstream-test"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


@pytest.fixture
def db_url(sqlite_template: SqliteTemplate, tmp_path: Path) -> str:
    return sqlite_template.fresh(tmp_path)  # spans do not depend on the database


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def traced(
    gateway_factory: Callable[..., Gateway],
    openai_upstream: FakeOpenAI,
    exporter: InMemorySpanExporter,
) -> Callable[..., Gateway]:
    def make(**overrides: Any) -> Gateway:
        values: dict[str, Any] = {
            "tracing": True,
            "openai_api_key": UPSTREAM_KEY,
            "openai_base_url": openai_upstream.base_url,
            **overrides,
        }
        return gateway_factory(exporter, **values)

    return make


@pytest.fixture(scope="module")
def anthropic_fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(api_key=ANTHROPIC_KEY) as fake:
        yield fake


def post(gw: Gateway, key: str, path: str, body: dict[str, Any], **headers: str) -> httpx.Response:
    return httpx.post(gw.url + path, json=body, headers={"X-API-Key": key, **headers}, timeout=20)


def finished(gw: Gateway, exporter: InMemorySpanExporter, count: int) -> list[ReadableSpan]:
    """The spans ended so far, once there are `count` of them (exported at once)."""
    tracing = gw.state.tracing
    assert tracing is not None
    deadline = time.monotonic() + 10
    while True:
        tracing.flush()
        spans = list(exporter.get_finished_spans())
        if len(spans) >= count or time.monotonic() > deadline:
            return spans
        time.sleep(0.02)


def split(spans: Sequence[ReadableSpan]) -> tuple[ReadableSpan, list[ReadableSpan]]:
    """The one request span, and its attempt spans in order (each its child)."""
    (request,) = [s for s in spans if s.kind == SpanKind.SERVER]
    attempts = sorted(
        (s for s in spans if s.kind == SpanKind.CLIENT),
        key=lambda s: attrs(s)["ai_service.attempt"],
    )
    assert len(attempts) + 1 == len(spans)
    for attempt in attempts:
        assert attempt.parent is not None and request.context is not None
        assert attempt.parent.span_id == request.context.span_id
        assert attempt.context is not None and attempt.context.trace_id == request.context.trace_id
    return request, attempts


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def test_a_chat_completion_is_a_request_span_with_one_attempt(
    traced: Callable[..., Gateway], exporter: InMemorySpanExporter
) -> None:
    gw = traced()
    key = gw.create_user("alice", "10")
    r = post(gw, key, CHAT, {**BODY, "max_tokens": 50})
    assert r.status_code == 200, r.text
    request, (attempt,) = split(finished(gw, exporter, 2))
    (row,) = gw.requests()
    assert request.name == "chat gpt-5.4-mini"
    assert request.status.status_code == StatusCode.UNSET
    seen = attrs(request)
    assert seen["gen_ai.operation.name"] == "chat"
    assert seen["gen_ai.provider.name"] == seen["gen_ai.system"] == "openai"
    assert seen["gen_ai.request.model"] == seen["gen_ai.response.model"] == "gpt-5.4-mini"
    assert seen["gen_ai.request.max_tokens"] == 50
    assert seen["gen_ai.request.stream"] is False
    assert seen["gen_ai.usage.input_tokens"] == row.prompt_tokens > 0
    assert seen["gen_ai.usage.output_tokens"] == row.completion_tokens > 0
    assert seen["ai_service.cost_usd"] == pytest.approx(row.cost / 1e9) and row.cost > 0
    assert seen["ai_service.request_id"] == r.headers["x-request-id"] == row.request_id
    assert (seen["ai_service.user_id"], seen["ai_service.key_id"]) == (row.user_id, row.key_id)
    assert (seen["http.response.status_code"], seen["ai_service.status"]) == (200, "ok")
    assert seen["ai_service.attempts"] == 1
    assert attempt.name == "chat gpt-5.4-mini"
    sent = attrs(attempt)
    assert sent["gen_ai.provider.name"] == "openai"
    assert sent["gen_ai.request.model"] == "gpt-5.4-mini"
    assert (sent["ai_service.attempt"], sent["ai_service.attempt.reason"]) == (1, "first")
    assert sent["gen_ai.request.max_tokens"] == 50
    assert (sent["server.address"], sent["http.response.status_code"]) == ("127.0.0.1", 200)
    assert "ai_service.credential" not in sent
    everything = str([attrs(s) for s in (request, attempt)])
    assert key not in everything and UPSTREAM_KEY not in everything


def test_a_stream_span_ends_once_the_stream_is_settled(
    traced: Callable[..., Gateway], exporter: InMemorySpanExporter
) -> None:
    gw = traced()
    key = gw.create_user("alice", "10")
    body = {**BODY, "stream": True, "stream_options": {"include_usage": True}}
    with httpx.stream(
        "POST", gw.url + CHAT, json=body, headers={"X-API-Key": key}, timeout=20
    ) as r:
        assert r.status_code == 200
        text = "".join(r.iter_text())
    assert "[DONE]" in text
    request, (attempt,) = split(finished(gw, exporter, 2))
    (row,) = gw.requests()
    seen = attrs(request)
    assert seen["gen_ai.request.stream"] is True
    assert seen["gen_ai.usage.output_tokens"] == row.completion_tokens > 0
    assert seen["ai_service.cost_usd"] == pytest.approx(row.cost / 1e9)
    assert seen["gen_ai.response.time_to_first_chunk"] >= 0
    # the attempt span lasts as long as its stream was read
    assert attempt.end_time is not None and request.end_time is not None
    assert attempt.end_time <= request.end_time
    assert row.ttft_ms is not None


def test_a_stream_cut_upstream_ends_its_spans_as_failed(
    traced: Callable[..., Gateway], exporter: InMemorySpanExporter, openai_upstream: FakeOpenAI
) -> None:
    gw = traced()
    key = gw.create_user("alice", "10")
    openai_upstream.enqueue(Answer(text="one two three four five six", cut_after=2))
    body = {**BODY, "stream": True}
    with httpx.stream(
        "POST", gw.url + CHAT, json=body, headers={"X-API-Key": key}, timeout=20
    ) as r:
        text = "".join(r.iter_text())
    assert '"error"' in text
    request, (attempt,) = split(finished(gw, exporter, 2))
    assert attrs(request)["ai_service.status"] == "error"
    assert request.status.status_code == StatusCode.ERROR
    assert attempt.status.status_code == StatusCode.ERROR
    assert attrs(request)["gen_ai.usage.output_tokens"] > 0  # what was delivered is charged


def test_a_stream_whose_client_left_ends_its_spans_as_cancelled(
    traced: Callable[..., Gateway], exporter: InMemorySpanExporter, openai_upstream: FakeOpenAI
) -> None:
    gw = traced()
    key = gw.create_user("alice", "10")
    openai_upstream.enqueue(Answer(text="one two three four five six", chunk_delay=0.3))
    body = {**BODY, "stream": True}
    with httpx.stream(
        "POST", gw.url + CHAT, json=body, headers={"X-API-Key": key}, timeout=20
    ) as r:
        next(r.iter_bytes())  # the first frame, then the client hangs up
    request, (attempt,) = split(finished(gw, exporter, 2))
    assert attrs(request)["ai_service.status"] == "cancelled"
    assert attrs(request)["http.response.status_code"] == 499
    assert request.status.status_code == StatusCode.UNSET
    assert attempt.end_time is not None


def test_responses_messages_and_embeddings_each_have_their_spans(
    traced: Callable[..., Gateway],
    exporter: InMemorySpanExporter,
    anthropic_fake: FakeAnthropic,
) -> None:
    anthropic_fake.reset()
    gw = traced(anthropic_api_key=ANTHROPIC_KEY, anthropic_base_url=anthropic_fake.base_url)
    key = gw.create_user("alice", "10")
    calls = [
        ("/ai/openai/responses", {"model": "gpt-5.4-mini", "input": "hi"}),
        (
            "/ai/claude/v1/messages",
            {"model": "claude-3-5-sonnet-20241022", "max_tokens": 64, "messages": BODY["messages"]},
        ),
        ("/ai/openai/embeddings", {"model": "text-embedding-3-small", "input": "hi there"}),
    ]
    expected = [
        ("responses", "chat", "openai", "gpt-5.4-mini"),
        ("messages", "chat", "anthropic", "claude-3-5-sonnet-20241022"),
        ("embeddings", "embeddings", "openai", "text-embedding-3-small"),
    ]
    for (path, body), (surface, operation, provider, model) in zip(calls, expected, strict=True):
        exporter.clear()
        r = post(gw, key, path, body, **{"anthropic-version": "2023-06-01"})
        assert r.status_code == 200, r.text
        request, (attempt,) = split(finished(gw, exporter, 2))
        row = gw.requests(request_id=r.headers["x-request-id"])[0]
        seen = attrs(request)
        assert request.name == f"{operation} {model}", surface
        assert seen["ai_service.surface"] == surface
        assert seen["gen_ai.operation.name"] == operation
        assert seen["gen_ai.provider.name"] == seen["gen_ai.system"] == provider
        assert seen["gen_ai.usage.input_tokens"] == row.prompt_tokens > 0
        assert seen["ai_service.cost_usd"] == pytest.approx(row.cost / 1e9)
        assert attrs(attempt)["gen_ai.provider.name"] == provider
        assert attrs(attempt)["gen_ai.request.model"] == model


@pytest.mark.parametrize("status", [500, 429])
def test_a_retried_attempt_is_a_second_child(
    traced: Callable[..., Gateway],
    exporter: InMemorySpanExporter,
    openai_upstream: FakeOpenAI,
    status: int,
) -> None:
    gw = traced()
    key = gw.create_user("alice", "10")
    openai_upstream.enqueue(ErrorReply(status))
    assert post(gw, key, CHAT, BODY).status_code == 200
    request, (failed, retried) = split(finished(gw, exporter, 3))
    assert failed.status.status_code == StatusCode.ERROR
    assert attrs(failed)["http.response.status_code"] == status
    assert attrs(failed)["error.type"]
    assert attrs(retried)["ai_service.attempt.reason"] == "retry"
    assert attrs(retried)["ai_service.attempt.after_status"] == status
    assert retried.status.status_code == StatusCode.UNSET
    assert attrs(request)["ai_service.attempts"] == 2
    assert request.status.status_code == StatusCode.UNSET
    assert [r.headers["traceparent"].split("-")[2] for r in openai_upstream.requests] == [
        f"{s.context.span_id:016x}" for s in (failed, retried) if s.context is not None
    ]


def test_a_fallback_to_another_provider_is_its_own_child(
    traced: Callable[..., Gateway], exporter: InMemorySpanExporter, openai_upstream: FakeOpenAI
) -> None:
    gw = traced(
        deepseek_api_key=UPSTREAM_KEY,
        deepseek_base_url=openai_upstream.base_url,
        retry_attempts=0,
        fallbacks={"openai:gpt-5.4-mini": ["deepseek:deepseek-chat"]},
    )
    key = gw.create_user("alice", "10")
    openai_upstream.enqueue(ErrorReply(503))
    r = post(gw, key, CHAT, BODY)
    assert r.status_code == 200, r.text
    request, (first, fallback) = split(finished(gw, exporter, 3))
    assert attrs(first)["gen_ai.provider.name"] == "openai"
    assert attrs(first)["http.response.status_code"] == 503
    assert attrs(fallback)["gen_ai.provider.name"] == "deepseek"
    assert attrs(fallback)["gen_ai.request.model"] == "deepseek-chat"
    assert attrs(fallback)["ai_service.attempt.reason"] == "fallback"
    assert attrs(fallback)["ai_service.attempt.after_status"] == 503
    seen = attrs(request)
    assert seen["gen_ai.request.model"] == "gpt-5.4-mini"
    assert seen["gen_ai.response.model"] == "deepseek-chat"
    assert seen["gen_ai.provider.name"] == "deepseek"


def test_the_client_traceparent_is_the_parent_and_the_attempt_is_sent_upstream(
    traced: Callable[..., Gateway], exporter: InMemorySpanExporter, openai_upstream: FakeOpenAI
) -> None:
    gw = traced()
    key = gw.create_user("alice", "10")
    r = post(gw, key, CHAT, BODY, traceparent=TRACEPARENT, tracestate="vendor=1")
    assert r.status_code == 200
    request, (attempt,) = split(finished(gw, exporter, 2))
    assert request.context is not None and request.parent is not None
    assert f"{request.context.trace_id:032x}" == TRACE_ID
    assert f"{request.parent.span_id:016x}" == PARENT_ID
    assert request.parent.is_remote
    sent = openai_upstream.last_request.headers
    version, trace_id, span_id, flags = sent["traceparent"].split("-")
    assert attempt.context is not None
    assert (version, trace_id, flags) == ("00", TRACE_ID, "01")
    assert span_id == f"{attempt.context.span_id:016x}"
    assert sent["tracestate"] == "vendor=1"


def test_a_failed_request_has_error_status(
    traced: Callable[..., Gateway], exporter: InMemorySpanExporter, openai_upstream: FakeOpenAI
) -> None:
    gw = traced(retry_attempts=0)
    key = gw.create_user("alice", "10")
    openai_upstream.enqueue(ErrorReply(500))
    r = post(gw, key, CHAT, BODY)
    assert r.status_code >= 500
    request, (attempt,) = split(finished(gw, exporter, 2))
    assert request.status.status_code == StatusCode.ERROR
    assert attempt.status.status_code == StatusCode.ERROR
    seen = attrs(request)
    assert seen["http.response.status_code"] == r.status_code
    assert seen["ai_service.status"] == "error"
    assert (
        seen["error.type"] == r.json()["error"]["code"]
        or seen["error.type"] == (r.json()["error"]["type"])
    )
    assert seen["ai_service.cost_usd"] == 0


def test_a_refusal_is_a_request_span_without_attempts(
    traced: Callable[..., Gateway], exporter: InMemorySpanExporter, openai_upstream: FakeOpenAI
) -> None:
    gw = traced()
    key = gw.create_user("alice", "0")
    r = post(gw, key, CHAT, BODY)
    assert r.status_code == 402
    (request,) = finished(gw, exporter, 1)
    assert request.kind == SpanKind.SERVER
    assert attrs(request)["http.response.status_code"] == 402
    assert attrs(request)["error.type"] == "insufficient_quota"
    assert request.status.status_code == StatusCode.UNSET  # the client's to fix: not an error
    assert openai_upstream.requests == []


def test_a_pool_attempt_names_its_credential_never_its_key(
    traced: Callable[..., Gateway], exporter: InMemorySpanExporter, openai_upstream: FakeOpenAI
) -> None:
    entry = {"label": "primary", "key": UPSTREAM_KEY, "base_url": openai_upstream.base_url}
    gw = traced(pools={"openai": [entry]})
    key = gw.create_user("alice", "10")
    assert post(gw, key, CHAT, BODY).status_code == 200
    request, (attempt,) = split(finished(gw, exporter, 2))
    assert attrs(attempt)["ai_service.credential"] == "primary"
    assert attrs(request)["ai_service.credential"] == "primary"
    assert UPSTREAM_KEY not in str([attrs(request), attrs(attempt)])


def test_tracing_off_makes_no_span_and_sends_no_traceparent(
    gateway_factory: Callable[..., Gateway],
    openai_upstream: FakeOpenAI,
    exporter: InMemorySpanExporter,
) -> None:
    gw = gateway_factory(
        exporter, openai_api_key=UPSTREAM_KEY, openai_base_url=openai_upstream.base_url
    )
    key = gw.create_user("alice", "10")
    r = post(gw, key, CHAT, BODY, traceparent=TRACEPARENT)
    assert r.status_code == 200
    assert gw.state.tracing is None
    assert "traceparent" not in openai_upstream.last_request.headers
    assert exporter.get_finished_spans() == ()


def test_a_replayed_request_and_a_reused_idempotency_key_end_their_spans(
    traced: Callable[..., Gateway], exporter: InMemorySpanExporter
) -> None:
    gw = traced()
    key = gw.create_user("alice", "10")
    once = {"Idempotency-Key": "order-1"}
    assert post(gw, key, CHAT, BODY, **once).status_code == 200
    finished(gw, exporter, 2)
    exporter.clear()
    again = post(gw, key, CHAT, BODY, **once)
    assert again.headers["idempotent-replayed"] == "true"
    (replayed,) = finished(gw, exporter, 1)
    assert attrs(replayed)["ai_service.status"] == "replayed"
    exporter.clear()
    conflict = post(gw, key, CHAT, {**BODY, "temperature": 0.5}, **once)
    assert conflict.status_code == 409
    (refused,) = finished(gw, exporter, 1)
    assert attrs(refused)["http.response.status_code"] == 409
    assert attrs(refused)["error.type"] == "idempotency_key_reused"
    assert refused.status.status_code == StatusCode.UNSET
