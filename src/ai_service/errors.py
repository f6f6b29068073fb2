"""The error hierarchy and the one table of HTTP status, OpenAI `type` and `code`.

Every error the gateway returns to a client is a `ServiceError`, rendered by
`to_openai_error()` as `{"error": {"message", "type", "param", "code"}}`.

    ServiceError
    ├── InvalidRequestError          400 invalid_request_error
    │   ├── PayloadTooLargeError     413 invalid_request_error / request_too_large
    │   └── IdempotencyConflictError 409 invalid_request_error / idempotency_key_reused
    ├── AuthenticationError          401 authentication_error / invalid_api_key
    ├── PermissionDeniedError        403 permission_error
    ├── InsufficientQuotaError       402 insufficient_quota
    ├── NotFoundError                404 not_found_error
    ├── RateLimitError               429 rate_limit_exceeded (Retry-After)
    ├── UpstreamError                502 upstream_error
    │   ├── UpstreamStatusError      the upstream's own 4xx, passed on with its status
    │   ├── UpstreamUnavailableError 503 (upstream overloaded, provider not configured)
    │   └── UpstreamTimeoutError     504 timeout
    └── ServiceUnavailableError      503 service_unavailable (database down, shutting down)

Upstream bodies, keys and tracebacks never reach a client-facing message.
"""

from __future__ import annotations

from typing import Any, ClassVar

import orjson


class ServiceError(Exception):
    """Base of every error that becomes an OpenAI-style error response."""

    status_code: ClassVar[int] = 500
    type: ClassVar[str] = "server_error"
    code: ClassVar[str | None] = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status_code: int | None = None,
        retry_after: float | None = None,
        retryable: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.error_code = code if code is not None else self.code
        self.status = status_code if status_code is not None else self.status_code
        self.retry_after = retry_after
        self.retryable = retryable
        # the HTTP status of the upstream answer this error maps, where it maps one
        self.upstream_status: int | None = None

    def body(self) -> dict[str, Any]:
        """The OpenAI error envelope."""
        return to_openai_error(self.message, self.type, self.param, self.error_code)

    def headers(self) -> dict[str, str]:
        if self.retry_after is None:
            return {}
        return {"Retry-After": str(max(1, round(self.retry_after)))}


class InvalidRequestError(ServiceError):
    status_code = 400
    type = "invalid_request_error"


class PayloadTooLargeError(InvalidRequestError):
    status_code = 413
    code = "request_too_large"


class IdempotencyConflictError(InvalidRequestError):
    status_code = 409
    code = "idempotency_key_reused"


class AuthenticationError(ServiceError):
    status_code = 401
    type = "authentication_error"
    code = "invalid_api_key"


class PermissionDeniedError(ServiceError):
    status_code = 403
    type = "permission_error"


class InsufficientQuotaError(ServiceError):
    status_code = 402
    type = "insufficient_quota"
    code = "insufficient_quota"


class NotFoundError(ServiceError):
    status_code = 404
    type = "not_found_error"
    code = "not_found"


class RateLimitError(ServiceError):
    status_code = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class UpstreamError(ServiceError):
    status_code = 502
    type = "upstream_error"
    code: ClassVar[str | None] = "upstream_error"


class UpstreamStatusError(UpstreamError):
    """An upstream 4xx passed on to the client with its status and message."""

    type = "invalid_request_error"
    code: ClassVar[str | None] = None


class UpstreamUnavailableError(UpstreamError):
    status_code = 503
    type = "service_unavailable"
    code = "upstream_unavailable"


class UpstreamTimeoutError(UpstreamError):
    status_code = 504
    type = "timeout_error"
    code = "upstream_timeout"


class ServiceUnavailableError(ServiceError):
    status_code = 503
    type = "service_unavailable"
    code = "service_unavailable"


def to_openai_error(
    message: str, type_: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """Build the `{"error": {...}}` body every error response carries."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def error_json(exc: ServiceError) -> bytes:
    return orjson.dumps(exc.body())
