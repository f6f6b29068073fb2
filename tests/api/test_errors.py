"""Every failure path of DESIGN §9 on the OpenAI path: status, body, log row, no charge."""

from __future__ import annotations

import httpx
import pytest

from tests.fakes.behaviours import (
    Answer,
    ErrorReply,
    Hang,
    Malformed,
    ResetConnection,
    WrongContentType,
)
from tests.fakes.openai_flavours import FakeOpenAI
from tests.support.gateway import Gateway

CHAT = "/ai/openai/chat/completions"
GOOD = {"model": "gpt-5.4-mini", "messages": [{"role": "user", "content": "hi"}]}


def assert_openai_error(r: httpx.Response, status: int, type_: str | None = None) -> dict:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    if type_ is not None:
        assert error["type"] == type_
    assert "Traceback" not in r.text
    return error


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-API-Key": "ais-not-a-real-key"},
        {"Authorization": "Bearer ais-not-a-real-key"},
        {"Authorization": "Basic Zm9vOmJhcg=="},
    ],
)
def test_missing_or_unknown_key_is_401_and_never_reaches_upstream(
    gateway: Gateway, openai_upstream: FakeOpenAI, headers: dict[str, str]
) -> None:
    r = httpx.post(gateway.url + CHAT, headers=headers, json=GOOD)
    assert_openai_error(r, 401, "authentication_error")
    assert openai_upstream.requests == []
    assert gateway.requests() == []


def test_revoked_key_and_disabled_user_are_401(
    gateway: Gateway, openai_upstream: FakeOpenAI
) -> None:
    from ai_service.services import accounts

    key = gateway.create_user("alice", "10")
    assert httpx.post(gateway.url + CHAT, headers={"X-API-Key": key}, json=GOOD).status_code == 200
    gateway.session(lambda s: accounts.revoke_key(s, key[:12]))
    r = httpx.post(gateway.url + CHAT, headers={"X-API-Key": key}, json=GOOD)
    assert_openai_error(r, 401, "authentication_error")

    other = gateway.create_user("bob", "10")
    gateway.session(lambda s: accounts.set_disabled(s, "bob", True))
    r = httpx.post(gateway.url + CHAT, headers={"X-API-Key": other}, json=GOOD)
    assert_openai_error(r, 401)
    assert len(openai_upstream.requests) == 1


def test_user_disabled_while_its_key_is_cached_is_401_not_402(
    gateway_factory, openai_upstream: FakeOpenAI
) -> None:
    # another instance (or the CLI) disables the user: this instance still holds the key
    from ai_service.services import accounts
    from tests.conftest import UPSTREAM_KEY

    gw = gateway_factory(
        openai_api_key=UPSTREAM_KEY,
        openai_base_url=openai_upstream.base_url,
        key_cache_seconds=300,
    )
    key = gw.create_user("alice", "10")
    assert httpx.post(gw.url + CHAT, headers={"X-API-Key": key}, json=GOOD).status_code == 200
    gw.session(lambda s: accounts.set_disabled(s, "alice", True))
    before = gw.balance("alice")
    r = httpx.post(gw.url + CHAT, headers={"X-API-Key": key}, json=GOOD)
    assert_openai_error(r, 401, "authentication_error")
    assert "disabled" in r.json()["error"]["message"]
    assert len(openai_upstream.requests) == 1
    assert gw.balance("alice") == before
    refused = gw.requests()[-1]
    assert (refused.status, refused.http_status, refused.cost) == ("error", 401, 0)


BAD_BODIES: list[tuple[str, bytes, str | None]] = [
    ("malformed JSON", b'{"model": "gpt-5.4-mini", "messages": [', None),
    ("not an object", b'["model", "messages"]', None),
    ("empty body", b"", None),
    ("missing model", b'{"messages": [{"role": "user", "content": "hi"}]}', "model"),
    (
        "model not a string",
        b'{"model": 5, "messages": [{"role": "user", "content": "hi"}]}',
        "model",
    ),
    ("missing messages", b'{"model": "gpt-5.4-mini"}', "messages"),
    ("messages not a list", b'{"model": "gpt-5.4-mini", "messages": "hi"}', "messages"),
    ("empty messages", b'{"model": "gpt-5.4-mini", "messages": []}', "messages"),
    (
        "unknown role",
        b'{"model": "gpt-5.4-mini", "messages": [{"role": "wizard", "content": "hi"}]}',
        "messages[0].role",
    ),
    (
        "content wrongly typed",
        b'{"model": "gpt-5.4-mini", "messages": [{"role": "user", "content": 42}]}',
        "messages[0].content",
    ),
    (
        "stream not a boolean",
        b'{"model": "gpt-5.4-mini", "stream": "yes", "messages": [{"role": "user", "content": "x"}]}',
        "stream",
    ),
    (
        "content part nested 300 deep",
        b'{"model": "gpt-5.4-mini", "messages": [{"role": "user", "content": [{"type": "text",'
        b' "text": "x", "extra": ' + b"[" * 300 + b"]" * 300 + b"}]}]}",
        None,
    ),
    (
        "tool schema nested 1000 deep",
        b'{"model": "gpt-5.4-mini", "messages": [{"role": "user", "content": "x"}], "tools": '
        + b'{"a": ' * 1000
        + b"1"
        + b"}" * 1000
        + b"}",
        None,
    ),
    (
        "negative max_tokens",
        b'{"model": "gpt-5.4-mini", "max_tokens": -1, "messages": [{"role": "user", "content": "x"}]}',
        "max_tokens",
    ),
]


@pytest.mark.parametrize(("case", "raw", "param"), BAD_BODIES, ids=[c[0] for c in BAD_BODIES])
def test_bad_input_is_400_logged_free_and_never_reaches_upstream(
    gateway: Gateway, openai_upstream: FakeOpenAI, case: str, raw: bytes, param: str | None
) -> None:
    key = gateway.create_user("alice", "10")
    before = gateway.balance("alice")
    r = httpx.post(
        gateway.url + CHAT,
        headers={"X-API-Key": key, "Content-Type": "application/json"},
        content=raw,
    )
    error = assert_openai_error(r, 400, "invalid_request_error")
    if param is not None:
        assert error["param"] == param
    assert openai_upstream.requests == []
    (row,) = gateway.requests()
    assert (row.status, row.http_status, row.cost) == ("error", 400, 0)
    assert gateway.balance("alice") == before
    assert gateway.reconcile() == []


def test_body_over_the_limit_is_413(gateway_factory, openai_upstream: FakeOpenAI) -> None:
    from tests.conftest import UPSTREAM_KEY

    gw = gateway_factory(
        openai_api_key=UPSTREAM_KEY, openai_base_url=openai_upstream.base_url, max_body_bytes=1000
    )
    key = gw.create_user("alice", "10")
    big = {"model": "gpt-5.4-mini", "messages": [{"role": "user", "content": "x" * 2000}]}
    r = httpx.post(gw.url + CHAT, headers={"X-API-Key": key}, json=big)
    assert_openai_error(r, 413, "invalid_request_error")
    assert openai_upstream.requests == []
    (row,) = gw.requests()
    assert (row.status, row.http_status, row.cost) == ("error", 413, 0)


def test_unknown_provider_path_is_404(gateway: Gateway) -> None:
    key = gateway.create_user("alice", "10")
    r = httpx.post(gateway.url + "/ai/nope/chat/completions", headers={"X-API-Key": key}, json=GOOD)
    assert_openai_error(r, 404)


def test_provider_without_a_key_is_503_naming_the_variable(gateway: Gateway) -> None:
    key = gateway.create_user("alice", "10")
    r = httpx.post(
        gateway.url + "/ai/mistral/chat/completions",
        headers={"X-API-Key": key},
        json={"model": "mistral-large-latest", "messages": [{"role": "user", "content": "hi"}]},
    )
    error = assert_openai_error(r, 503)
    assert "MISTRAL_API_KEY" in error["message"]
    (row,) = gateway.requests()
    assert (row.status, row.cost) == ("error", 0)


@pytest.mark.parametrize("stream", [False, True])
def test_upstream_500_is_502_logged_as_error_and_free(
    gateway: Gateway, openai_upstream: FakeOpenAI, stream: bool
) -> None:
    key = gateway.create_user("alice", "10")
    before = gateway.balance("alice")
    # the first try and both retries fail
    openai_upstream.enqueue(*[ErrorReply(500, message="secret internal detail")] * 3)
    r = httpx.post(gateway.url + CHAT, headers={"X-API-Key": key}, json={**GOOD, "stream": stream})
    error = assert_openai_error(r, 502)
    assert "secret internal detail" not in error["message"]
    gateway.wait_settled()
    (row,) = gateway.requests()
    assert (row.status, row.http_status, row.cost, row.attempts) == ("error", 502, 0, 3)
    assert len(openai_upstream.requests) == 3
    assert gateway.balance("alice") == before
    assert gateway.reconcile() == []


def test_upstream_4xx_is_passed_on_with_its_status_and_message(
    gateway: Gateway, openai_upstream: FakeOpenAI
) -> None:
    key = gateway.create_user("alice", "10")
    openai_upstream.enqueue(ErrorReply(404, message="The model `gpt-9` does not exist"))
    r = httpx.post(gateway.url + CHAT, headers={"X-API-Key": key}, json=GOOD)
    error = assert_openai_error(r, 404)
    assert "does not exist" in error["message"]
    (row,) = gateway.requests()
    assert (row.status, row.http_status, row.cost) == ("error", 404, 0)


def test_upstream_429_is_429_with_retry_after(
    gateway: Gateway, openai_upstream: FakeOpenAI
) -> None:
    key = gateway.create_user("alice", "10")
    openai_upstream.enqueue(ErrorReply(429, retry_after=7))
    r = httpx.post(gateway.url + CHAT, headers={"X-API-Key": key}, json=GOOD)
    assert_openai_error(r, 429)
    assert r.headers["retry-after"] == "7"


@pytest.mark.parametrize(
    ("behaviour", "status"),
    [
        (Hang(30), 504),
        (ResetConnection(), 502),
        (Malformed(), 502),
        (WrongContentType(), 502),
    ],
    ids=["hang", "reset", "malformed", "wrong-content-type"],
)
def test_upstream_faults_map_to_gateway_errors_and_cost_nothing(
    gateway_factory, openai_upstream: FakeOpenAI, behaviour: object, status: int
) -> None:
    from tests.conftest import UPSTREAM_KEY

    gw = gateway_factory(
        openai_api_key=UPSTREAM_KEY, openai_base_url=openai_upstream.base_url, first_byte_timeout=1
    )
    key = gw.create_user("alice", "10")
    before = gw.balance("alice")
    openai_upstream.enqueue(*[behaviour] * 3)  # type: ignore[list-item]
    r = httpx.post(gw.url + CHAT, headers={"X-API-Key": key}, json=GOOD, timeout=20)
    assert_openai_error(r, status)
    (row,) = gw.requests()
    assert (row.status, row.cost) == ("error", 0)
    assert gw.balance("alice") == before


def test_stream_cut_by_upstream_ends_with_error_event_and_is_free(
    gateway: Gateway, openai_upstream: FakeOpenAI
) -> None:
    key = gateway.create_user("alice", "10")
    before = gateway.balance("alice")
    openai_upstream.enqueue(Answer(text="one two three four five", cut_after=2))
    r = httpx.post(gateway.url + CHAT, headers={"X-API-Key": key}, json={**GOOD, "stream": True})
    assert r.status_code == 200
    events = [e for e in r.text.split("\n\n") if e.startswith("data: ")]
    assert events[-1] == "data: [DONE]"
    assert '"error"' in events[-2]
    gateway.wait_settled()
    (row,) = gateway.requests()
    assert (row.status, row.cost) == ("error", 0)
    assert gateway.balance("alice") == before


def test_stalled_stream_ends_with_error_event(gateway_factory, openai_upstream: FakeOpenAI) -> None:
    from tests.conftest import UPSTREAM_KEY

    gw = gateway_factory(
        openai_api_key=UPSTREAM_KEY,
        openai_base_url=openai_upstream.base_url,
        stream_idle_timeout=0.5,
    )
    key = gw.create_user("alice", "10")
    openai_upstream.enqueue(Answer(text="one two three", chunk_delay=3))
    r = httpx.post(
        gw.url + CHAT, headers={"X-API-Key": key}, json={**GOOD, "stream": True}, timeout=20
    )
    events = [e for e in r.text.split("\n\n") if e.startswith("data: ")]
    assert '"timeout_error"' in events[-2]
    gw.wait_settled()
    (row,) = gw.requests()
    assert (row.status, row.http_status, row.cost) == ("error", 504, 0)


def test_insufficient_balance_is_402_and_never_reaches_upstream(
    gateway: Gateway, openai_upstream: FakeOpenAI
) -> None:
    key = gateway.create_user("poor", "0.000001")
    big = {"model": "gpt-5.4", "messages": [{"role": "user", "content": "x" * 5000}]}
    r = httpx.post(gateway.url + CHAT, headers={"X-API-Key": key}, json=big)
    error = assert_openai_error(r, 402, "insufficient_quota")
    assert error["code"] == "insufficient_quota"
    assert openai_upstream.requests == []
    (row,) = gateway.requests()
    assert (row.status, row.http_status, row.cost) == ("error", 402, 0)


def test_output_limit_is_lowered_to_what_the_balance_pays(
    gateway: Gateway, openai_upstream: FakeOpenAI
) -> None:
    # gpt-5.4-mini output costs $4.50 / 1M: $0.001 pays for about 200 output tokens
    key = gateway.create_user("alice", "0.001")
    r = httpx.post(gateway.url + CHAT, headers={"X-API-Key": key}, json=GOOD)
    assert r.status_code == 200, r.text
    sent = openai_upstream.requests[0].body["max_completion_tokens"]
    assert 100 < sent < 230
    assert gateway.balance("alice")[0] >= 0
    assert gateway.reconcile() == []
