"""POST /ai/{provider}/responses and GET /ai/{provider}/responses/{id} (and /ai/v1/...):
OpenAI's Responses API on every provider path (translated through chat where the
provider does not speak it); a response is retrieved where the upstream stores it."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from ai_service.api.intake import intake, provider_of, served
from ai_service.api.render import render
from ai_service.errors import NotFoundError, UpstreamUnavailableError
from ai_service.providers import REGISTRY
from ai_service.providers.openai_compat import OpenAICompatAdapter
from ai_service.providers.openai_responses import retrieve_request
from ai_service.services import pipeline
from ai_service.services.answers import Answer
from ai_service.services.responses import SURFACE, responses

router = APIRouter()


@router.post(
    "/ai/{provider}/responses",
    summary="Create a model response (OpenAI Responses format, streamed or not)",
    response_model=None,
)
async def create_response(provider: str, request: Request) -> Response:
    provider_of(provider)
    return render(await served(request, provider, responses, SURFACE))


@router.get(
    "/ai/{provider}/responses/{response_id}",
    summary="Retrieve a stored model response (OpenAI Responses format; not charged)",
    response_model=None,
)
async def retrieve_response(provider: str, response_id: str, request: Request) -> Response:
    target = provider_of(provider)
    taken = await intake(request, provider)
    pipeline.check_reach(taken.principal, target)
    if not REGISTRY[target].speaks(SURFACE):
        raise NotFoundError(
            f"Response with id '{response_id[:80]}' not found: responses on the {provider} "
            "path are not stored (its provider answers through its chat API)."
        )
    adapter = taken.state.adapters.get(target)
    if not isinstance(adapter, OpenAICompatAdapter):
        variable = REGISTRY[target].key_variable
        raise UpstreamUnavailableError(
            f"The {target} provider is not configured on this gateway: "
            f"its operator must set {variable}."
        )
    upstream_request = retrieve_request(adapter, response_id)
    if not await taken.state.owners.owns(response_id, taken.principal.user_id):
        raise NotFoundError(f"Response with id '{response_id}' not found.")
    data = await taken.state.upstream.exchange(adapter, upstream_request)
    return render(Answer(orjson.dumps(data)))
