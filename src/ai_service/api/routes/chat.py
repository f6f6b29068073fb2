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

from ai_service.api.deps import client_request_id, get_state, request_id
from ai_service.api.render import error_response, render
from ai_service.auth import key_from_headers
from ai_service.errors import NotFoundError, PayloadTooLargeError
from ai_service.providers import PATHS
from ai_service.services.call import Call, refuse
from ai_service.services.chat import chat

router = APIRouter()


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 once it passes `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(f"The request body is larger than {limit} bytes.")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"The request body is larger than {limit} bytes.")
        chunks.append(chunk)
    return b"".join(chunks)


@router.post(
    "/ai/{provider}/chat/completions",
    summary="Create a chat completion (OpenAI Chat Completions format, streamed or not)",
    response_model=None,
)
async def chat_completions(provider: str, request: Request) -> Response:
    target = PATHS.get(provider)
    if target is None:
        raise NotFoundError(
            f"Unknown provider path '/ai/{provider}/'; use one of: {', '.join(sorted(PATHS))}."
        )
    state = get_state(request)
    headers = request.headers
    secret = key_from_headers(headers.get("x-api-key"), headers.get("authorization"))
    principal = await state.keys.authenticate(secret)
    assert secret is not None
    ids = request_id(request), client_request_id(request)
    try:
        raw = await read_body(request, state.settings.max_body_bytes)
    except PayloadTooLargeError as exc:
        call = Call.start(state, principal, target, ids[0], client_request_id=ids[1])
        raise await refuse(call, exc) from None
    result = await chat(
        state, principal, secret, target, raw, ids[0], headers.get("idempotency-key"), ids[1]
    )
    return render(result)


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
