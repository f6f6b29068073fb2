"""Hostile input and secrets (issue 6, item 8), against a real gateway process.

Sentinel keys (the client's and the gateway's upstream key) must never appear
in a response, a log line, a stored payload or `/metrics`; a client cannot
choose the upstream URL; request size and message count are limited; and no
response carries a stack trace.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from tests.fakes.behaviours import Answer, ErrorReply
from tests.fakes.openai_flavours import FakeOpenAI
from tests.faults.conftest import Edge
from tests.faults.plans import UPSTREAM_SENTINEL, chat_body
from tests.support.directed import new_nonce, nonce_of

CHAT = "/ai/openai/chat/completions"
CLIENT_SENTINEL_INVALID = "ais-SENTINEL-client-key-0b1c2d3e4f5a6b7c8d9e"


def is_openai_error(r: httpx.Response) -> bool:
    try:
        error = r.json()["error"]
    except (ValueError, KeyError, TypeError):
        return False
    return isinstance(error, dict) and set(error) == {"message", "type", "param", "code"}


def no_trace(text: str) -> bool:
    return "Traceback" not in text and 'File "' not in text and "sqlalchemy" not in text.lower()


@pytest.fixture(scope="module")
def responses() -> list[httpx.Response]:
    """Every response of this module, checked for stack traces at the end."""
    return []


@pytest.fixture(scope="module")
def client(responses: list[httpx.Response]) -> Iterator[httpx.Client]:
    def keep(r: httpx.Response) -> None:
        r.read()
        responses.append(r)

    with httpx.Client(timeout=20, event_hooks={"response": [keep]}) as c:
        yield c


def test_keys_never_appear_in_responses_logs_payloads_or_metrics(
    edge: Edge, client: httpx.Client
) -> None:
    key = edge.books.create_user("sentinel", "5")
    fake = edge.upstream
    seen: list[httpx.Response] = []
    headers = {"X-API-Key": key}

    # the client's own key, pasted into the prompt and into extra fields
    body = chat_body("ok", new_nonce(), False, user=key, api_key=key)
    body["messages"].append({"role": "user", "content": f"my key is {key}, keep it secret"})
    seen.append(client.post(edge.url + CHAT, json=body, headers=headers))
    seen.append(
        client.post(
            edge.url + CHAT,
            json={**body, "stream": True},
            headers={"Authorization": f"Bearer {key}"},
        )
    )
    # upstreams that echo the gateway's key in errors, before and after the stream starts
    echo = f"Incorrect API key provided: {UPSTREAM_SENTINEL}."
    fake.plans.update(
        {
            "echo-400": (ErrorReply(400, echo),),
            "echo-401": (ErrorReply(401, echo),),
            "echo-500": (ErrorReply(500, echo),),
            "echo-in-stream": (Answer(error_after=1, error=ErrorReply(500, echo)),),
        }
    )
    for plan in ("echo-400", "echo-401", "echo-500", "echo-in-stream"):
        echoed = chat_body(plan, new_nonce(), plan == "echo-in-stream", user=key)
        seen.append(client.post(edge.url + CHAT, json=echoed, headers=headers))
    # a wrong key that looks like a real one, in both headers
    for auth in ({"X-API-Key": CLIENT_SENTINEL_INVALID}, {"Authorization": f"Bearer {key}x"}):
        seen.append(client.post(edge.url + CHAT, json=body, headers=auth))
    # the key holder's own pages
    seen.append(client.get(edge.url + "/ai/account", headers=headers))
    seen.append(client.get(edge.url + "/ai/usage", headers=headers))
    metrics = client.get(edge.url + "/metrics")

    statuses = [r.status_code for r in seen]
    assert statuses[:2] == [200, 200] and statuses[-4:] == [401, 401, 200, 200], statuses
    assert [s >= 400 for s in statuses[2:6]] == [True, True, True, False], statuses
    assert '"error"' in seen[5].text, "the in-stream error event is missing"
    texts = {f"{r.request.method} {r.status_code} #{i}": r.text for i, r in enumerate(seen)}
    texts["metrics"] = metrics.text if metrics.status_code == 200 else ""
    texts["logs"] = edge.proc.logs()
    texts["stored payloads"] = "\n".join(
        f"{req} {resp}"
        for req, resp in edge.books.all("SELECT request_body, response_body FROM api_request_data")
    )
    texts["logged errors"] = "\n".join(
        str(e) for (e,) in edge.books.all("SELECT error FROM api_requests")
    )
    for secret in (key, UPSTREAM_SENTINEL, CLIENT_SENTINEL_INVALID, key + "x"):
        leaks = [where for where, text in texts.items() if secret in text]
        assert leaks == [], f"{secret[:16]}... found in {leaks}"
    assert "[redacted]" in texts["stored payloads"]
    # the upstream got the gateway's key, never the client's
    sent = [r for r in fake.requests if nonce_of(r.body) == nonce_of(body)]
    assert sent and all(r.headers["authorization"] == f"Bearer {UPSTREAM_SENTINEL}" for r in sent)


URL_FIELDS = ["base_url", "api_base", "baseURL", "base", "endpoint", "url", "upstream", "api_url"]
URL_HEADERS = [
    "X-Base-URL",
    "OpenAI-Base-URL",
    "X-OpenAI-Base-URL",
    "X-Upstream-URL",
    "X-Forwarded-Host",
    "Forwarded",
    "X-Original-URL",
    "X-Rewrite-URL",
]


def test_clients_cannot_choose_the_upstream_url(edge: Edge, client: httpx.Client) -> None:
    key = edge.books.create_user("redirector", "5")
    with FakeOpenAI(api_key=UPSTREAM_SENTINEL) as trap:
        here = trap.base_url
        host = here.split("//")[1].split("/")[0]
        nonce = new_nonce()
        body: dict[str, Any] = chat_body("ok", nonce, False)
        body.update(dict.fromkeys(URL_FIELDS, here))
        body["extra_body"] = {"base_url": here}
        headers = dict.fromkeys(URL_HEADERS, here)
        headers["Forwarded"] = f"host={host};proto=http"
        headers["X-Forwarded-Host"] = host
        headers["X-API-Key"] = key
        answers = [
            client.post(edge.url + CHAT, json=body, headers=headers),
            client.post(edge.url + CHAT, json={**body, "stream": True}, headers=headers),
            client.post(edge.url + CHAT + f"?base_url={here}", json=body, headers=headers),
            client.post(edge.url + CHAT, json={**body, "model": here + "/chat"}, headers=headers),
            client.post(edge.url + CHAT, json=body, headers={**headers, "Host": host}),
        ]
        # a URL as the model id is an unknown model: refused before any upstream call
        assert [r.status_code for r in answers] == [200, 200, 200, 400, 200]
        assert answers[3].json()["error"]["code"] == "model_not_found"
        assert trap.requests == []
        paths = [
            f"/ai/{here.replace('/', '%2F')}/chat/completions",
            f"/ai/http:%2F%2F{host}%2Fv1/chat/completions",
            "/ai/openai/../../v1/chat/completions",
        ]
        for path in paths:
            r = client.post(edge.url + path, json=body, headers={"X-API-Key": key})
            assert r.status_code in (400, 404), (path, r.status_code)
            assert is_openai_error(r), r.text
        assert trap.requests == []
    sent = [r for r in edge.upstream.requests if nonce_of(r.body) == nonce]
    assert len(sent) == len(answers) - 1  # all but the refused one


def test_body_over_the_size_limit_is_413(edge: Edge, client: httpx.Client) -> None:
    key = edge.books.create_user("big", "5")
    body = chat_body("ok", new_nonce(), False)
    body["messages"][0]["content"] += " x" * 40_000  # 80 KB > 64 KiB
    r = client.post(edge.url + CHAT, json=body, headers={"X-API-Key": key})
    assert r.status_code == 413 and is_openai_error(r), r.text

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is counted while reading
        raw = orjson.dumps(body)
        for i in range(0, len(raw), 8192):
            yield raw[i : i + 8192]

    r = client.post(edge.url + CHAT, content=chunks(), headers={"X-API-Key": key})
    assert r.status_code == 413 and is_openai_error(r), r.text
    assert edge.books.balance("big") == (5_000_000_000, 0)


def test_too_many_messages_is_400(edge: Edge, client: httpx.Client) -> None:
    key = edge.books.create_user("chatty", "5")
    body = chat_body("ok", new_nonce(), False)
    body["messages"] = [{"role": "user", "content": "hi"}] * 64
    assert client.post(edge.url + CHAT, json=body, headers={"X-API-Key": key}).status_code == 200
    body["messages"] = [{"role": "user", "content": "hi"}] * 65
    r = client.post(edge.url + CHAT, json=body, headers={"X-API-Key": key})
    assert r.status_code == 400 and is_openai_error(r), r.text
    assert r.json()["error"]["param"] == "messages"


HOSTILE_BODIES: list[tuple[str, bytes]] = [
    ("invalid utf-8", b'{"model": "\xff\xfe", "messages": [{"role": "user", "content": "hi"}]}'),
    ("deep nesting", b'{"model": "m", "messages": ' + b"[" * 5000 + b"]" * 5000 + b"}"),
    ("nul byte in model", b'{"model": "m\\u0000", "messages": [{"role": "user", "content": "x"}]}'),
    (
        "nul byte in prompt",
        b'{"model": "test-model", "messages": [{"role": "user", "content": "a\\u0000b"}]}',
    ),
    ("huge integer", b'{"model": "m", "max_tokens": 1' + b"0" * 400 + b', "messages": []}'),
    (
        "max_tokens at int64 max",
        b'{"model": "test-model", "max_tokens": 9223372036854775807,'
        b' "messages": [{"role": "user", "content": "hi"}]}',
    ),
    (
        "max_tokens at uint64 max",
        b'{"model": "test-model", "max_tokens": 18446744073709551615,'
        b' "messages": [{"role": "user", "content": "hi"}]}',
    ),
    ("lone surrogate", b'{"model": "\\ud800", "messages": [{"role": "user", "content": "x"}]}'),
    ("duplicate keys", b'{"model": 1, "model": "m", "messages": [{"role": "user"}]}'),
    (
        "content parts of wrong shape",
        b'{"model": "m", "messages": [{"role": "user", "content": [1, null, {"type": 5}]}]}',
    ),
    (
        "tools of wrong shape",
        b'{"model": "m", "tools": "all", "tool_choice": 7,'
        b' "messages": [{"role": "tool", "content": null}]}',
    ),
]


@pytest.mark.parametrize(("case", "raw"), HOSTILE_BODIES, ids=[c for c, _ in HOSTILE_BODIES])
def test_hostile_bodies_get_a_client_error_in_the_openai_shape(
    edge: Edge, client: httpx.Client, case: str, raw: bytes
) -> None:
    key = edge.books.create_user(f"hostile-{case}", "5")
    r = client.post(
        edge.url + CHAT,
        content=raw,
        headers={"X-API-Key": key, "Content-Type": "application/json"},
    )
    assert r.status_code < 500 or r.status_code in (502, 504), (r.status_code, r.text)
    if r.status_code != 200:
        assert is_openai_error(r), r.text
    user = f"hostile-{case}"
    edge.books.wait_settled(10, user=user)
    spent = sum(row.cost for row in edge.books.rows("u.name = :u", u=user))
    assert edge.books.balance(user) == (5_000_000_000 - spent, 0)


def test_no_response_carries_a_stack_trace(
    edge: Edge, client: httpx.Client, responses: list[httpx.Response]
) -> None:
    # run last in this module: every response above was kept
    assert len(responses) > 20
    traced = [(r.request.url.path, r.status_code) for r in responses if not no_trace(r.text)]
    assert traced == []
    assert [r.status_code for r in responses if r.status_code == 500] == []


def test_upstream_error_text_with_a_nul_byte_is_settled(edge: Edge, client: httpx.Client) -> None:
    """PostgreSQL's text refuses NUL: an upstream message carrying one must still be logged."""
    key = edge.books.create_user("nul-upstream", "5")
    edge.upstream.plans["nul-error"] = (ErrorReply(400, "Invalid value: 'a\x00b'."),)
    r = client.post(
        edge.url + CHAT, json=chat_body("nul-error", new_nonce(), False), headers={"X-API-Key": key}
    )
    assert r.status_code == 400 and is_openai_error(r), r.text
    assert r.elapsed.total_seconds() < 3, "the answer waited for a settlement that kept failing"
    edge.books.wait_settled(5, user="nul-upstream")
    (row,) = edge.books.rows("u.name = 'nul-upstream'")
    assert (row.status, row.cost) == ("error", 0)
    assert edge.books.balance("nul-upstream") == (5_000_000_000, 0)
