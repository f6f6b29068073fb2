"""Validation of the client's Chat Completions body (DESIGN §4), kept light for the hot path.

Only what the gateway relies on is checked (`model`, `messages`, roles,
`stream`, the output limits); every other field is forwarded untouched.
"""

from __future__ import annotations

from typing import Any

import orjson

from ai_service.errors import InvalidRequestError

MAX_MODEL = 200
MAX_CHOICES = 128  # OpenAI's limit of `n`
# how deep objects and arrays may nest: far beyond any real schema or content, and far
# below what the JSON encoder re-encoding the body for the upstream accepts (254)
MAX_DEPTH = 100
ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


def parse_body(raw: bytes) -> dict[str, Any]:
    """Decode a JSON object body, at most `MAX_DEPTH` levels deep. Raises `InvalidRequestError`."""
    if not raw:
        raise InvalidRequestError("The request body is empty; send a JSON object.")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequestError(f"The request body is not valid JSON: {exc.msg}.") from exc
    if not isinstance(body, dict):
        raise InvalidRequestError("The request body must be a JSON object.")
    # nesting never exceeds the number of opening brackets: most bodies need no walk
    if raw.count(b"{") + raw.count(b"[") > MAX_DEPTH and too_deep(body, MAX_DEPTH):
        raise InvalidRequestError(f"The request body is nested more than {MAX_DEPTH} levels deep.")
    return body


def too_deep(value: dict[str, Any] | list[Any], limit: int) -> bool:
    """Whether objects and arrays nest more than `limit` levels (the outermost is level 1)."""
    stack: list[tuple[dict[str, Any] | list[Any], int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        for child in item.values() if isinstance(item, dict) else item:
            if isinstance(child, dict | list):
                stack.append((child, depth + 1))
    return False


def _int_field(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidRequestError(f"'{name}' must be a positive integer.", param=name)
    return value


def validate_model(body: dict[str, Any]) -> str:
    """The body's `model`. Raises `InvalidRequestError`."""
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequestError(
            "'model' is required and must be a non-empty string.", param="model"
        )
    if len(model) > MAX_MODEL or not model.isprintable():
        raise InvalidRequestError(
            f"'model' must be at most {MAX_MODEL} printable characters.", param="model"
        )
    return model


def validate_stream(body: dict[str, Any]) -> bool:
    """The body's `stream` (false if absent or null). Raises `InvalidRequestError`."""
    stream = body.get("stream", False)
    if stream is None:
        return False
    if not isinstance(stream, bool):
        raise InvalidRequestError("'stream' must be a boolean.", param="stream")
    return stream


def validate_chat(body: dict[str, Any], max_messages: int) -> tuple[str, bool, int | None]:
    """Check a chat body; returns (model, stream, client's output limit).

    Raises `InvalidRequestError` naming the offending parameter.
    """
    model = validate_model(body)
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise InvalidRequestError("'messages' is required and must be an array.", param="messages")
    if not messages:
        raise InvalidRequestError("'messages' must contain at least one message.", param="messages")
    if len(messages) > max_messages:
        raise InvalidRequestError(
            f"'messages' has {len(messages)} entries; at most {max_messages} are accepted.",
            param="messages",
        )
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise InvalidRequestError(
                f"messages[{index}] must be an object.", param=f"messages[{index}]"
            )
        role = message.get("role")
        if not isinstance(role, str) or role not in ROLES:
            raise InvalidRequestError(
                f"messages[{index}].role must be one of system, developer, user, assistant, "
                f"tool; got {orjson.dumps(role).decode()[:40]}.",
                param=f"messages[{index}].role",
            )
        content = message.get("content")
        if content is not None and not isinstance(content, str | list):
            raise InvalidRequestError(
                f"messages[{index}].content must be a string or an array of content parts.",
                param=f"messages[{index}].content",
            )
        if content is None and role in ("user", "system", "developer"):
            raise InvalidRequestError(
                f"messages[{index}].content is required for role '{role}'.",
                param=f"messages[{index}].content",
            )
    stream = validate_stream(body)
    limit = _int_field(body, "max_completion_tokens")
    legacy = _int_field(body, "max_tokens")
    if limit is None:
        limit = legacy
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise InvalidRequestError("'stream_options' must be an object.", param="stream_options")
    return model, stream, limit


def validate_choices(body: dict[str, Any]) -> int:
    """The number of answers asked for (`n`, 1 to `MAX_CHOICES`; 1 if absent).

    Raises `InvalidRequestError`: each answer is billed, so `n` is checked
    before anything is reserved or sent.
    """
    n = body.get("n")
    if n is None:
        return 1
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_CHOICES:
        raise InvalidRequestError(f"'n' must be an integer from 1 to {MAX_CHOICES}.", param="n")
    return n


def include_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True
