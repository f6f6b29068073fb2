"""Token counts of text the gateway saw, for the usage of a stream that ended without one.

A stream the client closed (or the upstream cut) before its usage arrived is
charged an estimate, flagged `usage_estimated`. The estimate counts real
tokens with the OpenAI vocabularies shipped offline by `bpe-openai`:

* OpenAI models: the model's own encoding (`o200k_base` for current models,
  `cl100k_base` for the GPT-4 / 3.5 generation), so the count is the
  provider's, give or take the few tokens of its message framing;
* any other provider (its tokenizer is not public): a safe bound, the
  `o200k_base` count plus a quarter, and at least one token per non-ASCII
  character (scripts such as CJK take about one token a character in most
  vocabularies); never more than the UTF-8 byte count, which bounds every
  byte-level BPE tokenizer.

Texts longer than `EXACT_LIMIT` characters are counted exactly up to that
length and by their UTF-8 bytes beyond (a bound that keeps the event loop
free). The tokenizer takes a second or two to load: the app loads it in a
thread at startup, and counting never waits for it; until it is loaded (or
if it cannot be) a text counts `rough_tokens`, a cruder bound (a token for
every 2 ASCII characters, one for every other character, two for an emoji).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import warnings
from typing import Any, Protocol

import orjson

from ai_service.billing.money import ceil_div

log = logging.getLogger("ai_service.billing")

OPENAI_ENCODING = "o200k_base"
EXACT_LIMIT = 100_000  # about 40 ms of counting at worst
# OpenAI's framing of a chat prompt: per message, and once for the reply's priming
PER_MESSAGE = 3
PER_NAME = 1
REPLY_PRIMING = 3


class Encoding(Protocol):
    def encode_ordinary(self, text: str) -> list[int]: ...


ENCODINGS = (OPENAI_ENCODING, "cl100k_base")
_LOADING = threading.Lock()
_library: Any = None  # the `bpe_openai` module once loaded (False if it cannot be)
_encodings: dict[str, Encoding] = {}


def load() -> bool:
    """Import the tokenizer and its `ENCODINGS`, once (a second or two); whether it is usable."""
    global _library
    with _LOADING:
        if _library is None:
            try:
                with warnings.catch_warnings():  # it reads them with a deprecated API
                    warnings.simplefilter("ignore", DeprecationWarning)
                    import bpe_openai  # type: ignore[import-untyped]  # no type information

                    for name in ENCODINGS:
                        _encodings[name] = bpe_openai.get_encoding(name)
                _library = bpe_openai
            except Exception:  # a missing or broken tokenizer only costs precision
                log.exception("tokenizer unavailable; counting tokens roughly")
                _library = False
    return bool(_library)


async def prepare() -> None:
    """Load the tokenizer in a thread (at startup: counting never waits for it)."""
    if _library is None:
        await asyncio.to_thread(load)


def encoding(name: str) -> Encoding | None:
    """One of `ENCODINGS` once the tokenizer is loaded, else None."""
    return _encodings.get(name)


def encoding_for(provider: str, model: str | None) -> str | None:
    """The encoding that counts `model`'s tokens exactly, or None for another provider's."""
    if provider != "openai":
        return None
    if model and _library:
        try:
            name: str = _library.encoding_name_for_model(model)
        except Exception:  # an unknown (newer) model: the current vocabulary
            return OPENAI_ENCODING
        if name in ENCODINGS:
            return name
    return OPENAI_ENCODING


def rough_tokens(text: str) -> int:
    """A safe bound without a tokenizer: a token for every 2 ASCII characters, one for
    every other character, two for one outside the BMP (emoji); at most the bytes."""
    ascii_chars = len(text.encode("ascii", errors="ignore"))
    astral = sum(1 for c in text if ord(c) > 0xFFFF) if len(text) > ascii_chars else 0
    rough = ceil_div(ascii_chars, 2) + len(text) - ascii_chars + astral
    return min(rough, len(text.encode()))


def count_tokens(text: str, name: str = OPENAI_ENCODING) -> int:
    """The tokens of `text` in the named vocabulary (see the module's notes for the bounds)."""
    if not text:
        return 0
    head, tail = text[:EXACT_LIMIT], text[EXACT_LIMIT:]
    enc = encoding(name)
    if enc is None:
        return rough_tokens(text)
    try:
        exact = len(enc.encode_ordinary(head))
    except Exception:  # e.g. its limit of tokens a call
        log.warning("tokenizer %s failed; counting tokens roughly", name, exc_info=True)
        exact = rough_tokens(head)
    return exact + len(tail.encode())


def text_tokens(text: str, provider: str, model: str | None) -> int:
    """`text`'s tokens for `provider`'s `model`: exact for OpenAI, else a safe bound."""
    if not text:
        return 0
    name = encoding_for(provider, model)
    if name is not None:
        return count_tokens(text, name)
    counted = count_tokens(text, OPENAI_ENCODING)
    non_ascii = len(text) - len(text.encode("ascii", errors="ignore"))
    bound = max(counted + ceil_div(counted, 4), non_ascii)
    return min(bound, len(text.encode()))


def prompt_tokens(raw: str, provider: str, model: str | None, image_allowance: int) -> int | None:
    """An estimate of the prompt tokens of an OpenAI-shaped request body (None if unreadable).

    The messages' text (content, names, tool calls, reasoning), the Messages
    API's `system`, or the Responses API's `instructions` and `input` items, the tool definitions
    and the response format are counted as `text_tokens` does,
    with OpenAI's framing of 3 tokens a message and 3 for the reply; an
    image counts `image_allowance`.
    """
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(body, dict):
        return None
    texts: list[str] = []
    images = 0
    framing = REPLY_PRIMING
    messages = body.get("messages")
    for message in messages if isinstance(messages, list) else ():
        if not isinstance(message, dict):
            continue
        framing += PER_MESSAGE
        images += _collect(message.get("content"), texts)
        name = message.get("name")
        if isinstance(name, str):
            texts.append(name)
            framing += PER_NAME
        for key in ("tool_calls", "function_call"):
            if message.get(key):
                texts.append(orjson.dumps(message[key]).decode())
        reasoning = message.get("reasoning_content")
        if isinstance(reasoning, str):
            texts.append(reasoning)
    instructions = body.get("instructions")
    if isinstance(instructions, str):
        framing += PER_MESSAGE
        texts.append(instructions)
    system = body.get("system")  # the Messages API's
    if system:
        framing += PER_MESSAGE
        images += _collect(system, texts)
    inputs = body.get("input")  # the Responses API's
    if isinstance(inputs, str):
        framing += PER_MESSAGE
        texts.append(inputs)
    for item in inputs if isinstance(inputs, list) else ():
        framing += PER_MESSAGE
        images += _input_item(item, texts)
    for key in ("tools", "functions", "response_format", "text"):
        value = body.get(key)
        if value:
            texts.append(orjson.dumps(value).decode())
    counted = text_tokens("\n".join(texts), provider, model)
    return counted + framing + images * image_allowance


def _input_item(item: Any, texts: list[str]) -> int:
    """Append the text of a Responses API input item to `texts`; the number of images in it."""
    if not isinstance(item, dict):
        texts.append(orjson.dumps(item).decode())
        return 0
    if item.get("type", "message") == "message":
        return _collect(item.get("content"), texts)
    for key in ("output", "arguments", "name"):
        value = item.get(key)
        if isinstance(value, str):
            texts.append(value)
        elif value is not None:
            texts.append(orjson.dumps(value).decode())
    return 0


def _collect(content: Any, texts: list[str]) -> int:
    """Append the text of a message's content to `texts`; the number of images in it."""
    if isinstance(content, str):
        texts.append(content)
        return 0
    if not isinstance(content, list):
        if content is not None:
            texts.append(orjson.dumps(content).decode())
        return 0
    images = 0
    for part in content:
        if isinstance(part, dict):
            if part.get("type") in ("image_url", "image", "input_image"):
                images += 1
                continue
            text = part.get("text")
            if isinstance(text, str):
                texts.append(text)
                continue
        texts.append(orjson.dumps(part).decode())
    return images
