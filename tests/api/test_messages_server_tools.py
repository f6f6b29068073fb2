"""Anthropic's server tools on the Messages surface, end to end: the `anthropic` SDK ->
gateway -> the Anthropic fake over sockets; reserved for the worst case, charged the tokens
reported plus each search at the fee, refused tools free and never sent."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import httpx
import orjson
import pytest

from ai_service.billing.estimate import REQUEST_ALLOWANCE
from ai_service.billing.money import usd_str
from ai_service.billing.pricing import Price, charge
from ai_service.providers.anthropic.tools import tool_prompt_tokens
from ai_service.providers.base import Usage
from ai_service.services import catalog_admin
from tests.api.test_messages import leave_after, wait_settled
from tests.fakes.anthropic_messages import TOOL_PROMPT_AUTO, FakeAnthropic
from tests.fakes.anthropic_search import RESULT_TOKENS
from tests.fakes.behaviours import Answer, Usage as FakeUsage
from tests.fakes.tokens import PER_MESSAGE, count_words, split_fragments
from tests.support.gateway import Gateway

KEY = "sk-ant-upstream-test"
MODEL = "claude-haiku-4-5-20251001"  # $1 / $5 per 1M tokens, a 200k context window
HELLO = [{"role": "user", "content": "Hello there"}]
PROMPT = PER_MESSAGE + count_words("Hello there") + TOOL_PROMPT_AUTO  # what the fake reports
# Claude Code's WebSearch tool
SEARCH: Any = {"type": "web_search_20250305", "name": "web_search", "max_uses": 8}
FEE = 10_000_000_000  # $10 per 1,000 searches: pico-USD a search
MESSAGES = "/ai/claude/v1/messages"


@pytest.fixture(scope="module")
def anthropic_fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(api_key=KEY) as fake:
        yield fake


@pytest.fixture
def claude(gateway_factory: Callable[..., Gateway], anthropic_fake: FakeAnthropic) -> Gateway:
    anthropic_fake.reset()
    return gateway_factory(anthropic_api_key=KEY, anthropic_base_url=anthropic_fake.base_url)


def sdk(gw: Gateway, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url + "/ai/claude", api_key=key, max_retries=0)


def price(gw: Gateway, model: str = MODEL) -> Price:
    return gw.state.catalog.current.resolve("claude", model).price


def billed(gw: Gateway, usage: Usage) -> int:
    """What `usage` costs in nano-USD: its tokens at the catalog's price, its searches at $0.01."""
    return charge(usage, price(gw), None, {"web_search": FEE}).cost


def searched(queries: tuple[str, ...], text: str = "Sunny.") -> tuple[Usage, Answer]:
    """The fake's answer with these searches (all within max_uses), and the usage it reports."""
    read = sum(PROMPT + RESULT_TOKENS * n for n in range(len(queries) + 1))
    output = len(text.split()) + sum(
        1 + len(split_fragments(json.dumps({"query": q}))) for q in queries
    )
    usage = Usage(
        input_tokens=read, output_tokens=output, tool_uses=(("web_search", len(queries)),)
    )
    return usage, Answer(text=text, web_searches=queries)


def test_create_with_web_search_is_charged_its_tokens_and_each_search(
    claude: Gateway, anthropic_fake: FakeAnthropic
) -> None:
    key = claude.create_user("alice", "10")
    before = claude.balance("alice")[0]
    usage, answer = searched(("weather paris", "paris forecast"))
    anthropic_fake.enqueue(answer)
    reply = sdk(claude, key).messages.with_raw_response.create(
        model=MODEL, max_tokens=256, messages=HELLO, tools=[SEARCH]
    )
    message = reply.parse()
    assert [b.type for b in message.content] == [
        "server_tool_use",
        "web_search_tool_result",
        "server_tool_use",
        "web_search_tool_result",
        "text",
    ]
    assert message.usage.server_tool_use is not None
    assert message.usage.server_tool_use.web_search_requests == 2
    assert (message.usage.input_tokens, message.usage.output_tokens) == (
        usage.input_tokens,
        usage.output_tokens,
    )
    (seen,) = anthropic_fake.requests
    assert seen.body["tools"] == [SEARCH]  # max_uses given: the body went as it came
    # the tokens at $1 / $5 per 1M, and two searches at $0.01
    expected = -(
        -(usage.input_tokens * 1_000_000 + usage.output_tokens * 5_000_000 + 2 * FEE) // 1000
    )
    assert billed(claude, usage) == expected
    assert before - claude.balance("alice")[0] == expected
    assert reply.headers["x-request-cost"] == usd_str(expected)
    (row,) = claude.requests()
    assert (row.status, row.cost, row.uncollected) == ("ok", expected, 0)
    assert row.prompt_tokens == usage.input_tokens
    detail = orjson.loads(row.price_detail or "{}")
    assert detail["uses"] == {"web_search": {"uses": 2, "price": FEE, "cost_pico": 2 * FEE}}
    assert row.reserved >= row.cost
    # the caller's usage log shows the searches
    page = httpx.get(claude.url + "/ai/usage", headers={"X-API-Key": key}).json()
    assert page["data"][0]["price"]["uses"] == {
        "web_search": {"uses": 2, "usd_per_use": "0.01", "cost_usd": "0.02"}
    }


def test_a_stream_with_web_search_is_charged_the_same(
    claude: Gateway, anthropic_fake: FakeAnthropic
) -> None:
    key = claude.create_user("alice", "10")
    before = claude.balance("alice")[0]
    usage, answer = searched(("weather paris",))
    anthropic_fake.enqueue(answer)
    with sdk(claude, key).messages.stream(
        model=MODEL, max_tokens=256, messages=HELLO, tools=[SEARCH]
    ) as stream:
        kinds = [e.content_block.type for e in stream if e.type == "content_block_start"]
        final = stream.get_final_message()
    assert kinds == ["server_tool_use", "web_search_tool_result", "text"]
    assert final.usage.server_tool_use is not None
    assert final.usage.server_tool_use.web_search_requests == 1
    assert final.usage.input_tokens == usage.input_tokens
    claude.wait_settled()
    expected = billed(claude, usage)
    assert before - claude.balance("alice")[0] == expected
    (row,) = claude.requests()
    assert (row.status, row.cost, row.stream) == ("ok", expected, True)
    assert orjson.loads(row.price_detail or "{}")["uses"]["web_search"]["uses"] == 1


@pytest.mark.parametrize(("setting", "sent"), [(None, 5), (2, 2)])
def test_without_max_uses_the_gateways_default_is_sent(
    gateway_factory: Callable[..., Gateway],
    anthropic_fake: FakeAnthropic,
    setting: int | None,
    sent: int,
) -> None:
    anthropic_fake.reset()
    extra = {} if setting is None else {"anthropic_server_tool_max_uses": setting}
    gw = gateway_factory(anthropic_api_key=KEY, anthropic_base_url=anthropic_fake.base_url, **extra)
    key = gw.create_user("alice", "10")
    anthropic_fake.enqueue(Answer(web_searches=("a", "b", "c")))
    bare = {"type": "web_search_20250305", "name": "web_search"}
    message = sdk(gw, key).messages.create(
        model=MODEL,
        max_tokens=64,
        messages=HELLO,  # type: ignore[arg-type]  # the SDK's TypedDicts
        tools=[bare],  # type: ignore[list-item]  # idem
    )
    (seen,) = anthropic_fake.requests
    assert seen.body["tools"] == [{**bare, "max_uses": sent}]
    assert message.usage.server_tool_use is not None
    assert message.usage.server_tool_use.web_search_requests == min(3, sent)
    (row,) = gw.requests()
    assert orjson.loads(row.price_detail or "{}")["uses"]["web_search"]["uses"] == min(3, sent)


# -- the reservation ----------------------------------------------------------------------------

TOKEN = 100_000  # nano-USD a token at $100 / 1M, in and out
WINDOW = 10_000  # the test model's context window
CHEAP = "claude-search-test"
HIDDEN = tool_prompt_tokens(CHEAP, {"tools": [SEARCH]})  # the tool-use system prompt reserved


def small_model(gw: Gateway) -> None:
    gw.session(
        lambda s: catalog_admin.set_price(
            s, "claude", CHEAP, input="100", output="100", context_window=WINDOW
        )
    )


def search_body(max_uses: int, max_tokens: int = 50, **extra: Any) -> dict[str, Any]:
    tool = {"type": "web_search_20250305", "name": "web_search", "max_uses": max_uses}
    return {"model": CHEAP, "max_tokens": max_tokens, "messages": HELLO, "tools": [tool], **extra}


def post(gw: Gateway, key: str, body: dict[str, Any], **headers: str) -> httpx.Response:
    return httpx.post(
        gw.url + MESSAGES, json=body, headers={"x-api-key": key, **headers}, timeout=30
    )


def test_the_reservation_is_the_bytes_a_context_window_per_use_the_output_and_the_fees(
    claude: Gateway, anthropic_fake: FakeAnthropic
) -> None:
    small_model(claude)
    key = claude.create_user("alice", "10")
    anthropic_fake.enqueue(Answer(web_searches=("a", "b")))
    assert post(claude, key, search_body(3)).status_code == 200
    (seen,) = anthropic_fake.requests
    (row,) = claude.requests()
    allowance = claude.state.settings.message_token_allowance
    prompt = len(seen.raw) + HIDDEN + allowance + REQUEST_ALLOWANCE
    # three uses: three samplings that may each read a whole context window
    tokens = prompt + 3 * WINDOW + 50
    assert row.reserved == tokens * TOKEN + 3 * FEE // 1000
    assert row.cost == (
        (PROMPT + (PROMPT + 1000) + (PROMPT + 2000)) * TOKEN
        + row.completion_tokens * TOKEN
        + 2 * FEE // 1000
    )


def test_the_worst_a_loop_can_bill_is_covered_by_its_reservation(
    claude: Gateway, anthropic_fake: FakeAnthropic
) -> None:
    small_model(claude)
    key = claude.create_user("mallory", "10")
    before = claude.balance("mallory")[0]
    # every use read back a full context window, the whole output limit spent, each search billed
    worst = FakeUsage(prompt_tokens=PROMPT + 3 * WINDOW, completion_tokens=50)
    anthropic_fake.enqueue(Answer(web_searches=("a", "b", "c"), usage=worst))
    response = post(claude, key, search_body(3))
    assert response.status_code == 200
    assert response.json()["usage"]["server_tool_use"] == {"web_search_requests": 3}
    (row,) = claude.requests()
    assert row.cost == (PROMPT + 3 * WINDOW + 50) * TOKEN + 3 * FEE // 1000
    assert row.reserved >= row.cost
    assert row.uncollected == 0
    assert before - claude.balance("mallory")[0] == row.cost
    assert claude.reconcile() == []


def reservation_floor(gw: Gateway, uses: int) -> int:
    """What a search request reserves before any output: its prompt, windows and fees."""
    sent = orjson.dumps(search_body(uses))
    allowance = gw.state.settings.message_token_allowance
    prompt = len(sent) + HIDDEN + allowance + REQUEST_ALLOWANCE
    return (prompt + uses * WINDOW) * TOKEN + uses * FEE // 1000


def test_a_balance_short_of_the_output_limit_lowers_max_tokens(
    claude: Gateway, anthropic_fake: FakeAnthropic
) -> None:
    small_model(claude)
    floor = reservation_floor(claude, 2)
    key = claude.create_user("bob", f"{(floor + 400 * TOKEN) / 1e9:.9f}")
    response = post(claude, key, search_body(2, max_tokens=4000))
    assert response.status_code == 200
    (seen,) = anthropic_fake.requests
    assert 16 <= seen.body["max_tokens"] <= 400  # what the balance pays after the windows
    assert seen.body["tools"][0]["max_uses"] == 2


def test_a_balance_that_cannot_pay_the_uses_is_402_and_never_sent(
    claude: Gateway, anthropic_fake: FakeAnthropic
) -> None:
    small_model(claude)
    floor = reservation_floor(claude, 4)
    key = claude.create_user("carol", f"{(floor - TOKEN) / 1e9:.9f}")
    with pytest.raises(anthropic.APIStatusError) as caught:
        sdk(claude, key).messages.create(**search_body(4))
    assert caught.value.status_code == 402
    assert caught.value.body["error"]["type"] == "billing_error"  # type: ignore[index]
    assert anthropic_fake.requests == []
    (row,) = claude.requests()
    assert (row.http_status, row.cost, row.reserved) == (402, 0, 0)
    # one use fewer fits
    assert post(claude, key, search_body(3)).status_code == 200


# -- web fetch, Anthropic-defined client tools, refusals --------------------------------------


def test_web_fetch_is_sent_with_its_beta_and_reserved_without_a_fee(
    claude: Gateway, anthropic_fake: FakeAnthropic
) -> None:
    small_model(claude)
    key = claude.create_user("alice", "10")
    fetch = {"type": "web_fetch_20250910", "name": "web_fetch", "max_content_tokens": 2000}
    body = {"model": CHEAP, "max_tokens": 50, "messages": HELLO, "tools": [fetch]}
    response = post(claude, key, body, **{"anthropic-beta": "web-fetch-2025-09-10"})
    assert response.status_code == 200, response.text
    assert "x-dropped-anthropic-beta" not in response.headers
    (seen,) = anthropic_fake.requests
    assert seen.headers["anthropic-beta"] == "web-fetch-2025-09-10"
    assert seen.body["tools"] == [{**fetch, "max_uses": 5}]
    (row,) = claude.requests()
    allowance = claude.state.settings.message_token_allowance
    prompt = len(seen.raw) + HIDDEN + allowance + REQUEST_ALLOWANCE
    assert row.reserved == (prompt + 5 * WINDOW + 50) * TOKEN  # no per-use fee


def test_the_bash_tool_is_served_with_its_documented_tokens(
    claude: Gateway, anthropic_fake: FakeAnthropic
) -> None:
    small_model(claude)
    key = claude.create_user("alice", "10")
    bash = {"type": "bash_20250124", "name": "bash"}
    body = {"model": CHEAP, "max_tokens": 50, "messages": HELLO, "tools": [bash]}
    assert post(claude, key, body).status_code == 200
    (seen,) = anthropic_fake.requests
    (row,) = claude.requests()
    allowance = claude.state.settings.message_token_allowance
    prompt = len(seen.raw) + HIDDEN + 245 + allowance + REQUEST_ALLOWANCE
    assert row.reserved == (prompt + 50) * TOKEN


@pytest.mark.parametrize(
    "tool",
    [
        {"type": "code_execution_20250825", "name": "code_execution"},
        {
            "type": "computer_20250124",
            "name": "computer",
            "display_width_px": 1024,
            "display_height_px": 768,
        },
        {"type": "text_editor_20250728", "name": "str_replace_based_edit_tool"},
        {"type": "memory_20250818", "name": "memory"},
        {"type": "mcp_toolset", "mcp_server_name": "docs"},
    ],
    ids=lambda tool: tool["type"],
)
def test_other_anthropic_tools_are_400_naming_them_free_and_never_sent(
    claude: Gateway, anthropic_fake: FakeAnthropic, tool: dict[str, Any]
) -> None:
    key = claude.create_user("alice", "10")
    before = claude.balance("alice")
    with pytest.raises(anthropic.BadRequestError) as caught:
        sdk(claude, key).messages.create(
            model=MODEL,
            max_tokens=64,
            messages=HELLO,  # type: ignore[arg-type]  # the SDK's TypedDicts
            tools=[SEARCH, tool],  # type: ignore[list-item]  # idem
        )
    error = caught.value.body["error"]  # type: ignore[index]
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith(f"tools.1: tool type '{tool['type']}' is not served")
    assert anthropic_fake.requests == []
    assert claude.balance("alice") == before
    (row,) = claude.requests()
    assert (row.status, row.http_status, row.cost, row.reserved) == ("error", 400, 0, 0)


def test_server_tools_on_a_model_without_a_known_context_window_are_refused(
    claude: Gateway, anthropic_fake: FakeAnthropic
) -> None:
    claude.session(
        lambda s: catalog_admin.set_price(s, "claude", "claude-unwindowed", input="1", output="1")
    )
    key = claude.create_user("alice", "10")
    body = {**search_body(2), "model": "claude-unwindowed"}
    response = post(claude, key, body)
    assert response.status_code == 400
    assert "context window" in response.json()["error"]["message"]
    assert anthropic_fake.requests == []
    del body["tools"]  # without server tools the model is served
    assert post(claude, key, body).status_code == 200


# -- streams that end early ---------------------------------------------------------------------


def test_a_search_stream_cut_upstream_is_settled_once_and_free(
    claude: Gateway, anthropic_fake: FakeAnthropic
) -> None:
    key = claude.create_user("alice", "10")
    before = claude.balance("alice")
    anthropic_fake.enqueue(Answer(text="one two three four", web_searches=("a",), cut_after=3))
    body = {"model": MODEL, "max_tokens": 64, "messages": HELLO, "tools": [SEARCH], "stream": True}
    with httpx.stream("POST", claude.url + MESSAGES, json=body, headers={"x-api-key": key}) as r:
        received = r.read()
    assert b"web_search_tool_result" in received
    assert received.rstrip(b"\n").split(b"\n\n")[-1].startswith(b"event: error")
    wait_settled(claude)
    (row,) = claude.requests()
    assert (row.status, row.http_status, row.cost) == ("error", 502, 0)
    assert claude.balance("alice") == before
    assert claude.reconcile() == []


def test_a_client_that_leaves_after_a_search_pays_it_once(
    claude: Gateway, anthropic_fake: FakeAnthropic
) -> None:
    key = claude.create_user("alice", "10")
    before = claude.balance("alice")[0]
    anthropic_fake.enqueue(
        Answer(text="one two three four", web_searches=("a",), first_delay=0, chunk_delay=0.3)
    )
    body = {"model": MODEL, "max_tokens": 64, "messages": HELLO, "tools": [SEARCH], "stream": True}
    received = asyncio.run(leave_after(claude, key, body, b"web_search_tool_result"))
    assert b"web_search_tool_result" in received
    wait_settled(claude)
    (row,) = claude.requests()
    assert (row.status, row.http_status) == ("cancelled", 499)
    # message_start's prompt, the output delivered so far, and the search delivered
    assert row.prompt_tokens == PROMPT
    detail = orjson.loads(row.price_detail or "{}")
    assert detail["uses"]["web_search"]["uses"] == 1
    assert before - claude.balance("alice")[0] == row.cost > FEE // 1000
    assert claude.reconcile() == []
