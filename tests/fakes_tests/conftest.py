"""Fixtures: one started fake of each provider and an official SDK client pointed at it."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import openai
import pytest

from tests.fakes import FakeAnthropic, FakeDeepSeek, FakeMistral, FakeOpenAI, FakeTogether

from .clients import KEY, anthropic_client, openai_client


@pytest.fixture
def openai_fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(KEY) as fake:
        yield fake


@pytest.fixture
def mistral_fake() -> Iterator[FakeMistral]:
    with FakeMistral(KEY) as fake:
        yield fake


@pytest.fixture
def together_fake() -> Iterator[FakeTogether]:
    with FakeTogether(KEY) as fake:
        yield fake


@pytest.fixture
def deepseek_fake() -> Iterator[FakeDeepSeek]:
    with FakeDeepSeek(KEY) as fake:
        yield fake


@pytest.fixture
def anthropic_fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(KEY) as fake:
        yield fake


@pytest.fixture
def oai(openai_fake: FakeOpenAI) -> Iterator[openai.OpenAI]:
    with openai_client(openai_fake) as client:
        yield client


@pytest.fixture
def claude(anthropic_fake: FakeAnthropic) -> Iterator[anthropic.Anthropic]:
    with anthropic_client(anthropic_fake) as client:
        yield client
