"""The charge is what the provider bills, through a real gateway and a fake upstream.

The fake reports more completion tokens than the request's reservation covered:
the row shows the full cost, the excess is charged from the rest of the
balance, what the balance cannot pay is recorded as uncollected (balance 0,
never below), and `/metrics` reports the same figures as the database.
"""

from __future__ import annotations

import logging

import httpx
import pytest

from tests.billing.test_concurrency import price_test_model
from tests.fakes.behaviours import Answer, Usage
from tests.fakes.openai_flavours import FakeOpenAI
from tests.support.gateway import Gateway
from tests.test_metrics import scrape, value

CHAT = "/ai/openai/chat/completions"
PER_TOKEN = 100_000  # test-model: $100 / 1M tokens in and out, in nano-USD a token


def ask(gateway: Gateway, key: str, stream: bool = False) -> httpx.Response:
    body = {
        "model": "test-model",
        "max_tokens": 8,
        "stream": stream,
        "messages": [{"role": "user", "content": "hi"}],
    }
    return httpx.post(gateway.url + CHAT, headers={"X-API-Key": key}, json=body, timeout=30)


def test_usage_beyond_the_reservation_is_charged_and_the_unpaid_rest_recorded(
    gateway: Gateway, openai_upstream: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ai_service.request")
    price_test_model(gateway)
    key = gateway.create_user("heavy", "0.05")  # 50_000_000 nano-USD
    openai_upstream.enqueue(
        Answer(usage=Usage(completion_tokens=200)), Answer(usage=Usage(completion_tokens=1000))
    )

    assert ask(gateway, key).status_code == 200
    gateway.wait_settled()
    (first,) = gateway.requests()
    assert first.completion_tokens == 200
    assert first.cost == (first.prompt_tokens + 200) * PER_TOKEN
    assert first.cost > first.reserved  # the reservation did not cover it ...
    assert first.uncollected == 0  # ... the balance did
    assert gateway.balance("heavy") == (50_000_000 - first.cost, 0)

    assert ask(gateway, key, stream=True).status_code == 200
    gateway.wait_settled()
    _, second = gateway.requests()
    left = 50_000_000 - first.cost
    assert second.completion_tokens == 1000
    assert second.cost == (second.prompt_tokens + 1000) * PER_TOKEN
    assert second.uncollected == second.cost - left  # all the balance paid, the rest not
    assert gateway.balance("heavy") == (0, 0)
    assert gateway.reconcile() == []

    charged = gateway.scalar("SELECT sum(amount) FROM api_transactions WHERE kind = 'charge'")
    unpaid = gateway.scalar("SELECT sum(amount) FROM api_transactions WHERE kind = 'uncollected'")
    assert charged == 50_000_000
    assert unpaid == second.uncollected
    samples = scrape(gateway)
    labels = {"provider": "openai", "model": "test-model"}
    spend = value(samples, "ai_service_spend_usd_total", **labels, surface="chat")
    uncollected = value(samples, "ai_service_uncollected_usd_total", **labels)
    assert round(spend * 1e9) == charged
    assert round(uncollected * 1e9) == unpaid
    logged = {
        r.__dict__["request_id"]: tuple(
            r.__dict__[k] for k in ("cost_nano", "charged_nano", "uncollected_nano")
        )
        for r in caplog.records
        if r.getMessage() == "request settled"
    }
    assert logged == {
        row.request_id: (row.cost, row.cost - row.uncollected, row.uncollected)
        for row in (first, second)
    }
