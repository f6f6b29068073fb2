"""The Anthropic fake's web search server tool: which searches run, their blocks and usage.

When a request offers a ``web_search_YYYYMMDD`` tool, the fake model searches
before it answers: for ``Answer(web_searches=(...))``'s queries, by default
once, for the last user message's text (``web_searches=()``: no search).
Anthropic runs the searches in a loop and the fake counts tokens the same
way, deterministically:

* each search is a ``server_tool_use`` block (``input: {"query": ...}``,
  streamed as ``input_json_delta`` fragments, costing output tokens like a
  tool call: 1 + its fragments) followed by a ``web_search_tool_result`` block;
* past the tool's ``max_uses`` a search's result is the error
  ``{"type": "web_search_tool_result_error", "error_code": "max_uses_exceeded"}``
  and is not billed; the others count in ``usage.server_tool_use.web_search_requests``;
* the model samples once more after every search, and each sampling reads
  the prompt and the results so far (``RESULT_TOKENS`` per successful search):
  ``input_tokens`` is the sum of those readings.

``message_start`` reports the first sampling's input; the final
``message_delta`` the whole loop's (``input_tokens``, ``output_tokens``,
``server_tool_use``), as Anthropic's cumulative usage does.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .behaviours import Answer
from .tokens import split_fragments

RESULT_TOKENS = 1000  # the input tokens one search's results add to the context
SEARCH_TOOL = re.compile(r"web_search_\d{8}")
SERVER_TOOL = re.compile(r"(web_search|web_fetch)_\d{8}")
CLIENT_SCHEMA_TOOLS = ("bash_", "text_editor_", "computer_")


@dataclass(frozen=True)
class Search:
    """One search of the loop: its query, id and whether it ran (within max_uses)."""

    query: str
    id: str
    ran: bool

    @property
    def fragments(self) -> tuple[str, ...]:
        return split_fragments(json.dumps({"query": self.query}))

    def use_block(self, streamed: bool = False) -> dict[str, Any]:
        return {
            "type": "server_tool_use",
            "id": self.id,
            "name": "web_search",
            "input": {} if streamed else {"query": self.query},
        }

    def result_block(self) -> dict[str, Any]:
        content: Any
        if self.ran:
            content = [
                {
                    "type": "web_search_result",
                    "url": f"https://example.com/{n}?q={self.query[:20]}",
                    "title": f"Result {n} for {self.query[:40]}",
                    "encrypted_content": "RmFrZSBlbmNyeXB0ZWQgY29udGVudA==",
                    "page_age": "June 1, 2026",
                }
                for n in (1, 2)
            ]
        else:
            content = {"type": "web_search_tool_result_error", "error_code": "max_uses_exceeded"}
        return {"type": "web_search_tool_result", "tool_use_id": self.id, "content": content}


@dataclass(frozen=True)
class Loop:
    """The searches of one answer and the usage they add."""

    offered: bool  # the request offered a web search tool (its usage then says so)
    searches: tuple[Search, ...] = ()

    @property
    def requests(self) -> int:
        """The searches billed."""
        return sum(1 for s in self.searches if s.ran)

    def input_tokens(self, prompt: int) -> int:
        """The input of every sampling: the prompt and the results read so far."""
        total, read = prompt, 0
        for search in self.searches:
            read += RESULT_TOKENS if search.ran else 0
            total += prompt + read
        return total

    @property
    def output_tokens(self) -> int:
        return sum(1 + len(s.fragments) for s in self.searches)

    def blocks(self) -> Iterator[dict[str, Any]]:
        for search in self.searches:
            yield search.use_block()
            yield search.result_block()

    def usage(self) -> dict[str, Any]:
        if not self.offered:
            return {}
        return {"server_tool_use": {"web_search_requests": self.requests}}


def plan_searches(body: dict[str, Any], answer: Answer, ids: Iterator[str]) -> Loop:
    """The searches the fake model makes for ``body`` (see the module docstring)."""
    tools = body.get("tools") or []
    tool = next(
        (t for t in tools if isinstance(t, dict) and SEARCH_TOOL.fullmatch(str(t.get("type")))),
        None,
    )
    if tool is None:
        return Loop(offered=False)
    queries = answer.web_searches
    if queries is None:
        queries = (last_user_text(body.get("messages")) or "news",)
    limit = tool.get("max_uses")
    searches = tuple(
        Search(query, next(ids), limit is None or index < limit)
        for index, query in enumerate(queries)
    )
    return Loop(offered=True, searches=searches)


def last_user_text(messages: object) -> str:
    for message in reversed(messages if isinstance(messages, list) else []):
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            texts = [b.get("text") for b in content if isinstance(b, dict)]
            return " ".join(t for t in texts if isinstance(t, str))
    return ""
