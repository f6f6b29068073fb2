"""Anthropic Messages: the Messages API surface of the request pipeline (`pipeline`).

The client speaks Anthropic's own wire format, so nothing is translated: its
body bytes go to Anthropic as they came, re-encoded only when the gateway must
change a field (the model id when the catalog maps an alias, `max_tokens` when
the balance pays for a lower limit). The reservation bounds the prompt by the
bytes sent (base64 images replaced by their image tokens, the hidden tool-use
system prompt added) and the output by `max_tokens`, at the dearest rates. A
JSON answer is charged its `usage`; a stream is relayed event for event and
charged the usage of `message_start` and `message_delta`, cache reads and
cache writes (by TTL) included. No fallbacks: the body names one model.

`count_tokens` is free: authenticated and counted against the key's request
rate, neither reserved nor charged nor written to the usage log.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import orjson

from ai_service.billing.estimate import prompt_bound
from ai_service.billing.images import find_message_images
from ai_service.errors import (
    InvalidRequestError,
    ServiceError,
    UpstreamError,
    UpstreamUnavailableError,
)
from ai_service.providers.anthropic import AnthropicAdapter
from ai_service.providers.anthropic.errors import error_body
from ai_service.providers.anthropic.passthrough import MessagesRelayParser
from ai_service.providers.anthropic.response import usage_from
from ai_service.providers.anthropic.tools import tool_prompt_tokens
from ai_service.providers.base import Adapter, JsonObject, StreamEvent, UpstreamRequest
from ai_service.schemas import parse_body
from ai_service.services import pipeline, respond
from ai_service.services.answers import Answer, Result, Streamed
from ai_service.services.call import Arrival, Call, refuse
from ai_service.services.routing import Bound, Plan, Target
from ai_service.upstream import UpstreamStream

SURFACE = "messages"  # the request log's and the metrics' name of this API surface
MESSAGES = "/v1/messages"
COUNT_TOKENS = "/v1/messages/count_tokens"
MIN_THINKING_BUDGET = 1024  # Anthropic's least `thinking.budget_tokens`


@dataclass(frozen=True, slots=True)
class Forwarded:
    """The client's headers that go upstream, and the beta values the gateway dropped."""

    headers: Mapping[str, str]
    dropped: tuple[str, ...] = ()

    def answer_headers(self) -> dict[str, str]:
        return {"X-Dropped-Anthropic-Beta": ",".join(self.dropped)} if self.dropped else {}


def validate_message(body: JsonObject) -> tuple[str, int, bool]:
    """Check what the gateway relies on: (model, max_tokens, stream); Anthropic checks
    the rest. Raises `InvalidRequestError`."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequestError("model: Field required (the model's id).", param="model")
    limit = body.get("max_tokens")
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise InvalidRequestError(
            "max_tokens: Field required, a positive integer.", param="max_tokens"
        )
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequestError("messages: a non-empty list is required.", param="messages")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise InvalidRequestError("stream: Input should be a valid boolean.", param="stream")
    validate_tools(body.get("tools"))
    return model, limit, stream


def validate_tools(tools: object) -> None:
    """Client tools only (`type` absent or "custom"): the gateway cannot bound or bill
    Anthropic's own tools (server tools are billed per use). Raises `InvalidRequestError`."""
    if tools is None:
        return
    if not isinstance(tools, list):
        raise InvalidRequestError("tools: Input should be a valid list.", param="tools")
    for tool in tools:
        kind = tool.get("type", "custom") if isinstance(tool, dict) else None
        if kind != "custom":
            raise InvalidRequestError(
                f"tools: tool type {kind!r} is not served by this gateway; "
                "only client tools (name, description, input_schema) are.",
                param="tools",
            )


def encoded(raw: bytes, body: JsonObject, model: str, limit: int) -> bytes:
    """The body to send: the client's bytes, unless the model id or the limit changes."""
    if body["model"] == model and body["max_tokens"] == limit:
        return raw
    changed = {**body, "model": model, "max_tokens": limit}
    thinking = body.get("thinking")
    if isinstance(thinking, dict):
        budget = thinking.get("budget_tokens")
        # the thinking budget must stay below the limit (when Anthropic allows one that low)
        if isinstance(budget, int) and budget >= limit and limit - 1 >= MIN_THINKING_BUDGET:
            changed["thinking"] = {**thinking, "budget_tokens": limit - 1}
    return orjson.dumps(changed)


async def messages(arrival: Arrival, *, forwarded: Forwarded) -> Result:
    """Serve one Messages API request. Raises `ServiceError` before any byte is sent."""
    call = arrival.call(SURFACE)
    state, provider, raw = arrival.state, arrival.provider, arrival.raw
    try:
        body = parse_body(raw)
        requested, client_limit, call.stream = validate_message(body)
    except InvalidRequestError as exc:
        raise await refuse(call, exc) from None
    await pipeline.resolve(call, provider, requested)
    resolved = call.resolved
    assert resolved is not None
    adapter = state.adapters[provider]
    assert isinstance(adapter, AnthropicAdapter)
    stored = await pipeline.hold(call, arrival.idempotency_key, f"{provider}/messages", raw)
    if stored is not None:
        return respond.replay(stored)
    model = resolved.model
    hidden = tool_prompt_tokens(model, body)

    def build(limit: int) -> UpstreamRequest:
        sent = encoded(raw, body, model, limit)
        return adapter.passthrough(MESSAGES, sent, forwarded.headers, hidden)

    try:
        request = build(client_limit)
        tokens = prompt_bound(
            request,
            find_message_images(body),
            provider=provider,
            model=model,
            messages=len(body["messages"]),
            message_allowance=state.settings.message_token_allowance,
            image_allowance=state.settings.image_token_allowance,
        )
        plan = Plan([Target(provider, resolved)], client_limit, limit=client_limit)
        plan.bounds.append(Bound(tokens, 1, request, client_limit))
        call.prompt_bound = tokens
        await pipeline.reserve(call, plan)
    except BaseException:
        await pipeline.release(call)
        raise

    async def attempt(
        _adapter: Adapter, _target: Target, prepared: UpstreamRequest | None, limit: int
    ) -> JsonObject | UpstreamStream:
        sending = prepared or build(limit)
        if call.stream:
            return await state.upstream.open_events(adapter, sending, adapter.relay_parser())
        return await state.upstream.exchange(adapter, sending)

    _target, result = await pipeline.dispatch(call, plan, attempt)
    headers = forwarded.answer_headers()
    if isinstance(result, UpstreamStream):
        return relayed(call, result, headers)
    return await answer(call, result, headers)


async def answer(call: Call, data: JsonObject, headers: dict[str, str]) -> Answer:
    """Charge a Message's `usage`, then return it as Anthropic sent it (never uncharged)."""
    latency = call.elapsed_ms()
    content = data.get("content")
    if data.get("type") != "message" or not isinstance(content, list):
        raise await call.fail(
            UpstreamError(f"The {call.provider} provider sent an answer that is not a Message.")
        )
    reported = data.get("usage")
    estimated = not isinstance(reported, dict)
    if isinstance(reported, dict):
        usage = usage_from(reported)
    else:
        usage = call.estimated_usage(call.output_tokens(orjson.dumps(content).decode()))
    payload = orjson.dumps(data)
    _usd, cost_header = call.cost_fields(usage)
    await respond.settle_answer(call, usage, payload, estimated=estimated, latency=latency)
    return Answer(payload, {**headers, "X-Request-Cost": cost_header})


class MessagesFrames:
    """A Messages stream's frames: Anthropic's events relayed as they came (its own
    `message_stop` ends the stream: no tail), settled as chat's are."""

    __slots__ = ("tail",)

    def __init__(self) -> None:
        self.tail = b""

    def write(self, events: list[StreamEvent], tally: respond.Tally) -> bytes:
        for ev in events:
            if ev.usage is not None or ev.early_usage is not None:
                tally.add(ev)
        if len(events) == 1:
            return events[0].frame or b""
        return b"".join(ev.frame or b"" for ev in events)

    def error(self, exc: ServiceError) -> bytes:
        return b"event: error\ndata: " + orjson.dumps(error_shape(exc)) + b"\n\n"


def relayed(call: Call, upstream: UpstreamStream, headers: dict[str, str]) -> Streamed:
    """The client's Messages stream; the text delivered is read from the parser at settlement."""
    parser = upstream.parser
    assert isinstance(parser, MessagesRelayParser)

    def fill(tally: respond.Tally) -> None:
        text, other = parser.output()
        tally.texts.append(text)
        tally.generated.append(other)
        tally.finish = parser.stop_reason

    return respond.relay(call, upstream, MessagesFrames(), headers, fill)


def error_shape(exc: ServiceError) -> dict[str, object]:
    """A gateway error in Anthropic's shape."""
    return error_body(exc.status, exc.message)


async def count_tokens(arrival: Arrival, *, forwarded: Forwarded) -> Answer:
    """Count a Messages body's input tokens upstream, free. Raises `ServiceError`."""
    state, principal, provider, raw = (
        arrival.state,
        arrival.principal,
        arrival.provider,
        arrival.raw,
    )
    body = parse_body(raw)
    requested = body.get("model")
    if not isinstance(requested, str) or not requested:
        raise InvalidRequestError("model: Field required (the model's id).", param="model")
    catalog = await state.catalog.get()
    resolved = catalog.resolve(provider, requested)
    pipeline.check(principal, catalog, provider, resolved)
    adapter = state.adapters.get(provider)
    if not isinstance(adapter, AnthropicAdapter):
        raise UpstreamUnavailableError(
            f"The {provider} provider is not configured on this gateway."
        )
    await state.limiter.admit(principal, principal.limits, 0)
    sent = (
        raw if body["model"] == resolved.model else orjson.dumps({**body, "model": resolved.model})
    )
    request = adapter.passthrough(COUNT_TOKENS, sent, forwarded.headers)
    data = await state.upstream.exchange(adapter, request)
    return Answer(orjson.dumps(data), forwarded.answer_headers())
