"""The webhooks of one gateway process: its share of the deliveries, and the scan when it
holds the lease. Built in the app's lifespan when `AI_SERVICE_WEBHOOK_URL` is set.

Every instance delivers: its worker claims the due events in batches, posts
them concurrently and records each answer. The scan runs where the lease
`webhooks-scan` is held. A budget that refuses a request is noted in memory
by the request (a dictionary entry, no I/O) and written as the budget's 100%
event by the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from typing import Any

import aiohttp
from sqlalchemy.ext.asyncio import AsyncEngine

from ai_service import leases
from ai_service.billing.budgets import Budget
from ai_service.billing.ledger import utcnow
from ai_service.config import Settings
from ai_service.metrics import Metrics
from ai_service.storage.db import DB_ERRORS
from ai_service.webhooks import delivery, detect, events, signing
from ai_service.webhooks.detect import Refusal, Written
from ai_service.webhooks.events import Claim

log = logging.getLogger("ai_service.webhooks")

SCAN_LEASE = "webhooks-scan"
BATCH = 32
SENT_MAX = 10_000


class Webhooks:
    """The scan loop and the delivery loop of one process (`start()`, then `close()`)."""

    def __init__(
        self,
        engine: AsyncEngine,
        settings: Settings,
        metrics: Metrics,
        instance_id: str,
        client: aiohttp.ClientSession,
    ) -> None:
        assert settings.webhook_url is not None
        assert settings.webhook_secret is not None
        self.engine = engine
        self.settings = settings
        self.metrics = metrics
        self.instance_id = instance_id
        self.client = client
        self.url = settings.webhook_url
        self.key = signing.secret_key(settings.webhook_secret.get_secret_value())
        # a claim outlives its attempt: an instance killed mid-delivery frees it after this
        self.hold = dt.timedelta(seconds=2 * settings.webhook_timeout)
        self.refusals: dict[str, Refusal] = {}
        self.notes: list[events.NewEvent] = []  # events noted on a request's path, to write
        self.sent: set[str] = set()
        self.wake = asyncio.Event()
        self.tasks: list[asyncio.Task[Any]] = []

    @classmethod
    def start(
        cls, engine: AsyncEngine, settings: Settings, metrics: Metrics, instance_id: str
    ) -> Webhooks | None:
        """The running webhooks of this process, or None when no URL is configured."""
        if settings.webhook_url is None:
            return None
        webhooks = cls(engine, settings, metrics, instance_id, delivery.make_client())
        webhooks.tasks = [
            asyncio.ensure_future(webhooks.scan_forever()),
            asyncio.ensure_future(webhooks.deliver_forever()),
        ]
        return webhooks

    async def close(self) -> None:
        """Stop both loops (a delivery cut short is claimed again later), give the lease up."""
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(*DB_ERRORS):
            await leases.release(self.engine, SCAN_LEASE, self.instance_id)
        await self.client.close()

    def refused(self, user_id: int, budget: Budget) -> None:
        """Note that `budget` refused a request (called on the request's path: no I/O)."""
        if budget.limit <= 0:
            return
        now = utcnow()
        key = detect.budget_key(budget, now, 100)
        if key not in self.sent:
            self.refusals[key] = Refusal(user_id, budget, now)
            self.wake.set()

    def credential(self, provider: str, label: str, kind: str, detail: str) -> None:
        """Note that a pool credential was disabled or enabled (on a request's path: no I/O)."""
        now = utcnow()
        self.notes.append(
            events.NewEvent(
                f"credential.{kind}",
                f"credential.{kind}:{provider}:{label}:{now.isoformat()}",
                None,
                {
                    "provider": provider,
                    "credential": label,
                    "reason": detail,
                    "at": events.iso(now),
                },
            )
        )
        self.wake.set()

    # ---- the scan ---------------------------------------------------------------

    async def scan_forever(self) -> None:
        await leases.periodically(
            self.engine,
            SCAN_LEASE,
            self.instance_id,
            self.settings.webhook_scan_seconds,
            self.scan,
            log,
        )

    async def scan(self) -> None:
        self.written(await detect.scan(self.engine, self.settings.low_balance_alert_nano, utcnow()))

    def written(self, found: list[Written]) -> None:
        for event in found:
            self.metrics.webhook_events.labels(event.type).inc()
            log.info("webhook event", extra={"event_id": event.event_id, "type": event.type})
        if found:
            self.wake.set()

    # ---- the deliveries ---------------------------------------------------------

    async def deliver_forever(self) -> None:
        while True:
            busy = False
            try:
                await self.write_refusals()
                await self.write_notes()
                busy = await self.deliver_batch()
            except DB_ERRORS:
                log.warning("webhooks delivery paused: database unreachable")
            except Exception:
                log.exception("webhooks delivery failed")
            if not busy:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.settings.webhook_poll_seconds):
                        await self.wake.wait()
                self.wake.clear()

    async def write_notes(self) -> None:
        """Write the events noted since (kept until written: an outage only delays them)."""
        while self.notes:
            event = self.notes[0]
            async with self.engine.begin() as conn:
                event_id = await events.write(conn, event, utcnow())
            self.notes.pop(0)
            if event_id is not None:
                self.written([Written(event_id, event.type)])

    async def write_refusals(self) -> None:
        if not self.refusals:
            return
        noted = dict(self.refusals)
        # kept until written: a database outage only delays them
        self.written(await detect.write_refusals(self.engine, list(noted.values())))
        if len(self.sent) > SENT_MAX:
            self.sent.clear()
        for key in noted:
            self.refusals.pop(key, None)
            self.sent.add(key)

    async def deliver_batch(self) -> bool:
        """Claim and deliver one batch of due events; returns whether the batch was full."""
        claims = await events.claim(self.engine, utcnow(), self.hold, BATCH)
        results = await asyncio.gather(*(self.deliver(c) for c in claims), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, DB_ERRORS):
                log.error("webhook delivery failed", exc_info=result)
        return len(claims) == BATCH

    async def deliver(self, claimed: Claim) -> None:
        settings = self.settings
        answer = await delivery.post(
            self.client, self.url, self.key, claimed, settings.webhook_timeout
        )
        now = utcnow()
        facts = {"event_id": claimed.event_id, "attempt": claimed.attempt, "http": answer.status}
        if answer.ok:
            await events.delivered(self.engine, claimed, answer.status or 0, now)
            self.metrics.webhook_attempts.labels("delivered").inc()
            self.metrics.webhook_latency.observe((now - claimed.created_at).total_seconds())
            log.info("webhook delivered", extra=facts)
            return
        delay = events.backoff(
            claimed.attempt,
            settings.webhook_retry_base_delay,
            settings.webhook_retry_max_delay,
            answer.retry_after,
        )
        failed = await events.attempt_failed(
            self.engine,
            claimed,
            error=answer.error or "",
            status=answer.status,
            retry_at=now + dt.timedelta(seconds=delay),
            max_attempts=settings.webhook_max_attempts,
        )
        self.metrics.webhook_attempts.labels("error").inc()
        if failed:
            self.metrics.webhook_failed.labels(claimed.type).inc()
            log.error("webhook failed: no attempt left", extra={**facts, "error": answer.error})
        else:
            log.warning("webhook attempt failed", extra={**facts, "error": answer.error})
