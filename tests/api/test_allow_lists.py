"""Model allow-lists per key, on every route that reaches a provider.

A key may use a model when the id it asks for and the id that resolves to
both match a pattern; anything else is 403 in the surface's own error shape,
logged as refused, free, and never sent. Fallbacks the list does not name are
skipped; `/models` shows what the key may use.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import anthropic
import httpx
import openai
import pytest
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from ai_service.providers import PATHS, REGISTRY
from ai_service.services import catalog_admin
from tests.conftest import UPSTREAM_KEY
from tests.fakes.anthropic_messages import FakeAnthropic
from tests.fakes.behaviours import ErrorReply
from tests.fakes.openai_flavours import FakeOpenAI
from tests.support.gateway import Gateway

ANTHROPIC_KEY = "sk-ant-upstream-test"
ADMIN_KEY = "allow-lists-admin-key-0123456789"
HELLO = [{"role": "user", "content": "hi"}]
CLAUDE = "claude-3-5-sonnet-20241022"
# a priced model of each provider, for the requests refused
MODELS = {
    "openai": "gpt-5.4-mini",
    "claude": CLAUDE,
    "mistral": "mistral-large-latest",
    "llama": "meta-llama/Llama-3.3-70B-Instruct-Turbo",
    "deepseek": "deepseek-chat",
}


@pytest.fixture(scope="module")
def anthropic_fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(api_key=ANTHROPIC_KEY) as fake:
        yield fake


@pytest.fixture
def fakes(openai_upstream: FakeOpenAI, anthropic_fake: FakeAnthropic) -> list[Any]:
    anthropic_fake.reset()
    return [openai_upstream, anthropic_fake]


def every_provider(openai_fake: FakeOpenAI, anthropic_fake: FakeAnthropic) -> dict[str, Any]:
    """Settings configuring every provider: OpenAI's shape at the OpenAI fake (which records
    whatever reaches it), Claude at the Anthropic fake."""
    settings: dict[str, Any] = {
        "admin_key": ADMIN_KEY,
        "anthropic_api_key": ANTHROPIC_KEY,
        "anthropic_base_url": anthropic_fake.base_url,
    }
    for name in ("openai", "mistral", "together", "deepseek"):
        settings[f"{name}_api_key"] = UPSTREAM_KEY
        settings[f"{name}_base_url"] = openai_fake.base_url
    return settings


@pytest.fixture
def gw(
    gateway_factory: Callable[..., Gateway],
    openai_upstream: FakeOpenAI,
    anthropic_fake: FakeAnthropic,
    fakes: list[Any],
) -> Gateway:
    return gateway_factory(**every_provider(openai_upstream, anthropic_fake))


def post(gw: Gateway, key: str, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(gw.url + path, headers={"X-API-Key": key}, json=body, timeout=30)


def chat(gw: Gateway, key: str, model: str, path: str = "openai") -> httpx.Response:
    return post(gw, key, f"/ai/{path}/chat/completions", {"model": model, "messages": HELLO})


def assert_denied(r: httpx.Response, anthropic_shaped: bool = False) -> str:
    """A 403 in the surface's shape; returns its message."""
    assert r.status_code == 403, r.text
    body = r.json()
    if anthropic_shaped:
        assert body["type"] == "error" and body["error"]["type"] == "permission_error"
        message: str = body["error"]["message"]
    else:
        error = body["error"]
        assert (error["type"], error["code"]) == ("permission_error", "model_not_allowed")
        message = error["message"]
    assert "not allowed" in message and "GET /ai/key" in message
    return message


def nothing_sent(fakes: list[Any]) -> None:
    for fake in fakes:
        assert fake.requests == [], f"{type(fake).__name__} was called"


# ---- every route that reaches a provider -------------------------------------------

# a body for each endpoint that names a model (every one must be refused for a model the
# key may not use); `{model}` is filled with the path's model
BODIES: dict[str, dict[str, Any]] = {
    "chat/completions": {"messages": HELLO},
    "responses": {"input": "hi"},
    "embeddings": {"input": "hi"},
    "v1/messages": {"max_tokens": 16, "messages": HELLO},
    "v1/messages/count_tokens": {"messages": HELLO},
}
# endpoints that reach a provider without naming a model: refused for a key whose list
# names none of the provider's models
READS = {"responses/{id}"}
# endpoints that list models: they show only what the key may use (tested below)
LISTINGS = {"models", "models/{id}", "v1/models", "v1/models/{id}"}
ROUTE_UNDER_PROVIDER = re.compile(r"^/ai/([^/]+)/(.+)$")


def app_routes(routes: Sequence[BaseRoute], prefix: str = "") -> Iterator[tuple[str, set[str]]]:
    """(path, methods) of every route of the app, through the routers it includes."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            context = getattr(route, "include_context", None)
            yield from app_routes(included.routes, prefix + getattr(context, "prefix", ""))
        elif isinstance(route, APIRoute):
            yield prefix + route.path, set(route.methods)


def provider_routes(gw: Gateway) -> list[tuple[str, str, str]]:
    """(method, provider path, endpoint) of every route under a provider path, each provider
    path a `{provider}` route serves spelled out; the admin API and the dashboard aside."""
    found: list[tuple[str, str, str]] = []
    for route_path, methods in app_routes(gw.app.api.routes):
        matched = ROUTE_UNDER_PROVIDER.match(route_path)
        if matched is None:
            continue
        owner, rest = matched.groups()
        if owner != "{provider}" and owner not in PATHS:
            continue
        endpoint = re.sub(r"\{[^}]*\}", "{id}", rest)
        paths = sorted(PATHS) if owner == "{provider}" else [owner]
        for method in sorted(methods - {"HEAD"}):
            for path in paths:
                if REGISTRY[PATHS[path]].serves(endpoint):
                    found.append((method, path, endpoint))
    return found


def request_for(gw: Gateway, key: str, method: str, path: str, endpoint: str) -> httpx.Response:
    model = MODELS[PATHS[path]]
    url = f"{gw.url}/ai/{path}/" + endpoint.replace("{id}", "resp_0123456789abcdef")
    body = {**BODIES[endpoint], "model": model} if method == "POST" else None
    return httpx.request(method, url, headers={"X-API-Key": key}, json=body, timeout=30)


def test_every_route_that_reaches_a_provider_refuses_a_model_the_key_may_not_use(
    gw: Gateway, fakes: list[Any]
) -> None:
    gw.create_user("alice", "10")
    # allowed one model name on every provider: each request below names another model
    other_models = gw.create_key("alice", allowed=["*:only-this-model"])
    # allowed no model of most providers (and for DeepSeek's path, a key of Mistral only)
    deepseek_only = gw.create_key("alice", allowed=["deepseek:deepseek-reasoner"])
    mistral_only = gw.create_key("alice", allowed=["mistral:mistral-small-latest"])
    before = gw.balance("alice")
    routes = provider_routes(gw)
    unchecked = {e for _m, _p, e in routes} - set(BODIES) - READS - LISTINGS
    assert not unchecked, (
        f"routes under a provider path without an allow-list test: {unchecked}; give each "
        "a body in BODIES (and check the key's allow-list in its service)"
    )
    refused = 0
    for method, path, endpoint in routes:
        if endpoint in LISTINGS:
            continue
        anthropic_shaped = endpoint.startswith("v1/")
        foreign = mistral_only if PATHS[path] == "deepseek" else deepseek_only
        keys = [foreign] if endpoint in READS else [foreign, other_models]
        for key in keys:
            r = request_for(gw, key, method, path, endpoint)
            assert_denied(r, anthropic_shaped)
            refused += endpoint in BODIES and endpoint != "v1/messages/count_tokens"
    assert {e for _m, _p, e in routes} >= {*BODIES, *READS}
    nothing_sent(fakes)
    assert gw.balance("alice") == before
    gw.wait_settled()
    rows = gw.requests()
    assert len(rows) == refused
    assert {(r.status, r.http_status, r.cost, r.reserved) for r in rows} == {("error", 403, 0, 0)}


def test_listings_show_only_the_models_the_key_may_use(gw: Gateway) -> None:
    gw.create_user("alice", "10")
    sonnet = gw.create_key("alice", allowed=[f"claude:{CLAUDE[:-9]}*", "openai:gpt-5.4-mini"])
    nothing = gw.create_key("alice", allowed=["*:only-this-model"])
    headers = {"X-API-Key": sonnet}
    for path in PATHS:
        listed = httpx.get(f"{gw.url}/ai/{path}/models", headers=headers, timeout=30).json()["data"]
        ids = {m["id"] for m in listed}
        expected = {"claude": {CLAUDE}, "openai": {"gpt-5.4-mini"}, "v1": {"gpt-5.4-mini"}}
        assert ids == expected.get(path, set()), path
        none = httpx.get(
            f"{gw.url}/ai/{path}/models", headers={"X-API-Key": nothing}, timeout=30
        ).json()
        assert none["data"] == []
    # the alias gpt-4o names gpt-5.4-mini, but gpt-4o itself is not on the list
    for model_id, status in (("gpt-5.4-mini", 200), ("gpt-4o", 404), ("gpt-5.4", 404)):
        r = httpx.get(f"{gw.url}/ai/openai/models/{model_id}", headers=headers, timeout=30)
        assert r.status_code == status, model_id
    claude = anthropic.Anthropic(base_url=gw.url + "/ai/claude", api_key=sonnet, max_retries=0)
    assert [m.id for m in claude.models.list()] == [CLAUDE]
    assert claude.models.retrieve(CLAUDE).id == CLAUDE
    with pytest.raises(anthropic.NotFoundError):
        claude.models.retrieve("claude-3-5-haiku-20241022")
    unrestricted = gw.create_user("bob", "1")
    everything = httpx.get(
        f"{gw.url}/ai/claude/v1/models", headers={"X-API-Key": unrestricted}, timeout=30
    )
    assert len(everything.json()["data"]) > 1


# ---- aliases and fallbacks ----------------------------------------------------------


def test_an_alias_cannot_reach_a_model_the_list_does_not_name(
    gw: Gateway, fakes: list[Any]
) -> None:
    gw.create_user("alice", "10")
    gw.session(lambda s: catalog_admin.set_alias(s, "openai", "gpt-cheap", "gpt-5.4"))
    gw.call(gw.state.catalog.reload())
    # the alias's name is allowed, the model it resolves to is not
    key = gw.create_key("alice", allowed=["openai:gpt-cheap", "openai:gpt-4o*"])
    message = assert_denied(chat(gw, key, "gpt-cheap"))
    assert "'openai:gpt-cheap' (served as 'gpt-5.4')" in message
    assert_denied(chat(gw, key, "gpt-4o"))  # the packaged alias of gpt-5.4-mini
    # the model is allowed, an alias naming it is not: the id asked for must match too
    target_only = gw.create_key("alice", allowed=["openai:gpt-5.4"])
    assert_denied(chat(gw, target_only, "gpt-cheap"))
    nothing_sent(fakes)
    assert chat(gw, target_only, "gpt-5.4").status_code == 200
    both = gw.create_key("alice", allowed=["openai:gpt-cheap", "openai:gpt-5.4"])
    r = chat(gw, both, "gpt-cheap")
    assert r.status_code == 200 and r.headers["x-served-model"] == "gpt-5.4"


def test_a_fallback_to_a_provider_the_key_may_not_use_is_skipped(
    gateway_factory: Callable[..., Gateway],
    openai_upstream: FakeOpenAI,
    anthropic_fake: FakeAnthropic,
    fakes: list[Any],
) -> None:
    gw = gateway_factory(
        **every_provider(openai_upstream, anthropic_fake),
        retry_attempts=0,
        fallbacks={"openai:gpt-5.4-nano": [f"claude:{CLAUDE}", "openai:gpt-5.4-mini"]},
    )
    gw.create_user("alice", "10")
    key = gw.create_key("alice", allowed=["openai:*"])
    openai_upstream.enqueue(ErrorReply(503))
    r = chat(gw, key, "gpt-5.4-nano")
    assert r.status_code == 200, r.text
    assert r.headers["x-served-model"] == "gpt-5.4-mini"
    assert anthropic_fake.requests == []
    assert [q.body["model"] for q in openai_upstream.requests] == ["gpt-5.4-nano", "gpt-5.4-mini"]
    (row,) = gw.requests()
    assert "claude" not in (row.attempt_log or "")

    # the only allowed model fails: the chain ends there, Claude is never tried
    openai_upstream.reset()
    nano_only = gw.create_key("alice", allowed=["openai:gpt-5.4-nano"])
    openai_upstream.enqueue(ErrorReply(503))
    r = chat(gw, nano_only, "gpt-5.4-nano")
    assert r.status_code == 503
    assert anthropic_fake.requests == []
    assert [q.body["model"] for q in openai_upstream.requests] == ["gpt-5.4-nano"]

    # a key that may use Claude is served by it
    openai_upstream.reset()
    unrestricted = gw.create_key("alice")
    openai_upstream.enqueue(ErrorReply(503))
    r = chat(gw, unrestricted, "gpt-5.4-nano")
    assert r.status_code == 200 and r.headers["x-served-model"] == CLAUDE
    assert len(anthropic_fake.requests) == 1


# ---- the translated and passed-through surfaces --------------------------------------


def test_the_translated_and_native_surfaces_refuse_and_serve_by_the_list(
    gw: Gateway, fakes: list[Any], anthropic_fake: FakeAnthropic
) -> None:
    gw.create_user("alice", "10")
    key = gw.create_key("alice", allowed=["openai:gpt-5.4-mini"])
    client = openai.OpenAI(base_url=gw.url + "/ai/claude", api_key=key, max_retries=0)
    with pytest.raises(openai.PermissionDeniedError) as caught:
        client.responses.create(model=CLAUDE, input="hi")  # translated through chat
    assert caught.value.code == "model_not_allowed"
    claude = anthropic.Anthropic(base_url=gw.url + "/ai/claude", api_key=key, max_retries=0)
    with pytest.raises(anthropic.PermissionDeniedError):
        claude.messages.create(model=CLAUDE, max_tokens=16, messages=HELLO)
    with pytest.raises(anthropic.PermissionDeniedError):
        claude.messages.count_tokens(model=CLAUDE, messages=HELLO)
    own = openai.OpenAI(base_url=gw.url + "/ai/openai", api_key=key, max_retries=0)
    with pytest.raises(openai.PermissionDeniedError):
        own.responses.create(model="gpt-5.4", input="hi")  # passed through
    with pytest.raises(openai.PermissionDeniedError):
        own.embeddings.create(model="text-embedding-3-small", input="hi")
    nothing_sent(fakes)
    assert own.responses.create(model="gpt-5.4-mini", input="hi").output_text

    sonnet = gw.create_key("alice", allowed=["claude:claude-3-5-sonnet-*"])
    claude = anthropic.Anthropic(base_url=gw.url + "/ai/claude", api_key=sonnet, max_retries=0)
    assert claude.messages.create(model=CLAUDE, max_tokens=16, messages=HELLO).content
    assert claude.messages.count_tokens(model=CLAUDE, messages=HELLO).input_tokens > 0
    translated = openai.OpenAI(base_url=gw.url + "/ai/claude", api_key=sonnet, max_retries=0)
    assert translated.responses.create(model=CLAUDE, input="hi").output_text
    assert len(anthropic_fake.requests) == 3


def test_a_stored_response_is_retrieved_only_by_a_key_that_reaches_its_provider(
    gw: Gateway, openai_upstream: FakeOpenAI
) -> None:
    gw.create_user("alice", "10")
    everything = gw.create_key("alice")
    made = openai.OpenAI(base_url=gw.url + "/ai/openai", api_key=everything, max_retries=0)
    response = made.responses.create(model="gpt-5.4-mini", input="hi")
    other = gw.create_key("alice", allowed=["openai:gpt-5.4"])  # another model: may read
    reader = openai.OpenAI(base_url=gw.url + "/ai/openai", api_key=other, max_retries=0)
    assert reader.responses.retrieve(response.id).id == response.id
    claude_only = gw.create_key("alice", allowed=["claude:*"])
    denied = openai.OpenAI(base_url=gw.url + "/ai/openai", api_key=claude_only, max_retries=0)
    sent = len(openai_upstream.requests)
    with pytest.raises(openai.PermissionDeniedError):
        denied.responses.retrieve(response.id)
    assert len(openai_upstream.requests) == sent


# ---- how fast a change applies --------------------------------------------------------


def test_a_changed_list_applies_at_once_where_made_and_within_the_cache_time_elsewhere(
    gateway_factory: Callable[..., Gateway],
    openai_upstream: FakeOpenAI,
    anthropic_fake: FakeAnthropic,
    fakes: list[Any],
) -> None:
    settings = every_provider(openai_upstream, anthropic_fake)
    first = gateway_factory(**settings, key_cache_seconds=1.0)
    second = gateway_factory(**settings, key_cache_seconds=1.0)
    key = first.create_user("alice", "10")
    for gw in (first, second):  # cached on both instances
        assert chat(gw, key, "gpt-5.4-mini").status_code == 200
    r = httpx.patch(
        f"{second.url}/ai/admin/api/keys/{key[:12]}",
        headers={"X-Admin-Key": ADMIN_KEY},
        json={"allowed_models": ["claude:*"]},
        timeout=30,
    )
    assert r.status_code == 200 and r.json()["allowed_models"] == ["claude:*"]
    changed = time.monotonic()
    assert_denied(chat(second, key, "gpt-5.4-mini"))  # the instance that changed it
    while chat(first, key, "gpt-5.4-mini").status_code == 200:
        assert time.monotonic() - changed < 1.5, "still allowed after the key cache's time"
        time.sleep(0.05)
    assert_denied(chat(first, key, "gpt-5.4-mini"))
    # widened again (clearing the list) through the CLI's path: every instance within 1 s
    first.set_key_policy(key, allowed=None)
    deadline = time.monotonic() + 1.5
    for gw in (first, second):
        while chat(gw, key, "gpt-5.4-mini").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
