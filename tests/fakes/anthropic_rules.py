"""What Anthropic's Messages API rejects, as pure checks returning its 400 errors.

The messages are the real API's wording (as seen in its error bodies), so a
gateway test can assert on them. Covered: unknown top-level fields (extra
inputs are forbidden), missing required fields (``model``, ``messages``,
``max_tokens``), ``max_tokens`` < 1, ``temperature`` > 1, ``system``/
``developer`` roles inside ``messages``, empty content, empty text blocks,
unknown content block types, bad image sources, trailing whitespace in a final
assistant prefill, ``tool_use``/``tool_result`` pairing, and tools (``check_tools``:
a custom tool needs ``input_schema``; ``web_search_*`` and ``web_fetch_*`` take a
``max_uses`` of at least 1, and ``web_fetch_*`` needs the ``web-fetch-2025-09-10``
beta; the Anthropic-defined client tools are accepted; any other type is
unknown). Token counting (``check_count_body``) applies the same checks to its
smaller set of fields.
"""

from __future__ import annotations

from typing import Any

from .anthropic_search import CLIENT_SCHEMA_TOOLS, SERVER_TOOL
from .behaviours import ErrorReply

WEB_FETCH_BETA = "web-fetch-2025-09-10"

ALLOWED_FIELDS = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "system",
        "metadata",
        "stop_sequences",
        "stream",
        "temperature",
        "top_k",
        "top_p",
        "tools",
        "tool_choice",
        "thinking",
        "service_tier",
        "container",
        "mcp_servers",
        "context_management",
        "output_config",
    }
)
# ``POST /v1/messages/count_tokens`` takes the prompt fields only (no max_tokens, no stream).
COUNT_FIELDS = frozenset(
    {
        "model",
        "messages",
        "system",
        "tools",
        "tool_choice",
        "thinking",
        "mcp_servers",
        "context_management",
        "output_config",
        "cache_control",
        "speed",
    }
)
BLOCK_TYPES = (
    "text",
    "image",
    "document",
    "search_result",
    "thinking",
    "redacted_thinking",
    "tool_use",
    "tool_result",
    "server_tool_use",
    "web_search_tool_result",
)
IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")


def invalid(message: str) -> ErrorReply:
    """Anthropic's 400 invalid_request_error with ``message``."""
    return ErrorReply(400, message, type="invalid_request_error")


def check_body(body: dict[str, Any]) -> ErrorReply | None:
    """Return the error Anthropic answers to ``body``, or None if it is accepted."""
    for key in body:
        if key not in ALLOWED_FIELDS:
            return invalid(f"{key}: Extra inputs are not permitted")
    for key in ("model", "messages", "max_tokens"):
        if key not in body:
            return invalid(f"{key}: Field required")
    return (
        _check_numbers(body)
        or _check_system(body.get("system"))
        or _check_messages(body["messages"])
    )


def check_count_body(body: dict[str, Any]) -> ErrorReply | None:
    """Return the error Anthropic's token counting answers to ``body``, or None."""
    for key in body:
        if key not in COUNT_FIELDS:
            return invalid(f"{key}: Extra inputs are not permitted")
    for key in ("model", "messages"):
        if key not in body:
            return invalid(f"{key}: Field required")
    return _check_system(body.get("system")) or _check_messages(body["messages"])


def check_tools(tools: object, betas: str = "") -> ErrorReply | None:
    """Return the error Anthropic answers to ``tools`` (with the ``anthropic-beta`` header
    ``betas``), or None."""
    if tools is None:
        return None
    if not isinstance(tools, list):
        return invalid("tools: Input should be a valid list")
    enabled = {beta.strip() for beta in betas.split(",")}
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            return invalid(f"tools.{i}: Input should be a valid dictionary")
        kind = tool.get("type", "custom")
        if kind == "custom":
            if "input_schema" not in tool:
                return invalid(f"tools.{i}.custom.input_schema: Field required")
            continue
        server = SERVER_TOOL.fullmatch(kind) if isinstance(kind, str) else None
        fetch_enabled = WEB_FETCH_BETA in enabled
        if server is not None and (server.group(1) == "web_search" or fetch_enabled):
            limit = tool.get("max_uses")
            if limit is not None and (not isinstance(limit, int) or limit < 1):
                return invalid(f"tools.{i}.{kind}.max_uses: Input should be greater than 0")
            continue
        if isinstance(kind, str) and kind.startswith(CLIENT_SCHEMA_TOOLS):
            continue
        return invalid(
            f"tools.{i}: Input tag '{kind}' found using 'type' does not match any of the "
            "expected tags"
        )
    return None


def _check_numbers(body: dict[str, Any]) -> ErrorReply | None:
    max_tokens = body["max_tokens"]
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool):
        return invalid("max_tokens: Input should be a valid integer")
    if max_tokens < 1:
        return invalid("max_tokens: Input should be greater than or equal to 1")
    temperature = body.get("temperature")
    if isinstance(temperature, int | float) and temperature > 1:
        return invalid("temperature: Input should be less than or equal to 1")
    if isinstance(temperature, int | float) and temperature < 0:
        return invalid("temperature: Input should be greater than or equal to 0")
    return None


def _check_system(system: object) -> ErrorReply | None:
    if isinstance(system, list):
        for block in system:
            if isinstance(block, dict) and block.get("type") == "text" and not block.get("text"):
                return invalid("system: text content blocks must be non-empty")
    return None


def _check_messages(messages: object) -> ErrorReply | None:
    if not isinstance(messages, list):
        return invalid("messages: Input should be a valid list")
    previous_tool_ids: list[str] = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            return invalid(f"messages.{i}: Input should be a valid dictionary")
        role = message.get("role")
        if role in ("system", "developer"):
            return invalid(
                f'messages: Unexpected role "{role}". The Messages API accepts a top-level '
                f'`system` parameter, not "{role}" as an input message role.'
            )
        if role not in ("user", "assistant"):
            return invalid(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        is_final_assistant = role == "assistant" and i == len(messages) - 1
        problem = _check_content(i, message.get("content"), is_final_assistant)
        if problem is not None:
            return problem
        blocks = message["content"] if isinstance(message["content"], list) else []
        problem = _check_pairing(i, blocks, previous_tool_ids)
        if problem is not None:
            return problem
        previous_tool_ids = [
            str(b.get("id")) for b in blocks if isinstance(b, dict) and b.get("type") == "tool_use"
        ]
    return None


def _check_content(i: int, content: object, is_final_assistant: bool) -> ErrorReply | None:
    empty = invalid(
        f"messages.{i}: all messages must have non-empty content except for the "
        "optional final assistant message"
    )
    if isinstance(content, str):
        if not content and not is_final_assistant:
            return empty
        if is_final_assistant and content != content.rstrip():
            return invalid("messages: final assistant content cannot end with trailing whitespace")
        return None
    if not isinstance(content, list):
        return invalid(f"messages.{i}.content: Input should be a valid string or list")
    if not content and not is_final_assistant:
        return empty
    for j, block in enumerate(content):
        problem = _check_block(f"messages.{i}.content.{j}", block)
        if problem is not None:
            return problem
    return None


def _check_block(where: str, block: object) -> ErrorReply | None:
    if not isinstance(block, dict):
        return invalid(f"{where}: Input should be a valid dictionary")
    kind = block.get("type")
    if kind not in BLOCK_TYPES:
        expected = ", ".join(f"'{t}'" for t in BLOCK_TYPES)
        return invalid(
            f"{where}: Input tag '{kind}' found using 'type' does not match any of the "
            f"expected tags: {expected}"
        )
    if kind == "text" and not block.get("text"):
        return invalid("messages: text content blocks must be non-empty")
    if kind == "image":
        return _check_image(where, block.get("source"))
    return None


def _check_image(where: str, source: object) -> ErrorReply | None:
    if not isinstance(source, dict):
        return invalid(f"{where}.image.source: Field required")
    kind = source.get("type")
    if kind == "base64":
        if source.get("media_type") not in IMAGE_TYPES:
            allowed = ", ".join(f"'{t}'" for t in IMAGE_TYPES[:-1]) + f" or '{IMAGE_TYPES[-1]}'"
            return invalid(f"{where}.image.source.base64.media_type: Input should be {allowed}")
        if not source.get("data"):
            return invalid(f"{where}.image.source.base64.data: Field required")
        return None
    if kind == "url":
        return (
            None if source.get("url") else invalid(f"{where}.image.source.url.url: Field required")
        )
    return invalid(
        f"{where}.image.source: Input tag '{kind}' found using 'type' does not match any of "
        "the expected tags: 'base64', 'url', 'file'"
    )


def _check_pairing(i: int, blocks: list[Any], expected: list[str]) -> ErrorReply | None:
    results = [
        (j, str(b.get("tool_use_id")))
        for j, b in enumerate(blocks)
        if isinstance(b, dict) and b.get("type") == "tool_result"
    ]
    for j, tool_use_id in results:
        if tool_use_id not in expected:
            return invalid(
                f"messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` "
                f"blocks: {tool_use_id}. Each `tool_result` block must have a corresponding "
                "`tool_use` block in the previous message."
            )
    missing = [tool_id for tool_id in expected if tool_id not in {r for _, r in results}]
    if missing:
        return invalid(
            f"messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately "
            f"after: {', '.join(missing)}. Each `tool_use` block must have a corresponding "
            "`tool_result` block in the next message."
        )
    return None
