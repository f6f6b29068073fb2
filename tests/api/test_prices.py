"""Exact billing end to end: the rate the provider bills, the cost in the answer, the row."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from decimal import Decimal

import httpx
import orjson
import pytest

from ai_service.billing.money import usd_str
from tests.conftest import UPSTREAM_KEY
from tests.fakes.anthropic_messages import FakeAnthropic
from tests.fakes.behaviours import Answer, Usage as FakeUsage
from tests.fakes.openai_flavours import FakeOpenAI
from tests.support.gateway import Gateway

ANTHROPIC_KEY = "sk-ant-upstream-test"


def nano(pico: int) -> int:
    return -(-pico // 1000)


def post(gw: Gateway, key: str, body: dict[str, object], path: str = "openai") -> httpx.Response:
    return httpx.post(
        f"{gw.url}/ai/{path}/chat/completions",
        headers={"X-API-Key": key},
        json={"messages": [{"role": "user", "content": "hi"}], **body},
        timeout=30,
    )


def detail(gw: Gateway) -> dict[str, object]:
    gw.wait_settled()
    (row,) = gw.requests()
    assert row.price_detail is not None
    parsed = json.loads(row.price_detail)
    assert isinstance(parsed, dict)
    return parsed


def stream_usage(r: httpx.Response) -> dict[str, object]:
    frames = [line[6:] for line in r.text.split("\n\n") if line.startswith("data: ")]
    usage = [orjson.loads(f)["usage"] for f in frames if f != "[DONE]" and '"usage"' in f]
    (last,) = [u for u in usage if u]
    assert isinstance(last, dict)
    return last


@pytest.fixture(scope="module")
def anthropic_fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(api_key=ANTHROPIC_KEY) as fake:
        yield fake


@pytest.fixture
def claude(gateway_factory: Callable[..., Gateway], anthropic_fake: FakeAnthropic) -> Gateway:
    anthropic_fake.reset()
    return gateway_factory(
        anthropic_api_key=ANTHROPIC_KEY, anthropic_base_url=anthropic_fake.base_url
    )


def test_a_gpt_5_4_prompt_over_272k_is_billed_at_the_long_context_rate(
    gateway: Gateway, openai_upstream: FakeOpenAI
) -> None:
    key = gateway.create_user("alice", "50")
    openai_upstream.enqueue(Answer(usage=FakeUsage(prompt_tokens=300_000, completion_tokens=100)))
    r = post(gateway, key, {"model": "gpt-5.4"})
    assert r.status_code == 200, r.text
    gateway.wait_settled()
    (row,) = gateway.requests()
    # $5 input and $22.50 output per 1M on every token once the prompt exceeds 272K
    expected = nano(300_000 * 5_000_000 + 100 * 22_500_000)
    assert row.cost == expected
    assert detail(gateway)["tier"] == 272_000
    assert r.headers["x-request-cost"] == usd_str(expected)
    assert Decimal(str(r.json()["usage"]["cost"])) == Decimal(usd_str(expected))


def test_the_priority_service_tier_is_billed_at_its_rate(
    gateway: Gateway, openai_upstream: FakeOpenAI
) -> None:
    key = gateway.create_user("alice", "10")
    usage = FakeUsage(prompt_tokens=1_000, completion_tokens=1_000, service_tier="priority")
    openai_upstream.enqueue(Answer(usage=usage))
    r = post(gateway, key, {"model": "gpt-5.4", "service_tier": "priority"})
    assert r.status_code == 200, r.text
    assert r.json()["service_tier"] == "priority"
    gateway.wait_settled()
    (row,) = gateway.requests()
    assert row.cost == nano(1_000 * 5_000_000 + 1_000 * 30_000_000)
    assert detail(gateway)["service_tier"] == "priority"


def test_an_openai_cache_write_is_billed_at_the_cache_write_rate(
    gateway: Gateway, openai_upstream: FakeOpenAI
) -> None:
    key = gateway.create_user("alice", "10")
    usage = FakeUsage(prompt_tokens=10_000, cache_creation_tokens=8_000, completion_tokens=10)
    openai_upstream.enqueue(Answer(usage=usage))
    assert post(gateway, key, {"model": "gpt-6-astra"}).status_code == 200
    gateway.wait_settled()
    (row,) = gateway.requests()
    assert row.cache_write_tokens == 8_000
    # $10 input, $12.50 cache write, $50 output per 1M
    assert row.cost == nano(2_000 * 10_000_000 + 8_000 * 12_500_000 + 10 * 50_000_000)


def test_a_one_hour_cache_write_on_claude_is_billed_at_the_one_hour_rate(
    claude: Gateway, anthropic_fake: FakeAnthropic
) -> None:
    key = claude.create_user("alice", "10")
    usage = FakeUsage(
        prompt_tokens=100, cache_creation_tokens=1_000, cache_1h_tokens=600, completion_tokens=10
    )
    anthropic_fake.enqueue(Answer(usage=usage))
    r = post(claude, key, {"model": "claude-opus-4-1-20250805"}, "claude")
    assert r.status_code == 200, r.text
    claude.wait_settled()
    (row,) = claude.requests()
    # $15 input, $18.75 5-minute write, $30 1-hour write, $75 output per 1M
    expected = nano(100 * 15_000_000 + 400 * 18_750_000 + 600 * 30_000_000 + 10 * 75_000_000)
    assert row.cost == expected
    parts = detail(claude)["parts"]
    assert isinstance(parts, dict)
    assert parts["cache_write_1h"] == {
        "tokens": 600,
        "rate": 30_000_000,
        "cost_pico": 600 * 30_000_000,
    }


def test_an_undated_alias_costs_what_its_dated_model_costs(
    claude: Gateway, anthropic_fake: FakeAnthropic
) -> None:
    key = claude.create_user("alice", "10")
    usage = FakeUsage(prompt_tokens=1_000, completion_tokens=1_000)
    anthropic_fake.enqueue(Answer(usage=usage), Answer(usage=usage))
    assert post(claude, key, {"model": "claude-opus-4-1"}, "claude").status_code == 200
    assert post(claude, key, {"model": "claude-opus-4-1-20250805"}, "claude").status_code == 200
    claude.wait_settled()
    undated, dated = sorted(claude.requests(), key=lambda r: r.id)
    assert undated.cost == dated.cost == nano(1_000 * 15_000_000 + 1_000 * 75_000_000)
    assert not undated.default_price


def test_an_unknown_model_under_the_dearest_policy_is_charged_the_dearest_rates_flagged(
    gateway_factory: Callable[..., Gateway], openai_upstream: FakeOpenAI
) -> None:
    gw = gateway_factory(
        openai_api_key=UPSTREAM_KEY,
        openai_base_url=openai_upstream.base_url,
        unknown_model_policy="dearest",
    )
    key = gw.create_user("alice", "100")
    r = post(gw, key, {"model": "my-dear-fine-tune", "max_tokens": 1_000})
    assert r.status_code == 200, r.text
    assert openai_upstream.requests[0].body["model"] == "my-dear-fine-tune"
    gw.wait_settled()
    (row,) = gw.requests()
    assert row.default_price is True
    dearest = gw.state.catalog.current.dearest("openai")
    tokens = (row.prompt_tokens, row.completion_tokens)
    assert row.cost == nano(tokens[0] * dearest.input + tokens[1] * dearest.output)
    # dearer than the dearest model the gateway lists (gpt-6-astra at $10 / $50)
    assert row.cost > nano(tokens[0] * 10_000_000 + tokens[1] * 50_000_000)
    assert detail(gw)["flagged"] is True


def test_the_cost_in_the_answer_equals_the_rows_cost(
    gateway: Gateway, openai_upstream: FakeOpenAI
) -> None:
    key = gateway.create_user("alice", "10")
    r = post(gateway, key, {"model": "gpt-5.4-mini"})
    assert r.status_code == 200
    gateway.wait_settled()
    (row,) = gateway.requests()
    assert row.cost > 0
    assert r.headers["x-request-cost"] == usd_str(row.cost)
    assert Decimal(str(r.json()["usage"]["cost"])) == Decimal(usd_str(row.cost))

    streamed = post(
        gateway,
        key,
        {"model": "gpt-5.4-mini", "stream": True, "stream_options": {"include_usage": True}},
    )
    assert streamed.status_code == 200
    assert "x-request-cost" not in streamed.headers  # headers leave before the cost is known
    gateway.wait_settled()
    second = max(gateway.requests(), key=lambda row: row.id)
    usage = stream_usage(streamed)
    assert Decimal(str(usage["cost"])) == Decimal(usd_str(second.cost)) > 0


def test_usage_rows_carry_the_cost_breakdown(gateway: Gateway, openai_upstream: FakeOpenAI) -> None:
    key = gateway.create_user("alice", "10")
    usage = FakeUsage(prompt_tokens=1_000, cached_tokens=400, completion_tokens=20)
    openai_upstream.enqueue(Answer(usage=usage))
    assert post(gateway, key, {"model": "gpt-5.4-mini"}).status_code == 200
    gateway.wait_settled()
    page = httpx.get(gateway.url + "/ai/usage", headers={"X-API-Key": key}).json()
    (row,) = page["data"]
    price = row["price"]
    assert price["priced_as"] == "gpt-5.4-mini"
    assert price["parts"]["input"] == {
        "tokens": 600,
        "usd_per_million": "0.75",
        "cost_usd": "0.00045",
    }
    assert price["parts"]["cache_read"]["tokens"] == 400
    assert price["parts"]["output"]["usd_per_million"] == "4.5"
    assert price["cost_usd"] == row["cost_usd"]


def test_models_list_shows_retired_ids_and_deprecation(
    gateway_factory: Callable[..., Gateway],
) -> None:
    gw = gateway_factory()
    key = gw.create_user("alice", "1")
    r = httpx.get(gw.url + "/ai/llama/models", headers={"X-API-Key": key})
    assert r.status_code == 200
    data = {m["id"]: m for m in r.json()["data"]}
    # a listed Together id the price data no longer prices
    assert data["meta-llama/Llama-3.3-70B-Instruct"]["retired"] is True
    turbo = data["meta-llama/Llama-3.3-70B-Instruct-Turbo"]
    assert turbo["deprecated"] is False and "retired" not in turbo
    assert turbo["input_cost_per_million"] == 0.88


def test_a_claude_streams_usage_chunk_carries_the_rows_cost(
    claude: Gateway, anthropic_fake: FakeAnthropic
) -> None:
    key = claude.create_user("alice", "10")
    usage = FakeUsage(
        prompt_tokens=20, cache_creation_tokens=500, cache_1h_tokens=500, completion_tokens=12
    )
    anthropic_fake.enqueue(Answer(usage=usage))
    body = {
        "model": "claude-opus-4-1",
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    r = post(claude, key, body, "claude")
    assert r.status_code == 200
    claude.wait_settled()
    (row,) = claude.requests()
    assert row.cost == nano(20 * 15_000_000 + 500 * 30_000_000 + 12 * 75_000_000)
    assert Decimal(str(stream_usage(r)["cost"])) == Decimal(usd_str(row.cost))
