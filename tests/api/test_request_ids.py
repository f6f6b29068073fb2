"""Request ids: the `X-Request-ID` of an answer finds its row and its log lines.

The gateway's own id is the row's `request_id`; a client's valid `X-Request-ID`
is kept beside it as `client_request_id`, in the row and in the log lines.
"""

from __future__ import annotations

import logging

import httpx
import pytest

from tests.fakes.openai_flavours import FakeOpenAI
from tests.support.gateway import Gateway

CHAT = "/ai/openai/chat/completions"
BODY = {"model": "gpt-5.4-mini", "messages": [{"role": "user", "content": "hi"}]}


def settled_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() in ("request settled", "request refused")]


@pytest.mark.parametrize("stream", [False, True])
def test_the_echoed_id_is_the_stored_and_logged_one(
    gateway: Gateway, caplog: pytest.LogCaptureFixture, stream: bool
) -> None:
    key = gateway.create_user("alice", "10")
    caplog.set_level(logging.INFO, logger="ai_service.request")
    r = httpx.post(gateway.url + CHAT, headers={"X-API-Key": key}, json={**BODY, "stream": stream})
    assert r.status_code == 200
    gateway.wait_settled()
    (row,) = gateway.requests()
    assert r.headers["x-request-id"] == row.request_id
    assert row.client_request_id is None
    (line,) = settled_lines(caplog)
    assert line.request_id == row.request_id  # type: ignore[attr-defined]


def test_a_clients_id_is_stored_and_logged_beside_the_gateways(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    key = gateway.create_user("alice", "10")
    caplog.set_level(logging.INFO, logger="ai_service.request")
    headers = {"X-API-Key": key, "X-Request-ID": "trace-7f3a.1"}
    r = httpx.post(gateway.url + CHAT, headers=headers, json=BODY)
    refused = httpx.post(gateway.url + CHAT, headers=headers, json={"model": "gpt-5.4-mini"})
    assert (r.status_code, refused.status_code) == (200, 400)
    gateway.wait_settled()
    ok, bad = gateway.requests()
    assert (r.headers["x-request-id"], refused.headers["x-request-id"]) == (
        ok.request_id,
        bad.request_id,
    )
    assert ok.request_id != bad.request_id
    assert ok.client_request_id == bad.client_request_id == "trace-7f3a.1"
    lines = settled_lines(caplog)
    assert [line.request_id for line in lines] == [ok.request_id, bad.request_id]  # type: ignore[attr-defined]
    assert {line.client_request_id for line in lines} == {"trace-7f3a.1"}  # type: ignore[attr-defined]
    page = httpx.get(gateway.url + "/ai/usage", headers={"X-API-Key": key}).json()
    assert [(row["request_id"], row["client_request_id"]) for row in page["data"]] == [
        (bad.request_id, "trace-7f3a.1"),
        (ok.request_id, "trace-7f3a.1"),
    ]


def test_an_invalid_client_id_is_not_kept(gateway: Gateway, openai_upstream: FakeOpenAI) -> None:
    key = gateway.create_user("alice", "10")
    r = httpx.post(
        gateway.url + CHAT, headers={"X-API-Key": key, "X-Request-ID": "x" * 65}, json=BODY
    )
    (row,) = gateway.requests()
    assert r.headers["x-request-id"] == row.request_id
    assert row.client_request_id is None


def test_other_routes_echo_a_gateway_id(gateway: Gateway) -> None:
    key = gateway.create_user("alice", "10")
    r = httpx.get(gateway.url + "/ai/account", headers={"X-API-Key": key, "X-Request-ID": "mine"})
    assert r.headers["x-request-id"].startswith("req_")
