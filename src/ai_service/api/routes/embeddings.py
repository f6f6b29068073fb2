"""POST /ai/{provider}/embeddings (and /ai/v1/embeddings): OpenAI's embeddings format,
on the providers that serve embeddings; the others answer 404 naming the ones that do."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from ai_service.api.intake import provider_of, served
from ai_service.api.render import render
from ai_service.errors import NotFoundError
from ai_service.providers import REGISTRY, paths_serving
from ai_service.services.embeddings import embeddings

router = APIRouter()


@router.post(
    "/ai/{provider}/embeddings",
    summary="Create embeddings (OpenAI Embeddings format)",
    response_model=None,
)
async def create_embeddings(provider: str, request: Request) -> Response:
    target = provider_of(provider)
    if not REGISTRY[target].embeddings:
        raise NotFoundError(
            f"/ai/{provider}/embeddings is not served: the {target} provider has no "
            f"embeddings API. Embeddings are served on {paths_serving('embeddings')}."
        )
    return render(await served(request, provider, embeddings, "embeddings"))
