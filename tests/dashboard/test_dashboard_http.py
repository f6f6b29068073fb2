"""The dashboard over plain HTTP: its session, its cross-site guard and its filters' errors."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.fakes.openai_flavours import FakeOpenAI
from tests.support.gateway import Gateway

ADMIN_KEY = "dashboard-http-admin-key-0123456789"


@pytest.fixture
def admin_gateway(gateway_factory: Callable[..., Gateway], openai_upstream: FakeOpenAI) -> Gateway:
    return gateway_factory(admin_key=ADMIN_KEY)


@pytest.fixture
def operator(admin_gateway: Gateway) -> Iterator[httpx.Client]:
    """A client signed in to the dashboard, as a browser on its own origin is."""
    with httpx.Client(base_url=admin_gateway.url, timeout=30) as client:
        r = client.post(
            "/ai/admin/login",
            data={"key": ADMIN_KEY, "next": "/ai/admin/"},
            headers={"Origin": admin_gateway.url},
        )
        assert r.status_code == 303, r.text
        assert "ai_service_admin" in client.cookies
        yield client


@pytest.mark.parametrize(
    "query",
    [
        {"until": "9999-12-31"},
        {"since": "9999-12-31"},
        {"since": "0001-01-01"},
        {"until": "2025-02-30"},
    ],
)
def test_request_log_dates_out_of_range_are_400(
    operator: httpx.Client, query: dict[str, str]
) -> None:
    r = operator.get("/ai/admin/requests", params=query)
    assert r.status_code == 400, r.text[:300]
    assert "must be a date" in r.text
    assert "Traceback" not in r.text
