"""GET /metrics: the series a request leaves behind, read back in Prometheus' text format."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ai_service.metrics import upstream_error_kind
from tests.conftest import UPSTREAM_KEY
from tests.fakes.behaviours import ErrorReply, Hang
from tests.fakes.openai_flavours import FakeOpenAI
from tests.support.gateway import Gateway

CHAT = "/ai/openai/chat/completions"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(gw: Gateway) -> Samples:
    r = httpx.get(gw.url + "/metrics", timeout=30)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def send(gw: Gateway, key: str, model: str = "gpt-5.4-mini", stream: bool = False) -> int:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    r = httpx.post(gw.url + CHAT, headers={"X-API-Key": key}, json=body, timeout=30)
    return r.status_code


@pytest.fixture
def metered(gateway_factory: Callable[..., Gateway], openai_upstream: FakeOpenAI) -> Gateway:
    return gateway_factory(
        openai_api_key=UPSTREAM_KEY,
        openai_base_url=openai_upstream.base_url,
        retry_attempts=0,
        fallbacks={},
        unknown_model_policy="dearest",  # an unknown model is served, labelled `other`
    )


def test_requests_tokens_spend_latencies_and_errors(
    metered: Gateway, openai_upstream: FakeOpenAI
) -> None:
    gw = metered
    key = gw.create_user("alice", "10")
    poor = gw.create_user("poor", "0")
    assert send(gw, key) == 200
    assert send(gw, key) == 200
    assert send(gw, key, stream=True) == 200
    assert send(gw, key, model="not-in-the-catalog-7") == 200
    openai_upstream.enqueue(ErrorReply(503))
    failed_status = send(gw, key)
    assert failed_status >= 500
    assert send(gw, poor) == 402
    assert send(gw, "ais-wrong") == 401
    gw.wait_settled()
    rows = gw.requests()
    ok_mini = [r for r in rows if r.status == "ok" and r.model == "gpt-5.4-mini"]
    assert len(ok_mini) == 3

    m = scrape(gw)
    req = "ai_service_requests_total"
    assert value(m, req, provider="openai", model="gpt-5.4-mini", status="ok", surface="chat") == 3
    assert (
        value(m, req, provider="openai", model="gpt-5.4-mini", status="error", surface="chat") == 1
    )
    assert value(m, req, provider="openai", model="other", status="ok", surface="chat") == 1
    assert not any(
        name == req and ("model", "not-in-the-catalog-7") in labels for name, labels in m
    )
    tokens = "ai_service_tokens_total"
    assert value(m, tokens, provider="openai", model="gpt-5.4-mini", type="prompt") == sum(
        r.prompt_tokens for r in ok_mini
    )
    assert value(m, tokens, provider="openai", model="gpt-5.4-mini", type="completion") == sum(
        r.completion_tokens for r in ok_mini
    )
    spend = value(
        m, "ai_service_spend_usd_total", provider="openai", model="gpt-5.4-mini", surface="chat"
    )
    assert spend == pytest.approx(sum(r.cost for r in ok_mini) / 1e9)
    assert spend > 0

    kind = upstream_error_kind(failed_status)
    assert value(m, "ai_service_upstream_errors_total", provider="openai", kind=kind) == 1

    ttft = "ai_service_time_to_first_token_seconds_count"
    assert value(m, ttft, provider="openai", model="gpt-5.4-mini") == 1
    overhead = "ai_service_gateway_overhead_seconds_count"
    assert value(m, overhead, provider="openai") == 3  # the non-streamed ok ones, "other" too
    assert value(m, "ai_service_gateway_overhead_seconds_sum", provider="openai") > 0
    latency = "ai_service_upstream_latency_seconds_count"
    assert value(m, latency, provider="openai", model="gpt-5.4-mini", stream="true") == 1
    assert value(m, latency, provider="openai", model="gpt-5.4-mini", stream="false") == 2
    duration = "ai_service_request_duration_seconds_count"
    assert value(m, duration, provider="openai", stream="false") == 4
    assert value(m, duration, provider="openai", stream="true") == 1

    responses = "ai_service_http_responses_total"
    assert value(m, responses, route="chat", code="200") == 4
    assert value(m, responses, route="chat", code="402") == 1
    assert value(m, responses, route="chat", code="401") == 1
    assert value(m, "ai_service_requests_in_flight", provider="openai") == 0


def test_in_flight_counts_a_request_while_it_runs(
    metered: Gateway, openai_upstream: FakeOpenAI
) -> None:
    key = metered.create_user("alice", "10")
    openai_upstream.enqueue(Hang(1.5))
    results: list[int] = []
    worker = threading.Thread(target=lambda: results.append(send(metered, key)))
    worker.start()
    deadline = time.monotonic() + 5
    seen = 0.0
    while time.monotonic() < deadline and not seen:
        seen = value(scrape(metered), "ai_service_requests_in_flight", provider="openai")
        time.sleep(0.02)
    worker.join(10)
    assert seen == 1
    assert results == [200]
    assert value(scrape(metered), "ai_service_requests_in_flight", provider="openai") == 0


def test_each_app_has_its_own_registry(
    metered: Gateway, gateway_factory: Callable[..., Gateway], openai_upstream: FakeOpenAI
) -> None:
    key = metered.create_user("alice", "10")
    assert send(metered, key) == 200
    metered.wait_settled()
    other = gateway_factory(openai_api_key=UPSTREAM_KEY, openai_base_url=openai_upstream.base_url)
    labels = {"provider": "openai", "model": "gpt-5.4-mini", "status": "ok", "surface": "chat"}
    assert value(scrape(metered), "ai_service_requests_total", **labels) == 1
    assert value(scrape(other), "ai_service_requests_total", **labels) == 0


def test_unknown_provider_paths_do_not_make_series(metered: Gateway) -> None:
    r = httpx.post(metered.url + "/ai/nope/chat/completions", json={}, timeout=30)
    assert r.status_code == 404
    m = scrape(metered)
    assert not any(("provider", "nope") in labels for _, labels in m)
    assert value(m, "ai_service_http_responses_total", route="chat", code="404") == 1


def test_upstream_error_kinds() -> None:
    assert [upstream_error_kind(s) for s in (504, 429, 503, 502, 400, 500)] == [
        "timeout",
        "rate_limited",
        "unavailable",
        "bad_gateway",
        "rejected",
        "other",
    ]
