"""Upper bounds of token counts, used to reserve a request's worst-case cost.

Byte-level BPE tokenizers never produce more tokens than the UTF-8 bytes they
encode, so the byte length of every string in a message is an upper bound of
its tokens. Each message adds a fixed allowance for the role and separators,
each image a fixed allowance, and tool definitions count by their JSON size.
"""

from __future__ import annotations

from typing import Any

import orjson

from ai_service.billing.money import ceil_div


def _text_bytes(value: Any) -> tuple[int, int]:
    """(bytes of text, number of images) inside a message's content or a part list."""
    if isinstance(value, str):
        return len(value.encode()), 0
    if isinstance(value, list):
        total = images = 0
        for part in value:
            if isinstance(part, dict):
                kind = part.get("type")
                if kind in ("image_url", "image", "input_image"):
                    images += 1
                    continue
                if kind == "input_audio" or kind == "file":
                    total += len(orjson.dumps(part))
                    continue
                text = part.get("text")
                if isinstance(text, str):
                    total += len(text.encode())
                    continue
            total += len(orjson.dumps(part))
        return total, images
    if value is None:
        return 0, 0
    return len(orjson.dumps(value)), 0


def prompt_upper_bound(
    body: dict[str, Any], *, message_allowance: int, image_allowance: int
) -> int:
    """An upper bound of the prompt tokens of an OpenAI-shaped request body."""
    total = 0
    messages = body.get("messages") or []
    for message in messages:
        text, images = _text_bytes(message.get("content"))
        total += text + images * image_allowance + message_allowance
        name = message.get("name")
        if isinstance(name, str):
            total += len(name.encode())
        tool_calls = message.get("tool_calls")
        if tool_calls:
            total += len(orjson.dumps(tool_calls))
        reasoning = message.get("reasoning_content")
        if isinstance(reasoning, str):
            total += len(reasoning.encode())
    for key in ("tools", "functions", "response_format", "tool_choice"):
        value = body.get(key)
        if value is not None and value != "auto":
            total += len(orjson.dumps(value)) + message_allowance
    return total + message_allowance


def estimate_output_tokens(generated_chars: int) -> int:
    """A flagged estimate of output tokens from delivered characters (about 4 per token)."""
    return max(1, ceil_div(generated_chars, 4)) if generated_chars else 0
