"""The pools' Prometheus series, read from the pools when scraped (nothing on the hot path).

ai_service_upstream_credential_requests_total{provider,credential}      attempts sent
ai_service_upstream_credential_errors_total{provider,credential}        5xx, timeouts, auth
ai_service_upstream_credential_rate_limited_total{provider,credential}  429s
ai_service_upstream_credential_breaker_state{provider,credential}       0 closed, 1 half
                                                                        open, 2 open
ai_service_upstream_credential_disabled{provider,credential}            1 while disabled
ai_service_upstream_credential_headroom{provider,credential}            share left, 0..1
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from ai_service.pools import Pools
from ai_service.pools.breaker import STATE_VALUES

PREFIX = "ai_service_upstream_credential_"
LABELS = ["provider", "credential"]
COUNTS = (
    ("requests", "requests", "Attempts sent with each pool credential."),
    ("errors", "errors", "Failures of each pool credential: 5xx, timeouts, auth failures."),
    ("rate_limited", "rate_limited", "429 answers to each pool credential."),
)


class PoolCollector(Collector):
    def __init__(self, pools: Pools) -> None:
        self.pools = pools

    def collect(self) -> Iterator[Metric]:
        now = time.time()
        counters = {
            name: CounterMetricFamily(PREFIX + name, text, labels=LABELS)
            for name, _, text in COUNTS
        }
        breaker = GaugeMetricFamily(
            PREFIX + "breaker_state",
            "Breaker of each pool credential: 0 closed, 1 half open, 2 open.",
            labels=LABELS,
        )
        disabled = GaugeMetricFamily(
            PREFIX + "disabled", "1 while a pool credential is disabled.", labels=LABELS
        )
        headroom = GaugeMetricFamily(
            PREFIX + "headroom",
            "Share of each pool credential's requests or tokens left (the lesser), 0..1.",
            labels=LABELS,
        )
        for pool in self.pools.pools.values():
            for m in pool.members:
                labels = [pool.provider, m.label]
                for name, key, _ in COUNTS:
                    counters[name].add_metric(labels, m.counts.get(key, 0))
                breaker.add_metric(labels, STATE_VALUES[m.breaker.state])
                disabled.add_metric(labels, 1 if m.disabled is not None else 0)
                headroom.add_metric(labels, m.headroom(now))
        yield from counters.values()
        yield from (breaker, disabled, headroom)
