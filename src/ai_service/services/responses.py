"""The Responses API: the responses surface of the request pipeline (`pipeline`).

On the paths of providers whose upstream speaks it (OpenAI's), it is passed
to that Responses API; on the others it is translated to and from the
provider's chat API (`translate.responses`) and sent, reserved and billed as
a chat completion is (`chat.through_chat`), fallbacks included.

Passed through: The body is
checked where the gateway relies on it (`model`, `input`, `max_output_tokens`,
`stream`), reserved like a chat request (the sent body's bytes bound the
prompt, images by their formula; the output limit is the client's
`max_output_tokens` or the model's maximum, lowered to what the balance pays)
and charged from the `response` object's usage, or a stream's
`response.completed`. A stream is relayed event for event.

Input the body does not show is bounded too: a `previous_response_id`'s
earlier conversation by the stored response's usage (its input and output
tokens, read from the upstream before anything is reserved), a `conversation`
or a stored `prompt` by the model's context window. `background` is refused:
its usage arrives after the request, where the gateway cannot bill it.
"""

from __future__ import annotations

import orjson

from ai_service import sse
from ai_service.errors import InvalidRequestError, ServiceError
from ai_service.providers import REGISTRY
from ai_service.providers.base import (
    Adapter,
    ChatResult,
    JsonObject,
    StreamEvent,
    UpstreamRequest,
)
from ai_service.providers.openai_compat import OpenAICompatAdapter
from ai_service.providers.openai_responses import (
    FINAL,
    RESPONSE_ID,
    ResponsesStreamParser,
    build_request,
    output_text,
    response_usage,
    retrieve_request,
)
from ai_service.schemas import parse_body, validate_chat, validate_model, validate_stream
from ai_service.services import pipeline, respond
from ai_service.services.answers import Answer, Result
from ai_service.services.call import Arrival, Call, refuse
from ai_service.services.chat import through_chat
from ai_service.services.idempotency import Replay
from ai_service.services.respond import Tally
from ai_service.services.routing import Build, Target, chain_for, plan_chain
from ai_service.state import AppState
from ai_service.translate import responses as translate
from ai_service.upstream import UpstreamStream

MIN_OUTPUT_TOKENS = 16  # OpenAI's least `max_output_tokens`


SURFACE = "responses"  # the request log's and the metrics' name of this API surface


def validate_responses(body: JsonObject) -> tuple[str, bool, int | None]:
    """Check a Responses API body; returns (model, stream, client's output limit).

    Raises `InvalidRequestError` naming the offending parameter.
    """
    model = validate_model(body)
    inputs = body.get("input")
    if isinstance(inputs, list):
        for index, item in enumerate(inputs):
            if not isinstance(item, dict):
                raise InvalidRequestError(
                    f"input[{index}] must be an input item (an object).", param=f"input[{index}]"
                )
    elif not isinstance(inputs, str) and not (inputs is None and body.get("prompt")):
        raise InvalidRequestError(
            "'input' is required: a string or an array of input items.", param="input"
        )
    stream = validate_stream(body)
    limit = body.get("max_output_tokens")
    if limit is not None and (
        isinstance(limit, bool) or not isinstance(limit, int) or limit < MIN_OUTPUT_TOKENS
    ):
        raise InvalidRequestError(
            f"'max_output_tokens' must be an integer of at least {MIN_OUTPUT_TOKENS}.",
            param="max_output_tokens",
        )
    if body.get("background") is True:
        raise InvalidRequestError(
            "'background' is not supported by this gateway: a background response is billed "
            "after the request ends, where the gateway cannot charge it.",
            param="background",
        )
    previous = body.get("previous_response_id")
    if previous is not None and (not isinstance(previous, str) or not RESPONSE_ID.match(previous)):
        raise InvalidRequestError(
            "'previous_response_id' must be a response id.", param="previous_response_id"
        )
    return model, stream, limit


async def unseen_input(
    state: AppState,
    adapter: OpenAICompatAdapter,
    body: JsonObject,
    context_window: int,
    user_id: int,
) -> int:
    """A bound of the input tokens the provider bills beyond the body.

    Raises `InvalidRequestError` when `previous_response_id` names no stored
    response of `user_id`.
    """
    unseen = 0
    previous = body.get("previous_response_id")
    if isinstance(previous, str):
        missing = InvalidRequestError(
            f"Previous response with id '{previous}' not found.",
            param="previous_response_id",
            code="previous_response_not_found",
        )
        if not await state.owners.owns(previous, user_id):
            raise missing
        try:
            stored = await state.upstream.exchange(adapter, retrieve_request(adapter, previous))
        except ServiceError as exc:
            if exc.status not in (400, 404):
                raise
            raise missing from None
        usage = response_usage(stored)
        unseen = usage.total_tokens if usage is not None else context_window
    if body.get("conversation") is not None or body.get("prompt") is not None:
        unseen = max(unseen, context_window)
    return unseen


def openai_request(body: JsonObject) -> Build:
    """Each target's request: the body for its model and limit, to the Responses API."""

    def build(adapter: Adapter, target: Target, limit: int) -> UpstreamRequest:
        if not isinstance(adapter, OpenAICompatAdapter):  # the chain holds none
            raise InvalidRequestError(f"The {adapter.name} provider has no Responses API.")
        return build_request(adapter, body, target.resolved.model, limit)

    return build


async def responses(arrival: Arrival) -> Result:
    """Serve one Responses API request. Raises `ServiceError` before any byte is sent."""
    if not REGISTRY[arrival.provider].speaks(SURFACE):
        return await translated(arrival)
    call = arrival.call(SURFACE)
    state, principal, provider, raw = (
        arrival.state,
        arrival.principal,
        arrival.provider,
        arrival.raw,
    )
    try:
        body = parse_body(raw)
        requested, call.stream, client_limit = validate_responses(body)
    except InvalidRequestError as exc:
        raise await refuse(call, exc) from None
    catalog = await pipeline.resolve(call, provider, requested)
    resolved = call.resolved
    assert resolved is not None
    adapter = state.adapters[provider]
    assert isinstance(adapter, OpenAICompatAdapter)
    stored = await pipeline.hold(call, arrival.idempotency_key, f"{provider}/responses", raw)
    if stored is not None:
        return respond.replay(stored)
    try:
        # fallbacks where they speak the same API: the same provider's models
        chain = [
            target
            for target in chain_for(
                state.settings, catalog, Target(provider, resolved), principal.allowed
            )
            if target.provider == provider
        ]
        try:
            call.unseen_prompt = await unseen_input(
                state, adapter, body, resolved.price.context_window, principal.user_id
            )
        except ServiceError as exc:
            raise await refuse(call, exc) from None
        inputs = body.get("input")
        count = (len(inputs) if isinstance(inputs, list) else 1) + ("instructions" in body)
        build = openai_request(body)
        plan = plan_chain(state, chain, body, client_limit, count, build, call.unseen_prompt)
        call.prompt_bound = plan.bounds[0].prompt_tokens
        await pipeline.reserve(call, plan)
    except BaseException:
        await pipeline.release(call)
        raise
    stream = call.stream

    async def attempt(
        adapter: Adapter, target: Target, prepared: UpstreamRequest | None, limit: int
    ) -> JsonObject | UpstreamStream:
        request = prepared or build(adapter, target, limit)
        if stream:
            assert isinstance(adapter, OpenAICompatAdapter)
            return await state.upstream.open_events(
                adapter, request, ResponsesStreamParser(adapter)
            )
        return await state.upstream.exchange(adapter, request)

    target, result = await pipeline.dispatch(call, plan, attempt)
    headers = {"X-Served-Model": target.resolved.model}
    if isinstance(result, UpstreamStream):
        parser = result.parser
        assert isinstance(parser, ResponsesStreamParser)
        return respond.relay(
            call, result, ResponsesFrames(call), headers, respond.fill_from(parser)
        )
    return await answer(call, result, headers)


async def answer(call: Call, data: JsonObject, headers: dict[str, str]) -> Answer:
    """Charge a `response` object for its usage (estimated if it has none), then return it."""
    resolved = call.resolved
    assert resolved is not None
    latency = call.elapsed_ms()
    data["model"] = resolved.model
    response_id = data.get("id")
    if isinstance(response_id, str):
        await call.state.owners.record(response_id, call.principal.user_id)
    usage, estimated = response_usage(data), False
    if usage is None:
        usage, estimated = call.estimated_usage(call.output_tokens(output_text(data))), True
    return await respond.charge_answer(call, data, usage, estimated, latency, headers)


async def translated(arrival: Arrival) -> Result:
    """Serve a Responses API request through the provider's chat API."""
    call = arrival.call(SURFACE)
    provider = arrival.provider
    try:
        body = parse_body(arrival.raw)
        requested, call.stream, client_limit = validate_responses(body)
        chat_body = translate.to_chat(body, provider)
        validate_chat(chat_body, arrival.state.settings.max_messages)
    except InvalidRequestError as exc:
        raise await refuse(call, exc) from None
    sent = await through_chat(
        call, arrival, chat_body, requested, client_limit, f"{provider}/{SURFACE}"
    )
    if isinstance(sent, Replay):
        return respond.replay(sent)
    target, result = sent
    headers = {"X-Served-Model": target.resolved.model}
    if isinstance(result, ChatResult):
        latency = call.elapsed_ms()
        usage, estimated = result.usage, False
        if usage is None:
            generated = orjson.dumps(result.completion.get("choices")).decode()
            usage, estimated = call.estimated_usage(call.output_tokens(generated)), True
        data = translate.response_object(body, target.resolved.model, result.completion, usage)
        return await respond.charge_answer(call, data, usage, estimated, latency, headers)
    return respond.relay(call, result, TranslatedFrames(call, body), headers)


class TranslatedFrames:
    """The Responses API's frames of a chat stream (`translate.responses.EventStream`):
    the final event, with the usage charged and its cost, is the tail."""

    __slots__ = ("call", "events", "sequence", "tally")

    def __init__(self, call: Call, body: JsonObject) -> None:
        resolved = call.resolved
        assert resolved is not None
        self.call = call
        self.events = translate.EventStream(translate.skeleton(body, resolved.model))
        self.sequence = 0
        self.tally: Tally | None = None

    def _frames(self, events: list[JsonObject]) -> list[bytes]:
        out: list[bytes] = []
        for event in events:
            event["sequence_number"] = self.sequence
            self.sequence += 1
            out.append(sse.named(event["type"], event))
        return out

    def write(self, events: list[StreamEvent], tally: Tally) -> bytes:
        out: list[bytes] = []
        if self.tally is None:
            self.tally = tally
            out += self._frames(self.events.opening())
        for ev in events:
            tally.add(ev)
            if ev.chunk is not None:
                out += self._frames(self.events.feed(ev.chunk))
        return b"".join(out)

    @property
    def tail(self) -> bytes:
        """The items' `.done` events and `response.completed`, with the usage charged."""
        tally = self.tally
        if tally is None:  # the upstream ended before any event: still a whole stream
            self.tally = tally = Tally(False, 0)
            opening = self._frames(self.events.opening())
        else:
            opening = []
        usage, _estimated = respond.stream_usage(self.call, tally)
        events = self.events.closing(usage)
        final = events[-1]["response"]
        final["usage"]["cost"] = self.call.cost_fields(usage)[0]
        return b"".join([*opening, *self._frames(events)])

    def error(self, exc: ServiceError) -> bytes:
        return error_event(exc, self.sequence)


def error_event(exc: ServiceError, sequence: int) -> bytes:
    """OpenAI's in-stream `error` event."""
    inner = exc.body()["error"]
    data = {
        "type": "error",
        "code": inner.get("code") or inner.get("type"),
        "message": inner.get("message"),
        "param": inner.get("param"),
        "sequence_number": sequence,
    }
    return sse.named("error", data)


class ResponsesFrames:
    """The Responses API's frames: the upstream's events as they came, apart from the
    `response` object's `model` (the served model) and the final event's `usage.cost`.
    The final event is held back until the stream settled (`tail`)."""

    __slots__ = ("call", "model", "sequence", "tail")

    def __init__(self, call: Call) -> None:
        resolved = call.resolved
        assert resolved is not None
        self.call = call
        self.model = resolved.model
        self.sequence = 0  # events sent: the next event's sequence number
        self.tail = b""

    def write(self, events: list[StreamEvent], tally: Tally) -> bytes:
        out: list[bytes] = []
        for ev in events:
            tally.add(ev)
            self.sequence += 1
            frame = ev.frame
            if ev.chunk is not None:
                if ev.chunk.get("type") == "response.created":
                    self._record(ev.chunk)
                frame = self._rewritten(ev)
            if ev.chunk is not None and ev.chunk.get("type") in FINAL:
                self.tail = frame or b""
            elif frame is not None:
                out.append(frame)
        return b"".join(out)

    def _record(self, created: JsonObject) -> None:
        """Note the response's user, in the background (long done when it is continued)."""
        response = created.get("response")
        response_id = response.get("id") if isinstance(response, dict) else None
        if isinstance(response_id, str):
            self.call.state.owners.record(response_id, self.call.principal.user_id)

    def _rewritten(self, ev: StreamEvent) -> bytes | None:
        """An event carrying the `response` object, with the served model and the cost."""
        chunk = ev.chunk
        assert chunk is not None
        response = chunk.get("response")
        if not isinstance(response, dict):
            return ev.frame
        usage = response.get("usage")
        if response.get("model") == self.model and ev.usage is None:
            return ev.frame
        response["model"] = self.model
        if ev.usage is not None and isinstance(usage, dict):
            usage["cost"] = self.call.cost_fields(ev.usage)[0]
        kind = chunk.get("type")
        return sse.named(kind, chunk) if isinstance(kind, str) else sse.frame(chunk)

    def error(self, exc: ServiceError) -> bytes:
        return error_event(exc, self.sequence)
