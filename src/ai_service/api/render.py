"""The one boundary between the services and HTTP: results and errors, rendered.

Every route, the hot chat endpoint and the framework's exception handlers
alike, turns a service's result and any exception into a response here, so
an error has one rendering: a `ServiceError` as its status and body in the
surface's shape, an unreachable database as 503 with `Retry-After`, anything
else as a logged 500.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from starlette.responses import Response

from ai_service.api.responses import json_response
from ai_service.api.sse import SSEResponse
from ai_service.errors import ServiceError, ServiceUnavailableError
from ai_service.providers.anthropic.errors import error_body
from ai_service.services.answers import Answer, Result
from ai_service.storage.db import DB_ERRORS

log = logging.getLogger("ai_service")

# how a surface shapes an error's body (the OpenAI shape unless the surface says otherwise)
ErrorShape = Callable[[ServiceError], Any]
DATABASE_DOWN = "The gateway's database is unavailable; retry shortly."


def openai_shape(exc: ServiceError) -> Any:
    return exc.body()


def anthropic_shape(exc: ServiceError) -> Any:
    """Anthropic's `{"type": "error", "error": {"type", "message"}}` (the Messages surface)."""
    return error_body(exc.status, exc.message)


def render(result: Result) -> Response:
    """A service's answer as its HTTP response."""
    if isinstance(result, Answer):
        return Response(result.payload, media_type="application/json", headers=result.headers)
    return SSEResponse(result.frames, result.headers, on_close=result.closed)


def error_response(exc: BaseException, shape: ErrorShape = openai_shape) -> Response:
    """The response for an exception that ended a request before its answer began."""
    if isinstance(exc, ServiceError):
        return json_response(shape(exc), exc.status, exc.headers())
    if isinstance(exc, DB_ERRORS):
        log.warning("database unavailable: %s", type(exc).__name__)
        error = ServiceUnavailableError(DATABASE_DOWN)
        return json_response(shape(error), error.status, {"Retry-After": "2"})
    log.exception("unhandled error", exc_info=exc)
    return json_response(shape(ServiceError("The gateway failed to handle the request.")), 500)
