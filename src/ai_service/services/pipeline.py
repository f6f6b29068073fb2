"""The path every request walks, whatever its API surface: admit, reserve, send, settle.

The order is the contract of DESIGN §8: nothing reaches the upstream before
the worst-case cost is reserved against the balance, and every request that
got that far is settled exactly once, in one transaction, whether it ended
well, failed upstream, or was cancelled by a client that went away.

A surface (chat completions, embeddings) supplies what is its own: parsing
and validating the body, the plan of what each target is sent and may bill
(`routing.Plan`), the upstream call of one attempt, and the answer. The
steps between are these, written once: `resolve` (the model and its
provider, and whether the key may use them: `check`), `hold` (the
Idempotency-Key), `reserve` (rate limits and the balance), `dispatch`
(retries and fallbacks; a failure settles).
"""

from __future__ import annotations

import asyncio
from typing import TypeVar

from ai_service.allowlist import denial
from ai_service.auth import Principal
from ai_service.billing import ledger
from ai_service.billing.budgets import Standing, tightest
from ai_service.billing.catalog import Catalog, Resolved
from ai_service.billing.ledger import utcnow
from ai_service.errors import (
    AuthenticationError,
    InsufficientQuotaError,
    RateLimitError,
    ServiceError,
    UpstreamUnavailableError,
)
from ai_service.providers import REGISTRY
from ai_service.services import idempotency
from ai_service.services.attempts import Attempt, Attempts, attempt_chain
from ai_service.services.call import Call, refuse
from ai_service.services.routing import Plan, Target
from ai_service.storage.db import DB_ERRORS
from ai_service.waits import DatabaseBusyError

T = TypeVar("T")

MAX_AMOUNT = 2**63 - 1  # nano-USD columns are 64-bit: a larger worst case is lowered
DB_DOWN = "The gateway's database was unreachable while the request was admitted."
UNAFFORDABLE = (
    "Insufficient balance: the account cannot pay for this prompt and a minimal answer. "
    "Top up the balance, or send a shorter prompt."
)
# how long an interrupted reservation statement is waited for, to release what it reserved
RESERVATION_PATIENCE = 5.0


def check(principal: Principal, catalog: Catalog, provider: str, resolved: Resolved) -> None:
    """Whether this key may have this model served, the rule of every surface.

    Raises `PermissionDeniedError` (403) for a model the key's allow-list does
    not name (as requested or as resolved), `InvalidRequestError` (400) for an
    unknown model under the `refuse` policy.
    """
    allowed = principal.allowed
    if allowed is not None and not allowed.permits(provider, resolved.requested, resolved.model):
        raise denial(provider, resolved.requested, resolved.model)
    if resolved.refused:
        raise catalog.refusal(provider, resolved, allowed)


def check_reach(principal: Principal, provider: str) -> None:
    """Whether this key may reach the provider at all, for a route that names no model.

    Raises `PermissionDeniedError` (403) when its allow-list names none of its models.
    """
    allowed = principal.allowed
    if allowed is not None and not allowed.reaches(provider):
        raise denial(provider, None)


async def resolve(call: Call, provider: str, requested: str) -> Catalog:
    """Price the model asked for and check it and its provider; refuse (logged, free) what
    cannot be served: a model the key may not use, an unknown model under the `refuse`
    policy, a provider without its key."""
    catalog = await call.state.catalog.get()
    resolved = call.resolved = catalog.resolve(provider, requested)
    if resolved.refused or call.principal.allowed is not None:
        try:
            check(call.principal, catalog, provider, resolved)
        except ServiceError as exc:
            raise await refuse(call, exc) from None
    if provider not in call.state.adapters:
        variable = REGISTRY[provider].key_variable
        raise await refuse(
            call,
            UpstreamUnavailableError(
                f"The {provider} provider is not configured on this gateway: "
                f"its operator must set {variable}."
            ),
        )
    return catalog


async def hold(call: Call, key: str | None, scope: str, raw: bytes) -> idempotency.Replay | None:
    """Claim the request's Idempotency-Key (bound to `scope` and the body): the stored answer
    when the same request was answered before, else None (the claim is the call's)."""
    if key is None:
        return None
    state = call.state
    claimed = await idempotency.claim(
        state.engine,
        call.principal.user_id,
        key,
        scope,
        raw,
        call.request_id,
        call.stream,
        state.settings.idempotency_ttl_seconds,
    )
    if isinstance(claimed, idempotency.Replay):
        if call.trace is not None:
            call.trace.replayed()
        return claimed
    call.claim = claimed
    return None


async def release(call: Call) -> None:
    """Give the Idempotency-Key back: the request ended before anything was sent."""
    if call.claim is not None:
        await idempotency.release(call.state.engine, call.claim)


async def dispatch(call: Call, plan: Plan, attempt: Attempt[T]) -> tuple[Target, T]:
    """Send through the chain; an error or a cancellation before an answer settles the call."""
    attempts = Attempts()
    if call.trace is not None:
        attempt = call.trace.attempts(attempt, plan)
    call.mark_sent()
    try:
        target, result = await attempt_chain(call.state, plan, attempts, attempt)
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
    return target, result


async def reserve(call: Call, plan: Plan) -> None:
    """Reserve the chain's worst case, lowering the output limit to what the balance pays.

    The limit is per answer: a request for `n` answers reserves `n` times it.

    Raises `InsufficientQuotaError` (402) when not even a minimal answer is affordable,
    and `AuthenticationError` (401) when the user was disabled after its key was cached.
    """
    state = call.state
    await admit(call, plan)
    minimum = min(state.settings.min_output_tokens, plan.limit)
    user_id, budgets = call.principal.user_id, call.principal.budgets
    error: ServiceError
    for _ in range(4):
        amount = plan.worst_case()
        if amount <= MAX_AMOUNT:
            try:
                reserved = await state.ledger.reserve_open(user_id, amount, call.row(), budgets)
            except DatabaseBusyError as exc:  # never reached the database: nothing reserved
                error = exc
                break
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
            error = AuthenticationError("This API key's user is disabled; its keys no longer work.")
            break
        limiting = None
        if budgets:
            limiting = tightest(await state.ledger.standings(user_id, budgets))
            if limiting is not None and limiting.remaining < balance:
                balance = limiting.remaining
            else:
                limiting = None
        affordable = plan.affordable(balance)
        if affordable < minimum:
            if limiting is not None and state.webhooks is not None:
                state.webhooks.refused(user_id, limiting.budget)  # its 100% alert
            error = InsufficientQuotaError(
                UNAFFORDABLE if limiting is None else over_budget(limiting)
            )
            break
        plan.limit = min(plan.limit, affordable)
    else:
        error = InsufficientQuotaError(UNAFFORDABLE)
    state.spawn(
        state.limiter.settle_tokens(call.principal, call.principal.limits, call.rate_tokens, 0)
    )
    raise await refuse(call, error)


def over_budget(standing: Standing) -> str:
    """The 402 message of a request its budget cannot pay for: which budget, when it resets."""
    budget = standing.budget
    return (
        f"Budget exceeded: this request would go over {budget.describe(standing.used, utcnow())}."
    )


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
