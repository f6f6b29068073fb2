"""Token estimates: the OpenAI vocabularies offline, safe bounds for other providers."""

from __future__ import annotations

import orjson
import pytest

from ai_service.billing import tokens

ENGLISH = "The quick brown fox jumps over the lazy dog, then naps in the afternoon sun."
CJK = "東京の天気は晴れです。今日はとても良い日ですね。明日も晴れるでしょう。"
SAMPLES = [
    ENGLISH,
    CJK,
    "Ünïcödé façade — naïve café",
    "def f(x):\n    return x ** 2\n",
    "🙂🙃" * 5,
]


@pytest.fixture(autouse=True, scope="module")
def tokenizer() -> None:
    assert tokens.load()


def test_openai_models_count_with_their_own_encoding() -> None:
    assert tokens.encoding_for("openai", "gpt-4o-mini") == "o200k_base"
    assert tokens.encoding_for("openai", "gpt-3.5-turbo") == "cl100k_base"
    assert tokens.encoding_for("openai", "gpt-9-unknown") == "o200k_base"
    assert tokens.encoding_for("claude", "claude-sonnet-4-5") is None
    exact = tokens.count_tokens(ENGLISH)
    assert 14 <= exact <= 20  # what o200k_base gives, not characters / 4 = 19 by chance
    assert tokens.text_tokens(ENGLISH, "openai", "gpt-4o") == exact
    assert tokens.count_tokens(CJK) > len(CJK) / 4  # characters / 4 undercounts CJK


@pytest.mark.parametrize("text", SAMPLES)
def test_other_providers_get_a_bound_above_the_openai_count(text: str) -> None:
    exact = tokens.count_tokens(text)
    bound = tokens.text_tokens(text, "mistral", "mistral-large-latest")
    assert exact <= bound <= len(text.encode())
    assert bound >= len(text) - len(text.encode("ascii", errors="ignore"))  # 1 per non-ASCII


@pytest.mark.parametrize("text", SAMPLES)
def test_the_rough_count_without_a_tokenizer_stays_above_the_real_one(text: str) -> None:
    assert tokens.rough_tokens(text) >= tokens.count_tokens(text)


def test_past_the_exact_limit_the_bytes_bound_the_rest() -> None:
    text = "a" * (tokens.EXACT_LIMIT + 10)
    assert tokens.count_tokens(text) == tokens.count_tokens(text[: tokens.EXACT_LIMIT]) + 10


def test_prompt_estimate_counts_messages_tools_and_framing() -> None:
    body = {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "name": "ann", "content": [{"type": "text", "text": ENGLISH}]},
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]},
        ],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
    }
    raw = orjson.dumps(body).decode()
    estimate = tokens.prompt_tokens(raw, "openai", "gpt-4o", image_allowance=1000)
    assert estimate is not None
    text = tokens.count_tokens("Be brief.") + tokens.count_tokens(ENGLISH)
    framing = 3 * 3 + 3 + 1  # three messages, the reply, one name
    assert estimate >= text + framing + 1000
    assert estimate <= text + framing + 1000 + 40  # the tools' JSON, the name, the joins
    assert tokens.prompt_tokens("not json", "openai", None, 1000) is None


def test_prompt_estimate_counts_the_system_prompt_of_a_messages_body() -> None:
    blocks = [{"type": "text", "text": ENGLISH, "cache_control": {"type": "ephemeral"}}]
    for system in (ENGLISH, blocks):
        body = {"model": "m", "system": system, "messages": [{"role": "user", "content": "hi"}]}
        raw = orjson.dumps(body).decode()
        estimate = tokens.prompt_tokens(raw, "openai", "gpt-4o", image_allowance=1000)
        text = tokens.count_tokens(ENGLISH) + tokens.count_tokens("hi")
        framing = 3 * 2 + 3  # the system prompt, one message, the reply
        assert estimate is not None
        assert text + framing <= estimate <= text + framing + 3  # the join
