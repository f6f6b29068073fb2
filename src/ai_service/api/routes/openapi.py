"""The OpenAPI documents: `/ai/openapi.json` (the client API) and the admin API's, behind its key.

The public document describes what a key holder may call; the admin routes
are described only to a caller holding the admin key, at
`/ai/admin/api/openapi.json`. No documentation page is served: a page that
loads Swagger UI would run a third party's script next to the admin key, so
the documents are for the operator's own tools (an editor, a client
generator, a locally installed viewer).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.openapi.utils import get_openapi
from fastapi.routing import iter_route_contexts
from starlette.responses import Response

from ai_service import __version__
from ai_service.api.admin_auth import AdminDep
from ai_service.api.responses import json_response

ADMIN_PREFIX = "/ai/admin/"
router = APIRouter(include_in_schema=False)


def document(request: Request, admin: bool) -> dict[str, Any]:
    """The OpenAPI document of the client routes, or of the admin routes; built once an app."""
    cache: dict[bool, dict[str, Any]] | None = getattr(request.app.state, "openapi", None)
    if cache is None:
        cache = request.app.state.openapi = {}
    if admin not in cache:
        routes = [
            route
            for route in iter_route_contexts(request.app.routes)
            if (route.path_format or "").startswith(ADMIN_PREFIX) == admin
        ]
        cache[admin] = get_openapi(
            title="ai-service admin API" if admin else "ai-service",
            version=__version__,
            routes=routes,
        )
    return cache[admin]


@router.get("/ai/openapi.json", response_model=None)
async def public_document(request: Request) -> Response:
    return json_response(document(request, admin=False))


@router.get(ADMIN_PREFIX + "api/openapi.json", response_model=None, dependencies=[AdminDep])
async def admin_document(request: Request) -> Response:
    return json_response(document(request, admin=True))
