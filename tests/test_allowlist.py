"""Allow-list patterns: how they match, and what an operator may set."""

from __future__ import annotations

import pytest

from ai_service.allowlist import AllowList, denial, parse
from ai_service.errors import InvalidRequestError
from ai_service.providers import REGISTRY


@pytest.mark.parametrize(
    ("pattern", "provider", "model", "allowed"),
    [
        ("openai:*", "openai", "gpt-5.4-mini", True),
        ("openai:*", "claude", "gpt-5.4-mini", False),
        ("claude:claude-sonnet-*", "claude", "claude-sonnet-4-6", True),
        ("claude:claude-sonnet-*", "claude", "claude-opus-4-6", False),
        ("*:gpt-4.1*", "openai", "gpt-4.1-mini", True),
        ("*:gpt-4.1*", "llama", "gpt-4.1", True),
        # the halves match apart: a provider's `*` never swallows a model's prefix
        ("*:gpt-4.1*", "openai", "ft:gpt-4.1-mini:org::id", False),
        ("openai:ft:gpt-4.1*", "openai", "ft:gpt-4.1-mini:org::id", True),
        ("llama:meta-llama/*", "llama", "meta-llama/Llama-3.3-70B-Instruct-Turbo", True),
        # case-sensitive, whole ids
        ("openai:GPT-4.1", "openai", "gpt-4.1", False),
        ("openai:gpt-4.1", "openai", "gpt-4.1-mini", False),
        ("openai:gpt-4.?", "openai", "gpt-4.1", True),
        ("openai:gpt-[45]*", "openai", "gpt-5.4", True),
        ("openai:gpt-[!45]*", "openai", "gpt-5.4", False),
        ("{mistral,llama}:*", "mistral", "mistral-small-latest", False),  # no braces in globs
        ("mist*:*", "mistral", "mistral-small-latest", True),
    ],
)
def test_a_pattern_matches_the_provider_and_the_whole_model_id(
    pattern: str, provider: str, model: str, allowed: bool
) -> None:
    assert AllowList.of([pattern]).allows(provider, model) is allowed


def test_a_request_needs_both_the_id_asked_for_and_the_id_served() -> None:
    rules = AllowList.of(["openai:gpt-4o", "openai:gpt-5.4-mini"])
    assert rules.permits("openai", "gpt-4o", "gpt-5.4-mini")
    assert rules.permits("openai", "gpt-5.4-mini", "gpt-5.4-mini")
    assert not AllowList.of(["openai:gpt-4o"]).permits("openai", "gpt-4o", "gpt-5.4")
    assert not AllowList.of(["openai:gpt-5.4"]).permits("openai", "gpt-cheap", "gpt-5.4")
    assert not AllowList.of([]).permits("openai", "gpt-4o", "gpt-4o")


def test_reaching_a_provider_needs_a_pattern_naming_it() -> None:
    rules = AllowList.of(["claude:*", "mist*:mistral-small-*"])
    assert rules.reaches("claude") and rules.reaches("mistral")
    assert not rules.reaches("openai")
    assert AllowList.of(["*:only-this"]).reaches("deepseek")


def test_parse_strips_and_drops_repeats() -> None:
    assert parse([" openai:* ", "claude:*", "openai:*"], REGISTRY, "p") == ("openai:*", "claude:*")


@pytest.mark.parametrize(
    ("patterns", "words"),
    [
        ([], "non-empty"),
        (["openai"], "PROVIDER:MODEL"),
        (["openai:"], "PROVIDER:MODEL"),
        ([":gpt-4.1"], "PROVIDER:MODEL"),
        (["anthropic:*"], "names no provider"),
        (["v1:*"], "names no provider"),  # a path alias: the provider is openai
        (["openai:gpt 4"], "without spaces"),
        (["openai:gpt\t4"], "without spaces"),
        (["openai:" + "x" * 200], "at most 200"),
        (["openai:*"] * 101, "at most 100"),
        ([42], "PROVIDER:MODEL"),
    ],
)
def test_parse_refuses_what_would_not_mean_what_the_operator_meant(
    patterns: list[str], words: str
) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        parse(patterns, REGISTRY, "allowed_models")
    assert words in caught.value.message and caught.value.param == "allowed_models"


def test_a_denial_names_the_model_and_what_it_is_served_as() -> None:
    error = denial("openai", "gpt-cheap", "gpt-5.4")
    assert (error.status, error.type, error.error_code) == (
        403,
        "permission_error",
        "model_not_allowed",
    )
    assert "'openai:gpt-cheap' (served as 'gpt-5.4')" in error.message
    assert "the claude provider" in denial("claude", None).message
