"""Anthropic Messages: the Messages API surface of the request pipeline (`pipeline`).

On the paths of providers whose upstream speaks it (Claude's), it is passed
to Anthropic; on the others it is translated to and from the provider's chat
API (`translate.messages`, `translate.message_answer`) and sent, reserved and
billed as a chat completion is (`chat.through_chat`), fallbacks included, its
`max_tokens` at most the model's maximum output: a JSON answer is charged its
chat usage, a stream the usage of its last chunks (asked for with
`stream_options.include_usage`), shown to the client in `message_delta`.

Passed through, the client's body bytes go to Anthropic as they came,
re-encoded only when the gateway must change a field (the model id when the
catalog maps an alias, `max_tokens` when the balance pays for a lower limit, a
server tool's `max_uses` when the client gave none). The reservation bounds
the prompt by the bytes sent (base64 images replaced by their image tokens,
the hidden tool-use system prompt added), the input a server tool loop reads
beyond them and the tools' per-use fees (`server_tools`), and the output by
`max_tokens`, at the dearest rates. A JSON answer is charged its `usage`; a
stream is relayed event for event and charged the usage of `message_start`
and `message_delta`, cache reads and cache writes (by TTL) and server tool
uses included. No fallbacks: the body names one model.

`count_tokens` is free: authenticated and counted against the key's request
rate, neither reserved nor charged nor written to the usage log. Where the
Messages API is translated it is the gateway's own count of the translated
prompt (`billing.tokens`: exact for OpenAI's models, a safe bound for the
others); Anthropic counts it on Claude's path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import orjson

from ai_service.billing import tokens
from ai_service.billing.estimate import prompt_bound
from ai_service.billing.images import find_message_images
from ai_service.billing.pricing import NO_USE_PRICES
from ai_service.errors import (
    InvalidRequestError,
    ServiceError,
    UpstreamError,
    UpstreamUnavailableError,
)
from ai_service.providers import REGISTRY
from ai_service.providers.anthropic import AnthropicAdapter, server_tools
from ai_service.providers.anthropic.errors import error_body
from ai_service.providers.anthropic.passthrough import MessagesRelayParser
from ai_service.providers.anthropic.response import usage_from
from ai_service.providers.anthropic.server_tools import ServerTools
from ai_service.providers.anthropic.tools import tool_prompt_tokens
from ai_service.providers.base import (
    Adapter,
    ChatResult,
    JsonObject,
    StreamEvent,
    UpstreamRequest,
)
from ai_service.schemas import parse_body, validate_chat
from ai_service.services import pipeline, respond
from ai_service.services.answers import Answer, Result, Streamed
from ai_service.services.call import Arrival, Call, refuse
from ai_service.services.chat import through_chat
from ai_service.services.idempotency import Replay
from ai_service.services.respond import Tally
from ai_service.services.routing import Bound, Plan, Target
from ai_service.sse import named
from ai_service.translate import messages as translate
from ai_service.translate.message_answer import MessageStream, frames, message_object
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


def validate_tools(tools: object, default_max_uses: int = 1) -> ServerTools:
    """The tools the gateway can bound and bill, and what they add to the reservation
    (`server_tools`: client tools, web search and web fetch with their `max_uses`, the
    documented Anthropic-defined client tools). Raises `InvalidRequestError` naming any
    other."""
    return server_tools.admit(tools, default_max_uses)


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
    if not REGISTRY[arrival.provider].speaks(SURFACE):
        return await translated(arrival)
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
    tools = validate_tools(body.get("tools"), state.settings.anthropic_server_tool_max_uses)
    try:  # the input the server tools' loop reads beyond the body
        unseen = tools.unseen(resolved.price.context_window)
    except InvalidRequestError as exc:
        raise await refuse(call, exc) from None
    stored = await pipeline.hold(call, arrival.idempotency_key, f"{provider}/messages", raw)
    if stored is not None:
        return respond.replay(stored)
    if tools.tools is not None:  # a server tool without max_uses is sent the gateway's
        body = {**body, "tools": tools.tools}
        raw = orjson.dumps(body)
    model = resolved.model
    hidden = tool_prompt_tokens(model, body) + tools.hidden
    fees = tools.fees(state.use_prices.get(provider, NO_USE_PRICES))

    def build(limit: int, sender: AnthropicAdapter = adapter) -> UpstreamRequest:
        sent = encoded(raw, body, model, limit)
        return sender.passthrough(MESSAGES, sent, forwarded.headers, hidden)

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
        plan.bounds.append(Bound(tokens + unseen, 1, request, client_limit, fees, adapter))
        call.prompt_bound = tokens + unseen
        await pipeline.reserve(call, plan)
    except BaseException:
        await pipeline.release(call)
        raise

    async def attempt(
        sender: Adapter, _target: Target, prepared: UpstreamRequest | None, limit: int
    ) -> JsonObject | UpstreamStream:
        assert isinstance(sender, AnthropicAdapter)  # a credential of this provider's pool
        sending = prepared or build(limit, sender)
        if call.stream:
            return await state.upstream.open_events(sender, sending, sender.relay_parser())
        return await state.upstream.exchange(sender, sending)

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
        return error_event(exc)


def relayed(call: Call, upstream: UpstreamStream, headers: dict[str, str]) -> Streamed:
    """The client's Messages stream; the text delivered is read from the parser at settlement."""
    parser = upstream.parser
    assert isinstance(parser, MessagesRelayParser)
    return respond.relay(call, upstream, MessagesFrames(), headers, respond.fill_from(parser))


def error_shape(exc: ServiceError) -> dict[str, object]:
    """A gateway error in Anthropic's shape."""
    return error_body(exc.status, exc.message)


def error_event(exc: ServiceError) -> bytes:
    """The `error` event that ends a Messages stream which failed after it began."""
    return named("error", error_shape(exc))


async def count_tokens(arrival: Arrival, *, forwarded: Forwarded) -> Answer:
    """Count a Messages body's input tokens upstream (the gateway's own count where the
    upstream does not speak the Messages API), free. Raises `ServiceError`."""
    if not REGISTRY[arrival.provider].speaks(SURFACE):
        return await counted(arrival)
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


# ---- translated through chat -------------------------------------------------------


def message_id(call: Call) -> str:
    """The id of the message answering `call`: its request id's (`req_...` -> `msg_...`)."""
    return "msg_" + call.request_id.removeprefix("req_")


async def translated(arrival: Arrival) -> Result:
    """Serve a Messages API request through the provider's chat API."""
    call = arrival.call(SURFACE)
    provider = arrival.provider
    try:
        request = translate.to_chat(parse_body(arrival.raw))
        call.stream = request.stream
        validate_chat(request.body, arrival.state.settings.max_messages)
    except InvalidRequestError as exc:
        raise await refuse(call, exc) from None
    sent = await through_chat(
        call,
        arrival,
        request.body,
        request.model,
        await output_limit(arrival, request),
        f"{provider}/{SURFACE}",
    )
    if isinstance(sent, Replay):
        return respond.replay(sent)
    target, result = sent
    headers = {"X-Served-Model": target.resolved.model}
    if not isinstance(result, ChatResult):
        return respond.relay(call, result, TranslatedFrames(call), headers)
    latency = call.elapsed_ms()
    usage, estimated = result.usage, False
    if usage is None:
        generated = orjson.dumps(result.completion.get("choices")).decode()
        usage, estimated = call.estimated_usage(call.output_tokens(generated)), True
    try:
        data = message_object(result.completion, message_id(call), target.resolved.model, usage)
    except UpstreamError as exc:
        raise await call.fail(UpstreamError(f"{call.provider}: {exc.message}")) from None
    payload = orjson.dumps(data)
    _usd, cost_header = call.cost_fields(usage)
    await respond.settle_answer(call, usage, payload, estimated=estimated, latency=latency)
    return Answer(payload, {**headers, "X-Request-Cost": cost_header})


async def output_limit(arrival: Arrival, request: translate.Translated) -> int:
    """The client's `max_tokens`, at most the model's maximum output (the catalog's): a
    client of the Messages API sets it for Claude's models, whose limits differ."""
    catalog = await arrival.state.catalog.get()
    resolved = catalog.resolve(arrival.provider, request.model)
    if resolved.refused:  # refused by `through_chat`, logged
        return request.limit
    return min(request.limit, resolved.price.max_output)


class TranslatedFrames:
    """Anthropic's events of a chat stream (`translate.message_answer.MessageStream`): the
    open block's end, `message_delta` (the usage charged) and `message_stop` are the tail."""

    __slots__ = ("call", "events", "tally")

    def __init__(self, call: Call) -> None:
        resolved = call.resolved
        assert resolved is not None
        self.call = call
        self.events = MessageStream(message_id(call), resolved.model)
        self.tally: Tally | None = None

    def write(self, events: list[StreamEvent], tally: Tally) -> bytes:
        out: list[JsonObject] = []
        if self.tally is None:
            self.tally = tally
            out += self.events.opening(self.call.prompt_tokens())
        for ev in events:
            tally.add(ev)
            if ev.chunk is not None:
                out += self.events.feed(ev.chunk)
        return frames(out) if out else b""

    @property
    def tail(self) -> bytes:
        """The stream's end, with the usage charged (a whole message if nothing came)."""
        tally = self.tally
        opening: list[JsonObject] = []
        if tally is None:
            self.tally = tally = Tally(False, 0)
            opening = self.events.opening(self.call.prompt_tokens())
        usage, _estimated = respond.stream_usage(self.call, tally)
        return frames([*opening, *self.events.closing(usage)])

    def error(self, exc: ServiceError) -> bytes:
        return error_event(exc)


async def counted(arrival: Arrival) -> Answer:
    """A Messages body's input tokens by the gateway's own count of its chat prompt, free.

    Raises `ServiceError`.
    """
    state, principal, provider = arrival.state, arrival.principal, arrival.provider
    body = parse_body(arrival.raw)
    translate.check_fields(body)
    prompt = translate.prompt(body)
    catalog = await state.catalog.get()
    resolved = catalog.resolve(provider, prompt["model"])
    pipeline.check(principal, catalog, provider, resolved)
    await state.limiter.admit(principal, principal.limits, 0)
    text = orjson.dumps(prompt).decode()
    allowance = state.settings.image_token_allowance
    count = tokens.prompt_tokens(text, provider, resolved.model, allowance)
    return Answer(orjson.dumps({"input_tokens": count or 0}))
