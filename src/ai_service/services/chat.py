"""One chat completion through the gateway: validate, reserve, forward, answer, settle.

The order is the contract of DESIGN §8: nothing reaches the upstream before
the worst-case cost is reserved against the balance, and every request that
got that far is settled exactly once, in one transaction, whether it ended
well, failed upstream, or was cancelled by a client that went away.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.responses import Response

from ai_service.api.sse import DONE, SSEResponse, error_frame
from ai_service.auth import Principal
from ai_service.billing import ledger
from ai_service.billing.catalog import Resolved
from ai_service.billing.estimate import estimate_output_tokens, prompt_upper_bound
from ai_service.billing.money import ceil_div
from ai_service.billing.pricing import affordable_output, cost, worst_case
from ai_service.config import PROVIDER_ENV
from ai_service.errors import (
    InsufficientQuotaError,
    InvalidRequestError,
    ServiceError,
    UpstreamUnavailableError,
)
from ai_service.providers.base import ChatRequest, StreamEvent, Usage
from ai_service.schemas import include_usage, parse_body, validate_chat
from ai_service.state import AppState
from ai_service.upstream import UpstreamStream

log = logging.getLogger("ai_service.request")


@dataclass(slots=True)
class Call:
    """What the gateway knows about one request while it runs."""

    state: AppState
    principal: Principal
    provider: str
    request_id: str
    started: float
    request_text: str
    resolved: Resolved | None = None
    reserved: int = 0
    prompt_bound: int = 0
    stream: bool = False

    @classmethod
    def start(
        cls, state: AppState, principal: Principal, provider: str, request_id: str, text: str = ""
    ) -> Call:
        return cls(state, principal, provider, request_id, time.perf_counter(), text)

    def row(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "user_id": self.principal.user_id,
            "key_id": self.principal.key_id,
            "provider": self.provider,
            "requested_model": self.resolved.requested if self.resolved else None,
            "model": self.resolved.model if self.resolved else None,
            "stream": self.stream,
            "default_price": self.resolved.default_price if self.resolved else False,
            "instance_id": self.state.instance_id,
        }

    def elapsed_ms(self) -> int:
        return int((time.perf_counter() - self.started) * 1000)

    def cap(self, text: str) -> tuple[str, bool]:
        limit = self.state.settings.payload_max_bytes
        if len(text) <= limit:
            return text, False
        return text[:limit], True


def redact(raw: bytes, secret: str) -> str:
    text = raw.decode("utf-8", errors="replace")
    return text.replace(secret, "[redacted]") if secret in text else text


async def refuse(call: Call, exc: ServiceError) -> ServiceError:
    """Log a request refused before any reservation (cost 0) and return the error to raise."""
    text, truncated = call.cap(call.request_text)
    await ledger.log_unreserved(
        call.state.engine,
        call.row(),
        ledger.Settlement(
            status="error",
            http_status=exc.status,
            error=exc.message,
            duration_ms=call.elapsed_ms(),
            request_body=text,
            truncated=truncated,
        ),
    )
    log.info(
        "request refused",
        extra={"request_id": call.request_id, "status": exc.status, "provider": call.provider},
    )
    return exc


async def chat(
    state: AppState,
    principal: Principal,
    secret: str,
    provider: str,
    raw: bytes,
    request_id: str,
    headers: dict[str, str],
) -> Response | SSEResponse:
    """Serve one chat completion. Raises `ServiceError` before any byte is sent."""
    call = Call.start(state, principal, provider, request_id, redact(raw, secret))
    settings = state.settings
    try:
        body = parse_body(raw)
        requested, call.stream, client_limit = validate_chat(body, settings.max_messages)
    except InvalidRequestError as exc:
        raise await refuse(call, exc) from None
    catalog = await state.catalog.get()
    call.resolved = resolved = catalog.resolve(provider, requested)
    adapter = state.adapters.get(provider)
    if adapter is None:
        variable = PROVIDER_ENV[provider][0]
        raise await refuse(
            call,
            UpstreamUnavailableError(
                f"The {provider} provider is not configured on this gateway: "
                f"its operator must set {variable}."
            ),
        )
    price = resolved.price
    limit = client_limit or price.max_output
    call.prompt_bound = prompt_upper_bound(
        body,
        message_allowance=settings.message_token_allowance,
        image_allowance=settings.image_token_allowance,
    )
    limit = await reserve(call, limit)
    req = ChatRequest(body=body, model=resolved.model, stream=call.stream, max_output_tokens=limit)
    extra = {
        "X-Request-ID": headers.get("x-request-id", request_id),
        "X-Served-Model": resolved.model,
    }
    if not call.stream:
        return await complete(call, req, extra)
    try:
        upstream = await state.upstream.open_stream(adapter, req)
    except ServiceError as exc:
        await settle(
            call, ledger.Settlement(status="error", http_status=exc.status, error=exc.message)
        )
        raise
    except BaseException:
        await settle(call, ledger.Settlement(status="cancelled", http_status=499))
        raise
    latency = int((time.perf_counter() - call.started) * 1000)
    return SSEResponse(relay(call, upstream, include_usage(body), latency), extra)


async def reserve(call: Call, limit: int) -> int:
    """Reserve the worst case, lowering the output limit to what the balance can pay.

    Returns the output limit to send upstream. Raises `InsufficientQuotaError`.
    """
    state, price = call.state, call.resolved.price  # type: ignore[union-attr]  # set by chat()
    minimum = state.settings.min_output_tokens
    amount = worst_case(call.prompt_bound, limit, price)
    user_id = call.principal.user_id
    for _ in range(4):
        async with state.engine.begin() as conn:
            if await ledger.reserve(conn, user_id, amount):
                await ledger.open_request(conn, {**call.row(), "reserved": amount})
                call.reserved = amount
                return limit
            balance = await ledger.available(conn, user_id)
        affordable = affordable_output(balance, call.prompt_bound, price)
        if affordable < min(minimum, limit):
            break
        limit = min(limit, affordable)
        amount = worst_case(call.prompt_bound, limit, price)
    raise await refuse(
        call,
        InsufficientQuotaError(
            "Insufficient balance: the account cannot pay for this prompt and a minimal answer. "
            "Top up the balance, or send a shorter prompt."
        ),
    )


def estimated_usage(call: Call, generated_chars: int) -> Usage:
    """A flagged estimate for an answer whose usage never arrived."""
    return Usage(
        input_tokens=ceil_div(call.prompt_bound, 4),
        output_tokens=estimate_output_tokens(generated_chars),
    )


async def settle(call: Call, s: ledger.Settlement) -> None:
    """Settle in a task of its own, so a cancelled caller cannot interrupt it."""
    s.duration_ms = call.elapsed_ms()
    if s.model is None and call.resolved is not None:
        s.model = call.resolved.model
    if s.request_body is None:
        s.request_body, s.truncated = call.cap(call.request_text)
    task = call.state.spawn(
        ledger.settle(call.state.engine, call.request_id, call.principal.user_id, call.reserved, s)
    )
    await asyncio.shield(task)
    log.info(
        "request settled",
        extra={
            "request_id": call.request_id,
            "provider": call.provider,
            "model": s.model,
            "status": s.status,
            "http_status": s.http_status,
            "cost_nano": s.cost,
            "duration_ms": s.duration_ms,
        },
    )


async def complete(call: Call, req: ChatRequest, headers: dict[str, str]) -> Response:
    state = call.state
    adapter = state.adapters[call.provider]
    resolved = call.resolved
    assert resolved is not None
    try:
        result = await state.upstream.complete(adapter, req)
    except ServiceError as exc:
        await settle(
            call, ledger.Settlement(status="error", http_status=exc.status, error=exc.message)
        )
        raise
    except BaseException:
        await settle(call, ledger.Settlement(status="cancelled", http_status=499))
        raise
    latency = call.elapsed_ms()
    completion = result.completion
    completion["model"] = resolved.model
    usage, estimated = result.usage, False
    if usage is None:
        usage, estimated = estimated_usage(call, len(orjson.dumps(completion.get("choices")))), True
        completion["usage"] = usage.to_openai()
    payload = orjson.dumps(completion)
    response_text, cut = call.cap(payload.decode())
    request_text, cut_request = call.cap(call.request_text)
    await settle(
        call,
        ledger.Settlement(
            status="ok",
            http_status=200,
            cost=cost(usage, resolved.price),
            usage_estimated=estimated,
            upstream_latency_ms=latency,
            request_body=request_text,
            response_body=response_text,
            truncated=cut or cut_request,
        ).add_usage(usage),
    )
    return Response(payload, media_type="application/json", headers=headers)


async def relay(
    call: Call, upstream: UpstreamStream, wants_usage: bool, latency: int
) -> AsyncIterator[bytes]:
    """The client's SSE frames from the upstream's events; settles in `finally`."""
    resolved = call.resolved
    assert resolved is not None
    model = resolved.model
    usage: Usage | None = None
    generated = 0
    texts: list[str] = []
    finish: str | None = None
    ttft: int | None = None
    status, http_status, error = "cancelled", 499, None
    try:
        async for events in upstream.events():
            out: list[bytes] = []
            for ev in events:
                usage, generated, finish = _account(ev, usage, generated, finish, texts)
                chunk = ev.chunk
                if chunk is None or (ev.usage_only and not wants_usage):
                    continue
                chunk["model"] = model
                chunk["content"] = ev.text
                if not wants_usage:
                    chunk.pop("usage", None)
                out.append(b"data: " + orjson.dumps(chunk) + b"\n\n")
            if out:
                if ttft is None:
                    ttft = call.elapsed_ms()
                yield b"".join(out)
        status, http_status = "ok", 200
        yield DONE
    except ServiceError as exc:
        status, http_status, error = "error", exc.status, exc.message
        yield error_frame(exc) + DONE
    finally:
        upstream.close()
        estimated = usage is None and status != "error"
        if usage is None:
            usage = estimated_usage(call, generated) if generated else Usage()
        charge = 0 if status == "error" else cost(usage, resolved.price)
        summary = orjson.dumps(
            {"content": "".join(texts), "finish_reason": finish, "usage": usage.to_openai()}
        ).decode()
        response_text, cut = call.cap(summary)
        await settle(
            call,
            ledger.Settlement(
                status=status,
                http_status=http_status,
                error=error,
                cost=charge,
                usage_estimated=estimated and charge > 0,
                upstream_latency_ms=latency,
                ttft_ms=ttft,
                response_body=response_text,
                truncated=cut,
            ).add_usage(usage),
        )


def _account(
    ev: StreamEvent, usage: Usage | None, generated: int, finish: str | None, texts: list[str]
) -> tuple[Usage | None, int, str | None]:
    if ev.usage is not None:
        usage = ev.usage
    if ev.text:
        texts.append(ev.text)
    chunk = ev.chunk
    if chunk is not None:
        choices = chunk.get("choices")
        if choices:
            reason = choices[0].get("finish_reason")
            if reason:
                finish = reason
    return usage, generated + ev.generated, finish
