"""Every admin route needs the admin key; with no admin key configured the API is closed."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from tests.admin.conftest import ADMIN_KEY, assert_error
from tests.support.gateway import Gateway

ROUTES: list[tuple[str, str, dict | None]] = [
    ("POST", "/users", {"name": "mallory", "balance_usd": "5"}),
    ("GET", "/users", None),
    ("GET", "/users/alice", None),
    ("POST", "/users/alice/topup", {"amount_usd": "5"}),
    ("POST", "/users/alice/disable", None),
    ("POST", "/users/alice/enable", None),
    ("POST", "/users/alice/keys", {"name": "x"}),
    ("GET", "/keys", None),
    ("POST", "/keys/ais-whatever/revoke", None),
    ("GET", "/models", None),
    ("PUT", "/models", {"provider": "openai", "model": "m", "input": "1", "output": "2"}),
    ("PUT", "/aliases", {"provider": "openai", "alias": "a", "target": "b"}),
    ("DELETE", "/aliases?provider=openai&alias=gpt-4o", None),
    ("GET", "/requests", None),
    ("GET", "/requests/req_x", None),
    ("GET", "/usage/summary", None),
    ("GET", "/usage/daily", None),
]


def send(gw: Gateway, method: str, path: str, body: dict | None, headers: dict) -> httpx.Response:
    return httpx.request(
        method, gw.url + "/ai/admin/api" + path, json=body, headers=headers, timeout=30
    )


def test_every_route_refuses_a_missing_or_wrong_admin_key(admin_gateway: Gateway) -> None:
    alice = admin_gateway.create_user("alice", "10")
    for method, path, body in ROUTES:
        for headers in (
            {},
            {"X-Admin-Key": "wrong-admin-key-0123456789"},
            {"Authorization": "Bearer wrong-admin-key-0123456789"},
            {"X-Admin-Key": ADMIN_KEY[:-1]},
            {"Authorization": f"Basic {ADMIN_KEY}"},
            {"X-API-Key": alice},  # a user's key is not an admin key
        ):
            r = send(admin_gateway, method, path, body, headers)
            assert_error(r, 401, "authentication_error")
            assert r.json()["error"]["code"] == "invalid_admin_key"
            assert ADMIN_KEY not in r.text
    # nothing changed
    assert admin_gateway.balance("alice") == (10_000_000_000, 0)
    assert [u.name for u in admin_gateway.session(_users)] == ["alice"]


async def _users(session):
    from ai_service.services import accounts

    return await accounts.list_users(session)


@pytest.mark.parametrize("header", ["X-Admin-Key", "Authorization"])
def test_the_admin_key_is_accepted_as_header_or_bearer(admin_gateway: Gateway, header: str) -> None:
    value = ADMIN_KEY if header == "X-Admin-Key" else f"Bearer {ADMIN_KEY}"
    r = send(admin_gateway, "GET", "/users", None, {header: value})
    assert r.status_code == 200, r.text


def test_without_an_admin_key_configured_every_route_is_closed(
    gateway_factory: Callable[..., Gateway],
) -> None:
    gw = gateway_factory()
    assert gw.settings.admin_key is None
    for method, path, body in ROUTES:
        for headers in ({}, {"X-Admin-Key": ADMIN_KEY}, {"Authorization": "Bearer x"}):
            r = send(gw, method, path, body, headers)
            assert_error(r, 404, "not_found_error")
    # the dashboard is closed too
    for path in ("/ai/admin/", "/ai/admin/login", "/ai/admin/users"):
        assert httpx.get(gw.url + path, timeout=30).status_code == 404
    r = httpx.post(gw.url + "/ai/admin/login", data={"key": ADMIN_KEY}, timeout=30)
    assert r.status_code == 404 and "set-cookie" not in r.headers


def test_admin_routes_are_only_in_the_admin_openapi_document(admin_gateway: Gateway) -> None:
    url = admin_gateway.url
    public = httpx.get(url + "/ai/openapi.json", timeout=30).json()["paths"]
    assert "/ai/account" in public and "/ai/usage" in public
    assert "/ai/{provider}/chat/completions" in public
    assert not any(p.startswith("/ai/admin") for p in public)
    document = url + "/ai/admin/api/openapi.json"
    for headers in ({}, {"X-Admin-Key": "wrong-key"}):
        assert_error(httpx.get(document, headers=headers, timeout=30), 401, "authentication_error")
    spec = httpx.get(document, headers={"X-Admin-Key": ADMIN_KEY}, timeout=30).json()
    paths = spec["paths"]
    assert all(p.startswith("/ai/admin/api/") for p in paths)
    for method, path, _ in ROUTES:
        documented = "/ai/admin/api" + path.split("?")[0].replace("alice", "{name}")
        documented = documented.replace("ais-whatever", "{prefix}").replace("req_x", "{request_id}")
        assert method.lower() in paths[documented], documented
        operation = paths[documented][method.lower()]
        assert {"AdminKey": []} in operation["security"]
        assert {"AdminBearer": []} in operation["security"]
    schemes = spec["components"]["securitySchemes"]
    assert schemes["AdminKey"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-Admin-Key",
        "description": "The operator's key, `AI_SERVICE_ADMIN_KEY`.",
    }


def test_no_documentation_page_loads_a_script_from_elsewhere(admin_gateway: Gateway) -> None:
    r = httpx.get(admin_gateway.url + "/ai/docs", timeout=30)
    assert_error(r, 404, "not_found_error")
    assert "<script" not in r.text
