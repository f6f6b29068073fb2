"""Server-sent events as the OpenAI-shaped surfaces send them: `data: <json>` frames."""

from __future__ import annotations

from typing import Any

import orjson

from ai_service.errors import ServiceError

DONE = b"data: [DONE]\n\n"


def frame(obj: Any) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def error_frame(exc: ServiceError) -> bytes:
    """The final `data: {"error": ...}` event of a stream that failed after it started."""
    return frame(exc.body())
