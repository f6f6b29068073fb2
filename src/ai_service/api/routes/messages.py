"""POST /ai/{provider}/v1/messages and /ai/{provider}/v1/messages/count_tokens (and
/ai/v1/v1/...): Anthropic's Messages API on every provider path
(`ANTHROPIC_BASE_URL=<gateway>/ai/<provider>`), passed to Anthropic on Claude's path and
translated through chat on the others, its errors in Anthropic's shape everywhere;
GET /ai/claude/v1/models (and one by id) in Anthropic's model-list shape."""

from __future__ import annotations

from functools import partial

from fastapi import APIRouter, Request
from starlette.responses import Response

from ai_service.api.deps import get_state
from ai_service.api.intake import Service, served
from ai_service.api.render import anthropic_shape, error_response, render
from ai_service.api.responses import json_response
from ai_service.auth import key_from_headers
from ai_service.errors import NotFoundError
from ai_service.providers.anthropic.passthrough import forwarded_headers
from ai_service.services.messages import SURFACE, Forwarded, count_tokens, messages

PROVIDER = "claude"
router = APIRouter()


async def serve(request: Request, path: str, service: Service) -> Response:
    """Serve a Messages API request; every error before the answer in Anthropic's shape."""
    try:
        return render(await served(request, path, service, SURFACE))
    except Exception as exc:
        return error_response(exc, anthropic_shape)


def forwarded(request: Request) -> Forwarded:
    headers = request.headers
    sent, dropped = forwarded_headers(
        headers.get("anthropic-version"), ",".join(headers.getlist("anthropic-beta"))
    )
    return Forwarded(sent, tuple(dropped))


@router.post(
    "/ai/{provider}/v1/messages",
    summary="Create a message (Anthropic Messages format, streamed or not; translated "
    "through chat on the paths of providers other than Claude)",
    response_model=None,
)
async def create_message(provider: str, request: Request) -> Response:
    return await serve(request, provider, partial(messages, forwarded=forwarded(request)))


@router.post(
    "/ai/{provider}/v1/messages/count_tokens",
    summary="Count a message's input tokens (Anthropic Messages format; free; the "
    "gateway's own count on the paths of providers other than Claude)",
    response_model=None,
)
async def count_message_tokens(provider: str, request: Request) -> Response:
    return await serve(request, provider, partial(count_tokens, forwarded=forwarded(request)))


def model_object(model_id: str) -> dict[str, object]:
    """A model in Anthropic's shape (the catalog keeps no display name nor date)."""
    return {"type": "model", "id": model_id, "display_name": model_id, "created_at": EPOCH}


EPOCH = "1970-01-01T00:00:00Z"


async def catalog_ids(request: Request) -> list[str]:
    """The Claude models the catalog prices, and its aliases, that the caller's key may use."""
    state = get_state(request)
    headers = request.headers
    principal = await state.keys.authenticate(
        key_from_headers(headers.get("x-api-key"), headers.get("authorization"))
    )
    catalog = await state.catalog.get()
    aliases = catalog.aliases.get(PROVIDER, {})
    ids = {*catalog.models(PROVIDER), *aliases}
    return sorted(m for m in ids if principal.may_use(PROVIDER, m, aliases.get(m, m)))


@router.get(f"/ai/{PROVIDER}/v1/models", summary="List Claude models (Anthropic format)")
async def list_claude_models(request: Request) -> Response:
    try:
        data = [model_object(mid) for mid in await catalog_ids(request)]
    except Exception as exc:
        return error_response(exc, anthropic_shape)
    return json_response(
        {
            "data": data,
            "has_more": False,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        }
    )


@router.get(f"/ai/{PROVIDER}/v1/models/{{model_id}}", summary="One Claude model (Anthropic format)")
async def get_claude_model(model_id: str, request: Request) -> Response:
    try:
        if model_id not in await catalog_ids(request):
            raise NotFoundError(f"model: {model_id}")
    except Exception as exc:
        return error_response(exc, anthropic_shape)
    return json_response(model_object(model_id))
