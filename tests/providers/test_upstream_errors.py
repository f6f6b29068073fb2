"""The one upstream error map, pinned for every provider through its fake server and a gateway.

Each registered provider's fake answers every status in its own error body;
the gateway must turn each into the same client status, OpenAI error type and
code, pass `Retry-After` on (seconds or HTTP date) on 429, 503 and 529, and
retry exactly the retryable statuses.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from ai_service.providers import REGISTRY
from tests.conftest import UPSTREAM_KEY
from tests.fakes import FLAVOURS, Answer, ErrorReply, FakeServer
from tests.support.gateway import Gateway

MODELS = {
    "openai": "gpt-5.4-mini",
    "claude": "claude-3-5-sonnet-20241022",
    "mistral": "mistral-small-latest",
    "llama": "meta-llama/Llama-3.3-70B-Instruct-Turbo",
    "deepseek": "deepseek-chat",
}
MESSAGE = "the upstream's word on the request"
CODE = "upstream_code"
OWN = "the provider's own code"  # Anthropic's bodies have none


@dataclass(frozen=True)
class Case:
    """An upstream status and what the client must get for it."""

    upstream: int
    status: int
    type: str
    code: str | None
    retried: bool
    retry_after: str | None = None  # the upstream's header; the client gets it in seconds
    client_retry_after: str | None = None
    quotes_message: bool = False


def in_seconds(seconds: int) -> str:
    return format_datetime(datetime.now(UTC) + timedelta(seconds=seconds), usegmt=True)


CASES = [
    Case(400, 400, "invalid_request_error", OWN, False, quotes_message=True),
    Case(401, 502, "upstream_error", "upstream_error", False),
    Case(402, 502, "upstream_error", "upstream_error", False),
    Case(403, 502, "upstream_error", "upstream_error", False),
    Case(404, 404, "invalid_request_error", OWN, False, quotes_message=True),
    Case(413, 413, "invalid_request_error", "request_too_large", False, quotes_message=True),
    Case(422, 422, "invalid_request_error", OWN, False, quotes_message=True),
    Case(429, 429, "rate_limit_error", "rate_limit_exceeded", True, "7", "7"),
    Case(429, 429, "rate_limit_error", "rate_limit_exceeded", True),
    Case(500, 502, "upstream_error", "upstream_error", True),
    Case(501, 502, "upstream_error", "upstream_error", False),
    Case(502, 502, "upstream_error", "upstream_error", True),
    Case(503, 503, "service_unavailable", "upstream_unavailable", True, "5", "5"),
    Case(504, 504, "timeout_error", "upstream_timeout", True),
    Case(529, 503, "service_unavailable", "upstream_unavailable", True, "3", "3"),
]


def test_every_registered_provider_has_a_fake_and_a_model() -> None:
    assert set(FLAVOURS) == set(REGISTRY) == set(MODELS)


@pytest.fixture(scope="module", params=list(REGISTRY))
def upstream(request: pytest.FixtureRequest) -> Iterator[tuple[str, FakeServer]]:
    path: str = request.param
    with FLAVOURS[path](api_key=UPSTREAM_KEY) as fake:
        yield path, fake


def start(factory: Callable[..., Gateway], path: str, fake: FakeServer, retries: int) -> Gateway:
    spec = REGISTRY[path]
    return factory(
        **{spec.key_setting: UPSTREAM_KEY, spec.url_setting: fake.base_url},
        retry_attempts=retries,
        fallbacks={},
    )


def post(gateway: Gateway, path: str, key: str) -> httpx.Response:
    body = {"model": MODELS[path], "messages": [{"role": "user", "content": "hi"}]}
    url = f"{gateway.url}/ai/{path}/chat/completions"
    return httpx.post(url, headers={"X-API-Key": key}, json=body, timeout=30)


def test_each_upstream_status_maps_to_one_client_error(
    gateway_factory: Callable[..., Gateway], upstream: tuple[str, FakeServer]
) -> None:
    path, fake = upstream
    gateway = start(gateway_factory, path, fake, retries=0)
    key = gateway.create_user("alice", "10")
    for case in CASES:
        fake.reset()
        headers = {"Retry-After": case.retry_after} if case.retry_after else {}
        fake.enqueue(ErrorReply(case.upstream, MESSAGE, code=CODE, headers=headers))
        r = post(gateway, path, key)
        seen = (r.status_code, r.json()["error"]["type"], r.json()["error"]["code"])
        code = case.code if case.code != OWN else (None if path == "claude" else CODE)
        assert seen == (case.status, case.type, code), (path, case)
        assert r.headers.get("retry-after") == case.client_retry_after, (path, case)
        message: str = r.json()["error"]["message"]
        assert (MESSAGE in message) is case.quotes_message, (path, case, message)
        assert message.startswith(f"{path}: ") or f"The {path} provider" in message
        assert UPSTREAM_KEY not in r.text
        assert len(fake.requests) == 1
    rows = gateway.requests()
    assert len(rows) == len(CASES)
    assert {row.cost for row in rows} == {0}


@pytest.mark.parametrize("status", [429, 503, 529])
def test_retry_after_as_an_http_date_reaches_the_client_in_seconds(
    gateway_factory: Callable[..., Gateway], upstream: tuple[str, FakeServer], status: int
) -> None:
    path, fake = upstream
    gateway = start(gateway_factory, path, fake, retries=0)
    key = gateway.create_user("alice", "10")
    fake.reset()
    fake.enqueue(ErrorReply(status, headers={"Retry-After": in_seconds(40)}))
    r = post(gateway, path, key)
    assert r.status_code == (429 if status == 429 else 503)
    assert 35 <= int(r.headers["retry-after"]) <= 40


def test_exactly_the_retryable_statuses_are_retried(
    gateway_factory: Callable[..., Gateway], upstream: tuple[str, FakeServer]
) -> None:
    path, fake = upstream
    gateway = start(gateway_factory, path, fake, retries=1)
    key = gateway.create_user("alice", "10")
    for case in CASES:
        fake.reset()
        fake.enqueue(ErrorReply(case.upstream, MESSAGE), Answer())
        r = post(gateway, path, key)
        assert r.status_code == (200 if case.retried else case.status), (path, case)
        assert len(fake.requests) == (2 if case.retried else 1), (path, case)
