"""Rate limits as operators and clients see them: stored limits, the migration, the 429.

The end-to-end tests at the bottom drive a live gateway; they run once the
request path calls the limiter (`AppState.limiter` and `Principal.limits` exist)
and are skipped until then.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path

import httpx
import pytest
import redis
import sqlalchemy as sa
from alembic import command
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from ai_service.app import service_error
from ai_service.auth import VISIBLE_CHARS, Principal
from ai_service.errors import InvalidRequestError, NotFoundError, ServiceError
from ai_service.ratelimit import Limits, LocalRateLimiter
from ai_service.services import accounts
from ai_service.services.limits import KEEP, get_limits, set_limits
from ai_service.state import AppState
from ai_service.storage.db import alembic_config, make_engine, session_factory, upgrade
from tests.fakes.openai_flavours import FakeOpenAI
from tests.support.databases import PostgresDatabase, backends
from tests.support.gateway import Gateway

REDIS_URL = os.environ.get("AI_SERVICE_TEST_REDIS", "redis://127.0.0.1:6379/0")
CHAT = "/ai/openai/chat/completions"
BODY = {"model": "gpt-5.4-mini", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
async def session(db_url: str) -> AsyncIterator[AsyncSession]:
    engine = make_engine(db_url)
    try:
        async with session_factory(engine)() as s:
            yield s
    finally:
        await engine.dispose()


# ---- the operator's surface -----------------------------------------------------------------


async def test_set_limits_on_a_user_and_a_key(session: AsyncSession) -> None:
    key = await accounts.create_user(session, "alice")
    user = await set_limits(session, user="alice", rpm=60, tpm=100_000)
    assert user.view() == {"scope": "user", "name": "alice", "rpm": 60, "tpm": 100_000}
    stored = await set_limits(session, key_prefix=key.prefix, rpm=5)
    assert (stored.scope, stored.name, stored.rpm, stored.tpm) == ("key", key.prefix, 5, None)
    assert await get_limits(session, user="alice") == user
    assert await get_limits(session, key_prefix=key.prefix) == stored


async def test_keep_leaves_a_limit_none_clears_it_zero_is_unlimited(
    session: AsyncSession,
) -> None:
    await accounts.create_user(session, "bob")
    await set_limits(session, user="bob", rpm=10, tpm=500)
    kept = await set_limits(session, user="bob", rpm=KEEP, tpm=None)
    assert (kept.rpm, kept.tpm) == (10, None)
    zero = await set_limits(session, user="bob", rpm=0)
    assert (zero.rpm, zero.tpm) == (0, None)
    session.expunge_all()
    again = await get_limits(session, user="bob")
    assert (again.rpm, again.tpm) == (0, None)


@pytest.mark.parametrize(
    ("target", "values", "error"),
    [
        ({"user": "carol"}, {"rpm": -1}, InvalidRequestError),
        ({"user": "carol"}, {"tpm": 2**31}, InvalidRequestError),
        ({"user": "carol"}, {"rpm": True}, InvalidRequestError),
        ({"user": "carol", "key_prefix": "ais-x"}, {"rpm": 1}, InvalidRequestError),
        ({}, {"rpm": 1}, InvalidRequestError),
        ({"user": "nobody"}, {"rpm": 1}, NotFoundError),
        ({"key_prefix": "ais-nothing"}, {"rpm": 1}, NotFoundError),
    ],
)
async def test_set_limits_refuses_bad_input(
    session: AsyncSession,
    target: dict[str, str],
    values: dict[str, int],
    error: type[ServiceError],
) -> None:
    await accounts.create_user(session, "carol")
    with pytest.raises(error):
        await set_limits(session, **target, **values)  # type: ignore[arg-type]
    unchanged = await get_limits(session, user="carol")
    assert (unchanged.rpm, unchanged.tpm) == (None, None)


# ---- the migration ------------------------------------------------------------------------


def _limit_columns(url: str) -> dict[str, set[str]]:
    async def inspect() -> dict[str, set[str]]:
        engine = make_engine(url)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(
                    lambda sync: {
                        table: {c["name"] for c in sa.inspect(sync).get_columns(table)}
                        & {"rpm_limit", "tpm_limit"}
                        for table in ("api_users", "api_keys")
                    }
                )
        finally:
            await engine.dispose()

    return asyncio.run(inspect())


@pytest.mark.parametrize("backend", backends())
def test_migration_adds_and_drops_the_limit_columns(backend: str, tmp_path: Path) -> None:
    database = PostgresDatabase() if backend == "postgresql" else None
    url = database.url if database is not None else f"sqlite:///{tmp_path / 'migrate.db'}"
    try:
        upgrade(url)
        both = {"rpm_limit", "tpm_limit"}
        assert _limit_columns(url) == {"api_users": both, "api_keys": both}
        command.downgrade(alembic_config(url), "0001_initial")
        assert _limit_columns(url) == {"api_users": set(), "api_keys": set()}
        upgrade(url)
        assert _limit_columns(url) == {"api_users": both, "api_keys": both}
    finally:
        if database is not None:
            database.drop()


# ---- the 429 a client receives ------------------------------------------------------------


async def test_429_carries_retry_after_and_the_openai_error_body() -> None:
    limiter = LocalRateLimiter(default_rpm=2)
    principal = Principal(key_id=1, user_id=1, user_name="alice", key_prefix="ais-alice")
    app = FastAPI()
    app.add_exception_handler(ServiceError, service_error)

    @app.post("/chat")
    async def chat() -> dict[str, bool]:
        await limiter.admit(principal, Limits(), 10)
        return {"ok": True}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        assert [(await client.post("/chat")).status_code for _ in range(2)] == [200, 200]
        r = await client.post("/chat")
    assert r.status_code == 429
    assert r.headers["retry-after"] == "30"
    assert r.json() == {
        "error": {
            "message": "Rate limit reached for requests per minute (RPM) on this account: "
            "limit 2. Please try again in 30.0s.",
            "type": "rate_limit_error",
            "param": None,
            "code": "rate_limit_exceeded",
        }
    }


# ---- end to end, once the request path calls the limiter -----------------------------------


def _integrated() -> bool:
    return "limiter" in AppState.__dataclass_fields__ and "limits" in Principal.__dataclass_fields__


e2e = pytest.mark.skipif(
    not _integrated(), reason="the request path does not call the rate limiter yet"
)


@pytest.fixture
def limited_gateway(
    gateway_factory: Callable[..., Gateway], openai_upstream: FakeOpenAI
) -> Callable[..., Gateway]:
    def make(**settings: object) -> Gateway:
        return gateway_factory(
            openai_api_key="sk-upstream-test-0123456789",
            openai_base_url=openai_upstream.base_url,
            **settings,
        )

    return make


def _post(gw: Gateway, key: str, body: Mapping[str, object] | None = None) -> httpx.Response:
    return httpx.post(gw.url + CHAT, headers={"X-API-Key": key}, json=body or BODY, timeout=30)


@e2e
def test_gateway_refuses_past_the_default_rpm_without_calling_upstream(
    limited_gateway: Callable[..., Gateway], openai_upstream: FakeOpenAI
) -> None:
    gw = limited_gateway(default_rpm=2)
    key = gw.create_user("alice", "10")
    assert [_post(gw, key).status_code for _ in range(2)] == [200, 200]
    r = _post(gw, key)
    assert r.status_code == 429
    assert r.headers["retry-after"] == "30"
    assert r.json()["error"]["code"] == "rate_limit_exceeded"
    assert "requests per minute (RPM) on this account" in r.json()["error"]["message"]
    assert len(openai_upstream.requests) == 2
    gw.wait_settled()
    assert [row.http_status for row in gw.requests()] == [200, 200, 429]
    assert gw.reconcile() == []


@e2e
def test_operator_key_limit_applies_and_clears(limited_gateway: Callable[..., Gateway]) -> None:
    gw = limited_gateway()
    key = gw.create_user("bob", "10")
    prefix = key[:VISIBLE_CHARS]
    gw.session(lambda s: set_limits(s, key_prefix=prefix, rpm=1))
    assert _post(gw, key).status_code == 200
    r = _post(gw, key)
    assert r.status_code == 429 and "on this API key" in r.json()["error"]["message"]
    gw.session(lambda s: set_limits(s, key_prefix=prefix, rpm=None))
    assert _post(gw, key).status_code == 200


@e2e
def test_unused_tokens_are_refunded_after_each_request(
    limited_gateway: Callable[..., Gateway], openai_upstream: FakeOpenAI
) -> None:
    gw = limited_gateway()
    key = gw.create_user("carol", "10")
    gw.session(lambda s: set_limits(s, user="carol", tpm=1000))
    body = {**BODY, "max_completion_tokens": 400}
    # each request is admitted with ~420 tokens and uses a few dozen: without the refund
    # the third would be refused
    statuses = []
    for i in range(6):
        statuses.append(_post(gw, key, {**body, "stream": i % 2 == 1}).status_code)
        gw.wait_settled()  # a stream settles just after its last byte
    assert statuses == [200] * 6
    assert len(openai_upstream.requests) == 6


@e2e
def test_output_limit_is_lowered_to_the_tpm_limit(
    limited_gateway: Callable[..., Gateway], openai_upstream: FakeOpenAI
) -> None:
    gw = limited_gateway(default_tpm=500)
    key = gw.create_user("dave", "10")
    assert _post(gw, key).status_code == 200  # the catalog's 128k output limit would not fit
    sent = openai_upstream.requests[-1].body["max_completion_tokens"]
    assert 0 < sent < 500
    big = {**BODY, "messages": [{"role": "user", "content": "x" * 600}]}
    r = _post(gw, key, big)
    assert r.status_code == 429
    assert r.json()["error"]["message"].startswith("Request too large")
    assert "retry-after" not in r.headers
    assert len(openai_upstream.requests) == 1


@e2e
def test_two_gateways_share_one_limit_through_redis(
    limited_gateway: Callable[..., Gateway], openai_upstream: FakeOpenAI
) -> None:
    prefix = f"test-rl:{uuid.uuid4().hex}:"
    settings = {"redis_url": REDIS_URL, "rate_limit_prefix": prefix, "default_rpm": 3}
    first, second = limited_gateway(**settings), limited_gateway(**settings)
    key = first.create_user("erin", "10")
    try:
        statuses = [_post((first, second)[i % 2], key).status_code for i in range(6)]
        assert statuses == [200, 200, 200, 429, 429, 429]
        assert len(openai_upstream.requests) == 3
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=prefix + "*"))
        if keys:
            client.delete(*keys)
        client.close()


@e2e
def test_gateway_keeps_serving_and_limiting_when_redis_is_down(
    limited_gateway: Callable[..., Gateway],
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        unused = sock.getsockname()[1]
    gw = limited_gateway(redis_url=f"redis://127.0.0.1:{unused}/0", default_rpm=1)
    key = gw.create_user("frank", "10")
    assert _post(gw, key).status_code == 200
    assert _post(gw, key).status_code == 429
