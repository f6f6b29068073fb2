"""Anthropic's Messages API over a provider's chat API: the request.

For the providers whose upstream does not speak the Messages API (every one
but Claude's), a Messages body is translated to a chat body (`to_chat`),
sent, reserved and billed as chat is, and the chat answer translated back
(`translate.message_answer`: a `message` object, or Anthropic's event
sequence, so that the anthropic SDK's stream helpers work). Pure functions;
no I/O.

Translated: `system` (a string or text blocks) as the first system message;
`messages` with string content or blocks: `text`, `image` (a base64 source
as a data URL, a url source as its URL), an assistant's `tool_use` blocks as
its `tool_calls` (`input` as the JSON `arguments`), a user's `tool_result`
blocks as one `tool` message each, before the rest of its content (their
content a string or text blocks; an error result's text begins "Error: ");
client `tools` (name, description, input_schema, strict) as function tools;
`tool_choice` (auto, any as required, tool as the named function, none;
`disable_parallel_tool_use` as `parallel_tool_calls: false`); `max_tokens`;
`stop_sequences` as `stop`; `temperature`, `top_p`; `metadata.user_id` as
`user`; `thinking` and `output_config.effort` as `reasoning_effort`
(`effort_of`); `stream`, with `stream_options.include_usage` so that the
usage arrives. Several text blocks are joined by a blank line.

Dropped, as they change nothing billed: `cache_control` (top-level, on
blocks and tools), text blocks' `citations`, the `thinking` and
`redacted_thinking` blocks of the history (a chat API takes no reasoning
back), `service_tier`, `thinking.display`, tools' `eager_input_streaming`,
`context_management` (Anthropic's trimming of old tool results and thinking
on its side: the chat provider is sent, and bills, the conversation as sent;
Claude Code sends it with every request).

Refused with a 400 naming the field, before anything is reserved or sent
(what cannot be translated could be neither bounded nor billed): `top_k`,
server tools (a `type` other than custom), `document` blocks and any other
block type, images in a tool result, sources other than base64 and url, a
last message from the assistant (a prefill: chat completions do not continue
a message), `output_config.format`, what runs at Anthropic only
(`mcp_servers`, `container`), and every unknown field.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from ai_service.errors import InvalidRequestError
from ai_service.providers.base import JsonObject

TRANSLATED = frozenset(
    {
        "max_tokens",
        "messages",
        "metadata",
        "model",
        "output_config",
        "stop_sequences",
        "stream",
        "system",
        "temperature",
        "thinking",
        "tool_choice",
        "tools",
        "top_p",
    }
)
WITHOUT_EFFECT = frozenset({"cache_control", "service_tier", "context_management"})
REFUSED = {
    "top_k": "chat completions have no top_k sampling",
    "container": "containers run at Anthropic only",
    "mcp_servers": "MCP servers are called by Anthropic only",
}
TEXT_KEYS = frozenset({"type", "text", "cache_control", "citations"})
IMAGE_KEYS = frozenset({"type", "source", "cache_control"})
TOOL_USE_KEYS = frozenset({"type", "id", "name", "input", "cache_control"})
TOOL_RESULT_KEYS = frozenset({"type", "tool_use_id", "content", "is_error", "cache_control"})
TOOL_KEYS = frozenset(
    {"type", "name", "description", "input_schema", "cache_control", "strict"}
    | {"eager_input_streaming"}
)
HISTORY_ONLY = frozenset({"thinking", "redacted_thinking"})  # dropped: the model's own
# a thinking budget below the first bound asks for low effort, below the second medium
EFFORT_BOUNDS = ((4096, "low"), (16384, "medium"))
EFFORTS = {"low": "low", "medium": "medium", "high": "high", "xhigh": "high", "max": "high"}
BLANK_LINE = "\n\n"


@dataclass(frozen=True, slots=True)
class Translated:
    """A Messages body as a chat body, and what the gateway relies on."""

    body: JsonObject
    model: str
    limit: int
    stream: bool


def _invalid(where: str, message: str) -> InvalidRequestError:
    return InvalidRequestError(f"{where}: {message}", param=where)


def check_fields(body: JsonObject) -> None:
    """Refuse a top-level field that is not translated. Raises `InvalidRequestError`."""
    for key, value in body.items():
        if key in TRANSLATED or key in WITHOUT_EFFECT or value is None:
            continue
        if key in REFUSED:
            raise _invalid(key, f"not served on this path ({REFUSED[key]}).")
        raise _invalid(
            key[:60], "Extra inputs are not permitted (not translatable to a chat completion)."
        )


def _keys(value: JsonObject, allowed: frozenset[str], where: str) -> None:
    for key, item in value.items():
        if key not in allowed and item is not None:
            raise _invalid(f"{where}.{key[:60]}", "Extra inputs are not permitted.")


def to_chat(body: JsonObject) -> Translated:
    """The chat body of a Messages body. Raises `InvalidRequestError` naming the field."""
    check_fields(body)
    chat = prompt(body)
    limit = body.get("max_tokens")
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise _invalid("max_tokens", "Field required, a positive integer.")
    chat["max_tokens"] = limit
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _invalid("stream", "Input should be a valid boolean.")
    if stream:
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    stop = body.get("stop_sequences")
    if stop is not None:
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise _invalid("stop_sequences", "Input should be a list of strings.")
        if stop:
            chat["stop"] = stop
    for key in ("temperature", "top_p"):
        value = body.get(key)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise _invalid(key, "Input should be a valid number.")
            chat[key] = value
    user = user_of(body.get("metadata"))
    if user is not None:
        chat["user"] = user
    effort = reasoning_effort(body.get("thinking"), body.get("output_config"))
    if effort is not None:
        chat["reasoning_effort"] = effort
    return Translated(chat, chat["model"], limit, bool(stream))


def prompt(body: JsonObject) -> JsonObject:
    """The prompt of a Messages body as a chat body: `model`, `messages` (the system prompt
    first), `tools` and `tool_choice`. Raises `InvalidRequestError`."""
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise _invalid("model", "Field required (the model's id).")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _invalid("messages", "a non-empty list is required.")
    out = system_messages(body.get("system"))
    for index, message in enumerate(messages):
        out += chat_messages(message, f"messages[{index}]")
    if messages[-1].get("role") == "assistant":
        raise _invalid(
            f"messages[{len(messages) - 1}]",
            "the last message is the assistant's: a prefill is not served on this path "
            "(chat completions do not continue a message).",
        )
    chat: JsonObject = {"model": model, "messages": out}
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise _invalid("tools", "Input should be a valid list.")
        if tools:
            chat["tools"] = [function_tool(tool, f"tools[{i}]") for i, tool in enumerate(tools)]
    choice = body.get("tool_choice")
    if choice is not None:
        chat.update(tool_choice(choice))
        if "tools" not in chat:  # a chat API refuses a choice without tools
            chat.pop("tool_choice")
            chat.pop("parallel_tool_calls", None)
    return chat


def system_messages(system: object) -> list[JsonObject]:
    """The system prompt (a string or text blocks) as a system message, if any."""
    if system is None:
        return []
    if isinstance(system, str):
        return [{"role": "system", "content": system}] if system else []
    if not isinstance(system, list):
        raise _invalid("system", "Input should be a string or a list of text blocks.")
    texts = [text_of(block, f"system[{i}]") for i, block in enumerate(system)]
    return [{"role": "system", "content": BLANK_LINE.join(texts)}] if texts else []


def text_of(block: object, where: str) -> str:
    """The text of a `text` block. Raises `InvalidRequestError` for any other block."""
    if not isinstance(block, dict) or block.get("type") != "text":
        raise _invalid(where, "Input should be a text block.")
    _keys(block, TEXT_KEYS, where)
    text = block.get("text")
    if not isinstance(text, str):
        raise _invalid(f"{where}.text", "Input should be a valid string.")
    return text


def chat_messages(message: object, where: str) -> list[JsonObject]:
    """The chat messages of one Messages message."""
    if not isinstance(message, dict):
        raise _invalid(where, "Input should be an object with role and content.")
    _keys(message, frozenset({"role", "content"}), where)
    role, content = message.get("role"), message.get("content")
    if role not in ("user", "assistant", "system"):
        raise _invalid(f"{where}.role", "Input should be 'user', 'assistant' or 'system'.")
    if role == "system":  # instructions within the conversation (Claude Code sends them)
        if isinstance(content, list):
            content = BLANK_LINE.join(
                text_of(block, f"{where}.content[{i}]") for i, block in enumerate(content)
            )
        if not isinstance(content, str):
            raise _invalid(f"{where}.content", "Input should be a string or text blocks.")
        return [{"role": "system", "content": content}]
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    if not isinstance(content, list) or not content:
        raise _invalid(f"{where}.content", "Input should be a string or a non-empty list.")
    if role == "assistant":
        return [assistant_message(content, f"{where}.content")]
    return user_messages(content, f"{where}.content")


def _kind(block: object, where: str) -> str:
    kind = block.get("type") if isinstance(block, dict) else None
    if not isinstance(kind, str):
        raise _invalid(where, "Input should be a content block with a type.")
    return kind


def _unserved(kind: str, where: str) -> InvalidRequestError:
    return _invalid(
        where,
        f"{kind[:60]} blocks are not served on this path (it takes text, image, tool_use "
        "and tool_result blocks).",
    )


def user_messages(blocks: list[object], where: str) -> list[JsonObject]:
    """A user's blocks: a `tool` message per tool result, then the rest of its content."""
    tools: list[JsonObject] = []
    parts: list[JsonObject] = []
    for j, block in enumerate(blocks):
        at = f"{where}[{j}]"
        kind = _kind(block, at)
        assert isinstance(block, dict)
        if kind == "text":
            parts.append({"type": "text", "text": text_of(block, at)})
        elif kind == "image":
            parts.append(image_part(block, at))
        elif kind == "tool_result":
            tools.append(tool_message(block, at))
        elif kind not in HISTORY_ONLY:
            raise _unserved(kind, at)
    if not parts:
        return tools
    if all(part["type"] == "text" for part in parts):
        content: object = BLANK_LINE.join(part["text"] for part in parts)
    else:
        content = parts
    return [*tools, {"role": "user", "content": content}]


def image_part(block: JsonObject, where: str) -> JsonObject:
    """An `image` block as an `image_url` part (a base64 source as a data URL)."""
    _keys(block, IMAGE_KEYS, where)
    source = block.get("source")
    kind = source.get("type") if isinstance(source, dict) else None
    if isinstance(source, dict) and kind == "base64":
        media, data = source.get("media_type"), source.get("data")
        if not isinstance(media, str) or not isinstance(data, str):
            raise _invalid(f"{where}.source", "a base64 source needs media_type and data.")
        url = f"data:{media};base64,{data}"
    elif isinstance(source, dict) and kind == "url" and isinstance(source.get("url"), str):
        url = source["url"]
    else:
        raise _invalid(
            f"{where}.source",
            "image sources are served as base64 or url on this path (files are Anthropic's).",
        )
    return {"type": "image_url", "image_url": {"url": url}}


def tool_message(block: JsonObject, where: str) -> JsonObject:
    """A `tool_result` block as a `tool` message (an error result says so first)."""
    _keys(block, TOOL_RESULT_KEYS, where)
    call_id = block.get("tool_use_id")
    if not isinstance(call_id, str) or not call_id:
        raise _invalid(f"{where}.tool_use_id", "Field required.")
    content = block.get("content")
    if content is None:
        text = ""
    elif isinstance(content, str):
        text = content
    elif isinstance(content, list):
        texts = []
        for k, inner in enumerate(content):
            at = f"{where}.content[{k}]"
            kind = _kind(inner, at)
            if kind != "text":
                raise _invalid(
                    at,
                    f"{kind[:60]} blocks in a tool result are not served on this path "
                    "(a chat tool message carries text only).",
                )
            texts.append(text_of(inner, at))
        text = BLANK_LINE.join(texts)
    else:
        raise _invalid(f"{where}.content", "Input should be a string or a list of blocks.")
    if block.get("is_error") is True:
        text = f"Error: {text}"
    return {"role": "tool", "tool_call_id": call_id, "content": text}


def assistant_message(blocks: list[object], where: str) -> JsonObject:
    """An assistant's blocks: its text and its `tool_calls`; its reasoning is dropped."""
    texts: list[str] = []
    calls: list[JsonObject] = []
    for j, block in enumerate(blocks):
        at = f"{where}[{j}]"
        kind = _kind(block, at)
        assert isinstance(block, dict)
        if kind == "text":
            texts.append(text_of(block, at))
        elif kind == "tool_use":
            calls.append(tool_call(block, at))
        elif kind not in HISTORY_ONLY:
            raise _unserved(kind, at)
    message: JsonObject = {"role": "assistant", "content": BLANK_LINE.join(texts)}
    if calls:
        message["tool_calls"] = calls
        if not texts:
            message["content"] = None
    return message


def tool_call(block: JsonObject, where: str) -> JsonObject:
    """A `tool_use` block as a chat tool call."""
    _keys(block, TOOL_USE_KEYS, where)
    call_id, name, given = block.get("id"), block.get("name"), block.get("input")
    if not isinstance(call_id, str) or not call_id:
        raise _invalid(f"{where}.id", "Field required.")
    if not isinstance(name, str) or not name:
        raise _invalid(f"{where}.name", "Field required.")
    if not isinstance(given, dict):
        raise _invalid(f"{where}.input", "Input should be a valid dictionary.")
    arguments = orjson.dumps(given).decode()
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def function_tool(tool: object, where: str) -> JsonObject:
    """A client tool as a function tool. Raises `InvalidRequestError` for a server tool."""
    if not isinstance(tool, dict):
        raise _invalid(where, "Input should be a tool object.")
    kind = tool.get("type")
    if kind not in (None, "custom"):
        raise _invalid(
            where,
            f"tool type {str(kind)[:60]!r} is not served by this gateway; only client tools "
            "(name, description, input_schema) are.",
        )
    _keys(tool, TOOL_KEYS, where)
    name, schema = tool.get("name"), tool.get("input_schema")
    if not isinstance(name, str) or not name:
        raise _invalid(f"{where}.name", "Field required.")
    if not isinstance(schema, dict):
        raise _invalid(f"{where}.input_schema", "Field required, a JSON schema object.")
    function: JsonObject = {"name": name, "parameters": schema}
    description = tool.get("description")
    if isinstance(description, str):
        function["description"] = description
    if isinstance(tool.get("strict"), bool):
        function["strict"] = tool["strict"]
    return {"type": "function", "function": function}


def tool_choice(choice: object) -> JsonObject:
    """`tool_choice` (and `parallel_tool_calls`) of a Messages `tool_choice`."""
    kind = choice.get("type") if isinstance(choice, dict) else None
    if not isinstance(choice, dict) or kind not in ("auto", "any", "tool", "none"):
        raise _invalid(
            "tool_choice", "Input should be a tool choice of type auto, any, tool, none."
        )
    _keys(choice, frozenset({"type", "name", "disable_parallel_tool_use"}), "tool_choice")
    out: JsonObject = {}
    if kind == "tool":
        name = choice.get("name")
        if not isinstance(name, str) or not name:
            raise _invalid("tool_choice.name", "Field required.")
        out["tool_choice"] = {"type": "function", "function": {"name": name}}
    else:
        out["tool_choice"] = {"auto": "auto", "any": "required", "none": "none"}[kind]
    if choice.get("disable_parallel_tool_use") is True and kind != "none":
        out["parallel_tool_calls"] = False
    return out


def user_of(metadata: object) -> str | None:
    """`metadata.user_id`, the end user the chat body names in `user`."""
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        raise _invalid("metadata", "Input should be an object.")
    _keys(metadata, frozenset({"user_id"}), "metadata")
    user = metadata.get("user_id")
    return user if isinstance(user, str) and user else None


def effort_of(budget: int) -> str:
    """The `reasoning_effort` of a thinking budget: low below 4096 tokens, medium below
    16384, high from there (OpenAI's efforts; each provider's adapter spells them its way)."""
    for bound, effort in EFFORT_BOUNDS:
        if budget < bound:
            return effort
    return "high"


def reasoning_effort(thinking: object, output_config: object) -> str | None:
    """The `reasoning_effort` of `thinking` (enabled: by its budget; disabled and adaptive:
    none, the model's default) and `output_config.effort` (which wins: max is high)."""
    effort: str | None = None
    if thinking is not None:
        kind = thinking.get("type") if isinstance(thinking, dict) else None
        if not isinstance(thinking, dict) or kind not in ("enabled", "disabled", "adaptive"):
            raise _invalid("thinking", "Input should be a thinking configuration.")
        _keys(thinking, frozenset({"type", "budget_tokens", "display"}), "thinking")
        if kind == "enabled":
            budget = thinking.get("budget_tokens")
            if not isinstance(budget, int) or isinstance(budget, bool) or budget < 1:
                raise _invalid("thinking.budget_tokens", "Field required, a positive integer.")
            effort = effort_of(budget)
    if output_config is not None:
        if not isinstance(output_config, dict):
            raise _invalid("output_config", "Input should be an object.")
        if output_config.get("format") is not None:
            raise _invalid("output_config.format", "structured output is not served on this path.")
        _keys(output_config, frozenset({"effort", "format"}), "output_config")
        given = output_config.get("effort")
        if given is not None:
            if not isinstance(given, str) or given not in EFFORTS:
                raise _invalid("output_config.effort", "Input should be low, medium or high.")
            effort = EFFORTS[given]
    return effort
