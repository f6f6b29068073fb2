"""POST /ai/{provider}/chat/completions (and the legacy /ai/v1/chat/completions).

`ChatEndpoint` serves the route as a plain ASGI app, which the application's
entry (`app.GatewayApp`) calls directly: no framework middleware, routing or
dependency injection on the hot path. The FastAPI route of the same path
describes the operation in the OpenAPI document and answers other methods.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ai_service.api.deps import get_state
from ai_service.api.intake import served
from ai_service.api.render import error_response, render
from ai_service.providers import PATHS
from ai_service.services.chat import chat

router = APIRouter()


@router.post(
    "/ai/{provider}/chat/completions",
    summary="Create a chat completion (OpenAI Chat Completions format, streamed or not)",
    response_model=None,
)
async def chat_completions(provider: str, request: Request) -> Response:
    return render(await served(request, provider, chat))


class ChatEndpoint:
    """The chat route as a plain ASGI app, counted in the metrics for its whole duration."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        state = get_state(request)
        provider: str = scope["path_params"]["provider"]
        gauge = (
            state.metrics.child(state.metrics.in_flight, provider) if provider in PATHS else None
        )
        if gauge is not None:
            gauge.inc()
        try:
            try:
                response = await chat_completions(provider, request)
            except Exception as exc:
                response = error_response(exc)
            response.raw_headers.append((b"x-request-id", scope["state"]["request_id"].encode()))
            state.metrics.child(state.metrics.responses, "chat", str(response.status_code)).inc()
            await response(scope, receive, send)
        finally:
            if gauge is not None:
                gauge.dec()
