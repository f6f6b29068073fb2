"""The ASGI application: `create_app(settings)`, its lifespan and its error handlers."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from ai_service import __version__, fdlimit, instances, pools, providers, tracing
from ai_service.api.render import error_response
from ai_service.api.responses import json_response
from ai_service.api.routes import (
    account,
    admin,
    admin_budgets,
    admin_catalog,
    admin_pools,
    admin_retention,
    admin_usage,
    admin_webhooks,
    chat,
    dashboard,
    dashboard_log,
    dashboard_pools,
    dashboard_users,
    dashboard_webhooks,
    embeddings,
    health,
    messages,
    models,
    openapi,
    responses,
)
from ai_service.api.web import make_templates
from ai_service.auth import KeyStore
from ai_service.billing import tokens
from ai_service.billing.ledger import make_ledger
from ai_service.config import Settings
from ai_service.errors import ServiceError, to_openai_error
from ai_service.metrics import CHAT_PATH, Metrics
from ai_service.middleware import RequestContextMiddleware, request_context
from ai_service.pools.metrics import PoolCollector
from ai_service.ratelimit import build_limiter
from ai_service.retention import RetentionJob
from ai_service.services import credential_admin
from ai_service.state import AppState, CatalogCache
from ai_service.storage.db import DB_ERRORS, make_engine, session_factory
from ai_service.upstream import Timeouts, Upstream, make_client
from ai_service.waits import DatabaseQueue, HostLimits
from ai_service.webhooks.runtime import Webhooks

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

log = logging.getLogger("ai_service")


def build_lifespan(  # type: ignore[no-untyped-def]  # FastAPI's lifespan type
    settings: Settings, span_exporter: SpanExporter | None = None
):
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        fdlimit.raise_open_files()
        # the hot path has its own pool (the ledger's); SQLAlchemy serves the rest
        engine = make_engine(
            settings.database_url,
            pool_size=max(2, settings.database_pool_size // 4),
            durable=settings.billing_synchronous_commit,
        )
        sessions = session_factory(engine)
        client = make_client(settings.connect_timeout)
        timeouts = Timeouts(
            settings.connect_timeout, settings.first_byte_timeout, settings.stream_idle_timeout
        )
        upstream_pools = pools.build(settings, shared=pools.shared_state(settings))
        metrics = Metrics()
        limits = HostLimits(
            settings.upstream_max_connections, settings.upstream_queue_timeout, metrics
        )
        state = AppState(
            settings=settings,
            engine=engine,
            sessions=sessions,
            keys=KeyStore(sessions, settings.key_cache_seconds),
            catalog=CatalogCache(
                sessions, settings.catalog_refresh_seconds, settings.unknown_model_policy
            ),
            upstream=Upstream(client, timeouts, limits),
            metrics=metrics,
            adapters={**providers.configured(settings), **upstream_pools.primaries()},
            pools=upstream_pools,
            # one id per process run: a restart under the same configured name is a new
            # instance, so the lease releases what the killed run held
            instance_id=f"{settings.instance_id or 'gw'}-{uuid.uuid4().hex[:12]}",
            ledger=await make_ledger(
                engine,
                settings.database_pool_size,
                settings.billing_synchronous_commit,
                settings.billing_group_commit,
                DatabaseQueue(metrics, settings.database_queue_timeout),
            ),
            limiter=build_limiter(settings),
            use_prices=providers.use_prices(settings),
        )
        try:
            await state.catalog.reload()
            await credential_admin.refresh(state)
        except DB_ERRORS:
            log.warning("database unreachable at startup; serving 503 until it answers")
        upstream_pools.alert(state.credential_alert)
        state.upstream.observe = upstream_pools.observe if upstream_pools.pools else None
        state.tracing = tracing.start(
            settings, state.instance_id, upstream_pools.label_of, span_exporter
        )
        if state.tracing is not None:
            state.upstream.trace = state.tracing.headers
        state.metrics.registry.register(PoolCollector(upstream_pools))
        app.state.ai = state
        state.spawn(tokens.prepare())  # usage estimates' tokenizer, loaded in a thread
        # what startup built lives as long as the process: keep it out of every GC pass
        gc.collect()
        gc.freeze()
        # requests allocate many short-lived objects: collect the young generation less often
        gc.set_threshold(20_000, 50, 100)
        alive = asyncio.ensure_future(
            instances.keep_alive(
                engine,
                state.instance_id,
                settings.heartbeat_seconds,
                settings.instance_lease_seconds,
            )
        )
        state.webhooks = Webhooks.start(engine, settings, state.metrics, state.instance_id)
        retention = RetentionJob.start(engine, settings, state.instance_id)
        taking_up = asyncio.ensure_future(credential_admin.refresh_forever(state))
        try:
            yield
        finally:
            await state.drain()
            if state.webhooks is not None:
                await state.webhooks.close()
            await retention.close()
            await state.limiter.aclose()
            await upstream_pools.aclose()
            for task in (alive, taking_up):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            with contextlib.suppress(*DB_ERRORS):
                await instances.leave(engine, state.instance_id)
            await client.close()
            await state.ledger.close()
            await engine.dispose()
            if state.tracing is not None:
                await state.tracing.shutdown()

    return lifespan


async def service_error(_request: Request, exc: Exception) -> Response:
    return error_response(exc)


ROUTE_UNDER_PROVIDER = re.compile(r"^/ai/([^/]+)/(.+)$")


def served_endpoints(routers: list[APIRouter]) -> dict[str, list[str]]:
    """The endpoints under the provider paths: those of every path under "*" (`chat/completions`,
    `v1/messages`, ...), and those of one provider's path only (`v1/models` on Claude's) under
    its name."""
    found: dict[str, list[str]] = {}
    for route in (route for router in routers for route in router.routes):
        matched = ROUTE_UNDER_PROVIDER.match(getattr(route, "path", ""))
        if matched is None:
            continue
        owner, rest = matched.groups()
        if owner != "{provider}" and owner not in providers.PATHS:
            continue  # the admin API, the dashboard
        endpoint = re.sub(r"\{[^}]*\}", "{id}", rest)
        listed = found.setdefault("*" if owner == "{provider}" else owner, [])
        if endpoint not in listed:
            listed.append(endpoint)
    return found


def not_served(path: str, served: dict[str, list[str]]) -> str | None:
    """The 404 message for an endpoint of a provider path that the gateway does not serve
    (an endpoint that a registry flag names, such as `embeddings`, only where it is set)."""
    parts = path.split("/", 3)
    if len(parts) == 4 and parts[1] == "ai" and parts[2] in providers.PATHS and parts[3]:
        spec = providers.REGISTRY[providers.PATHS[parts[2]]]
        shared = [e for e in served.get("*", []) if spec.serves(e)]
        names = ", ".join([*shared, *served.get(parts[2], [])])
        return f"{path} is not served by this gateway; it serves {names} under /ai/{parts[2]}/."
    return None


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    kinds = {401: "authentication_error", 404: "not_found_error", 405: "invalid_request_error"}
    message = str(exc.detail)
    if exc.status_code == 404:
        named = not_served(request.url.path, request.app.state.served)
        if named is not None:
            log.info("endpoint not served", extra={"path": request.url.path})
            message = named
    body = to_openai_error(message, kinds.get(exc.status_code, "invalid_request_error"))
    return json_response(body, exc.status_code, dict(exc.headers or {}))


async def validation_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {}
    location = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query"))
    message = f"Invalid parameter '{location}': {first.get('msg', 'invalid value')}."
    return json_response(to_openai_error(message, "invalid_request_error", location or None), 400)


class GatewayApp:
    """The ASGI app: chat completions go straight to their endpoint, the rest to FastAPI.

    The chat path is the hot path: it skips the framework's middleware and
    routing layers (the endpoint renders its own errors, request id and
    metrics). Everything else, and the lifespan, is the FastAPI app `api`.
    """

    def __init__(self, api: FastAPI) -> None:
        self.api = api
        self.state = api.state
        self.chat = chat.ChatEndpoint()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            match = CHAT_PATH.match(scope["path"])
            if match is not None:
                scope["app"] = self.api
                scope["path_params"] = {"provider": match.group(1)}
                request_context(scope)
                await self.chat(scope, receive, send)
                return
        await self.api(scope, receive, send)


def create_app(settings: Settings, span_exporter: SpanExporter | None = None) -> GatewayApp:
    """Build the gateway's ASGI app for these settings (`span_exporter`: where spans go with
    tracing on, instead of OTLP; tests give an in-memory one)."""
    return GatewayApp(create_api(settings, span_exporter))


def create_api(settings: Settings, span_exporter: SpanExporter | None = None) -> FastAPI:
    """The FastAPI app: every route, the lifespan, the error handlers."""
    app = FastAPI(
        title="ai-service",
        version=__version__,
        lifespan=build_lifespan(settings, span_exporter),
        docs_url=None,  # no page that loads Swagger UI; the documents: `routes/openapi.py`
        redoc_url=None,
        openapi_url=None,
    )
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    rendered: tuple[type[Exception], ...] = (ServiceError, *DB_ERRORS, Exception)
    for kind in rendered:  # one rendering for all of them: `api.render`
        app.add_exception_handler(kind, service_error)
    # the admin API and dashboard first: `/ai/admin/models` is not a provider's model list
    admin_routes = (
        admin,
        admin_budgets,
        admin_catalog,
        admin_usage,
        admin_webhooks,
        admin_retention,
        admin_pools,
        dashboard,
        dashboard_users,
        dashboard_log,
        dashboard_webhooks,
        dashboard_pools,
    )
    routers = [
        m.router
        for m in (
            openapi,
            *admin_routes,
            chat,
            embeddings,
            responses,
            messages,
            models,
            account,
            health,
        )
    ]
    for router in routers:
        app.include_router(router)
    app.state.served = served_endpoints(routers)
    static = StaticFiles(packages=[("ai_service", "static")])
    app.mount("/ai/admin/static", static, name="admin-static")
    app.state.templates = make_templates()
    app.add_middleware(RequestContextMiddleware)
    return app
