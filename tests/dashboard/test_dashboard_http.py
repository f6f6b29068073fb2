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


def test_form_posts_need_the_dashboards_own_origin(
    admin_gateway: Gateway, operator: httpx.Client
) -> None:
    admin_gateway.create_user("alice", "1")
    url = admin_gateway.url
    scheme_swapped = url.replace("http://", "https://")
    for origin in (None, scheme_swapped, "http://evil.example", "null"):
        headers = {} if origin is None else {"Origin": origin}
        r = operator.post("/ai/admin/users/alice/topup", data={"amount": "5"}, headers=headers)
        assert r.status_code == 403, (origin, r.status_code)
        assert "Cross-site" in r.text
    assert admin_gateway.balance("alice") == (1_000_000_000, 0)
    r = operator.post("/ai/admin/users/alice/topup", data={"amount": "5"}, headers={"Origin": url})
    assert r.status_code == 303
    assert admin_gateway.balance("alice") == (6_000_000_000, 0)


def test_signing_in_needs_the_dashboards_own_origin(admin_gateway: Gateway) -> None:
    for headers in ({}, {"Origin": admin_gateway.url.replace("http://", "https://")}):
        r = httpx.post(
            admin_gateway.url + "/ai/admin/login", data={"key": ADMIN_KEY}, headers=headers
        )
        assert r.status_code == 403
        assert "set-cookie" not in r.headers


def test_signing_out_ends_the_session_on_the_server(
    admin_gateway: Gateway, operator: httpx.Client
) -> None:
    stolen = operator.cookies["ai_service_admin"]
    with httpx.Client(base_url=admin_gateway.url, timeout=30) as other:
        r = other.post(
            "/ai/admin/login", data={"key": ADMIN_KEY}, headers={"Origin": admin_gateway.url}
        )
        assert r.status_code == 303
        assert operator.get("/ai/admin/users").status_code == 200
        r = operator.post("/ai/admin/logout", headers={"Origin": admin_gateway.url})
        assert r.status_code == 303
        # the cookie's value, replayed after the sign-out, no longer opens anything
        with httpx.Client(base_url=admin_gateway.url, timeout=30) as replay:
            replay.cookies.set("ai_service_admin", stolen, path="/ai/admin")
            r = replay.get("/ai/admin/users")
            assert r.status_code == 303
            assert r.headers["location"].startswith("/ai/admin/login")
            r = replay.post(
                "/ai/admin/users", data={"name": "mallory"}, headers={"Origin": admin_gateway.url}
            )
            assert r.status_code == 303 and "/login" in r.headers["location"]
        # another session is its own: it is still signed in
        assert other.get("/ai/admin/users").status_code == 200
