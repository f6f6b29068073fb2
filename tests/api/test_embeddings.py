"""Embeddings through the gateway, with the official SDK: reserved and charged on input
tokens, refused (free, never sent) when invalid, and 404 on paths without embeddings."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from decimal import Decimal

import httpx
import openai
import pytest

from ai_service.billing.catalog import Catalog
from ai_service.billing.pricing import cost
from ai_service.providers.base import Usage
from ai_service.services import catalog_admin
from tests.conftest import UPSTREAM_KEY
from tests.fakes.behaviours import Answer, ErrorReply, Usage as FakeUsage
from tests.fakes.embeddings import embedding_vector
from tests.fakes.openai_flavours import FakeMistral, FakeOpenAI, FakeTogether
from tests.support.gateway import Gateway

SMALL = "text-embedding-3-small"


def price_of(provider: str, model: str) -> int:
    """The cost in nano-USD of one input token of `model`, as the catalog prices it."""
    return cost(Usage(input_tokens=1_000_000), Catalog().resolve(provider, model).price)


def sdk(gateway: Gateway, key: str, path: str = "openai") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/ai/{path}", api_key=key, max_retries=0)


@pytest.fixture(scope="module")
def mistral_fake() -> Iterator[FakeMistral]:
    with FakeMistral(api_key=UPSTREAM_KEY) as server:
        yield server


@pytest.fixture(scope="module")
def together_fake() -> Iterator[FakeTogether]:
    with FakeTogether(api_key=UPSTREAM_KEY) as server:
        yield server


@pytest.fixture
def everyone(
    gateway_factory: Callable[..., Gateway],
    openai_upstream: FakeOpenAI,
    mistral_fake: FakeMistral,
    together_fake: FakeTogether,
) -> Gateway:
    mistral_fake.reset()
    together_fake.reset()
    return gateway_factory(
        openai_api_key=UPSTREAM_KEY,
        openai_base_url=openai_upstream.base_url,
        mistral_api_key=UPSTREAM_KEY,
        mistral_base_url=mistral_fake.base_url,
        together_api_key=UPSTREAM_KEY,
        together_base_url=together_fake.base_url,
        deepseek_api_key=UPSTREAM_KEY,
        deepseek_base_url=mistral_fake.base_url,  # never called: DeepSeek has no embeddings
        anthropic_api_key=UPSTREAM_KEY,
        anthropic_base_url=mistral_fake.base_url,  # never called
    )


@pytest.mark.parametrize("path", ["openai", "v1"])
def test_openai_embeddings_are_charged_the_reported_tokens(
    everyone: Gateway, openai_upstream: FakeOpenAI, path: str
) -> None:
    key = everyone.create_user("alice", "10")
    texts = ["the quick brown fox", "jumps over the lazy dog today"]
    result = sdk(everyone, key, path).embeddings.create(model=SMALL, input=texts)
    assert [d.embedding for d in result.data] == [
        pytest.approx(embedding_vector(SMALL, t, 1536), rel=1e-6) for t in texts
    ]
    assert result.usage.prompt_tokens == 10  # the fake counts words
    (row,) = everyone.requests()
    expected = -(-10 * price_of("openai", SMALL) // 1_000_000)
    assert (row.status, row.prompt_tokens, row.completion_tokens) == ("ok", 10, 0)
    assert (row.cost, row.usage_estimated) == (expected, False)
    assert everyone.balance("alice") == (10 * 10**9 - expected, 0)
    sent = openai_upstream.last_request
    assert sent.path == "/v1/embeddings"
    assert sent.body is not None and sent.body["input"] == texts


def test_the_answer_carries_its_cost(everyone: Gateway) -> None:
    key = everyone.create_user("alice", "10")
    r = httpx.post(
        f"{everyone.url}/ai/openai/embeddings",
        headers={"X-API-Key": key},
        json={"model": SMALL, "input": "hello world", "encoding_format": "float"},
    )
    assert r.status_code == 200
    (row,) = everyone.requests()
    assert r.json()["usage"]["cost"] == pytest.approx(row.cost / 1e9)
    assert Decimal(r.headers["X-Request-Cost"]) == Decimal(row.cost) / 10**9
    assert r.headers["X-Served-Model"] == SMALL


def test_token_array_input_is_counted(everyone: Gateway, openai_upstream: FakeOpenAI) -> None:
    key = everyone.create_user("alice", "10")
    result = sdk(everyone, key).embeddings.create(model=SMALL, input=[[1, 2, 3], [4, 5]])
    assert result.usage.prompt_tokens == 5
    (row,) = everyone.requests()
    assert row.prompt_tokens == 5


@pytest.mark.parametrize(
    ("path", "model", "inputs"),
    [
        ("mistral", "mistral-embed", [[1, 2, 3]]),
        ("mistral", "mistral-embed", ["text", [4, 5]]),
        ("llama", "BAAI/bge-large-en-v1.5", [7, 8]),
    ],
)
def test_token_ids_are_refused_where_the_provider_takes_text_only(
    everyone: Gateway,
    mistral_fake: FakeMistral,
    together_fake: FakeTogether,
    path: str,
    model: str,
    inputs: list[object],
) -> None:
    key = everyone.create_user("alice", "10")
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(everyone, key, path).embeddings.create(model=model, input=inputs)  # type: ignore[arg-type]
    assert "token ids" in caught.value.message
    assert mistral_fake.requests == [] and together_fake.requests == []
    (row,) = everyone.requests()
    assert (row.status, row.http_status, row.cost) == ("error", 400, 0)


def test_a_usage_beyond_the_bound_is_charged_in_full(
    everyone: Gateway, openai_upstream: FakeOpenAI
) -> None:
    # the provider's bill is the charge, even past what was reserved
    openai_upstream.enqueue(Answer(usage=FakeUsage(prompt_tokens=50_000)))
    key = everyone.create_user("alice", "10")
    sdk(everyone, key).embeddings.create(model=SMALL, input="hi")
    (row,) = everyone.requests()
    assert row.prompt_tokens == 50_000
    assert row.cost == -(-50_000 * price_of("openai", SMALL) // 1_000_000)
    assert row.cost > row.reserved


def test_mistral_embeddings_are_charged(everyone: Gateway) -> None:
    key = everyone.create_user("alice", "10")
    result = sdk(everyone, key, "mistral").embeddings.create(
        model="mistral-embed", input=["bonjour le monde"]
    )
    assert len(result.data[0].embedding) == 1024
    (row,) = everyone.requests()
    assert (row.prompt_tokens, row.usage_estimated) == (3, False)
    assert row.cost == -(-3 * price_of("mistral", "mistral-embed") // 1_000_000)


def test_together_reports_no_usage_so_the_gateway_counts_it(
    everyone: Gateway, together_fake: FakeTogether
) -> None:
    model = "BAAI/bge-large-en-v1.5"  # not in the price data: the operator prices it
    key = everyone.create_user("alice", "10")
    with pytest.raises(openai.BadRequestError):  # unknown model under the `refuse` policy
        sdk(everyone, key, "llama").embeddings.create(model=model, input="hello there")
    assert together_fake.requests == []
    everyone.session(lambda s: catalog_admin.set_price(s, "llama", model, input="0.02", output="0"))
    result = sdk(everyone, key, "llama").embeddings.create(model=model, input="hello there")
    assert result.usage.prompt_tokens >= 2  # a safe bound of "hello there"
    rows = everyone.requests(status="ok")
    assert len(rows) == 1
    assert rows[0].usage_estimated is True
    assert rows[0].prompt_tokens == result.usage.prompt_tokens
    assert rows[0].cost == -(-rows[0].prompt_tokens * 20_000 // 1_000)


@pytest.mark.parametrize("path", ["claude", "deepseek"])
def test_a_path_without_embeddings_is_404_naming_where_they_are(
    everyone: Gateway, path: str
) -> None:
    key = everyone.create_user("alice", "10")
    with pytest.raises(openai.NotFoundError) as caught:
        sdk(everyone, key, path).embeddings.create(model="anything", input="hi")
    message = caught.value.message
    assert f"/ai/{path}/embeddings is not served" in message
    for served in ("/ai/openai/embeddings", "/ai/mistral/embeddings", "/ai/llama/embeddings"):
        assert served in message
    assert everyone.requests() == []


BAD = [
    ({"input": "hi"}, "model"),
    ({"model": SMALL}, "input"),
    ({"model": SMALL, "input": ""}, "input"),
    ({"model": SMALL, "input": []}, "input"),
    ({"model": SMALL, "input": [1, "two"]}, "input"),
    ({"model": SMALL, "input": [[1, -2]]}, "input"),
    ({"model": SMALL, "input": [True]}, "input"),
    ({"model": SMALL, "input": ["ok"] * 2049}, "input"),
]


@pytest.mark.parametrize(("body", "param"), BAD)
def test_bad_input_is_400_free_and_never_sent(
    everyone: Gateway, openai_upstream: FakeOpenAI, body: dict[str, object], param: str
) -> None:
    key = everyone.create_user("alice", "10")
    r = httpx.post(f"{everyone.url}/ai/openai/embeddings", headers={"X-API-Key": key}, json=body)
    assert r.status_code == 400
    assert r.json()["error"]["param"] == param
    assert openai_upstream.requests == []
    (row,) = everyone.requests()
    assert (row.status, row.http_status, row.cost) == ("error", 400, 0)
    assert everyone.balance("alice") == (10 * 10**9, 0)


def test_an_upstream_error_is_free(everyone: Gateway, openai_upstream: FakeOpenAI) -> None:
    openai_upstream.enqueue(ErrorReply(400, message="Invalid input"))
    key = everyone.create_user("alice", "10")
    with pytest.raises(openai.BadRequestError):
        sdk(everyone, key).embeddings.create(model=SMALL, input="hi")
    (row,) = everyone.requests()
    assert (row.status, row.cost) == ("error", 0)
    assert everyone.balance("alice") == (10 * 10**9, 0)


def test_an_unaffordable_request_is_402_and_never_sent(
    everyone: Gateway, openai_upstream: FakeOpenAI
) -> None:
    key = everyone.create_user("alice", "0.000000001")
    with pytest.raises(openai.APIStatusError) as caught:
        sdk(everyone, key).embeddings.create(model=SMALL, input="hello " * 500)
    assert caught.value.status_code == 402
    assert openai_upstream.requests == []


def test_an_idempotent_repeat_is_replayed_uncharged(everyone: Gateway) -> None:
    key = everyone.create_user("alice", "10")
    headers = {"X-API-Key": key, "Idempotency-Key": "emb-1"}
    body = {"model": SMALL, "input": "hello world", "encoding_format": "float"}
    first = httpx.post(f"{everyone.url}/ai/openai/embeddings", headers=headers, json=body)
    again = httpx.post(f"{everyone.url}/ai/openai/embeddings", headers=headers, json=body)
    assert first.status_code == again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert len(everyone.requests()) == 1


def test_the_log_and_the_metrics_name_the_surface(everyone: Gateway) -> None:
    key = everyone.create_user("alice", "10")
    sdk(everyone, key).embeddings.create(model=SMALL, input="hello")
    sdk(everyone, key).chat.completions.create(
        model="gpt-5.4-mini", messages=[{"role": "user", "content": "hi"}]
    )
    assert [r.surface for r in everyone.requests()] == ["embeddings", "chat"]
    usage = httpx.get(f"{everyone.url}/ai/usage", headers={"X-API-Key": key}).json()
    assert sorted(r["surface"] for r in usage["data"]) == ["chat", "embeddings"]
    metrics = httpx.get(f"{everyone.url}/metrics").text
    for surface in ("chat", "embeddings"):
        assert f'status="ok",surface="{surface}"' in metrics
