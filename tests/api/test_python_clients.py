"""Python client libraries, unchanged, through the gateway: pydantic-ai's OpenAI models
(Responses and Chat Completions), litellm's `responses`, `completion` and `embedding`, the
OpenAI Agents SDK's default model and LangChain's `OpenAIEmbeddings`.

Each test checks the answer the library hands back (text, tool calls run) and that every
call it made was charged exactly the usage the fake reported, at the catalog's price.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from importlib import resources
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from ai_service.billing.pricing import cost
from ai_service.providers import REGISTRY
from ai_service.providers.base import Usage
from tests.conftest import UPSTREAM_KEY
from tests.fakes import FLAVOURS, Answer, FakeServer, ToolCall, Usage as FakeUsage
from tests.fakes.embeddings import embedding_vector
from tests.support.gateway import Gateway

PATHS = list(REGISTRY)  # every provider path serves chat and the Responses API
MODELS = {
    "openai": "gpt-4.1",
    "claude": "claude-sonnet-4-5",
    "mistral": "mistral-small-latest",
    "llama": "meta-llama/Llama-3.3-70B-Instruct-Turbo",
    "deepseek": "deepseek-chat",
}
EMBEDDING_MODELS = {"openai": "text-embedding-3-small", "mistral": "mistral-embed"}

ASK = "What is the weather in Paris?"
WEATHER = "22 degrees and sunny"
ANSWER = "It is 22 degrees and sunny in Paris."
# what the fake reports for each call: a tool call, the answer that reads its result, or
# the answer alone
TOOL_TURN = Answer(
    tool_calls=(ToolCall("get_weather", '{"city": "Paris"}'),),
    usage=FakeUsage(prompt_tokens=41, completion_tokens=12),
)
FINAL_TURN = Answer(text=ANSWER, usage=FakeUsage(prompt_tokens=67, completion_tokens=9))
PLAIN_TURN = Answer(text=ANSWER, usage=FakeUsage(prompt_tokens=23, completion_tokens=9))

# pydantic warns while building litellm's types, whose TypedDicts have `ReadOnly` items
LITELLM_TYPES = pytest.mark.filterwarnings(
    "ignore:Item '.*' on TypedDict class '.*' is using the `ReadOnly` qualifier:UserWarning"
)


@pytest.fixture(scope="module")
def fakes() -> Iterator[dict[str, FakeServer]]:
    with ExitStack() as stack:
        yield {path: stack.enter_context(FLAVOURS[path](api_key=UPSTREAM_KEY)) for path in REGISTRY}


@pytest.fixture
def everyone(gateway_factory: Callable[..., Gateway], fakes: dict[str, FakeServer]) -> Gateway:
    """A gateway with every provider path, each on its own fake."""
    settings: dict[str, str] = {}
    for path, fake in fakes.items():
        fake.reset()
        spec = REGISTRY[path]
        settings[spec.key_setting] = UPSTREAM_KEY
        settings[spec.url_setting] = fake.base_url
    return gateway_factory(**settings)


@pytest.fixture
def tiktoken_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """tiktoken's cache holding cl100k_base and o200k_base, from the copies bpe-openai ships.

    tiktoken downloads its encodings on first use; the tests have no network. litellm
    points `TIKTOKEN_CACHE_DIR` at its own copy when imported (or at
    `CUSTOM_TIKTOKEN_CACHE_DIR`): both are set here, so the environment is restored after.
    """
    for encoding in ("cl100k_base", "o200k_base"):
        url = f"https://openaipublic.blob.core.windows.net/encodings/{encoding}.tiktoken"
        packed = resources.files("bpe_openai").joinpath(f"data/{encoding}.tiktoken.gz")
        name = hashlib.sha1(url.encode()).hexdigest()  # noqa: S324 - tiktoken's cache key
        (tmp_path / name).write_bytes(gzip.decompress(packed.read_bytes()))
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CUSTOM_TIKTOKEN_CACHE_DIR", str(tmp_path))
    return tmp_path


@pytest.fixture
def litellm(tiktoken_cache: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """litellm, with the model price map it ships (else its import fetches one)."""
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # it looks for a model's tokenizer on the Hub
    import litellm

    return litellm


def script(fake: FakeServer, *answers: Answer) -> list[FakeUsage]:
    """Queue `answers` on `fake`; returns the usage each reports, in order."""
    fake.enqueue(*answers)
    return [a.usage for a in answers if a.usage is not None]


def assert_charged(
    gateway: Gateway, path: str, model: str, surface: str, calls: list[tuple[FakeUsage, bool]]
) -> None:
    """One request per call (its reported usage, whether it streamed), in order: each
    `ok` on `surface` and charged that usage at the catalog's price of `model`."""
    gateway.wait_settled()
    price = gateway.state.catalog.current.resolve(path, model).price
    rows = gateway.requests()
    assert [(r.provider, r.surface, r.status, r.stream) for r in rows] == [
        (path, surface, "ok", stream) for _, stream in calls
    ]
    for row, (reported, _) in zip(rows, calls, strict=True):
        usage = Usage(
            input_tokens=reported.prompt_tokens or 0,
            output_tokens=reported.completion_tokens or 0,
        )
        assert (row.prompt_tokens, row.completion_tokens) == (
            usage.input_tokens,
            usage.output_tokens,
        )
        assert row.cost == cost(usage, price) > 0
        assert row.usage_estimated is False


def sent_tool_result(fake: FakeServer) -> bool:
    """Whether the fake's last request carried the tool's result back."""
    return WEATHER in fake.requests[-1].raw.decode()


# ---- pydantic-ai -----------------------------------------------------------------


def pydantic_agent(gateway: Gateway, path: str, key: str, responses: bool) -> tuple[Any, list[str]]:
    from pydantic_ai import Agent
    from pydantic_ai.models.openai import OpenAIChatModel, OpenAIResponsesModel
    from pydantic_ai.providers.openai import OpenAIProvider

    provider = OpenAIProvider(base_url=f"{gateway.url}/ai/{path}", api_key=key)
    kind = OpenAIResponsesModel if responses else OpenAIChatModel
    agent = Agent(kind(MODELS[path], provider=provider), instructions="Be brief.")
    asked: list[str] = []

    @agent.tool_plain
    def get_weather(city: str) -> str:
        """The weather in a city."""
        asked.append(city)
        return WEATHER

    return agent, asked


def run_pydantic_agent(gateway: Gateway, fake: FakeServer, path: str, responses: bool) -> None:
    key = gateway.create_user("alice", "10")
    agent, asked = pydantic_agent(gateway, path, key, responses)
    calls = script(fake, TOOL_TURN, FINAL_TURN, TOOL_TURN, FINAL_TURN)
    result = agent.run_sync(ASK)
    assert result.output == ANSWER
    assert sent_tool_result(fake)
    usage = result.usage
    assert (usage.input_tokens, usage.output_tokens) == (41 + 67, 12 + 9)

    async def streamed() -> str:
        async with agent.run_stream(ASK) as run:
            return "".join([piece async for piece in run.stream_text(delta=True)])

    assert asyncio.run(streamed()) == ANSWER
    assert sent_tool_result(fake)
    assert asked == ["Paris", "Paris"]
    surface = "responses" if responses else "chat"
    streams = [False, False, True, True]
    assert_charged(gateway, path, MODELS[path], surface, list(zip(calls, streams, strict=True)))


@pytest.mark.parametrize("path", PATHS)
def test_pydantic_ais_responses_model_runs_and_streams_a_tool_round_trip(
    everyone: Gateway, fakes: dict[str, FakeServer], path: str
) -> None:
    run_pydantic_agent(everyone, fakes[path], path, responses=True)


@pytest.mark.parametrize("path", PATHS)
def test_pydantic_ais_chat_model_runs_and_streams_a_tool_round_trip(
    everyone: Gateway, fakes: dict[str, FakeServer], path: str
) -> None:
    run_pydantic_agent(everyone, fakes[path], path, responses=False)


# ---- the OpenAI Agents SDK ---------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
def test_the_openai_agents_sdks_default_model_runs_and_streams_a_tool_round_trip(
    everyone: Gateway, fakes: dict[str, FakeServer], path: str
) -> None:
    from agents import (
        Agent,
        Runner,
        function_tool,
        set_default_openai_client,
        set_tracing_disabled,
    )
    from openai import AsyncOpenAI

    fake = fakes[path]
    key = everyone.create_user("alice", "10")
    asked: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        asked.append(city)
        return WEATHER

    # the SDK reads `meta-llama/...` as a provider prefix; `openai/` names its default one
    model = f"openai/{MODELS[path]}" if "/" in MODELS[path] else MODELS[path]
    agent = Agent(name="forecaster", instructions="Be brief.", model=model, tools=[get_weather])
    calls = script(fake, TOOL_TURN, FINAL_TURN, TOOL_TURN, FINAL_TURN)

    async def run() -> tuple[str, str]:
        set_tracing_disabled(True)
        set_default_openai_client(
            AsyncOpenAI(base_url=f"{everyone.url}/ai/{path}", api_key=key, max_retries=0)
        )
        answer = await Runner.run(agent, ASK)
        streamed = Runner.run_streamed(agent, ASK)
        text = ""
        async for event in streamed.stream_events():
            if (
                event.type == "raw_response_event"
                and event.data.type == "response.output_text.delta"
            ):
                text += event.data.delta
        return str(answer.final_output), text

    answer, streamed = asyncio.run(run())
    assert (answer, streamed) == (ANSWER, ANSWER)
    assert sent_tool_result(fake)
    assert asked == ["Paris", "Paris"]
    streams = [False, False, True, True]
    assert_charged(
        everyone, path, MODELS[path], "responses", list(zip(calls, streams, strict=True))
    )


# ---- litellm -------------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
@LITELLM_TYPES
def test_litellm_responses(
    everyone: Gateway, fakes: dict[str, FakeServer], litellm: ModuleType, path: str
) -> None:
    model = f"openai/{MODELS[path]}"
    if path != "openai":
        # litellm replays a non-streamed answer as a stream for models it does not know
        # under the provider named: registering the model makes it stream
        litellm.register_model({model: {"litellm_provider": "openai", "mode": "chat"}})
    key = everyone.create_user("alice", "10")
    calls = script(fakes[path], PLAIN_TURN, PLAIN_TURN)
    options = {"model": model, "api_base": f"{everyone.url}/ai/{path}", "api_key": key}
    response = litellm.responses(input=ASK, **options)
    assert response.output[-1].content[0].text == ANSWER
    text = ""
    for event in litellm.responses(input=ASK, stream=True, **options):
        if event.type == "response.output_text.delta":
            text += event.delta
    assert text == ANSWER
    assert_charged(
        everyone, path, MODELS[path], "responses", list(zip(calls, [False, True], strict=True))
    )


@pytest.mark.parametrize("path", PATHS)
@LITELLM_TYPES
def test_litellm_completion(
    everyone: Gateway, fakes: dict[str, FakeServer], litellm: ModuleType, path: str
) -> None:
    key = everyone.create_user("alice", "10")
    calls = script(fakes[path], PLAIN_TURN, PLAIN_TURN)
    options = {
        "model": f"openai/{MODELS[path]}",
        "api_base": f"{everyone.url}/ai/{path}",
        "api_key": key,
    }
    messages = [{"role": "user", "content": ASK}]
    reply = litellm.completion(messages=messages, **options)
    assert reply.choices[0].message.content == ANSWER
    text = "".join(
        chunk.choices[0].delta.content or ""
        for chunk in litellm.completion(messages=messages, stream=True, **options)
    )
    assert text == ANSWER
    assert_charged(
        everyone, path, MODELS[path], "chat", list(zip(calls, [False, True], strict=True))
    )


@pytest.mark.parametrize("path", list(EMBEDDING_MODELS))
@LITELLM_TYPES
def test_litellm_embedding(
    everyone: Gateway, fakes: dict[str, FakeServer], litellm: ModuleType, path: str
) -> None:
    model = EMBEDDING_MODELS[path]
    key = everyone.create_user("alice", "10")
    (usage,) = script(fakes[path], Answer(usage=FakeUsage(prompt_tokens=17)))
    texts = ["the quick brown fox", "jumps over the lazy dog"]
    result = litellm.embedding(
        model=f"openai/{model}", input=texts, api_base=f"{everyone.url}/ai/{path}", api_key=key
    )
    dimensions = len(result.data[0]["embedding"])
    assert [d["embedding"] for d in result.data] == [
        pytest.approx(embedding_vector(model, t, dimensions), rel=1e-6) for t in texts
    ]
    assert_charged(everyone, path, model, "embeddings", [(usage, False)])


# ---- LangChain -----------------------------------------------------------------------


@pytest.mark.parametrize("path", list(EMBEDDING_MODELS))
def test_langchain_openai_embeddings(
    everyone: Gateway, fakes: dict[str, FakeServer], tiktoken_cache: Path, path: str
) -> None:
    from langchain_openai import OpenAIEmbeddings

    model = EMBEDDING_MODELS[path]
    key = everyone.create_user("alice", "10")
    calls = script(
        fakes[path],
        Answer(usage=FakeUsage(prompt_tokens=17)),
        Answer(usage=FakeUsage(prompt_tokens=5)),
    )
    embeddings = OpenAIEmbeddings(
        model=model,
        base_url=f"{everyone.url}/ai/{path}",
        api_key=key,  # type: ignore[arg-type]
        check_embedding_ctx_length=path == "openai",
        max_retries=0,
    )
    texts = ["the quick brown fox", "jumps over the lazy dog", "a fox"]
    vectors = [*embeddings.embed_documents(texts[:2]), embeddings.embed_query(texts[2])]
    if path == "openai":  # LangChain sends OpenAI's models the texts' tokens (cl100k_base)
        import tiktoken

        sent: list[Any] = [tiktoken.get_encoding("cl100k_base").encode(t) for t in texts]
    else:
        sent = texts
    dimensions = len(vectors[0])
    assert vectors == [
        pytest.approx(embedding_vector(model, s, dimensions), rel=1e-6) for s in sent
    ]
    assert [r.body["input"] for r in fakes[path].requests] == [sent[:2], [sent[2]]]
    assert_charged(everyone, path, model, "embeddings", [(u, False) for u in calls])


def test_langchain_embeddings_default_on_mistral_is_refused_free(
    everyone: Gateway, fakes: dict[str, FakeServer], tiktoken_cache: Path
) -> None:
    # by default LangChain sends token arrays, which only OpenAI's embeddings API takes:
    # refused by the gateway, naming the fix, before anything is sent
    import openai
    from langchain_openai import OpenAIEmbeddings

    key = everyone.create_user("alice", "10")
    embeddings = OpenAIEmbeddings(
        model="mistral-embed",
        base_url=f"{everyone.url}/ai/mistral",
        api_key=key,  # type: ignore[arg-type]
        max_retries=0,
    )
    with pytest.raises(openai.BadRequestError, match="check_embedding_ctx_length=False"):
        embeddings.embed_documents(["the quick brown fox"])
    assert fakes["mistral"].requests == []
    (row,) = everyone.requests()
    assert (row.status, row.http_status, row.cost) == ("error", 400, 0)
    assert everyone.balance("alice") == (10 * 10**9, 0)
