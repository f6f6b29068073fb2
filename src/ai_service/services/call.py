"""The state of one request while it runs, its log row, and its settlement."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import orjson

from ai_service.auth import Principal
from ai_service.billing import ledger, tokens
from ai_service.billing.catalog import Resolved
from ai_service.billing.money import usd_float, usd_str
from ai_service.billing.pricing import NO_USE_PRICES, Charge, charge
from ai_service.errors import ServiceError
from ai_service.providers.base import Usage
from ai_service.services import idempotency
from ai_service.services.attempts import Attempts
from ai_service.services.routing import Target
from ai_service.state import AppState
from ai_service.storage.db import DATA_ERRORS, DB_ERRORS
from ai_service.waits import Waits, track

if TYPE_CHECKING:
    from ai_service.tracing.spans import RequestTrace

log = logging.getLogger("ai_service.request")


def redact(raw: bytes, secret: str) -> str:
    """The request body as text, without the caller's key should it appear in it."""
    text = raw.decode("utf-8", errors="replace")
    return text.replace(secret, "[redacted]") if secret in text else text


@dataclass(frozen=True, slots=True)
class Arrival:
    """A request as it reached a surface's service: who sent what, to which provider."""

    state: AppState
    principal: Principal
    secret: str  # the caller's key, kept out of the logged body
    provider: str
    raw: bytes
    request_id: str
    client_request_id: str | None = None
    idempotency_key: str | None = None
    trace: RequestTrace | None = None  # with tracing on: its spans (`ai_service.tracing`)

    def call(self, surface: str) -> Call:
        """The request's `Call`, its logged body without the caller's key (its span begun)."""
        call = Call.start(
            self.state,
            self.principal,
            self.provider,
            self.request_id,
            redact(self.raw, self.secret),
            self.client_request_id,
            surface,
        )
        if self.trace is not None:
            call.trace = self.trace.begin(
                surface, self.provider, self.request_id, self.client_request_id, self.principal
            )
        return call


@dataclass(slots=True)
class Call:
    """What the gateway knows about one request while it runs."""

    state: AppState
    principal: Principal
    provider: str
    request_id: str
    started: float
    request_text: str
    client_request_id: str | None = None  # the client's own X-Request-ID, kept beside ours
    surface: str = "chat"  # the API surface: chat, embeddings, ...
    resolved: Resolved | None = None
    reserved: int = 0
    prompt_bound: int = 0
    unseen_prompt: int = 0  # prompt tokens billed beyond the body (an earlier conversation)
    stream: bool = False
    claim: idempotency.Claim | None = None
    attempts: Attempts | None = None
    rate_tokens: int = 0
    sent: float = 0.0  # perf_counter when the upstream call began (gateway overhead metric)
    billed: tuple[Usage, Charge] | None = None  # the usage priced, and its price
    waits: Waits = field(default_factory=Waits)  # its waits in the gateway's queues
    trace: RequestTrace | None = None  # its spans, ended once it is settled

    @classmethod
    def start(
        cls,
        state: AppState,
        principal: Principal,
        provider: str,
        request_id: str,
        text: str = "",
        client_request_id: str | None = None,
        surface: str = "chat",
    ) -> Call:
        """The call of the request served in this context (whose waits it counts)."""
        return cls(
            state,
            principal,
            provider,
            request_id,
            time.perf_counter(),
            text,
            client_request_id,
            surface,
            waits=track(),
        )

    def serve(self, target: Target, attempts: Attempts) -> None:
        """Record which target answered: its provider, model and price apply from now on."""
        self.provider = target.provider
        self.resolved = target.resolved
        self.attempts = attempts

    def row(self) -> dict[str, Any]:
        resolved = self.resolved
        return {
            "request_id": self.request_id,
            "client_request_id": self.client_request_id,
            "surface": self.surface,
            "user_id": self.principal.user_id,
            "key_id": self.principal.key_id,
            "provider": self.provider,
            "requested_model": resolved.requested if resolved else None,
            "model": resolved.model if resolved else None,
            "stream": self.stream,
            "default_price": resolved.default_price if resolved else False,
            "instance_id": self.state.instance_id,
        }

    def mark_sent(self) -> None:
        """Note that the upstream call begins now (for the gateway-overhead metric)."""
        self.sent = time.perf_counter()

    def _default_priced(self) -> bool:
        return self.resolved is None or self.resolved.default_price

    def elapsed_ms(self) -> int:
        return int((time.perf_counter() - self.started) * 1000)

    def cap(self, text: str) -> tuple[str, bool]:
        limit = self.state.settings.payload_max_bytes
        if len(text) <= limit:
            return text, False
        return text[:limit], True

    def _model(self) -> str | None:
        return self.resolved.model if self.resolved is not None else None

    def output_tokens(self, generated: str) -> int:
        """The tokens of output text: exact for OpenAI models, else a safe bound."""
        return tokens.text_tokens(generated, self.provider, self._model())

    def prompt_tokens(self) -> int:
        """An estimate of the prompt's tokens from its text, never above the reserved bound."""
        image_allowance = self.state.settings.image_token_allowance
        counted = tokens.prompt_tokens(
            self.request_text, self.provider, self._model(), image_allowance
        )
        if counted is None:
            return self.prompt_bound
        counted += self.unseen_prompt
        return min(counted, self.prompt_bound) if self.prompt_bound else counted

    def estimated_usage(self, output_tokens: int) -> Usage:
        """A flagged estimate for an answer whose usage never arrived."""
        return Usage(input_tokens=self.prompt_tokens(), output_tokens=output_tokens)

    def bill(self, usage: Usage) -> Charge:
        """The cost of `usage` at the served model's price, computed once per usage.

        The moment of the first call is the billing moment (time-of-day rates), so
        the cost shown to the client and the one charged are the same. Server tool
        uses are billed at the per-use prices of the provider that served.
        """
        billed = self.billed
        if billed is None or billed[0] != usage:
            assert self.resolved is not None
            uses = NO_USE_PRICES
            if usage.tool_uses:  # the server tools' per-use prices of the provider that served
                uses = self.state.use_prices.get(self.provider, NO_USE_PRICES)
            billed = (replace(usage), charge(usage, self.resolved.price, None, uses))
            self.billed = billed
        return billed[1]

    def priced(self, s: ledger.Settlement, usage: Usage) -> ledger.Settlement:
        """Fill a settlement's cost and price detail from `usage` (status `error` costs 0)."""
        if self.resolved is None or s.status == "error":
            return s
        bill = self.bill(usage)
        s.cost = bill.cost
        s.price_detail = orjson.dumps(bill.detail(self.resolved.price)).decode()
        return s

    def cost_fields(self, usage: Usage) -> tuple[float, str]:
        """`usage.cost` (USD, as OpenRouter gives it) and the `X-Request-Cost` header value."""
        nano = self.bill(usage).cost
        return usd_float(nano), usd_str(nano)

    async def settle(self, s: ledger.Settlement, answer: bytes | None = None) -> None:
        """Settle the request once: release, charge, log row, ledger row, in one transaction."""
        s.duration_ms = self.elapsed_ms()
        s.queue_ms = self.waits.ms
        if self.resolved is not None:
            s.model = s.model or self.resolved.model
        s.provider = self.provider
        if self.attempts is not None:
            s.attempts, s.attempt_log = len(self.attempts), self.attempts.text()
            s.credential = self.attempts.credential
        if s.request_body is None:
            s.request_body, s.truncated = self.cap(self.request_text)
        s.clean()
        claim = self.claim
        also: ledger.Hook | None = None
        if claim is not None:
            stored = answer if s.status == "ok" else None

            async def also(conn: Any) -> None:
                await idempotency.complete(conn, claim, stored)

        current = asyncio.current_task()
        leaving = current is not None and current.cancelling() > 0
        if self.rate_tokens:
            used = s.prompt_tokens + s.completion_tokens
            limiter, principal = self.state.limiter, self.principal
            settle_tokens = limiter.settle_tokens(
                principal, principal.limits, self.rate_tokens, used
            )
            if leaving:
                self.state.spawn(settle_tokens)
            else:
                await settle_tokens
        try:
            await self._settle_now(s, also, leaving)
        finally:
            if self.trace is not None:
                self.trace.settled(self, s)

    async def fail(self, error: ServiceError) -> ServiceError:
        """Settle the request as failed with `error` (nothing charged); returns it to raise."""
        await self.settle(
            ledger.Settlement(status="error", http_status=error.status, error=error.message)
        )
        return error

    def _record(self, s: ledger.Settlement, outcome: ledger.Outcome) -> None:
        """Metrics and the log line of a settled request: the figures the database holds."""
        self.state.metrics.settled(
            self.provider,
            self.stream,
            s,
            outcome,
            self.started,
            self.sent,
            not self._default_priced(),
            self.surface,
        )
        log.info(
            "request settled",
            extra={
                "request_id": self.request_id,
                "client_request_id": self.client_request_id,
                "provider": self.provider,
                "model": s.model,
                "status": s.status,
                "http_status": s.http_status,
                "cost_nano": s.cost,
                "charged_nano": outcome.charged,
                "uncollected_nano": outcome.uncollected,
                "duration_ms": s.duration_ms,
                "queue_ms": s.queue_ms,
            },
        )

    async def _settle_now(
        self, s: ledger.Settlement, also: ledger.Hook | None, leaving: bool
    ) -> None:
        """Settle inline when nothing can interrupt it; else, and on a database error, in a task.

        A task that is being cancelled (a client that left mid-stream) settles
        in a task of its own, which a second cancellation cannot stop. While the
        database is unreachable the settlement is retried until it succeeds; the
        caller waits at most `settle_retry_seconds`, the reservation covering
        the charge meanwhile.
        """
        if not leaving:
            try:
                outcome = await self._settle_once(s, also)
                if outcome:
                    self._record(s, outcome)
                return
            except DATA_ERRORS:
                log.exception("settlement refused by the database; retried without payloads")
                s = s.stripped()
            except DB_ERRORS:
                log.warning("settlement failed, retrying", extra={"request_id": self.request_id})
        task = self.state.spawn(self._settle(s, also, record=True))
        done, _ = await asyncio.wait((task,), timeout=self.state.settings.settle_retry_seconds)
        if not done:
            log.error("settlement delayed", extra={"request_id": self.request_id})

    def abandon(self, s: ledger.Settlement, patience: float = 0.0) -> None:
        """Settle in the background, retried until the database answers (nobody waits).

        With `patience`, a request found not pending is looked for again for
        that many seconds: its reservation's statement was interrupted, and may
        still commit a moment later. If it does not, nothing was reserved.
        """
        s.duration_ms = self.elapsed_ms()
        if self.trace is not None:
            self.trace.settled(self, s)
        self.state.spawn(self._settle(s, None, patience))

    async def _settle(
        self,
        s: ledger.Settlement,
        also: ledger.Hook | None,
        patience: float = 0.0,
        record: bool = False,
    ) -> None:
        delay = 0.05
        deadline = time.monotonic() + patience
        while True:
            try:
                outcome = await self._settle_once(s, also, expected=patience == 0)
                if outcome:
                    if record:
                        self._record(s, outcome)
                    return
                if time.monotonic() >= deadline:
                    if patience:
                        log.info("nothing was reserved", extra={"request_id": self.request_id})
                    return
            except DATA_ERRORS:
                log.exception("settlement refused by the database; retried without payloads")
                s = s.stripped()
                continue
            except DB_ERRORS:
                log.warning("settlement failed, retrying", extra={"request_id": self.request_id})
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    async def _settle_once(
        self, s: ledger.Settlement, also: ledger.Hook | None, expected: bool = True
    ) -> ledger.Outcome:
        """One settlement attempt: true if the request was pending (and is now settled)."""
        settled = await self.state.ledger.settle(
            self.request_id, self.principal.user_id, self.reserved, s, also
        )
        if not settled and expected:
            log.error(
                "request was no longer pending at settlement; not charged",
                extra={"request_id": self.request_id, "status": s.status},
            )
        return settled


async def refuse(call: Call, exc: ServiceError) -> ServiceError:
    """Log a request refused before any reservation (cost 0) and return the error to raise."""
    text, truncated = call.cap(call.request_text)
    settlement = ledger.Settlement(
        status="error",
        http_status=exc.status,
        error=exc.message,
        duration_ms=call.elapsed_ms(),
        queue_ms=call.waits.ms,
        request_body=text,
        truncated=truncated,
    ).clean()
    try:
        await ledger.log_unreserved(call.state.engine, call.row(), settlement)
    except DB_ERRORS:
        log.warning("could not log a refused request", extra={"request_id": call.request_id})
    if call.trace is not None:
        call.trace.settled(call, settlement, exc)
    log.info(
        "request refused",
        extra={
            "request_id": call.request_id,
            "client_request_id": call.client_request_id,
            "status": exc.status,
            "provider": call.provider,
            "queue_ms": call.waits.ms,
        },
    )
    return exc
