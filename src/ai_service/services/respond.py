"""The answer to the client: a JSON completion, an SSE stream, or an idempotent replay,
as domain results (`answers`) that the route renders."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Protocol

import orjson

from ai_service.billing import ledger
from ai_service.errors import ServiceError
from ai_service.providers.base import ChatResult, JsonObject, StreamEvent, Usage
from ai_service.services.answers import Answer, Streamed
from ai_service.services.call import Call
from ai_service.services.idempotency import Replay
from ai_service.sse import DONE, error_frame
from ai_service.upstream import UpstreamStream


async def complete(call: Call, result: ChatResult, headers: dict[str, str]) -> Answer:
    """Charge a non-streamed chat answer, then return it (never an uncommitted charge)."""
    resolved = call.resolved
    assert resolved is not None
    latency = call.elapsed_ms()
    completion = result.completion
    completion["model"] = resolved.model
    usage, estimated = result.usage, False
    if usage is None:
        generated = orjson.dumps(completion.get("choices")).decode()
        usage, estimated = call.estimated_usage(call.output_tokens(generated)), True
        completion["usage"] = usage.to_openai()
    return await charge_answer(call, completion, usage, estimated, latency, headers)


async def charge_answer(
    call: Call,
    answer: JsonObject,
    usage: Usage,
    estimated: bool,
    latency: int,
    headers: dict[str, str],
) -> Answer:
    """Charge a whole JSON answer for `usage` (its `usage.cost` added), then return it."""
    usd, header = call.cost_fields(usage)
    if isinstance(answer.get("usage"), dict):
        answer["usage"]["cost"] = usd
    headers = {**headers, "X-Request-Cost": header}
    payload = orjson.dumps(answer)
    await settle_answer(call, usage, payload, estimated=estimated, latency=latency)
    return Answer(payload, headers)


async def settle_answer(
    call: Call,
    usage: Usage,
    payload: bytes,
    *,
    estimated: bool,
    latency: int,
    logged: str | None = None,
) -> None:
    """Charge a whole answer `usage` and keep `payload` for an idempotent replay.

    `logged` is the response body the payload audit keeps (the payload itself
    unless the surface logs a summary).
    """
    response_text, cut = call.cap(payload.decode() if logged is None else logged)
    request_text, cut_request = call.cap(call.request_text)
    await call.settle(
        call.priced(
            ledger.Settlement(
                status="ok",
                http_status=200,
                usage_estimated=estimated,
                upstream_latency_ms=latency,
                request_body=request_text,
                response_body=response_text,
                truncated=cut or cut_request,
            ).add_usage(usage),
            usage,
        ),
        answer=payload,
    )


def stream(
    call: Call, upstream: UpstreamStream, wants_usage: bool, headers: dict[str, str]
) -> Streamed:
    """A chat stream for the client: `chat.completion.chunk` frames, then `[DONE]`."""
    return relay(call, upstream, ChatFrames(call, wants_usage), headers)


def relay(
    call: Call,
    upstream: UpstreamStream,
    writer: Writer,
    headers: dict[str, str],
    fill: Callable[[Tally], None] | None = None,
) -> Streamed:
    """A stream of any surface, written by `writer` and settled once by its `Relay`.

    `fill` completes the tally at settlement, for a writer that relays events unparsed.
    """
    relay = Relay(call, upstream, writer)
    relay.tally.fill = fill
    return Streamed(relay.frames(), headers, relay.closed)


class Relayed(Protocol):
    """A parser that relays its events unparsed and reads their text once, at the end."""

    @property
    def stop_reason(self) -> str | None: ...

    def output(self) -> tuple[str, str]: ...


def fill_from(parser: Relayed) -> Callable[[Tally], None]:
    """What completes a relayed stream's tally at settlement: the text its parser kept."""

    def fill(tally: Tally) -> None:
        text, other = parser.output()
        tally.texts.append(text)
        tally.generated.append(other)
        tally.finish = parser.stop_reason or tally.finish

    return fill


def replay(stored: Replay) -> Answer | Streamed:
    """Send a stored answer again, uncharged."""
    headers = {"Idempotent-Replayed": "true"}
    if not stored.stream:
        return Answer(stored.response, headers)

    async def frames() -> AsyncIterator[bytes]:
        yield stored.response

    return Streamed(frames(), headers)


class Tally:
    """What a stream delivered: usage, generated text, finish reason, the frames kept.

    `usage` is the provider's final usage; `early` the usage it reported
    before the end (Anthropic's `message_start`: the prompt, cache reads and
    writes), charged for a stream that ends before its final usage.
    """

    __slots__ = (
        "early",
        "fill",
        "finish",
        "generated",
        "keep",
        "kept",
        "limit",
        "texts",
        "usage",
    )

    def __init__(self, keep: bool, limit: int) -> None:
        self.usage: Usage | None = None
        self.early: Usage | None = None
        self.texts: list[str] = []
        self.generated: list[str] = []  # reasoning and tool-call arguments
        self.finish: str | None = None
        self.keep = keep
        self.limit = limit
        self.kept: list[bytes] = []
        # for a surface that relays its events unparsed: fills the text in, at settlement
        self.fill: Callable[[Tally], None] | None = None

    def add(self, ev: StreamEvent) -> None:
        if ev.usage is not None:
            self.usage = ev.usage
        if ev.early_usage is not None:
            self.early = ev.early_usage
        if ev.text:
            self.texts.append(ev.text)
        if ev.generated_text:
            self.generated.append(ev.generated_text)
        chunk = ev.chunk
        if chunk is not None:
            choices = chunk.get("choices")
            if choices:
                choice = choices[0]
                reason = choice.get("finish_reason")
                if reason:
                    self.finish = reason
                if ev.generated > len(ev.text):
                    _generated(choice.get("delta"), self.generated)

    def record(self, frames: bytes) -> None:
        if self.keep:
            self.limit -= len(frames)
            if self.limit < 0:
                self.keep, self.kept = False, []
            else:
                self.kept.append(frames)

    def output_text(self) -> str:
        """All the output delivered: content, reasoning, tool-call arguments."""
        return "".join(self.texts) + "".join(self.generated)


def _generated(delta: object, into: list[str]) -> None:
    """The generated text of a chunk's delta other than its content."""
    if not isinstance(delta, dict):
        return
    reasoning = delta.get("reasoning_content")
    if isinstance(reasoning, str):
        into.append(reasoning)
    calls = delta.get("tool_calls")
    if isinstance(calls, list):
        for call in calls:
            function = call.get("function") if isinstance(call, dict) else None
            arguments = function.get("arguments") if isinstance(function, dict) else None
            if isinstance(arguments, str):
                into.append(arguments)


class Writer(Protocol):
    """How a surface writes a stream's upstream events for its client.

    `write` tallies a batch of events and returns their frames (b"" for
    none); `tail`, read once the upstream ended, is sent after the stream
    settled (chat's `[DONE]`, the Responses API's final event); `error` is the
    last frame of a stream that failed after it began.
    """

    @property
    def tail(self) -> bytes: ...

    def write(self, events: list[StreamEvent], tally: Tally) -> bytes: ...

    def error(self, exc: ServiceError) -> bytes: ...


class ChatFrames:
    """Chat's frames: each event's `chat.completion.chunk` (the served model, the dual
    `content`, the usage chunk only when asked for, with its cost), then `[DONE]`."""

    __slots__ = ("call", "model", "tail", "wants_usage")

    def __init__(self, call: Call, wants_usage: bool) -> None:
        resolved = call.resolved
        assert resolved is not None
        self.call = call
        self.model = resolved.model
        self.wants_usage = wants_usage
        self.tail = DONE

    def write(self, events: list[StreamEvent], tally: Tally) -> bytes:
        model, wants_usage = self.model, self.wants_usage
        out: list[bytes] = []
        for ev in events:
            tally.add(ev)
            chunk = ev.chunk
            if chunk is None or (ev.usage_only and not wants_usage):
                continue
            chunk["model"] = model
            chunk["content"] = ev.text
            if not wants_usage:
                chunk.pop("usage", None)
            elif ev.usage is not None and isinstance(chunk.get("usage"), dict):
                chunk["usage"]["cost"] = self.call.cost_fields(ev.usage)[0]
            out += (b"data: ", orjson.dumps(chunk), b"\n\n")
        return b"".join(out)

    def error(self, exc: ServiceError) -> bytes:
        return error_frame(exc) + DONE


class Relay:
    """One stream's frames for the client, and its settlement, made exactly once.

    The settlement runs in a task of its own (tracked by the app state, so a
    shutdown waits for it) that the frames' generator awaits through a shield:
    a client that leaves while it runs (the SSE response then cancels the
    generator) cannot interrupt it, and a stream whose generator never ran or
    was dropped is settled as cancelled by `closed()`. The writer's `tail` is
    sent once the settlement committed.
    """

    def __init__(self, call: Call, upstream: UpstreamStream, writer: Writer) -> None:
        self.call = call
        self.upstream = upstream
        self.writer = writer
        self.latency = call.elapsed_ms()
        self.tally = Tally(call.claim is not None, call.state.settings.idempotency_max_bytes)
        self.ttft: int | None = None
        self.settling: asyncio.Task[None] | None = None

    def settle(self, status: str, http_status: int, error: str | None) -> asyncio.Task[None]:
        """Start the settlement (the first call only) and return its task."""
        if self.settling is None:
            work = _settle_stream(
                self.call, self.tally, status, http_status, error, self.latency, self.ttft
            )
            self.settling = self.call.state.spawn(work)
        return self.settling

    def closed(self) -> None:
        """The response is over: settle as cancelled if nothing settled the stream yet."""
        if self.settling is None:
            self.upstream.close()
            self.settle("cancelled", 499, None)

    async def frames(self) -> AsyncIterator[bytes]:
        """The client's SSE frames from the upstream's events; settles before the tail."""
        call, upstream, tally, write = self.call, self.upstream, self.tally, self.writer.write
        failure: ServiceError | None = None
        finished = False
        try:
            async for events in upstream.events():
                frames = write(events, tally)
                if frames:
                    if self.ttft is None:
                        self.ttft = call.elapsed_ms()
                    tally.record(frames)
                    yield frames
            finished = True
        except ServiceError as exc:
            failure = exc
        finally:
            if finished:
                upstream.finish()
            else:
                upstream.close()
                if failure is None:  # the client left (or the task was cancelled)
                    self.settle("cancelled", 499, None)
        if failure is not None:
            await asyncio.shield(self.settle("error", failure.status, failure.message))
            yield self.writer.error(failure)
            return
        tail = self.writer.tail
        tally.record(tail)
        await asyncio.shield(self.settle("ok", 200, None))
        if tail:
            yield tail


async def _settle_stream(
    call: Call,
    tally: Tally,
    status: str,
    http_status: int,
    error: str | None,
    latency: int,
    ttft: int | None,
) -> None:
    """Settle a stream: the reported usage, else the early usage and the delivered output.

    A stream without its final usage is charged what the provider bills for
    it: the prompt (as the provider reported it early, else estimated) and
    the output delivered so far (estimated from its text when the reported
    count is lower), flagged `usage_estimated` when any part is an estimate.
    """
    if tally.fill is not None:
        tally.fill(tally)
    resolved = call.resolved
    assert resolved is not None
    usage, estimated = stream_usage(call, tally)
    estimated = estimated and status != "error"
    priced = call.priced(ledger.Settlement(status=status, http_status=http_status), usage)
    charge = priced.cost
    summary = orjson.dumps(
        {"content": "".join(tally.texts), "finish_reason": tally.finish, "usage": usage.to_openai()}
    ).decode()
    response_text, cut = call.cap(summary)
    answer = b"".join(tally.kept) if tally.keep else None
    await call.settle(
        ledger.Settlement(
            status=status,
            http_status=http_status,
            error=error,
            cost=charge,
            price_detail=priced.price_detail,
            usage_estimated=estimated and charge > 0,
            upstream_latency_ms=latency,
            ttft_ms=ttft,
            response_body=response_text,
            truncated=cut,
        ).add_usage(usage),
        answer=answer,
    )


def stream_usage(call: Call, tally: Tally) -> tuple[Usage, bool]:
    """The usage a stream is charged, and whether it is estimated: the provider's final
    usage, else (a stream that ended before it) its early usage and the output delivered."""
    if tally.usage is not None:
        return tally.usage, False
    output = call.output_tokens(tally.output_text())
    early = tally.early
    if early is None:
        return call.estimated_usage(output), True
    usage = replace(early)
    if output <= usage.output_tokens:
        return usage, False
    usage.output_tokens = output
    return usage, True
