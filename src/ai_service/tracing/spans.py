"""The spans of a gateway with tracing on (imported only then: it imports the SDK).

A request is one SERVER span, `{operation} {requested model}` (`chat
gpt-5.4-mini`, `embeddings text-embedding-3-small`), begun when its service
takes it (after the key and the body were read) and ended once it is
settled: a JSON answer when charged, a stream when it finished, failed, was
cut or its client left, a refusal when logged. Each upstream attempt is a
CLIENT span under it, `{operation} {upstream model}`, ended with its answer
(a stream's with the stream). The operation is `embeddings` for embeddings
and `chat` for the three chat-like surfaces (`ai_service.surface` tells them
apart).

Request span: `gen_ai.operation.name`, `gen_ai.provider.name` and
`gen_ai.system` (the provider that served: the newer and the older
convention), `gen_ai.request.model`, `gen_ai.response.model`,
`gen_ai.request.max_tokens` (the client's), `gen_ai.request.stream`,
`gen_ai.usage.input_tokens` (cached included), `gen_ai.usage.output_tokens`,
`gen_ai.usage.cache_read.input_tokens`, `gen_ai.usage.cache_creation.input_tokens`,
`gen_ai.usage.reasoning.output_tokens`, `gen_ai.response.time_to_first_chunk`,
`http.response.status_code`, `error.type`, and the gateway's own
`ai_service.*`: `request_id`, `client_request_id`, `user_id`, `key_id`,
`surface`, `status`, `cost_usd`, `usage_estimated`, `attempts`, `credential`.

Attempt span: `gen_ai.operation.name`, `gen_ai.provider.name`, `gen_ai.system`,
`gen_ai.request.model` (as sent upstream), `gen_ai.request.max_tokens` (sent),
`server.address`, `server.port`, `http.response.status_code`, `error.type`,
and `ai_service.attempt` (1, 2, ... over the request), `ai_service.attempt.reason`
(`first`, `retry`: the same model again, `fallback`: the next of its chain),
`ai_service.attempt.after_status` (the status of the attempt before) and
`ai_service.credential` (a pool credential's label; never a key).

Span status follows the conventions: ERROR on a request answered 5xx and on
an attempt that failed; a client's own mistakes (4xx) carry `error.type` only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from opentelemetry.context import attach, detach
from opentelemetry.sdk.resources import SERVICE_INSTANCE_ID, SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import Span, SpanKind, StatusCode, get_current_span, set_span_in_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from ai_service import __version__
from ai_service.billing.money import usd_float
from ai_service.errors import ServiceError
from ai_service.providers import REGISTRY
from ai_service.upstream import UpstreamStream

if TYPE_CHECKING:
    from ai_service.auth import Principal
    from ai_service.billing.ledger import Settlement
    from ai_service.providers.base import Adapter, UpstreamRequest
    from ai_service.services.attempts import Attempt
    from ai_service.services.call import Call
    from ai_service.services.routing import Plan, Target

T = TypeVar("T")

SERVICE = "ai-service"  # service.name unless OTEL_SERVICE_NAME (or the resource) names one
OPERATIONS = {"embeddings": "embeddings"}  # by surface; every other surface is "chat"

OPERATION = "gen_ai.operation.name"
PROVIDER = "gen_ai.provider.name"
SYSTEM = "gen_ai.system"  # the older name of gen_ai.provider.name, set beside it
REQUEST_MODEL = "gen_ai.request.model"
RESPONSE_MODEL = "gen_ai.response.model"
MAX_TOKENS = "gen_ai.request.max_tokens"
STREAM = "gen_ai.request.stream"
INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
CACHE_READ = "gen_ai.usage.cache_read.input_tokens"
CACHE_WRITE = "gen_ai.usage.cache_creation.input_tokens"
REASONING = "gen_ai.usage.reasoning.output_tokens"
FIRST_CHUNK = "gen_ai.response.time_to_first_chunk"
HTTP_STATUS = "http.response.status_code"
ERROR_TYPE = "error.type"


def provider_name(provider: str) -> str:
    """A provider's `gen_ai.provider.name` (its registry entry's, else its key)."""
    spec = REGISTRY.get(provider)
    return (spec.otel_name if spec is not None else None) or provider


def error_type(exc: BaseException) -> str:
    """An error's `error.type`: the gateway's error code, else its type."""
    if isinstance(exc, ServiceError):
        return exc.error_code or exc.type
    return type(exc).__qualname__


class Tracing:
    """The tracer provider of one process, its propagator, and the upstream requests' hook."""

    def __init__(
        self, provider: TracerProvider, credential: Callable[[Adapter], str | None]
    ) -> None:
        self.provider = provider
        self.tracer = provider.get_tracer("ai_service", __version__)
        self.propagator = TraceContextTextMapPropagator()
        self.credential = credential

    @classmethod
    def start(
        cls,
        instance_id: str,
        credential: Callable[[Adapter], str | None],
        exporter: SpanExporter | None = None,
    ) -> Tracing:
        """A provider exporting in batches, over OTLP/HTTP unless `exporter` is given.

        The SDK reads its own variables: the exporter's endpoint, headers and
        timeout (`OTEL_EXPORTER_OTLP_*`), the batches' (`OTEL_BSP_*`), the
        sampler (`OTEL_TRACES_SAMPLER`), the resource (`OTEL_SERVICE_NAME`,
        `OTEL_RESOURCE_ATTRIBUTES`).
        """
        if exporter is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter()
        resource = Resource.create({SERVICE_VERSION: __version__, SERVICE_INSTANCE_ID: instance_id})
        if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
            resource = resource.merge(Resource({SERVICE_NAME: SERVICE}))
        provider = TracerProvider(resource=resource)
        provider.add_span_processor(BatchSpanProcessor(exporter))
        return cls(provider, credential)

    def arrival(self, headers: Mapping[str, str]) -> RequestTrace:
        """The trace of a request that arrived with these headers (its span not yet begun)."""
        return RequestTrace(self, headers)

    def headers(self, request: UpstreamRequest) -> dict[str, str]:
        """The upstream hook: `request`'s headers, with the `traceparent` of the attempt
        being sent (its `server.*` noted on its span); unchanged outside an attempt."""
        span = get_current_span()
        if not span.get_span_context().is_valid:
            return request.headers
        url = urlsplit(request.url)
        if url.hostname:
            span.set_attribute("server.address", url.hostname)
        if url.port:
            span.set_attribute("server.port", url.port)
        carrier = dict(request.headers)
        self.propagator.inject(carrier)
        return carrier

    def flush(self, timeout_ms: int = 30_000) -> bool:
        """Export every ended span now."""
        return self.provider.force_flush(timeout_ms)

    async def shutdown(self) -> None:
        """Export what is left and stop (in a thread: the exporter's I/O blocks)."""
        await asyncio.to_thread(self.provider.shutdown)


class RequestTrace:
    """The spans of one request: its own, and one per upstream attempt.

    Every method is a no-op once the request span ended, so each way a
    request ends (settled, refused, replayed, an error) may end it, the
    first one winning.
    """

    __slots__ = (
        "failure",
        "headers",
        "last",
        "operation",
        "requested",
        "serving",
        "span",
        "tracing",
        "tried",
    )

    def __init__(self, tracing: Tracing, headers: Mapping[str, str]) -> None:
        self.tracing = tracing
        self.headers = headers
        self.span: Span | None = None
        self.serving: Span | None = None  # the attempt whose stream is still being read
        self.operation = "chat"
        self.requested: str | None = None  # the model asked for (the chain's first)
        self.tried = 0
        self.last: tuple[str, int] | None = None  # (target, status) of the last failed attempt
        self.failure: ServiceError | None = None

    def begin(
        self,
        surface: str,
        provider: str,
        request_id: str,
        client_request_id: str | None,
        principal: Principal,
    ) -> RequestTrace:
        """Begin the request span, under the client's `traceparent` if it sent one."""
        self.operation = OPERATIONS.get(surface, "chat")
        attributes: dict[str, Any] = {
            OPERATION: self.operation,
            PROVIDER: provider_name(provider),
            SYSTEM: provider_name(provider),
            "ai_service.surface": surface,
            "ai_service.request_id": request_id,
            "ai_service.user_id": principal.user_id,
            "ai_service.key_id": principal.key_id,
        }
        if client_request_id is not None:
            attributes["ai_service.client_request_id"] = client_request_id
        parent = self.tracing.propagator.extract(self.headers)
        self.span = self.tracing.tracer.start_span(
            self.operation, context=parent, kind=SpanKind.SERVER, attributes=attributes
        )
        return self

    def attempts(self, attempt: Attempt[T], plan: Plan) -> Attempt[T]:
        """`attempt` along `plan`'s chain, each call of it an attempt span (current while
        it is sent)."""
        span = self.span
        if span is None:
            return attempt
        self.requested = plan.chain[0].resolved.requested
        if plan.client_limit:
            span.set_attribute(MAX_TOKENS, plan.client_limit)

        async def traced(
            adapter: Adapter, target: Target, prepared: UpstreamRequest | None, limit: int
        ) -> T:
            child = self._attempt(span, adapter, target, limit)
            token = attach(set_span_in_context(child))
            try:
                result = await attempt(adapter, target, prepared, limit)
            except BaseException as exc:
                self._failed(child, target, exc)
                raise
            finally:
                detach(token)
            child.set_attribute(HTTP_STATUS, 200)
            if isinstance(result, UpstreamStream):
                self.serving = child  # ends with the stream
            else:
                child.end()
            return result

        return traced

    def _attempt(self, parent: Span, adapter: Adapter, target: Target, limit: int) -> Span:
        self.tried += 1
        model = target.resolved.model
        name = provider_name(target.provider)
        attributes: dict[str, Any] = {
            OPERATION: self.operation,
            PROVIDER: name,
            SYSTEM: name,
            REQUEST_MODEL: model,
            "ai_service.attempt": self.tried,
        }
        last = self.last
        if last is None:
            attributes["ai_service.attempt.reason"] = "first"
        else:
            same = last[0] == target.label
            attributes["ai_service.attempt.reason"] = "retry" if same else "fallback"
            attributes["ai_service.attempt.after_status"] = last[1]
        if limit:
            attributes[MAX_TOKENS] = limit
        label = self.tracing.credential(adapter)
        if label is not None:
            attributes["ai_service.credential"] = label
        return self.tracing.tracer.start_span(
            f"{self.operation} {model}",
            context=set_span_in_context(parent),
            kind=SpanKind.CLIENT,
            attributes=attributes,
        )

    def _failed(self, span: Span, target: Target, exc: BaseException) -> None:
        span.set_attribute(ERROR_TYPE, error_type(exc))
        if isinstance(exc, ServiceError):
            status = exc.upstream_status or exc.status
            if exc.upstream_status is not None:
                span.set_attribute(HTTP_STATUS, exc.upstream_status)
            span.set_status(StatusCode.ERROR, exc.message)
            self.last = (target.label, status)
            self.failure = exc
        span.end()

    def settled(self, call: Call, s: Settlement, error: ServiceError | None = None) -> None:
        """End the request span with what the request was settled (or refused) with."""
        span, self.span = self.span, None
        if span is None:
            return
        self._end_serving(s)
        resolved = call.resolved
        if resolved is not None:
            requested = self.requested or resolved.requested
            span.update_name(f"{self.operation} {requested}")
            span.set_attribute(REQUEST_MODEL, requested)
            span.set_attribute(RESPONSE_MODEL, s.model or resolved.model)
        name = provider_name(s.provider or call.provider)
        span.set_attributes(
            {
                PROVIDER: name,
                SYSTEM: name,
                STREAM: call.stream,
                HTTP_STATUS: s.http_status,
                "ai_service.status": s.status,
                "ai_service.cost_usd": usd_float(s.cost),
                "ai_service.attempts": len(call.attempts) if call.attempts else s.attempts,
            }
        )
        if s.prompt_tokens or s.completion_tokens:
            span.set_attributes(
                {
                    INPUT_TOKENS: s.prompt_tokens,
                    OUTPUT_TOKENS: s.completion_tokens,
                    "ai_service.usage_estimated": s.usage_estimated,
                }
            )
        for key, value in (
            (CACHE_READ, s.cached_tokens),
            (CACHE_WRITE, s.cache_write_tokens),
            (REASONING, s.reasoning_tokens),
        ):
            if value:
                span.set_attribute(key, value)
        if s.ttft_ms is not None:
            span.set_attribute(FIRST_CHUNK, s.ttft_ms / 1000)
        if s.credential is not None:
            span.set_attribute("ai_service.credential", s.credential)
        if s.status != "cancelled" and s.http_status >= 400:
            cause = error or (self.failure if s.status == "error" else None)
            span.set_attribute(ERROR_TYPE, error_type(cause) if cause else str(s.http_status))
            if s.http_status >= 500:
                span.set_status(StatusCode.ERROR, s.error)
        span.end()

    def _end_serving(self, s: Settlement) -> None:
        serving, self.serving = self.serving, None
        if serving is None:
            return
        if s.status == "error":
            serving.set_attribute(ERROR_TYPE, str(s.http_status))
            serving.set_status(StatusCode.ERROR, s.error)
        serving.end()

    def replayed(self) -> None:
        """End the request span of a request answered from its Idempotency-Key's store."""
        span, self.span = self.span, None
        if span is not None:
            span.set_attributes({HTTP_STATUS: 200, "ai_service.status": "replayed"})
            span.end()

    def abort(self, exc: BaseException) -> None:
        """End the request span of a request that an error ended before any settlement."""
        span, self.span = self.span, None
        if span is None:
            return
        serving, self.serving = self.serving, None
        if serving is not None:
            serving.end()
        span.set_attribute(ERROR_TYPE, error_type(exc))
        status = exc.status if isinstance(exc, ServiceError) else 500
        if isinstance(exc, asyncio.CancelledError):
            span.set_attribute("ai_service.status", "cancelled")
        else:
            span.set_attribute(HTTP_STATUS, status)
            if status >= 500:
                span.set_status(StatusCode.ERROR, str(exc))
        span.end()
