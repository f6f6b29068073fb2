"""A key's expiry: after it, 401 saying the key expired, on every instance, cached or not."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable

import anthropic
import httpx
import openai
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from ai_service.storage.models import ApiKey
from tests.conftest import UPSTREAM_KEY
from tests.fakes.openai_flavours import FakeOpenAI
from tests.support.gateway import Gateway

CHAT = "/ai/openai/chat/completions"
BODY = {"model": "gpt-5.4-mini", "messages": [{"role": "user", "content": "hi"}]}


def chat(gw: Gateway, key: str) -> httpx.Response:
    return httpx.post(gw.url + CHAT, headers={"X-API-Key": key}, json=BODY, timeout=30)


def expire_now(gw: Gateway, key: str, seconds_ago: float = 1.0) -> None:
    """Backdate a key's expiry in the database (an operator cannot set a past one)."""
    moment = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds_ago)

    async def work(session: AsyncSession) -> None:
        changed = update(ApiKey).where(ApiKey.prefix == key[:12]).values(expires_at=moment)
        assert (await session.execute(changed)).rowcount == 1
        await session.commit()

    gw.session(work)


def assert_expired(r: httpx.Response) -> None:
    assert r.status_code == 401, r.text
    error = r.json()["error"]
    assert (error["type"], error["code"]) == ("authentication_error", "key_expired")
    assert "expired at" in error["message"] and "Invalid API key" not in error["message"]


def test_an_expired_key_is_401_saying_so_on_every_route(
    gateway: Gateway, openai_upstream: FakeOpenAI
) -> None:
    key = gateway.create_user("alice", "10")
    expire_now(gateway, key)
    before = gateway.balance("alice")
    assert_expired(chat(gateway, key))
    for path in ("/ai/account", "/ai/key", "/ai/usage", "/ai/openai/models"):
        assert_expired(httpx.get(gateway.url + path, headers={"X-API-Key": key}, timeout=30))
    client = openai.OpenAI(base_url=gateway.url + "/ai/openai", api_key=key, max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        client.responses.create(model="gpt-5.4-mini", input="hi")
    assert caught.value.code == "key_expired"
    claude = anthropic.Anthropic(base_url=gateway.url + "/ai/claude", api_key=key, max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as raised:
        claude.messages.create(
            model="claude-3-5-sonnet-20241022",
            max_tokens=16,
            messages=[{"role": "user", "content": "hi"}],
        )
    assert "expired at" in str(raised.value)
    assert openai_upstream.requests == []
    assert gateway.balance("alice") == before
    assert gateway.requests() == []


def test_a_cached_key_expires_on_time_on_every_instance(
    gateway_factory: Callable[..., Gateway], openai_upstream: FakeOpenAI
) -> None:
    settings = {
        "openai_api_key": UPSTREAM_KEY,
        "openai_base_url": openai_upstream.base_url,
        "key_cache_seconds": 60,  # far longer than the test: the cache never refreshes
    }
    first, second = gateway_factory(**settings), gateway_factory(**settings)
    key = first.create_user("alice", "10")
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2)
    first.set_key_policy(key, expires=expires.isoformat())
    for gw in (first, second):
        assert chat(gw, key).status_code == 200  # now cached, with its expiry
    time.sleep(max(0.0, (expires - dt.datetime.now(dt.UTC)).total_seconds()) + 0.05)
    for gw in (first, second):
        assert_expired(chat(gw, key))
    # another key of the same user, without an expiry, still works
    other = first.create_key("alice")
    assert chat(second, other).status_code == 200


def test_an_expiry_ahead_lets_the_key_work(gateway: Gateway) -> None:
    key = gateway.create_user("alice", "10")
    ahead = (dt.datetime.now(dt.UTC) + dt.timedelta(days=30)).replace(microsecond=0)
    gateway.set_key_policy(key, expires=ahead.isoformat())
    assert chat(gateway, key).status_code == 200
    shown = httpx.get(gateway.url + "/ai/key", headers={"X-API-Key": key}, timeout=30).json()
    assert shown["data"]["expires_at"] == ahead.isoformat()
