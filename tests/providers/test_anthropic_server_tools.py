"""Anthropic's own tools: which are served, what they add to the bound, how their uses are read."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from ai_service.errors import InvalidRequestError
from ai_service.providers.anthropic.passthrough import MessagesRelayParser, forwarded_headers
from ai_service.providers.anthropic.response import usage_from
from ai_service.providers.anthropic.server_tools import admit, use_prices
from ai_service.providers.base import Usage

CUSTOM = {"name": "get_weather", "input_schema": {"type": "object"}}
SEARCH = {"type": "web_search_20250305", "name": "web_search", "max_uses": 8}
FETCH = {"type": "web_fetch_20250910", "name": "web_fetch", "max_content_tokens": 5000}


def test_client_tools_add_nothing_and_are_sent_as_they_came() -> None:
    assert admit(None, 5).uses == 0
    tools = admit([CUSTOM, {**CUSTOM, "type": "custom", "name": "other"}], 5)
    assert (tools.tools, tools.uses, tools.paid, tools.hidden) == (None, 0, (), 0)
    assert tools.unseen(0) == 0  # no use, nothing to bound: any model serves it


def test_a_search_reserves_a_context_window_and_its_fee_per_use() -> None:
    tools = admit([CUSTOM, SEARCH], 5)
    assert tools.tools is None  # max_uses given: the client's list goes as it came
    assert (tools.uses, tools.paid) == (8, (("web_search", 8),))
    assert tools.unseen(200_000) == 8 * 200_000
    assert tools.fees(use_prices("10")) == 8 * 10_000_000_000  # $0.08 in pico-USD
    assert tools.fees({}) == 0


def test_a_server_tool_without_max_uses_is_sent_the_default() -> None:
    bare = {"type": "web_search_20260209", "name": "web_search"}
    tools = admit([bare, FETCH], 5)
    assert tools.tools == [{**bare, "max_uses": 5}, {**FETCH, "max_uses": 5}]
    # a fetch is bounded like a search, without a fee
    assert (tools.uses, tools.paid) == (10, (("web_search", 5),))
    assert tools.unseen(1_000) == 10_000


def test_the_documented_anthropic_client_tools_add_their_schema_tokens() -> None:
    bash = {"type": "bash_20250124", "name": "bash"}
    editor = {"type": "text_editor_20250429", "name": "str_replace_based_edit_tool"}
    tools = admit([bash, editor], 5)
    assert (tools.hidden, tools.uses, tools.tools) == (245 + 700, 0, None)


@pytest.mark.parametrize(
    "tool",
    [
        {"type": "code_execution_20250825", "name": "code_execution"},
        {"type": "computer_20250124", "name": "computer", "display_width_px": 1024},
        {"type": "memory_20250818", "name": "memory"},
        {"type": "text_editor_20250728", "name": "str_replace_based_edit_tool"},
        {"type": "mcp_toolset", "mcp_server_name": "x"},
        {"type": "web_search", "name": "web_search"},
        {"type": 7},
    ],
)
def test_any_other_tool_is_refused_by_its_type(tool: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequestError) as refused:
        admit([CUSTOM, tool], 5)
    assert refused.value.message.startswith("tools.1: tool type ")
    assert repr(tool["type"]) in refused.value.message
    assert refused.value.param == "tools"


@pytest.mark.parametrize("limit", [0, -1, "3", 2.5, True])
def test_a_bad_max_uses_is_refused(limit: object) -> None:
    with pytest.raises(InvalidRequestError, match=r"^tools\.0\.max_uses"):
        admit([{**SEARCH, "max_uses": limit}], 5)


@pytest.mark.parametrize("tools", [{"a": 1}, ["web_search"]])
def test_malformed_tools_are_refused(tools: object) -> None:
    with pytest.raises(InvalidRequestError, match=r"^tools"):
        admit(tools, 5)


def test_uses_without_a_known_context_window_are_refused() -> None:
    with pytest.raises(InvalidRequestError, match="context window"):
        admit([SEARCH], 5).unseen(0)


def test_the_web_search_price_is_the_setting_per_thousand_in_pico_usd() -> None:
    assert use_prices("10") == {"web_search": 10_000_000_000}
    assert use_prices("0.5") == {"web_search": 500_000_000}
    with pytest.raises(ValueError, match="plain decimal"):
        use_prices("1e1")


def test_the_web_fetch_beta_is_forwarded() -> None:
    headers, dropped = forwarded_headers(None, "web-fetch-2025-09-10,code-execution-2025-08-25")
    assert headers["anthropic-beta"] == "web-fetch-2025-09-10"
    assert dropped == ["code-execution-2025-08-25"]


def test_the_usage_reports_the_server_tool_uses() -> None:
    usage = usage_from(
        {
            "input_tokens": 6039,
            "output_tokens": 931,
            "server_tool_use": {"web_search_requests": 2, "web_fetch_requests": 0},
        }
    )
    assert usage == Usage(input_tokens=6039, output_tokens=931, tool_uses=(("web_search", 2),))
    assert usage_from({"server_tool_use": {"web_search_requests": True}}).tool_uses == ()


def event(name: str, payload: dict[str, object]) -> tuple[str, str]:
    return name, orjson.dumps(payload).decode()


def result(index: int, content: object, kind: str = "web_search_tool_result") -> tuple[str, str]:
    block = {"type": kind, "tool_use_id": f"srvtoolu_{index}", "content": content}
    return event(
        "content_block_start",
        {"type": "content_block_start", "index": index, "content_block": block},
    )


def test_a_stream_counts_each_server_tool_result_into_its_early_usage() -> None:
    parser = MessagesRelayParser()
    start = {"type": "message_start", "message": {"usage": {"input_tokens": 50}}}
    parser.feed(*event("message_start", start))
    found = [{"type": "web_search_result", "url": "https://example.com", "title": "x"}]
    error = {"type": "web_search_tool_result_error", "error_code": "max_uses_exceeded"}
    fetched = {"type": "web_fetch_result", "url": "https://example.com", "content": {}}
    (first,) = parser.feed(*result(1, found))
    (refused,) = parser.feed(*result(3, error))
    (fetch,) = parser.feed(*result(5, fetched, "web_fetch_tool_result"))
    assert first.frame is not None and b"web_search_result" in first.frame
    assert first.early_usage == Usage(input_tokens=50, tool_uses=(("web_search", 1),))
    assert refused.early_usage is None  # an error result is not billed
    assert fetch.early_usage == Usage(
        input_tokens=50, tool_uses=(("web_fetch", 1), ("web_search", 1))
    )
    # the final usage is Anthropic's own count
    final = {"type": "message_delta", "usage": {"server_tool_use": {"web_search_requests": 1}}}
    (delta,) = parser.feed(*event("message_delta", final))
    assert delta.usage is not None
    assert delta.usage.tool_uses == (("web_search", 1),)
