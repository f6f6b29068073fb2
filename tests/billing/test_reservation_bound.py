"""The reservation bounds the whole request: every field sent, every answer, hidden prompts, images.

Prices are $100 / 1M tokens in and out (100,000 nano-USD a token), so every
reservation below is a whole number of tokens times 100,000.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ai_service.billing.estimate import REQUEST_ALLOWANCE
from ai_service.billing.pricing import cost
from ai_service.providers.base import Usage
from ai_service.services import catalog_admin
from tests.conftest import UPSTREAM_KEY
from tests.fakes.anthropic_messages import TOOL_PROMPT_AUTO, FakeAnthropic
from tests.fakes.behaviours import Answer
from tests.fakes.openai_flavours import FakeOpenAI
from tests.support.gateway import Gateway

CHAT = "/ai/openai/chat/completions"
TOKEN = 100_000  # nano-USD per token at $100 / 1M
HUNDRED_KB = "x" * 100_000


def price(gateway: Gateway, provider: str = "openai", model: str = "test-model") -> None:
    gateway.session(
        lambda s: catalog_admin.set_price(s, provider, model, input="100", output="100")
    )
    gateway.state.catalog._loaded_at = 0.0  # the next request re-reads the catalog


def post(gateway: Gateway, key: str, body: dict[str, Any], path: str = CHAT) -> httpx.Response:
    payload = {"model": "test-model", **body}
    return httpx.post(gateway.url + path, json=payload, headers={"X-API-Key": key}, timeout=30)


def hi(**extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": "hi"}], **extra}


# -- n -----------------------------------------------------------------------------------


def test_n_answers_are_reserved_n_times_and_cover_their_charge(
    gateway: Gateway, openai_upstream: FakeOpenAI
) -> None:
    price(gateway)
    key = gateway.create_user("alice", "10")
    openai_upstream.enqueue(Answer(text=" ".join(f"w{i}" for i in range(40))))
    response = post(gateway, key, hi(n=8, max_tokens=40))
    assert response.status_code == 200
    assert len(response.json()["choices"]) == 8
    (seen,) = openai_upstream.requests
    assert seen.body["n"] == 8
    assert seen.body["max_completion_tokens"] == 40  # the limit stays per answer
    (row,) = gateway.requests()
    assert row.completion_tokens == 8 * 40
    used = Usage(input_tokens=row.prompt_tokens, output_tokens=row.completion_tokens)
    price_now = gateway.state.catalog.current.resolve("openai", "test-model").price
    assert row.reserved >= 8 * 40 * TOKEN
    assert row.reserved >= cost(used, price_now) == row.cost
    assert gateway.reconcile() == []


def test_the_output_limit_lowered_to_the_balance_is_divided_among_the_answers(
    gateway: Gateway, openai_upstream: FakeOpenAI
) -> None:
    price(gateway)
    key = gateway.create_user("bob", "0.05")  # 500 tokens' worth
    response = post(gateway, key, hi(n=4))
    assert response.status_code == 200
    (seen,) = openai_upstream.requests
    limit = seen.body["max_completion_tokens"]
    (row,) = gateway.requests()
    # the largest limit whose four answers and prompt the balance pays for
    assert 4 * limit * TOKEN < row.reserved <= 50_000_000 < row.reserved + 4 * TOKEN


@pytest.mark.parametrize("n", [0, -1, 129, "2", True, 1.5])
def test_a_bad_n_is_refused_before_anything_is_reserved_or_sent(
    gateway: Gateway, openai_upstream: FakeOpenAI, n: object
) -> None:
    key = gateway.create_user("carol", "10")
    response = post(gateway, key, hi(n=n))
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", "n")
    assert openai_upstream.requests == []
    assert gateway.balance("carol") == (10_000_000_000, 0)
    (row,) = gateway.requests()
    assert (row.cost, row.reserved) == (0, 0)


# -- every field sent upstream ---------------------------------------------------------------


BIG_FIELDS: dict[str, dict[str, Any]] = {
    "legacy function_call": {
        "messages": [
            {"role": "user", "content": "hi"},
            {
                "role": "assistant",
                "content": None,
                "function_call": {"name": "f", "arguments": HUNDRED_KB},
            },
            {"role": "function", "name": "f", "content": "ok"},
        ]
    },
    "refusal": {
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": None, "refusal": HUNDRED_KB},
            {"role": "user", "content": "hi"},
        ]
    },
    "prediction": hi(prediction={"type": "content", "content": HUNDRED_KB}),
    "an unknown field": hi(my_notes={"anything": [HUNDRED_KB]}),
}


@pytest.mark.parametrize("fields", BIG_FIELDS.values(), ids=BIG_FIELDS.keys())
def test_100_kb_in_any_field_sent_upstream_is_reserved(
    gateway: Gateway, openai_upstream: FakeOpenAI, fields: dict[str, Any]
) -> None:
    price(gateway)
    key = gateway.create_user("dave", "1")  # 10,000 tokens' worth
    assert post(gateway, key, hi(max_tokens=16)).status_code == 200
    assert len(openai_upstream.requests) == 1
    response = post(gateway, key, {**fields, "max_tokens": 16})
    assert response.status_code == 402
    assert response.json()["error"]["code"] == "insufficient_quota"
    assert len(openai_upstream.requests) == 1  # the big one never reached the upstream
    assert gateway.balance("dave")[1] == 0


def test_the_prompt_bound_is_the_bytes_sent_plus_the_allowances(
    gateway: Gateway, openai_upstream: FakeOpenAI
) -> None:
    price(gateway)
    key = gateway.create_user("erin", "10")
    assert post(gateway, key, hi(max_tokens=10, extra_field="x" * 5000)).status_code == 200
    (seen,) = openai_upstream.requests
    (row,) = gateway.requests()
    allowance = gateway.state.settings.message_token_allowance
    assert row.reserved == (len(seen.raw) + allowance + REQUEST_ALLOWANCE + 10) * TOKEN


# -- Anthropic's hidden tool-use system prompt ------------------------------------------------

KEY = "sk-ant-upstream-test"
CLAUDE = "claude-3-5-sonnet-20241022"


@pytest.fixture(scope="module")
def anthropic_fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(api_key=KEY) as fake:
        yield fake


def test_a_tool_reserves_anthropics_hidden_tool_prompt(
    gateway_factory: Any, anthropic_fake: FakeAnthropic
) -> None:
    anthropic_fake.reset()
    gateway = gateway_factory(anthropic_api_key=KEY, anthropic_base_url=anthropic_fake.base_url)
    price(gateway, "claude", CLAUDE)
    key = gateway.create_user("frank", "10")
    tool = {"type": "function", "function": {"name": "f"}}
    body = {"model": CLAUDE, **hi(tools=[tool], max_tokens=1)}
    response = post(gateway, key, body, path="/ai/claude/chat/completions")
    assert response.status_code == 200
    (row,) = gateway.requests()
    assert row.prompt_tokens == 3 + 1 + TOOL_PROMPT_AUTO  # as the fake reports it
    (seen,) = anthropic_fake.requests
    assert row.reserved >= (len(seen.raw) + TOOL_PROMPT_AUTO + 1) * TOKEN
    assert row.reserved >= (row.prompt_tokens + row.completion_tokens) * TOKEN == row.cost


# -- images ------------------------------------------------------------------------------------


def png_url(width: int, height: int) -> str:
    ihdr = width.to_bytes(4) + height.to_bytes(4) + bytes([8, 6, 0, 0, 0])
    data = b"\x89PNG\r\n\x1a\n" + (13).to_bytes(4) + b"IHDR" + ihdr + b"\0" * 300_000
    return "data:image/png;base64," + base64.b64encode(data).decode()


def image_request(url: str, detail: str = "high") -> dict[str, Any]:
    part = {"type": "image_url", "image_url": {"url": url, "detail": detail}}
    content = [{"type": "text", "text": "what is it"}, part]
    return {"messages": [{"role": "user", "content": content}], "max_tokens": 10}


def reserved_for(
    gateway: Gateway, upstream: FakeOpenAI, key: str, body: dict[str, Any]
) -> tuple[int, int]:
    """(tokens reserved, bytes sent upstream) of one request."""
    assert post(gateway, key, body).status_code == 200
    return gateway.requests()[-1].reserved // TOKEN, len(upstream.requests[-1].raw)


def test_images_are_reserved_by_the_providers_formula_not_by_their_bytes(
    gateway: Gateway, openai_upstream: FakeOpenAI
) -> None:
    price(gateway)
    key = gateway.create_user("grace", "10")
    allowances = gateway.state.settings.message_token_allowance + REQUEST_ALLOWANCE

    def expected(sent: int, url: str, image: int) -> int:
        """Bytes sent without the base64 payload, the image's tokens, allowances, output."""
        payload = len(url) - len("data:image/png;base64,") if url.startswith("data:") else 0
        return sent - payload + image + allowances + 10

    big_url, small_url = png_url(4000, 3000), png_url(100, 100)
    big, big_sent = reserved_for(gateway, openai_upstream, key, image_request(big_url))
    small, small_sent = reserved_for(gateway, openai_upstream, key, image_request(small_url))
    low, low_sent = reserved_for(gateway, openai_upstream, key, image_request(big_url, "low"))
    http = "https://example.com/cat.png"
    fetched, fetched_sent = reserved_for(gateway, openai_upstream, key, image_request(http))
    assert big_sent == small_sent > 400_000  # the same bytes: only the header differs
    # 4000 x 3000 is fitted into 2048 px, its short side scaled to 768: 2 x 2 tiles of 512 px
    assert big == expected(big_sent, big_url, 85 + 4 * 170) < 2000
    assert small == expected(small_sent, small_url, 85 + 170)  # one tile
    assert low == expected(low_sent, big_url, 85)  # detail low: the base tokens only
    # an image the provider fetches: the most tiles an image can have
    assert fetched == expected(fetched_sent, http, 85 + 8 * 170)


# -- fallback chains -------------------------------------------------------------------------


def test_each_target_of_the_chain_is_bounded_by_its_own_body_and_price(
    gateway_factory: Any, openai_upstream: FakeOpenAI
) -> None:
    chain = {"openai:test-model": ["openai:test-dearer", "claude:claude-sonnet-4-6"]}
    gateway = gateway_factory(  # claude is not configured: it bills nothing
        openai_api_key=UPSTREAM_KEY, openai_base_url=openai_upstream.base_url, fallbacks=chain
    )
    price(gateway)
    gateway.session(
        lambda s: catalog_admin.set_price(s, "openai", "test-dearer", input="200", output="200")
    )
    key = gateway.create_user("heidi", "10")
    assert post(gateway, key, hi(max_tokens=10)).status_code == 200
    (seen,) = openai_upstream.requests
    assert seen.body["model"] == "test-model"
    (row,) = gateway.requests()
    allowances = gateway.state.settings.message_token_allowance + REQUEST_ALLOWANCE
    # the dearer fallback's body names its own model: one byte longer than the one sent
    assert row.reserved == (len(seen.raw) + 1 + allowances + 10) * 2 * TOKEN
