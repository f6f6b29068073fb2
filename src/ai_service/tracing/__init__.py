"""Optional tracing with OpenTelemetry (`AI_SERVICE_TRACING`, off by default).

With tracing on, every inference request (chat completions, the Responses
and Messages APIs, embeddings) is one SERVER span, and every upstream
attempt of it (each retry, each fallback, each credential of a pool) one
CLIENT span under it, named and described by OpenTelemetry's GenAI
conventions (`spans`). A client's W3C `traceparent` (and `tracestate`) is the
request span's parent; each attempt sends its own span's `traceparent`
upstream. Spans are exported in batches over OTLP/HTTP, to the endpoint of
the SDK's variables (`OTEL_EXPORTER_OTLP_ENDPOINT`, ...).

With tracing off, this package's `start` returns None and nothing else of it
runs: neither the SDK's tracing nor an exporter is imported (redis-py 8 does
import the SDK's metrics package on its own when the SDK is installed), and
the request path pays one `is None` check per request and per attempt. A
client's `traceparent` then goes nowhere, as before.

    __init__.py  start(): the tracer of the app's lifespan, or None
    spans.py     Tracing (the provider, the upstream hook) and RequestTrace (one request's spans)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

    from ai_service.config import Settings
    from ai_service.providers.base import Adapter
    from ai_service.tracing.spans import Tracing


def start(
    settings: Settings,
    instance_id: str,
    credential: Callable[[Adapter], str | None],
    exporter: SpanExporter | None = None,
) -> Tracing | None:
    """The app's tracer when tracing is on (None when off: the SDK is not imported).

    `credential` names the pool credential an adapter sends with; `exporter`
    replaces the OTLP exporter (tests give an in-memory one). Raises
    `RuntimeError` when tracing is on but the `tracing` extra is not installed.
    """
    if not settings.tracing:
        return None
    try:
        from ai_service.tracing.spans import Tracing
    except ImportError as exc:
        raise RuntimeError(
            "AI_SERVICE_TRACING is on but the OpenTelemetry SDK is not installed: "
            "pip install 'ai-service[tracing]'"
        ) from exc
    return Tracing.start(instance_id, credential, exporter)
