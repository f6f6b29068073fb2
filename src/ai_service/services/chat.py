"""One chat completion through the gateway: validate, reserve, forward, answer, settle.

The order is the contract of DESIGN §8: nothing reaches the upstream before
the worst-case cost is reserved against the balance, and every request that
got that far is settled exactly once, in one transaction, whether it ended
well, failed upstream, or was cancelled by a client that went away.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.responses import Response

from ai_service.auth import Principal
from ai_service.billing import ledger
from ai_service.errors import (
    AuthenticationError,
    InsufficientQuotaError,
    InvalidRequestError,
    RateLimitError,
    ServiceError,
    UpstreamUnavailableError,
)
from ai_service.providers import PROVIDER_ENV
from ai_service.providers.base import ChatResult
from ai_service.schemas import include_usage, parse_body, validate_chat, validate_choices
from ai_service.services import idempotency, respond
from ai_service.services.call import Call, redact, refuse
from ai_service.services.routing import Attempts, Plan, Target, chain_for, plan_for, send
from ai_service.state import AppState
from ai_service.storage.db import DB_ERRORS
from ai_service.upstream import UpstreamStream

log = logging.getLogger("ai_service.request")

MAX_AMOUNT = 2**63 - 1  # nano-USD columns are 64-bit: a larger worst case is lowered
DB_DOWN = "The gateway's database was unreachable while the request was admitted."
UNAFFORDABLE = (
    "Insufficient balance: the account cannot pay for this prompt and a minimal answer. "
    "Top up the balance, or send a shorter prompt."
)
# how long an interrupted reservation statement is waited for, to release what it reserved
RESERVATION_PATIENCE = 5.0


async def chat(
    state: AppState,
    principal: Principal,
    secret: str,
    provider: str,
    raw: bytes,
    request_id: str,
    idempotency_key: str | None = None,
    client_request_id: str | None = None,
) -> Response:
    """Serve one chat completion. Raises `ServiceError` before any byte is sent."""
    call = Call.start(
        state, principal, provider, request_id, redact(raw, secret), client_request_id
    )
    settings = state.settings
    try:
        body = parse_body(raw)
        requested, call.stream, client_limit = validate_chat(body, settings.max_messages)
        validate_choices(body)
    except InvalidRequestError as exc:
        raise await refuse(call, exc) from None
    catalog = await state.catalog.get()
    call.resolved = catalog.resolve(provider, requested)
    if call.resolved.refused:  # an unknown model under the `refuse` policy: nothing is reserved
        raise await refuse(call, catalog.refusal(provider, call.resolved))
    if provider not in state.adapters:
        variable = PROVIDER_ENV[provider][0]
        raise await refuse(
            call,
            UpstreamUnavailableError(
                f"The {provider} provider is not configured on this gateway: "
                f"its operator must set {variable}."
            ),
        )
    key = idempotency_key
    if key is not None:
        claimed = await idempotency.claim(
            state.engine,
            principal.user_id,
            key,
            provider,
            raw,
            request_id,
            call.stream,
            settings.idempotency_ttl_seconds,
        )
        if isinstance(claimed, idempotency.Replay):
            return respond.replay(claimed)
        call.claim = claimed
    try:
        chain = chain_for(settings, catalog, Target(provider, call.resolved))
        try:
            plan = plan_for(state, chain, body, call.stream, client_limit)
        except ServiceError as exc:
            raise await refuse(call, exc) from None
        call.prompt_bound = plan.bounds[0].prompt_tokens
        await reserve(call, plan)
    except BaseException:
        if call.claim is not None:
            await idempotency.release(state.engine, call.claim)
        raise
    attempts = Attempts()
    call.mark_sent()
    try:
        target, result = await send(state, plan, body, call.stream, attempts)
    except ServiceError as exc:
        await call.settle(
            ledger.Settlement(
                status="error",
                http_status=exc.status,
                error=exc.message,
                attempts=len(attempts),
                attempt_log=attempts.text(),
            )
        )
        raise
    except BaseException:
        await call.settle(
            ledger.Settlement(
                status="cancelled",
                http_status=499,
                attempts=len(attempts),
                attempt_log=attempts.text(),
            )
        )
        raise
    call.serve(target, attempts)
    extra = {"X-Served-Model": target.resolved.model}
    if isinstance(result, ChatResult):
        return await respond.complete(call, result, extra)
    assert isinstance(result, UpstreamStream)
    return respond.stream(call, result, include_usage(body), extra)


async def reserve(call: Call, plan: Plan) -> None:
    """Reserve the chain's worst case, lowering the output limit to what the balance pays.

    The limit is per answer: a request for `n` answers reserves `n` times it.

    Raises `InsufficientQuotaError` (402) when not even a minimal answer is affordable,
    and `AuthenticationError` (401) when the user was disabled after its key was cached.
    """
    state = call.state
    await admit(call, plan)
    minimum = min(state.settings.min_output_tokens, plan.limit)
    user_id = call.principal.user_id
    for _ in range(4):
        amount = plan.worst_case()
        if amount <= MAX_AMOUNT:
            try:
                reserved = await state.ledger.reserve_open(user_id, amount, call.row())
            except DB_ERRORS:
                # the reservation may have committed with its reply lost: settle it as
                # failed (a no-op if no pending row exists), retried until the database answers
                call.reserved = amount
                call.abandon(
                    ledger.Settlement(status="error", http_status=503, error=DB_DOWN),
                    patience=RESERVATION_PATIENCE,
                )
                raise
            except asyncio.CancelledError:
                # the client left while its reservation was being written: release it,
                # if the interrupted statement made it (or makes it a moment later)
                call.reserved = amount
                call.abandon(
                    ledger.Settlement(status="cancelled", http_status=499),
                    patience=RESERVATION_PATIENCE,
                )
                raise
            if reserved:
                call.reserved = amount
                return
        balance = await state.ledger.spendable(user_id)
        if balance is None:  # disabled since its key was cached (on another instance)
            error: ServiceError = AuthenticationError(
                "This API key's user is disabled; its keys no longer work."
            )
            break
        affordable = plan.affordable(balance)
        if affordable < minimum:
            error = InsufficientQuotaError(UNAFFORDABLE)
            break
        plan.limit = min(plan.limit, affordable)
    else:
        error = InsufficientQuotaError(UNAFFORDABLE)
    state.spawn(
        state.limiter.settle_tokens(call.principal, call.principal.limits, call.rate_tokens, 0)
    )
    raise await refuse(call, error)


async def admit(call: Call, plan: Plan) -> None:
    """Count the request against its rate limits, lowering the output limit to the TPM limit.

    Raises `RateLimitError` (429).
    """
    state, limits = call.state, call.principal.limits
    ceiling = state.limiter.token_ceiling(limits)
    choices = plan.choices
    if ceiling is not None:
        minimum = min(state.settings.min_output_tokens, plan.limit)
        plan.limit = max(min(plan.limit, (ceiling - plan.prompt_tokens) // choices), minimum)
    tokens = plan.prompt_tokens + plan.limit * choices
    try:
        await state.limiter.admit(call.principal, limits, tokens)
    except RateLimitError as exc:
        raise await refuse(call, exc) from None
    call.rate_tokens = tokens
