"""Fixtures of the admin API tests: a gateway with an admin key and a client for it."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.conftest import UPSTREAM_KEY
from tests.fakes.openai_flavours import FakeOpenAI
from tests.support.gateway import Gateway

ADMIN_KEY = "test-admin-key-0123456789abcdef"
CHAT = "/ai/openai/chat/completions"


@pytest.fixture
def admin_gateway(gateway_factory: Callable[..., Gateway], openai_upstream: FakeOpenAI) -> Gateway:
    return gateway_factory(
        admin_key=ADMIN_KEY,
        openai_api_key=UPSTREAM_KEY,
        openai_base_url=openai_upstream.base_url,
    )


@pytest.fixture
def admin(admin_gateway: Gateway) -> Iterator[httpx.Client]:
    """An HTTP client that sends the admin key."""
    with httpx.Client(
        base_url=admin_gateway.url + "/ai/admin/api",
        headers={"X-Admin-Key": ADMIN_KEY},
        timeout=30,
    ) as client:
        yield client


def chat(gw: Gateway, key: str, content: str = "hi", model: str = "gpt-5.4-mini") -> httpx.Response:
    return httpx.post(
        gw.url + CHAT,
        headers={"X-API-Key": key},
        json={"model": model, "messages": [{"role": "user", "content": content}]},
        timeout=30,
    )


def assert_error(r: httpx.Response, status: int, type_: str, param: str | None = None) -> None:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == type_
    if param is not None:
        assert error["param"] == param
