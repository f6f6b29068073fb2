"""Helpers for the fake tests: SDK clients and raw HTTP calls against a fake."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import anthropic
import httpx
import openai

from tests.fakes import FakeAnthropic, FakeServer

KEY = "sk-fake-0123456789abcdef"
HI: Any = [{"role": "user", "content": "Say hello"}]  # 3 + 2 = 5 prompt tokens
WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def openai_client(fake: FakeServer, timeout: float = 5.0) -> openai.OpenAI:
    """An official OpenAI client for any OpenAI-shaped fake; no retries."""
    return openai.OpenAI(
        base_url=fake.base_url,
        api_key=KEY,
        max_retries=0,
        timeout=timeout,
        http_client=openai.DefaultHttpxClient(verify=False),  # loopback http: skip the CA bundle
    )


def anthropic_client(fake: FakeAnthropic, timeout: float = 5.0) -> anthropic.Anthropic:
    """An official Anthropic client for the fake; no retries."""
    return anthropic.Anthropic(base_url=fake.base_url, api_key=KEY, max_retries=0, timeout=timeout)


def chat_url(fake: FakeServer) -> str:
    if isinstance(fake, FakeAnthropic):
        return fake.base_url + "/v1/messages"
    return fake.base_url + "/chat/completions"


def post(
    fake: FakeServer, body: dict[str, Any], headers: dict[str, str] | None = None
) -> httpx.Response:
    """POST ``body`` to the fake's chat endpoint with raw httpx (default: valid auth)."""
    if headers is None:
        if isinstance(fake, FakeAnthropic):
            headers = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
        else:
            headers = {"Authorization": f"Bearer {KEY}"}
    # verify=False: plain http on loopback, and it skips loading the CA bundle (~50 ms).
    url = chat_url(fake)
    return httpx.post(url, json=body, headers=headers, timeout=5.0, verify=False)  # noqa: S501


def sse_data(response: httpx.Response) -> list[str]:
    """The ``data:`` payloads of an SSE body, in order."""
    return [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]


def sse_json(response: httpx.Response) -> list[dict[str, Any]]:
    """The JSON ``data:`` payloads of an SSE body (``[DONE]`` left out)."""
    return [json.loads(data) for data in sse_data(response) if data != "[DONE]"]


def collect_text(stream: Iterable[Any], into: list[str]) -> None:
    """Append each OpenAI stream chunk's text to ``into``; raises what the stream raises."""
    for chunk in stream:
        if chunk.choices:
            into.append(chunk.choices[0].delta.content or "")


def first_text(message: Any) -> str:
    """The text of an Anthropic message's first content block, which must be a text block."""
    block = message.content[0]
    assert block.type == "text"
    return str(block.text)


def post_path(
    fake: FakeServer, path: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> httpx.Response:
    """POST ``body`` to ``fake.base_url + path`` with raw httpx (default: valid auth)."""
    if headers is None:
        if isinstance(fake, FakeAnthropic):
            headers = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
        else:
            headers = {"Authorization": f"Bearer {KEY}"}
    url = fake.base_url + path
    return httpx.post(url, json=body, headers=headers, timeout=5.0, verify=False)  # noqa: S501


def sse_events(response: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    """The ``(event name, JSON data)`` pairs of a named-event SSE body, in order."""
    events: list[tuple[str, dict[str, Any]]] = []
    for block in response.text.split("\n\n"):
        lines = block.splitlines()
        names = [line[7:] for line in lines if line.startswith("event: ")]
        data = [line[6:] for line in lines if line.startswith("data: ")]
        if data:
            events.append((names[0] if names else "", json.loads("".join(data))))
    return events
