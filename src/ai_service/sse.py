"""Server-sent events as the gateway writes them: `data: <json>` frames, the named events of
the Responses and Messages APIs, and upstream events relayed as text."""

from __future__ import annotations

from typing import Any

import orjson

from ai_service.errors import ServiceError

DONE = b"data: [DONE]\n\n"


def frame(obj: Any) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def named(event: str, obj: Any) -> bytes:
    """A named event of JSON (the Responses and Messages APIs): `event:`, then `data:`."""
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(obj) + b"\n\n"


def text_event(event: str | None, data: str) -> bytes:
    """The bytes of one event of text `data` (a `data:` line for each of its lines),
    named if `event` is given: an upstream event relayed as it came."""
    lines = "data: " + data.replace("\n", "\ndata: ")
    if event is None:
        return (lines + "\n\n").encode()
    return f"event: {event}\n{lines}\n\n".encode()


def error_frame(exc: ServiceError) -> bytes:
    """The final `data: {"error": ...}` event of a stream that failed after it started."""
    return frame(exc.body())
