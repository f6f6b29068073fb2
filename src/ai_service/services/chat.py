"""Chat completions: the chat surface of the request pipeline (`pipeline`).

The surface parses and validates the body, plans what each target of the
chain is sent and may bill (the body translated by each provider's adapter),
sends it as a JSON completion or a stream, and answers in OpenAI's chat shape.

`through_chat` is the part after validation, written once: the surfaces that
a provider does not speak itself (the Responses and Messages APIs on the
paths of chat-only providers) translate their body to a chat body, send it
here, and translate the answer back.
"""

from __future__ import annotations

from ai_service.errors import InvalidRequestError, ServiceError
from ai_service.providers.base import ChatResult, JsonObject
from ai_service.schemas import include_usage, parse_body, validate_chat, validate_choices
from ai_service.services import pipeline, respond
from ai_service.services.answers import Result
from ai_service.services.attempts import chat_attempt
from ai_service.services.call import Arrival, Call, refuse
from ai_service.services.idempotency import Replay
from ai_service.services.routing import Target, chain_for, plan_for
from ai_service.upstream import UpstreamStream

Sent = tuple[Target, ChatResult | UpstreamStream]


async def chat(arrival: Arrival) -> Result:
    """Serve one chat completion. Raises `ServiceError` before any byte is sent."""
    call = arrival.call("chat")
    try:
        body = parse_body(arrival.raw)
        requested, call.stream, client_limit = validate_chat(
            body, arrival.state.settings.max_messages
        )
        validate_choices(body)
    except InvalidRequestError as exc:
        raise await refuse(call, exc) from None
    sent = await through_chat(call, arrival, body, requested, client_limit, arrival.provider)
    if isinstance(sent, Replay):
        return respond.replay(sent)
    target, result = sent
    extra = {"X-Served-Model": target.resolved.model}
    if isinstance(result, ChatResult):
        return await respond.complete(call, result, extra)
    return respond.stream(call, result, include_usage(body), extra)


async def through_chat(
    call: Call,
    arrival: Arrival,
    body: JsonObject,
    requested: str,
    client_limit: int | None,
    scope: str,
) -> Replay | Sent:
    """Resolve, hold the Idempotency-Key (under `scope`), reserve, and send a chat body
    along its fallback chain: the answering target and its answer, or a stored replay.

    Raises `ServiceError` (the request settled or refused) before any byte is sent.
    """
    state = arrival.state
    catalog = await pipeline.resolve(call, arrival.provider, requested)
    stored = await pipeline.hold(call, arrival.idempotency_key, scope, arrival.raw)
    if stored is not None:
        return stored
    try:
        assert call.resolved is not None
        first = Target(arrival.provider, call.resolved)
        chain = chain_for(state.settings, catalog, first, call.principal.allowed)
        try:
            plan = plan_for(state, chain, body, call.stream, client_limit)
        except ServiceError as exc:
            raise await refuse(call, exc) from None
        call.prompt_bound = plan.bounds[0].prompt_tokens
        await pipeline.reserve(call, plan)
    except BaseException:
        await pipeline.release(call)
        raise
    return await pipeline.dispatch(call, plan, chat_attempt(state, body, call.stream))
