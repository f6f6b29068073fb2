"""OpenAI `messages` -> Anthropic top-level `system` and `messages`.

Rules, in the order they apply:

- `system` and `developer` messages, wherever they stand, are collected in order
  into the top-level `system`: one string joined with blank lines, or a list of
  text blocks when any part carries `cache_control` (which only blocks can hold).
- `user` and `assistant` messages keep their role; a `tool` message becomes a
  `tool_result` block (`tool_use_id` = `tool_call_id`) in a user turn.
- Consecutive turns of one role are merged (content blocks concatenated), so a
  run of tool results and the user text after them form one user message. In a
  user turn the `tool_result` blocks are moved to the front, as Anthropic
  requires, keeping their relative order.
- Assistant `tool_calls` become `tool_use` blocks after the assistant's text,
  with `input` = the parsed `arguments` (invalid JSON, or JSON that is not an
  object, is a 400 naming the parameter). `reasoning_content` from earlier
  turns is dropped: Anthropic only accepts thinking blocks it signed.
- Content parts are translated by `content.py` (text, images, PDF files).
- Anthropic rejects empty and whitespace-only text blocks, so such parts are
  dropped. An assistant message left with no content is dropped. A user turn
  left with no content gets the placeholder text `"."` (`PLACEHOLDER_TEXT`),
  the shortest non-whitespace text, which says nothing the user did not say.
- The first message must be a user turn: a conversation that starts with the
  assistant (a greeting, say) gets a `"."` user turn in front, so the
  assistant's words stay the assistant's. A conversation of system messages
  only gets a `"."` user turn too.
- A final assistant turn (prefill) loses its trailing whitespace, which
  Anthropic rejects.
- A turn that is exactly one plain text block is sent as a string.
- Tool-call ids are made to match Anthropic's `^[a-zA-Z0-9_-]+$` by replacing
  other characters with `_`, identically in `tool_use` and `tool_result`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from ai_service.errors import InvalidRequestError
from ai_service.providers.anthropic.content import content_blocks
from ai_service.providers.base import JsonObject

PLACEHOLDER_TEXT = "."
_TOOL_ID_INVALID = re.compile(r"[^a-zA-Z0-9_-]")

System = str | list[JsonObject] | None


@dataclass(slots=True)
class Turn:
    """One Anthropic message under construction."""

    role: str
    blocks: list[JsonObject] = field(default_factory=list)


def translate_messages(messages: list[Any]) -> tuple[System, list[Turn]]:
    """Split OpenAI messages into Anthropic `system` and merged turns.

    Raises `InvalidRequestError` (400, with `param`) for content it cannot translate.
    """
    system_blocks: list[JsonObject] = []
    turns: list[Turn] = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise InvalidRequestError("each message must be an object", param=where)
        role = message.get("role")
        if role in ("system", "developer"):
            system_blocks.extend(text_blocks(message.get("content"), f"{where}.content"))
        elif role == "user":
            _append(turns, "user", content_blocks(message.get("content"), f"{where}.content"))
        elif role == "tool":
            _append(turns, "user", [_tool_result(message, where)])
        elif role == "assistant":
            blocks = _assistant_blocks(message, where)
            if blocks:
                _append(turns, "assistant", blocks)
        else:
            raise InvalidRequestError(f"unsupported message role: {role!r}", param=f"{where}.role")
    _finish(turns)
    return join_system(system_blocks), turns


def turns_to_json(turns: list[Turn]) -> list[JsonObject]:
    """The `messages` array, with single plain-text turns as strings."""
    out: list[JsonObject] = []
    for turn in turns:
        blocks = turn.blocks
        if len(blocks) == 1 and blocks[0]["type"] == "text" and len(blocks[0]) == 2:
            out.append({"role": turn.role, "content": blocks[0]["text"]})
        else:
            out.append({"role": turn.role, "content": blocks})
    return out


def join_system(blocks: list[JsonObject]) -> System:
    """System text blocks as one string, or as blocks when any carries `cache_control`."""
    if not blocks:
        return None
    if any("cache_control" in block for block in blocks):
        return blocks
    return "\n\n".join(block["text"] for block in blocks)


def text_blocks(content: object, where: str) -> list[JsonObject]:
    """Text blocks of a system/developer content (string or text parts)."""
    blocks = content_blocks(content, where)
    for j, block in enumerate(blocks):
        if block["type"] != "text":
            raise InvalidRequestError(
                "system and developer messages may only contain text", param=f"{where}[{j}]"
            )
    return blocks


def tool_use_id(raw: str) -> str:
    """An OpenAI tool-call id made acceptable to Anthropic."""
    return _TOOL_ID_INVALID.sub("_", raw)


def _append(turns: list[Turn], role: str, blocks: list[JsonObject]) -> None:
    if turns and turns[-1].role == role:
        turns[-1].blocks.extend(blocks)
    else:
        turns.append(Turn(role, list(blocks)))


def _finish(turns: list[Turn]) -> None:
    if not turns or turns[0].role != "user":
        turns.insert(0, Turn("user"))
    if turns[-1].role == "assistant":
        _strip_prefill(turns)
    for turn in turns:
        if turn.role == "user":
            results = [b for b in turn.blocks if b["type"] == "tool_result"]
            others = [b for b in turn.blocks if b["type"] != "tool_result"]
            turn.blocks = results + others or [{"type": "text", "text": PLACEHOLDER_TEXT}]


def _strip_prefill(turns: list[Turn]) -> None:
    last = turns[-1]
    if last.blocks and last.blocks[-1]["type"] == "text":
        text = last.blocks[-1]["text"].rstrip()
        if text:
            last.blocks[-1] = {**last.blocks[-1], "text": text}
        else:
            last.blocks.pop()
    if not last.blocks:
        turns.pop()


def _tool_result(message: dict[str, Any], where: str) -> JsonObject:
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise InvalidRequestError(
            "tool messages need a tool_call_id", param=f"{where}.tool_call_id"
        )
    block: JsonObject = {"type": "tool_result", "tool_use_id": tool_use_id(call_id)}
    blocks = content_blocks(message.get("content"), f"{where}.content")
    if len(blocks) == 1 and blocks[0]["type"] == "text" and len(blocks[0]) == 2:
        block["content"] = blocks[0]["text"]
    elif blocks:
        block["content"] = blocks
    return block


def _assistant_blocks(message: dict[str, Any], where: str) -> list[JsonObject]:
    blocks = content_blocks(message.get("content"), f"{where}.content")
    calls = message.get("tool_calls") or []
    if not isinstance(calls, list):
        raise InvalidRequestError("tool_calls must be an array", param=f"{where}.tool_calls")
    for k, call in enumerate(calls):
        blocks.append(_tool_use(call, f"{where}.tool_calls[{k}]"))
    return blocks


def _tool_use(call: object, where: str) -> JsonObject:
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(call, dict) or not isinstance(function, dict):
        raise InvalidRequestError("a tool call needs a function object", param=where)
    call_id, name = call.get("id"), function.get("name")
    if not isinstance(call_id, str) or not call_id:
        raise InvalidRequestError("a tool call needs an id", param=f"{where}.id")
    if not isinstance(name, str) or not name:
        raise InvalidRequestError(
            "a tool call needs a function name", param=f"{where}.function.name"
        )
    return {
        "type": "tool_use",
        "id": tool_use_id(call_id),
        "name": name,
        "input": _parse_arguments(function.get("arguments"), f"{where}.function.arguments"),
    }


def _parse_arguments(arguments: object, where: str) -> JsonObject:
    if arguments is None or (isinstance(arguments, str) and not arguments.strip()):
        return {}
    if isinstance(arguments, dict):
        return arguments
    if not isinstance(arguments, str):
        raise InvalidRequestError("tool call arguments must be a JSON string", param=where)
    try:
        parsed = json.loads(arguments)
    except json.JSONDecodeError as exc:
        raise InvalidRequestError(
            f"tool call arguments are not valid JSON: {exc.msg}", param=where
        ) from exc
    if not isinstance(parsed, dict):
        raise InvalidRequestError("tool call arguments must be a JSON object", param=where)
    return parsed
