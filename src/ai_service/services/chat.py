"""Chat completions: the chat surface of the request pipeline (`pipeline`).

The surface parses and validates the body, plans what each target of the
chain is sent and may bill (the body translated by each provider's adapter),
sends it as a JSON completion or a stream, and answers in OpenAI's chat shape.
"""

from __future__ import annotations

from ai_service.errors import InvalidRequestError, ServiceError
from ai_service.providers.base import ChatResult
from ai_service.schemas import include_usage, parse_body, validate_chat, validate_choices
from ai_service.services import pipeline, respond
from ai_service.services.answers import Result
from ai_service.services.call import Arrival, refuse
from ai_service.services.routing import Target, chain_for, chat_attempt, plan_for
from ai_service.upstream import UpstreamStream


async def chat(arrival: Arrival) -> Result:
    """Serve one chat completion. Raises `ServiceError` before any byte is sent."""
    call = arrival.call("chat")
    state, provider, raw = arrival.state, arrival.provider, arrival.raw
    try:
        body = parse_body(raw)
        requested, call.stream, client_limit = validate_chat(body, state.settings.max_messages)
        validate_choices(body)
    except InvalidRequestError as exc:
        raise await refuse(call, exc) from None
    catalog = await pipeline.resolve(call, provider, requested)
    stored = await pipeline.hold(call, arrival.idempotency_key, provider, raw)
    if stored is not None:
        return respond.replay(stored)
    try:
        assert call.resolved is not None
        chain = chain_for(state.settings, catalog, Target(provider, call.resolved))
        try:
            plan = plan_for(state, chain, body, call.stream, client_limit)
        except ServiceError as exc:
            raise await refuse(call, exc) from None
        call.prompt_bound = plan.bounds[0].prompt_tokens
        await pipeline.reserve(call, plan)
    except BaseException:
        await pipeline.release(call)
        raise
    target, result = await pipeline.dispatch(call, plan, chat_attempt(state, body, call.stream))
    extra = {"X-Served-Model": target.resolved.model}
    if isinstance(result, ChatResult):
        return await respond.complete(call, result, extra)
    assert isinstance(result, UpstreamStream)
    return respond.stream(call, result, include_usage(body), extra)
