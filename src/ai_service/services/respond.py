"""The answer to the client: a JSON completion, an SSE stream, or an idempotent replay."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
from starlette.responses import Response

from ai_service.api.sse import DONE, SSEResponse, error_frame
from ai_service.billing import ledger
from ai_service.errors import ServiceError
from ai_service.providers.base import ChatResult, StreamEvent, Usage
from ai_service.services.call import Call
from ai_service.services.idempotency import Replay
from ai_service.upstream import UpstreamStream


async def complete(call: Call, result: ChatResult, headers: dict[str, str]) -> Response:
    """Charge a non-streamed answer, then return it (never an uncommitted charge)."""
    resolved = call.resolved
    assert resolved is not None
    latency = call.elapsed_ms()
    completion = result.completion
    completion["model"] = resolved.model
    usage, estimated = result.usage, False
    if usage is None:
        generated = len(orjson.dumps(completion.get("choices")))
        usage, estimated = call.estimated_usage(generated), True
        completion["usage"] = usage.to_openai()
    usd, header = call.cost_fields(usage)
    if isinstance(completion.get("usage"), dict):
        completion["usage"]["cost"] = usd
    headers = {**headers, "X-Request-Cost": header}
    payload = orjson.dumps(completion)
    response_text, cut = call.cap(payload.decode())
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
    return Response(payload, media_type="application/json", headers=headers)


def stream(
    call: Call, upstream: UpstreamStream, wants_usage: bool, headers: dict[str, str]
) -> SSEResponse:
    return SSEResponse(relay(call, upstream, wants_usage), headers)


def replay(stored: Replay) -> Response:
    """Send a stored answer again, uncharged."""
    headers = {"Idempotent-Replayed": "true"}
    if not stored.stream:
        return Response(stored.response, media_type="application/json", headers=headers)

    async def frames() -> AsyncIterator[bytes]:
        yield stored.response

    return SSEResponse(frames(), headers)


class Tally:
    """What a stream delivered: usage, generated characters, text, finish reason."""

    __slots__ = ("finish", "generated", "keep", "kept", "limit", "texts", "usage")

    def __init__(self, keep: bool, limit: int) -> None:
        self.usage: Usage | None = None
        self.generated = 0
        self.texts: list[str] = []
        self.finish: str | None = None
        self.keep = keep
        self.limit = limit
        self.kept: list[bytes] = []

    def add(self, ev: StreamEvent) -> None:
        if ev.usage is not None:
            self.usage = ev.usage
        if ev.text:
            self.texts.append(ev.text)
        self.generated += ev.generated
        chunk = ev.chunk
        if chunk is not None:
            choices = chunk.get("choices")
            if choices:
                reason = choices[0].get("finish_reason")
                if reason:
                    self.finish = reason

    def record(self, frames: bytes) -> None:
        if self.keep:
            self.limit -= len(frames)
            if self.limit < 0:
                self.keep, self.kept = False, []
            else:
                self.kept.append(frames)


async def relay(call: Call, upstream: UpstreamStream, wants_usage: bool) -> AsyncIterator[bytes]:
    """The client's SSE frames from the upstream's events; settles before `[DONE]`."""
    resolved = call.resolved
    assert resolved is not None
    model = resolved.model
    latency = call.elapsed_ms()
    tally = Tally(call.claim is not None, call.state.settings.idempotency_max_bytes)
    ttft: int | None = None
    failure: ServiceError | None = None
    finished = False
    try:
        async for events in upstream.events():
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
                    chunk["usage"]["cost"] = call.cost_fields(ev.usage)[0]
                out += (b"data: ", orjson.dumps(chunk), b"\n\n")
            if out:
                if ttft is None:
                    ttft = call.elapsed_ms()
                frames = b"".join(out)
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
        if not finished and failure is None:
            await _settle_stream(call, tally, "cancelled", 499, None, latency, ttft)
    if failure is not None:
        await _settle_stream(call, tally, "error", failure.status, failure.message, latency, ttft)
        yield error_frame(failure) + DONE
        return
    tally.record(DONE)
    await _settle_stream(call, tally, "ok", 200, None, latency, ttft)
    yield DONE


async def _settle_stream(
    call: Call,
    tally: Tally,
    status: str,
    http_status: int,
    error: str | None,
    latency: int,
    ttft: int | None,
) -> None:
    resolved = call.resolved
    assert resolved is not None
    usage = tally.usage
    estimated = usage is None and status != "error"
    if usage is None:
        usage = call.estimated_usage(tally.generated) if tally.generated else Usage()
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
