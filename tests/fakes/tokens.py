"""Deterministic token arithmetic shared by every fake, so tests can compute usage.

The formula (the same for every provider):

* prompt tokens = for every message (and Anthropic's top-level ``system``, which
  counts as one message): 3 + the number of whitespace-separated words in all its
  text (string content, ``text`` parts/blocks, Anthropic ``tool_result`` text).
  Images, tool definitions, tool-call arguments and other fields count nothing.
* an answer text is streamed in chunks that each start at a word
  (``"Hello from openai!"`` -> ``"Hello"``, ``" from"``, ``" openai!"``); one
  chunk is one completion token. Reasoning text is chunked the same way.
* a tool call costs 1 + the number of its argument fragments (the arguments JSON
  cut into pieces of ``ARG_FRAGMENT`` characters; these are also the stream deltas).
* completion tokens = reasoning chunks + text chunks + tool-call tokens.
* the output limit (``max_tokens``/``max_completion_tokens``) is spent on
  reasoning first, then text; if either is cut the finish reason is length /
  max_tokens. Tool calls are never cut.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .behaviours import Answer, ToolCall, Usage

PER_MESSAGE = 3
ARG_FRAGMENT = 10
_CHUNK = re.compile(r"\s*\S+(?:\s+$)?")


def count_words(text: str) -> int:
    """Return the number of whitespace-separated words of ``text``."""
    return len(text.split())


def split_chunks(text: str) -> tuple[str, ...]:
    """Split ``text`` into stream chunks that each start with (spaces and) one word."""
    return tuple(_CHUNK.findall(text))


def split_fragments(arguments: str, size: int = ARG_FRAGMENT) -> tuple[str, ...]:
    """Cut tool-call arguments into the fragments that are streamed."""
    return tuple(arguments[i : i + size] for i in range(0, len(arguments), size)) or ("",)


def _texts(content: object) -> Iterable[str]:
    if isinstance(content, str):
        yield content
    elif isinstance(content, list):
        for part in content:
            if not isinstance(part, dict):
                continue
            if isinstance(part.get("text"), str):
                yield part["text"]
            elif part.get("type") == "tool_result":
                yield from _texts(part.get("content"))


def prompt_tokens(messages: object, system: object = None) -> int:
    """Apply the prompt formula to a request's ``messages`` (and Anthropic ``system``)."""
    total = 0
    if system:
        total += PER_MESSAGE + sum(count_words(t) for t in _texts(system))
    if isinstance(messages, list):
        for message in messages:
            content = message.get("content") if isinstance(message, dict) else None
            total += PER_MESSAGE + sum(count_words(t) for t in _texts(content))
    return total


@dataclass(frozen=True)
class PlannedCall:
    """A tool call with its id and streamed argument fragments."""

    id: str
    name: str
    arguments: str
    fragments: tuple[str, ...]


@dataclass(frozen=True)
class Plan:
    """Everything a fake sends for one answer, decided before the first byte."""

    chunks: tuple[str, ...]
    reasoning: tuple[str, ...]
    tool_calls: tuple[PlannedCall, ...]
    truncated: bool
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int
    cached_tokens: int
    cache_creation_tokens: int
    cache_1h_tokens: int | None = None
    service_tier: str | None = None
    cache_write_reported: bool = False

    @property
    def text(self) -> str:
        return "".join(self.chunks)

    @property
    def reasoning_text(self) -> str:
        return "".join(self.reasoning)


def make_plan(
    answer: Answer,
    *,
    default_chunks: Sequence[str],
    default_reasoning: Sequence[str],
    prompt: int,
    limit: int | None,
    call_ids: Iterable[str],
) -> Plan:
    """Decide the answer's chunks, tool calls and usage numbers (see module docstring)."""
    tools = answer.tool_calls
    if answer.text is not None:
        chunks: Sequence[str] = split_chunks(answer.text)
    else:
        chunks = () if tools else default_chunks
    if answer.reasoning is not None:
        reasoning: Sequence[str] = split_chunks(answer.reasoning)
    else:
        reasoning = default_reasoning
    budget = len(reasoning) + len(chunks) if limit is None else max(limit, 0)
    kept_reasoning = tuple(reasoning[:budget])
    kept_chunks = tuple(chunks[: budget - len(kept_reasoning)])
    truncated = len(kept_reasoning) + len(kept_chunks) < len(reasoning) + len(chunks)
    calls = tuple(_plan_call(call, next_id) for call, next_id in zip(tools, call_ids, strict=True))
    completion = (
        len(kept_reasoning) + len(kept_chunks) + sum(1 + len(call.fragments) for call in calls)
    )
    usage = answer.usage or Usage()
    return Plan(
        chunks=kept_chunks,
        reasoning=kept_reasoning,
        tool_calls=calls,
        truncated=truncated,
        finish_reason=answer.finish_reason,
        prompt_tokens=_pick(usage.prompt_tokens, prompt),
        completion_tokens=_pick(usage.completion_tokens, completion),
        reasoning_tokens=_pick(usage.reasoning_tokens, len(kept_reasoning)),
        cached_tokens=_pick(usage.cached_tokens, 0),
        cache_creation_tokens=_pick(usage.cache_creation_tokens, 0),
        cache_1h_tokens=usage.cache_1h_tokens,
        service_tier=usage.service_tier,
        cache_write_reported=usage.cache_creation_tokens is not None,
    )


def _plan_call(call: ToolCall, generated_id: str) -> PlannedCall:
    return PlannedCall(
        id=call.id or generated_id,
        name=call.name,
        arguments=call.arguments,
        fragments=split_fragments(call.arguments),
    )


def _pick(value: int | None, default: int) -> int:
    return default if value is None else value
