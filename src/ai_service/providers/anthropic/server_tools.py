"""Anthropic's own tools on the Messages API: which the gateway serves, and what they may bill.

A Messages body's `tools` are of three sorts, each bounded differently:

- **Client tools** (`type` absent or `"custom"`: `name`, `description`,
  `input_schema`): their definitions are in the body's bytes; the hidden
  tool-use system prompt is `tools.tool_prompt_tokens`.
- **Anthropic-defined client tools**, run by the client with a schema Anthropic
  adds unseen: served where Anthropic documents how many input tokens the
  tool adds (`SCHEMA_TOKENS`: `bash_20250124` 245, `text_editor_20250124` and
  `text_editor_20250429` 700), which the prompt bound adds.
- **Server tools**, run by Anthropic inside the request (`SERVER_TOOLS`):
  `web_search_*` ($10 per 1,000 searches, a setting, plus the results as
  input tokens) and `web_fetch_*` (no fee; the fetched content as input
  tokens). `max_uses` caps the uses of each; a tool sent without one gets the
  gateway's default in the forwarded body. Anthropic runs them in a loop that
  samples the model again after each use, every sampling reading the whole
  context so far (the prompt, the results, what was generated), and each
  reading is billed as input. So beyond the prompt the body shows, a request
  may be billed at most one context window per use (`ServerTools.unseen`),
  and its uses at their per-use price (`ServerTools.fees`).

Every other tool (code execution, computer use, memory, MCP toolsets, tool
search, the Anthropic-defined versions without documented token counts, ...)
is billed by container time, runs where the gateway cannot see it, or adds
prompt tokens the gateway cannot bound: a 400 naming it, before anything is
reserved or sent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ai_service.billing.money import usd_to_nano
from ai_service.errors import InvalidRequestError
from ai_service.providers.base import JsonObject

if TYPE_CHECKING:  # pricing imports the provider contract: a type only
    from ai_service.billing.pricing import UsePrices

WEB_SEARCH = "web_search"  # the usage kind of a search (`server_tool_use.web_search_requests`)
WEB_FETCH = "web_fetch"  # of a fetch (`server_tool_use.web_fetch_requests`)
# a server tool's `type` (`web_search_20250305`) -> its usage kind
SERVER_TOOLS = re.compile(r"(web_search|web_fetch)_\d{8}")
# Anthropic-defined client tools -> the input tokens Anthropic documents each one adds
SCHEMA_TOKENS: dict[str, int] = {
    "bash_20250124": 245,
    "text_editor_20250124": 700,
    "text_editor_20250429": 700,
}


@dataclass(frozen=True, slots=True)
class ServerTools:
    """What a body's tools add to its reservation.

    `tools` is the list to send when the gateway filled in a `max_uses` (None:
    the client's list goes as it came); `uses` is the most server tool uses
    the request can make, `paid` the most of each kind that has a per-use
    price, `hidden` the input tokens of Anthropic-defined client tools.
    """

    tools: list[JsonObject] | None = None
    uses: int = 0
    paid: tuple[tuple[str, int], ...] = ()
    hidden: int = 0

    def unseen(self, context_window: int) -> int:
        """A bound of the input tokens the tool loop reads beyond the body: each sampling
        after a use reads at most the model's context window.

        Raises `InvalidRequestError` when there are uses and the catalog does not know
        the model's context window (nothing bounds them).
        """
        if not self.uses:
            return 0
        if context_window <= 0:
            raise InvalidRequestError(
                "tools: server tools (web search, web fetch) are not served for this model: "
                "the catalog does not know its context window, which bounds what they bill.",
                param="tools",
            )
        return self.uses * context_window

    def fees(self, prices: UsePrices) -> int:
        """The most the uses can be billed per use, in pico-USD."""
        return sum(count * prices.get(kind, 0) for kind, count in self.paid)


NONE = ServerTools()


def admit(tools: object, default_max_uses: int) -> ServerTools:
    """Check a Messages body's `tools` and bound what they add.

    A server tool without `max_uses` is given `default_max_uses`. Raises
    `InvalidRequestError` for a malformed list, a malformed `max_uses`, and a
    tool the gateway does not serve, naming it.
    """
    if tools is None:
        return NONE
    if not isinstance(tools, list):
        raise InvalidRequestError("tools: Input should be a valid list.", param="tools")
    sent: list[JsonObject] = []
    changed = False
    uses = hidden = 0
    paid: dict[str, int] = {}
    for index, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise InvalidRequestError(
                f"tools.{index}: Input should be a valid dictionary.", param="tools"
            )
        kind = tool.get("type", "custom")
        server = SERVER_TOOLS.fullmatch(kind) if isinstance(kind, str) else None
        if server is None:
            if kind != "custom":
                hidden += _schema_tokens(kind, index)
            sent.append(tool)
            continue
        limit = tool.get("max_uses")
        if limit is None:
            tool, limit, changed = {**tool, "max_uses": default_max_uses}, default_max_uses, True
        elif not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise InvalidRequestError(
                f"tools.{index}.max_uses: Input should be a positive integer.", param="tools"
            )
        uses += limit
        if server.group(1) == WEB_SEARCH:
            paid[WEB_SEARCH] = paid.get(WEB_SEARCH, 0) + limit
        sent.append(tool)
    return ServerTools(sent if changed else None, uses, tuple(sorted(paid.items())), hidden)


def _schema_tokens(kind: object, index: int) -> int:
    """The documented input tokens of an Anthropic-defined client tool; raises
    `InvalidRequestError` for any other tool type."""
    tokens = SCHEMA_TOKENS.get(kind) if isinstance(kind, str) else None
    if tokens is None:
        raise InvalidRequestError(
            f"tools.{index}: tool type {kind!r} is not served by this gateway: it cannot bound "
            "or bill it. Served: client tools (name, description, input_schema), "
            "web_search_* and web_fetch_* (with max_uses), " + ", ".join(SCHEMA_TOKENS) + ".",
            param="tools",
        )
    return tokens


def use_prices(web_search_usd_per_1k: str) -> UsePrices:
    """The per-use prices of Anthropic's server tools (pico-USD a use) from the setting's USD
    per 1,000 searches. Raises `ValueError` for an amount that is not a plain decimal."""
    # USD per 1,000 uses x 1e12 pico / 1e3 = USD x 1e9: the nano-USD of the same figure
    return {WEB_SEARCH: usd_to_nano(web_search_usd_per_1k)}
