"""What a client probes besides chat: one model by id, and endpoints the gateway does not serve."""

from __future__ import annotations

import logging

import httpx
import openai
import pytest

from tests.support.gateway import Gateway


def sdk(gateway: Gateway, key: str, path: str = "openai") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/ai/{path}", api_key=key, max_retries=0)


@pytest.mark.parametrize("path", ["openai", "v1"])
def test_a_model_is_retrieved_by_id_with_its_prices(gateway: Gateway, path: str) -> None:
    key = gateway.create_user("alice", "10")
    model = sdk(gateway, key, path).models.retrieve("gpt-5.4-mini")
    assert (model.id, model.object, model.owned_by) == ("gpt-5.4-mini", "model", "openai")
    listed = httpx.get(f"{gateway.url}/ai/{path}/models", headers={"X-API-Key": key}).json()
    same = next(m for m in listed["data"] if m["id"] == "gpt-5.4-mini")
    assert model.model_dump(exclude_unset=True) == same  # the entry `/models` lists


def test_a_model_id_with_a_slash_is_found(gateway: Gateway) -> None:
    key = gateway.create_user("alice", "10")
    listed = httpx.get(f"{gateway.url}/ai/llama/models", headers={"X-API-Key": key}).json()
    slashed = next(m for m in listed["data"] if "/" in m["id"] and not m.get("retired"))
    r = httpx.get(f"{gateway.url}/ai/llama/models/{slashed['id']}", headers={"X-API-Key": key})
    assert r.status_code == 200 and r.json() == slashed


def test_an_unknown_model_is_404_model_not_found(gateway: Gateway) -> None:
    key = gateway.create_user("alice", "10")
    with pytest.raises(openai.NotFoundError) as caught:
        sdk(gateway, key).models.retrieve("gpt-nonexistent-9")
    assert caught.value.code == "model_not_found"
    assert "gpt-nonexistent-9" in caught.value.message


def test_retrieving_a_model_needs_a_key(gateway: Gateway) -> None:
    r = httpx.get(f"{gateway.url}/ai/openai/models/gpt-5.4-mini")
    assert r.status_code == 401


def test_an_endpoint_not_served_is_a_404_naming_what_is(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    key = gateway.create_user("alice", "10")
    caplog.set_level(logging.INFO, logger="ai_service")
    with pytest.raises(openai.NotFoundError) as caught:
        sdk(gateway, key).images.generate(prompt="a cat", model="gpt-image-1")
    message = caught.value.message
    assert "/ai/openai/images/generations is not served by this gateway" in message
    for served in ("chat/completions", "models"):
        assert served in message
    r = httpx.post(
        f"{gateway.url}/ai/claude/v1/complete", headers={"X-API-Key": key}, json={"prompt": "hi"}
    )
    assert r.status_code == 404
    assert r.json()["error"]["message"].startswith("/ai/claude/v1/complete is not served")
    assert gateway.requests() == []  # nothing logged as a request, nothing charged
    logged = [r for r in caplog.records if r.getMessage() == "endpoint not served"]
    assert [getattr(r, "path", None) for r in logged] == [
        "/ai/openai/images/generations",
        "/ai/claude/v1/complete",
    ]


@pytest.mark.parametrize("path", ["openai", "v1", "claude", "mistral", "llama", "deepseek"])
def test_every_path_names_the_messages_api_among_what_it_serves(
    gateway: Gateway, path: str
) -> None:
    key = gateway.create_user("alice", "10")
    r = httpx.post(f"{gateway.url}/ai/{path}/v1/complete", headers={"X-API-Key": key}, json={})
    assert r.status_code == 404
    message = r.json()["error"]["message"]
    assert message.startswith(f"/ai/{path}/v1/complete is not served")
    served = message.split("it serves ")[1]
    for endpoint in ("chat/completions", "v1/messages", "v1/messages/count_tokens"):
        assert f"{endpoint}," in served or f"{endpoint} under" in served
    assert ("v1/models" in served) == (path == "claude")


def test_an_unknown_provider_path_is_not_named_as_served(gateway: Gateway) -> None:
    key = gateway.create_user("alice", "10")
    r = httpx.post(f"{gateway.url}/ai/nope/images/generations", headers={"X-API-Key": key})
    assert r.status_code == 404
    assert "is not served" not in r.json()["error"]["message"]


def test_a_wrong_method_on_a_served_endpoint_stays_405(gateway: Gateway) -> None:
    key = gateway.create_user("alice", "10")
    r = httpx.get(f"{gateway.url}/ai/openai/chat/completions", headers={"X-API-Key": key})
    assert r.status_code == 405
