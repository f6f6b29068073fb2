"""POST /ai/{provider}/chat/completions (and the legacy /ai/v1/chat/completions)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from ai_service.api.deps import get_state, request_id
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
    try:
        raw = await read_body(request, state.settings.max_body_bytes)
    except PayloadTooLargeError as exc:
        raise await refuse(Call.start(state, principal, target, request_id(request)), exc) from None
    return await chat(
        state, principal, secret, target, raw, request_id(request), dict(headers.items())
    )
