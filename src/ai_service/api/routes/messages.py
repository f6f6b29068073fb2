"""POST /ai/claude/v1/messages and /ai/claude/v1/messages/count_tokens: Anthropic's own
Messages API (`ANTHROPIC_BASE_URL=<gateway>/ai/claude`), its errors in Anthropic's shape."""

from __future__ import annotations

from functools import partial

from fastapi import APIRouter, Request
from starlette.responses import Response

from ai_service.api.intake import Service, intake
from ai_service.api.render import anthropic_shape, error_response, render
from ai_service.providers.anthropic.passthrough import forwarded_headers
from ai_service.services.messages import SURFACE, Forwarded, count_tokens, messages

PROVIDER = "claude"
router = APIRouter()


async def serve(request: Request, service: Service) -> Response:
    """Serve a Messages API request; every error before the answer in Anthropic's shape."""
    try:
        return render(await (await intake(request, PROVIDER, SURFACE)).serve(service))
    except Exception as exc:
        return error_response(exc, anthropic_shape)


def forwarded(request: Request) -> Forwarded:
    headers = request.headers
    sent, dropped = forwarded_headers(
        headers.get("anthropic-version"), ",".join(headers.getlist("anthropic-beta"))
    )
    return Forwarded(sent, tuple(dropped))


@router.post(
    f"/ai/{PROVIDER}/v1/messages",
    summary="Create a message (Anthropic Messages format, streamed or not)",
    response_model=None,
)
async def create_message(request: Request) -> Response:
    return await serve(request, partial(messages, forwarded=forwarded(request)))


@router.post(
    f"/ai/{PROVIDER}/v1/messages/count_tokens",
    summary="Count a message's input tokens (Anthropic Messages format; free)",
    response_model=None,
)
async def count_message_tokens(request: Request) -> Response:
    return await serve(request, partial(count_tokens, forwarded=forwarded(request)))
