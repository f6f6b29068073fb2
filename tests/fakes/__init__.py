"""Fake upstream providers: real HTTP servers on loopback speaking each provider's wire format.

    with FakeOpenAI(api_key="sk-test") as fake:
        fake.enqueue(ErrorReply(429, retry_after=1), Answer(text="Hi there"))
        ...  # point the gateway (or an SDK) at fake.base_url
        assert fake.requests[0].body["model"] == "gpt-4o"

``FLAVOURS`` maps the gateway's provider path segments to the fake classes.
"""

from __future__ import annotations

from .anthropic_messages import FakeAnthropic
from .behaviours import (
    Answer,
    Behaviour,
    ErrorReply,
    Hang,
    Malformed,
    ResetConnection,
    ToolCall,
    Usage,
    WrongContentType,
)
from .openai_compat import OpenAICompatibleFake
from .openai_flavours import FakeDeepSeek, FakeMistral, FakeOpenAI, FakeTogether
from .records import RecordedRequest
from .server import FakeServer
from .tokens import count_words, prompt_tokens, split_chunks, split_fragments

FLAVOURS: dict[str, type[FakeServer]] = {
    "openai": FakeOpenAI,
    "claude": FakeAnthropic,
    "mistral": FakeMistral,
    "llama": FakeTogether,
    "deepseek": FakeDeepSeek,
}

__all__ = [
    "FLAVOURS",
    "Answer",
    "Behaviour",
    "ErrorReply",
    "FakeAnthropic",
    "FakeDeepSeek",
    "FakeMistral",
    "FakeOpenAI",
    "FakeServer",
    "FakeTogether",
    "Hang",
    "Malformed",
    "OpenAICompatibleFake",
    "RecordedRequest",
    "ResetConnection",
    "ToolCall",
    "Usage",
    "WrongContentType",
    "count_words",
    "prompt_tokens",
    "split_chunks",
    "split_fragments",
]
