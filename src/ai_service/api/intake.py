"""What every surface's route does before its service: the path's provider, the caller's
key, the request ids and the body (a body over the limit is refused, logged and free)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Request

from ai_service.api.deps import client_request_id, get_state, request_id
from ai_service.auth import key_from_headers
from ai_service.errors import NotFoundError, PayloadTooLargeError
from ai_service.providers import PATHS
from ai_service.services.answers import Result
from ai_service.services.call import Arrival, Call, refuse


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 once it passes `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(f"The request body is larger than {limit} bytes.")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"The request body is larger than {limit} bytes.")
        chunks.append(chunk)
    return b"".join(chunks)


def provider_of(path: str) -> str:
    """The provider a path segment reaches. Raises `NotFoundError` for an unknown one."""
    target = PATHS.get(path)
    if target is None:
        raise NotFoundError(
            f"Unknown provider path '/ai/{path}/'; use one of: {', '.join(sorted(PATHS))}."
        )
    return target


# a surface's service: what arrived -> its answer
Service = Callable[[Arrival], Awaitable[Result]]


async def intake(request: Request, path: str, surface: str = "chat") -> Arrival:
    """Authenticate the caller and read the body of a request to the provider path `path`
    (a body over the limit is logged under the API `surface`)."""
    provider = provider_of(path)
    state = get_state(request)
    headers = request.headers
    secret = key_from_headers(headers.get("x-api-key"), headers.get("authorization"))
    principal = await state.keys.authenticate(secret)
    assert secret is not None
    ids = request_id(request), client_request_id(request)
    try:
        raw = await read_body(request, state.settings.max_body_bytes)
    except PayloadTooLargeError as exc:
        call = Call.start(
            state, principal, provider, ids[0], client_request_id=ids[1], surface=surface
        )
        raise await refuse(call, exc) from None
    return Arrival(
        state,
        principal,
        secret,
        provider,
        raw,
        ids[0],
        ids[1],
        headers.get("idempotency-key"),
        state.tracing.arrival(headers) if state.tracing is not None else None,
    )


async def served(request: Request, path: str, service: Service, surface: str = "chat") -> Result:
    """Take in a request to the provider path `path` and have `service` answer it; with
    tracing on, an error that ended it before any settlement also ends its span."""
    arrival = await intake(request, path, surface)
    trace = arrival.trace
    if trace is None:
        return await service(arrival)
    try:
        return await service(arrival)
    except BaseException as exc:
        trace.abort(exc)
        raise
