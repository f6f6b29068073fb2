from __future__ import annotations

import httpx
import openai

from tests.support.gateway import Gateway


def test_openai_sdk_non_streaming_round_trip(gateway: Gateway) -> None:
    key = gateway.create_user("alice", "10")
    client = openai.OpenAI(base_url=gateway.url + "/ai/openai", api_key=key, max_retries=0)
    answer = client.chat.completions.create(
        model="gpt-5.4-mini", messages=[{"role": "user", "content": "Say hello"}]
    )
    assert answer.choices[0].message.content == "Hello from openai!"
    rows = gateway.requests()
    assert len(rows) == 1
    assert rows[0].status == "ok"
    assert rows[0].cost > 0
    assert gateway.reconcile() == []


def test_stream_round_trip(gateway: Gateway) -> None:
    key = gateway.create_user("bob", "10")
    client = openai.OpenAI(base_url=gateway.url + "/ai/openai", api_key=key, max_retries=0)
    stream = client.chat.completions.create(
        model="gpt-5.4-mini",
        messages=[{"role": "user", "content": "Say hello"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text = ""
    usage = None
    for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
        if chunk.usage:
            usage = chunk.usage
    assert text == "Hello from openai!"
    assert usage is not None
    gateway.wait_settled()
    assert gateway.reconcile() == []


def test_missing_key_is_401(gateway: Gateway) -> None:
    r = httpx.post(gateway.url + "/ai/openai/chat/completions", json={})
    assert r.status_code == 401
    assert r.json()["error"]["type"] == "authentication_error"
