"""Prometheus metrics of one gateway process, on a registry of its own.

`Metrics` owns a `CollectorRegistry` (one per app state, built in the lifespan,
never module-global) and the series below; `GET /metrics` renders it.

    ai_service_requests_total{provider,model,status}           settled chat requests
                                                               (model `other`: not in the catalog)
    ai_service_request_duration_seconds{provider,stream}       whole request, as logged
    ai_service_gateway_overhead_seconds{provider}              non-streamed: total minus upstream
    ai_service_upstream_latency_seconds{provider,model,stream} to the upstream's answer / stream
    ai_service_time_to_first_token_seconds{provider,model}     streamed: to the first chunk sent
    ai_service_tokens_total{provider,model,type}               prompt/completion/cached/reasoning
    ai_service_spend_usd_total{provider,model}                 USD charged (display, not billing)
    ai_service_uncollected_usd_total{provider,model}           USD billed that no balance paid
    ai_service_upstream_errors_total{provider,kind}            upstream failures by kind
    ai_service_requests_in_flight{provider}                    chat requests being served
    ai_service_http_responses_total{route,code}                every HTTP answer, refusals too
    ai_service_queue_wait_seconds{queue}                       a request's wait in a queue
                                                               (`upstream`: a host's connections)
    ai_service_queue_waiting{queue}                            requests waiting in it now
    ai_service_ledger_batch_size{kind}                         calls per ledger statement
                                                               (reserve, settle: group commit)
    ai_service_webhook_events_total{type}                      alert events this process wrote
    ai_service_webhook_attempts_total{outcome}                 delivery attempts: delivered, error
    ai_service_webhook_failed_total{type}                      events given up (no attempt left)
    ai_service_webhook_delivery_latency_seconds                an event's creation to its delivery

Each worker process of `serve --workers N` has its own registry: scrape each
process (run one worker per instance) or sum across instances in Prometheus.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from ai_service.billing.ledger import Outcome, Settlement
from ai_service.billing.money import usd_float

CONTENT_TYPE = CONTENT_TYPE_LATEST
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
WEBHOOK_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400)
OVERHEAD_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
QUEUE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
CHAT_PATH = re.compile(r"^/ai/([^/]+)/chat/completions$")
ROUTES = (
    (re.compile(r"^/ai/[^/]+/chat/completions$"), "chat"),
    (re.compile(r"^/ai/[^/]+/embeddings$"), "embeddings"),
    (re.compile(r"^/ai/[^/]+/responses(/[^/]+)?$"), "responses"),
    (re.compile(r"^/ai/[^/]+/v1/messages$"), "messages"),
    (re.compile(r"^/ai/[^/]+/v1/messages/count_tokens$"), "count_tokens"),
    (re.compile(r"^/ai/[^/]+/models(/.*)?$"), "models"),
    (re.compile(r"^/ai/(account|usage)$"), "account"),
    (re.compile(r"^/ai/admin/api/"), "admin_api"),
    (re.compile(r"^/ai/admin(/|$)"), "dashboard"),
    (re.compile(r"^/(healthz|readyz|metrics)$"), "ops"),
)


def upstream_error_kind(http_status: int) -> str:
    """The kind of an upstream failure, from the status the client got."""
    if http_status == 504:
        return "timeout"
    if http_status == 429:
        return "rate_limited"
    if http_status == 503:
        return "unavailable"
    if http_status == 502:
        return "bad_gateway"
    if 400 <= http_status < 500:
        return "rejected"
    return "other"


def route_of(path: str) -> str:
    for pattern, name in ROUTES:
        if pattern.match(path):
            return name
    return "other"


class Metrics:
    """The gateway's series on a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "ai_service_requests",
            "Requests settled, by provider path, served model, outcome and API surface.",
            ["provider", "model", "status", "surface"],
            registry=r,
        )
        self.duration = Histogram(
            "ai_service_request_duration_seconds",
            "Whole chat request duration as logged (streams: until the last byte).",
            ["provider", "stream"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.overhead = Histogram(
            "ai_service_gateway_overhead_seconds",
            "Time a non-streamed request spent in the gateway: total minus the upstream call.",
            ["provider"],
            buckets=OVERHEAD_BUCKETS,
            registry=r,
        )
        self.upstream_latency = Histogram(
            "ai_service_upstream_latency_seconds",
            "From the request's arrival to the upstream's answer (streams: its headers).",
            ["provider", "model", "stream"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "ai_service_time_to_first_token_seconds",
            "Streamed requests: from arrival to the first chunk sent to the client.",
            ["provider", "model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "ai_service_tokens",
            "Tokens of settled requests (cached and reasoning are parts of prompt/completion).",
            ["provider", "model", "type"],
            registry=r,
        )
        self.spend = Counter(
            "ai_service_spend_usd",
            "USD charged for settled requests (a float for dashboards; the ledger is exact).",
            ["provider", "model", "surface"],
            registry=r,
        )
        self.uncollected = Counter(
            "ai_service_uncollected_usd",
            "USD the provider billed beyond what the user's balance could pay (uncollected).",
            ["provider", "model"],
            registry=r,
        )
        self.upstream_errors = Counter(
            "ai_service_upstream_errors",
            "Requests that failed upstream, by kind (timeout, rate_limited, unavailable, "
            "bad_gateway, rejected, other).",
            ["provider", "kind"],
            registry=r,
        )
        self.in_flight = Gauge(
            "ai_service_requests_in_flight",
            "Chat requests being served now.",
            ["provider"],
            registry=r,
        )
        self._children: dict[tuple[object, ...], Any] = {}
        self.queue_wait = Histogram(
            "ai_service_queue_wait_seconds",
            "How long a request waited in a gateway queue (refused ones too), by queue.",
            ["queue"],
            buckets=QUEUE_BUCKETS,
            registry=r,
        )
        self.queue_waiting = Gauge(
            "ai_service_queue_waiting",
            "Requests waiting in a gateway queue now, by queue.",
            ["queue"],
            registry=r,
        )
        self.batch_size = Histogram(
            "ai_service_ledger_batch_size",
            "Calls carried by one ledger statement (PostgreSQL group commit), by kind "
            "(reserve, settle); a lone call is 1. Count: statements; sum: calls.",
            ["kind"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.responses = Counter(
            "ai_service_http_responses",
            "HTTP responses by route group and status code (includes refused requests).",
            ["route", "code"],
            registry=r,
        )
        self.webhook_events = Counter(
            "ai_service_webhook_events",
            "Alert events written to the webhooks' outbox by this process, by type.",
            ["type"],
            registry=r,
        )
        self.webhook_attempts = Counter(
            "ai_service_webhook_attempts",
            "Webhook delivery attempts made by this process, by outcome (delivered, error).",
            ["outcome"],
            registry=r,
        )
        self.webhook_failed = Counter(
            "ai_service_webhook_failed",
            "Webhook events given up after their last attempt failed, by type.",
            ["type"],
            registry=r,
        )
        self.webhook_latency = Histogram(
            "ai_service_webhook_delivery_latency_seconds",
            "From a webhook event's creation to its delivery, retries included.",
            buckets=WEBHOOK_BUCKETS,
            registry=r,
        )

    def child(self, metric: Any, *labels: str) -> Any:
        """`metric.labels(*labels)`, remembered: the hot path asks for the same few series."""
        key = (id(metric), *labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def waiting(self, queue: str, delta: int) -> None:
        """`delta` requests began (1) or ended (-1) waiting in `queue`."""
        self.child(self.queue_waiting, queue).inc(delta)

    def waited(self, queue: str, seconds: float) -> None:
        """A request waited `seconds` in `queue`."""
        self.child(self.queue_wait, queue).observe(seconds)

    def batch_sizes(self, kind: str) -> Callable[[float], None]:
        """What observes the size of each ledger statement of `kind` (one call per statement)."""
        observe: Callable[[float], None] = self.child(self.batch_size, kind).observe
        return observe

    def settled(
        self,
        provider: str,
        stream: bool,
        s: Settlement,
        outcome: Outcome,
        started: float,
        sent: float = 0.0,
        catalogued: bool = True,
        surface: str = "chat",
    ) -> None:
        """Record one settled chat request (`started`/`sent` are `perf_counter` stamps).

        Spend is what the ledger charged (`outcome.charged`); the rest of the
        billed cost, which the balance could not pay, counts as uncollected.

        A model missing from the catalog is labelled `other`, so that clients
        sending arbitrary model ids cannot grow the number of series.
        """
        provider = s.provider or provider
        model = (s.model or "unknown") if catalogued else "other"
        self.child(self.requests, provider, model, s.status, surface).inc()
        if s.duration_ms is not None:
            self.child(self.duration, provider, str(stream).lower()).observe(s.duration_ms / 1000)
        if s.upstream_latency_ms is not None:
            self.child(self.upstream_latency, provider, model, str(stream).lower()).observe(
                s.upstream_latency_ms / 1000
            )
        if s.ttft_ms is not None:
            self.child(self.ttft, provider, model).observe(s.ttft_ms / 1000)
        if not stream and sent > 0 and s.status == "ok" and s.upstream_latency_ms is not None:
            total = time.perf_counter() - started
            upstream = s.upstream_latency_ms / 1000 - (sent - started)
            self.child(self.overhead, provider).observe(max(0.0, total - max(0.0, upstream)))
        for kind, count in (
            ("prompt", s.prompt_tokens),
            ("completion", s.completion_tokens),
            ("cached", s.cached_tokens),
            ("reasoning", s.reasoning_tokens),
        ):
            if count:
                self.child(self.tokens, provider, model, kind).inc(count)
        if outcome.charged:
            self.child(self.spend, provider, model, surface).inc(usd_float(outcome.charged))
        if outcome.uncollected:
            self.child(self.uncollected, provider, model).inc(usd_float(outcome.uncollected))
        if s.status == "error":
            self.child(self.upstream_errors, provider, upstream_error_kind(s.http_status)).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
