"""The embeddings endpoints of the OpenAI-shaped fakes, proven with the official SDK."""

from __future__ import annotations

import base64
import math
import struct
from typing import Any

import openai
import pytest

from tests.fakes import (
    Answer,
    ErrorReply,
    FakeDeepSeek,
    FakeMistral,
    FakeOpenAI,
    FakeTogether,
    Usage,
)
from tests.fakes.embeddings import embedding_vector

from .clients import openai_client, post_path

SMALL = "text-embedding-3-small"


def test_float_embeddings_parse_with_sdk(openai_fake: FakeOpenAI, oai: openai.OpenAI) -> None:
    result = oai.embeddings.create(
        model=SMALL, input=["Say hello", "Good day to you"], encoding_format="float"
    )
    assert result.object == "list"
    assert result.model == SMALL
    assert [(item.object, item.index) for item in result.data] == [
        ("embedding", 0),
        ("embedding", 1),
    ]
    assert result.data[0].embedding == embedding_vector(SMALL, "Say hello", 1536)
    assert result.data[1].embedding == embedding_vector(SMALL, "Good day to you", 1536)
    assert len(result.data[0].embedding) == 1536
    assert math.isclose(sum(v * v for v in result.data[0].embedding), 1.0, rel_tol=1e-5)
    assert result.data[0].embedding != result.data[1].embedding
    assert (result.usage.prompt_tokens, result.usage.total_tokens) == (2 + 4, 2 + 4)
    record = openai_fake.last_request
    assert (record.path, record.body["encoding_format"]) == ("/v1/embeddings", "float")


def test_sdk_default_base64_decodes_to_the_float_vectors(
    openai_fake: FakeOpenAI, oai: openai.OpenAI
) -> None:
    result = oai.embeddings.create(model=SMALL, input="Say hello")
    assert openai_fake.last_request.body["encoding_format"] == "base64"  # the SDK's default
    assert result.data[0].embedding == embedding_vector(SMALL, "Say hello", 1536)
    raw = post_path(
        openai_fake,
        "/embeddings",
        {"model": SMALL, "input": "Say hello", "encoding_format": "base64"},
    ).json()
    encoded = raw["data"][0]["embedding"]
    assert isinstance(encoded, str)
    decoded = list(struct.unpack("<1536f", base64.b64decode(encoded)))
    assert decoded == embedding_vector(SMALL, "Say hello", 1536)


def test_token_array_inputs_count_their_tokens(oai: openai.OpenAI) -> None:
    one = oai.embeddings.create(model=SMALL, input=[1, 2, 3], encoding_format="float")
    assert len(one.data) == 1
    assert one.usage.prompt_tokens == 3
    many = oai.embeddings.create(model=SMALL, input=[[1, 2], [3, 4, 5]], encoding_format="float")
    assert [item.index for item in many.data] == [0, 1]
    assert many.usage.prompt_tokens == 5
    assert many.data[0].embedding == embedding_vector(SMALL, [1, 2], 1536)


def test_dimensions_shorten_and_renormalise(oai: openai.OpenAI) -> None:
    short = oai.embeddings.create(
        model="text-embedding-3-large", input="Say hello", dimensions=256, encoding_format="float"
    )
    vector = short.data[0].embedding
    assert len(vector) == 256
    assert math.isclose(sum(v * v for v in vector), 1.0, rel_tol=1e-5)
    full = embedding_vector("text-embedding-3-large", "Say hello", 3072)
    ratio = vector[0] / full[0]
    assert all(
        math.isclose(a, b * ratio, rel_tol=1e-4, abs_tol=1e-6)
        for a, b in zip(vector, full[:256], strict=True)
    )


@pytest.mark.parametrize(
    ("body", "message", "param"),
    [
        ({"input": "x"}, "you must provide a model parameter", None),
        ({"model": SMALL}, "Missing required parameter: 'input'.", "input"),
        (
            {"model": SMALL, "input": ""},
            "'$.input' is invalid. Please check the API reference: "
            "https://platform.openai.com/docs/api-reference.",
            None,
        ),
        (
            {"model": "text-embedding-ada-002", "input": "x", "dimensions": 8},
            "This model does not support specifying dimensions.",
            None,
        ),
        (
            {"model": SMALL, "input": "x", "encoding_format": "int8"},
            "Invalid value: 'int8'. Supported values are: 'float' and 'base64'.",
            "encoding_format",
        ),
        (
            {"model": SMALL, "input": "x", "dimensions": 4096},
            "Invalid 'dimensions': integer above maximum value. Expected a value <= 1536, "
            "but got 4096 instead.",
            "dimensions",
        ),
    ],
)
def test_openai_rejections(
    openai_fake: FakeOpenAI, body: dict[str, Any], message: str, param: str | None
) -> None:
    response = post_path(openai_fake, "/embeddings", body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["message"], error["type"], error["param"]) == (
        message,
        "invalid_request_error",
        param,
    )


def test_queued_behaviours_apply(openai_fake: FakeOpenAI, oai: openai.OpenAI) -> None:
    openai_fake.enqueue(ErrorReply(429), Answer(usage=Usage(prompt_tokens=42)))
    with pytest.raises(openai.RateLimitError):
        oai.embeddings.create(model=SMALL, input="Say hello")
    result = oai.embeddings.create(model=SMALL, input="Say hello")
    assert result.usage.prompt_tokens == 42


def test_mistral_embeddings(mistral_fake: FakeMistral) -> None:
    body = {"model": "mistral-embed", "input": ["Say hello"], "output_dimension": 64}
    response = post_path(mistral_fake, "/embeddings", body)
    assert response.status_code == 200
    answer = response.json()
    assert set(answer) == {"id", "object", "data", "model", "usage"}
    assert len(answer["id"]) == 32
    assert answer["usage"] == {"prompt_tokens": 2, "total_tokens": 2, "completion_tokens": 0}
    assert answer["data"][0]["embedding"] == embedding_vector("mistral-embed", "Say hello", 64)
    with openai_client(mistral_fake) as client:
        result = client.embeddings.create(model="mistral-embed", input="Say hello")
    assert len(result.data[0].embedding) == 1024
    rejected = post_path(mistral_fake, "/embeddings", {"model": "mistral-embed", "input": [1, 2]})
    assert rejected.status_code == 422
    assert rejected.json()["object"] == "error"
    assert rejected.json()["message"]["detail"][0]["loc"] == ["body", "input", "str"]


def test_together_embeddings_carry_no_usage(together_fake: FakeTogether) -> None:
    with openai_client(together_fake) as client:
        result = client.embeddings.create(
            model="BAAI/bge-base-en-v1.5", input=["Say hello", "Hi"], encoding_format="float"
        )
    assert [len(item.embedding) for item in result.data] == [768, 768]
    raw = post_path(together_fake, "/embeddings", {"model": "BAAI/bge-base-en-v1.5", "input": "x"})
    assert set(raw.json()) == {"object", "data", "model"}
    tokens = post_path(together_fake, "/embeddings", {"model": "m", "input": [[1, 2]]})
    assert tokens.status_code == 400


def test_deepseek_has_no_embeddings(deepseek_fake: FakeDeepSeek) -> None:
    with openai_client(deepseek_fake) as client, pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="deepseek-chat", input="Say hello")
    assert deepseek_fake.last_request.path == "/embeddings"
    assert deepseek_fake.last_request.status == 404
