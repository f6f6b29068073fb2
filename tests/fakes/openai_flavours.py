"""The four OpenAI-shaped fakes: OpenAI, Mistral, Together and DeepSeek.

Each is ``OpenAICompatibleFake`` plus the provider's documented or observed
quirks:

* OpenAI: full usage details (``prompt_tokens_details.cached_tokens``,
  ``completion_tokens_details.reasoning_tokens``); stream usage in a separate
  ``choices: []`` chunk only with ``stream_options.include_usage``; reasoning
  models (gpt-5*, o1*, o3*, o4*) reject ``max_tokens`` and non-default
  ``temperature``; ``stream_options`` without ``stream`` is rejected.
* Mistral: usage always on the last chunk; ``stream_options.include_usage`` is
  rejected with a 422 ``extra_forbidden`` body; tool-call ids are 9 alphanumeric
  characters and other ids in ``messages`` are rejected; tool calls stream whole;
  errors are ``{"object": "error", ...}``; 401 is ``{"message": "Unauthorized"}``.
* Together: usage always on the last chunk (``usage: null`` before), chunk
  choices also carry ``text`` and ``seed``.
* DeepSeek: base URL without ``/v1``; ``reasoning_content`` (message and stream
  deltas) for deepseek-reasoner / r1 models; ``prompt_cache_hit_tokens`` and
  ``prompt_cache_miss_tokens``; usage always rides on the finish chunk (as the
  real API sends it; ``usage: null`` on the other chunks with include_usage);
  ``max_tokens`` outside the model's range is rejected.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, ClassVar

from aiohttp import web

from .behaviours import ErrorReply
from .embeddings import EmbeddingsEndpoint, MistralEmbeddings, TogetherEmbeddings
from .openai_compat import OpenAICompatibleFake, openai_error
from .openai_responses import ResponsesEndpoint, ResponseStore, retrieve
from .server import Surface
from .tokens import Plan

_OPENAI_REASONING = re.compile(r"^(gpt-5|o1|o3|o4)")
_MISTRAL_TOOL_ID = re.compile(r"^[a-zA-Z0-9]{9}$")


class FakeOpenAI(OpenAICompatibleFake):
    """OpenAI at ``http://127.0.0.1:PORT/v1``: Chat Completions, Responses
    (``openai_responses.py``; ``responses`` holds the stored ones) and embeddings."""

    flavour = "openai"
    embeddings: ClassVar[type[EmbeddingsEndpoint] | None] = EmbeddingsEndpoint

    def __init__(
        self,
        api_key: str = "test-key",
        *,
        text: str | None = None,
        reasoning_text: str = "Let me think about it.",
        delay: float = 0.0,
        host: str = "127.0.0.1",
    ) -> None:
        super().__init__(api_key, text=text, reasoning_text=reasoning_text, delay=delay, host=host)
        self.responses = ResponseStore()

    def reset(self) -> None:
        """Also forget the stored responses."""
        super().reset()
        self.responses.clear()

    def surface(self, method: str, path: str) -> Surface | None:
        if method == "POST" and path == "/v1/responses":
            return ResponsesEndpoint(self, self.responses)
        return super().surface(method, path)

    def reader(self, method: str, path: str) -> Callable[[], web.Response] | None:
        prefix = "/v1/responses/"
        response_id = path[len(prefix) :]
        if method == "GET" and path.startswith(prefix) and response_id and "/" not in response_id:
            return lambda: retrieve(self, self.responses, response_id)
        return None

    def is_reasoning_model(self, model: str) -> bool:
        return bool(_OPENAI_REASONING.match(model))

    def response_extras(self, plan: Plan) -> dict[str, Any]:
        return {"service_tier": plan.service_tier or "default", "system_fingerprint": "fp_fake"}

    def message_json(self, plan: Plan) -> dict[str, Any]:
        return {**super().message_json(plan), "refusal": None, "annotations": []}

    def usage_json(self, plan: Plan) -> dict[str, Any]:
        return {
            **super().usage_json(plan),
            "prompt_tokens_details": {
                "cached_tokens": plan.cached_tokens,
                "audio_tokens": 0,
                # on the models that bill cache writes, a part of prompt_tokens
                **(
                    {"cache_write_tokens": plan.cache_creation_tokens}
                    if plan.cache_write_reported
                    else {}
                ),
            },
            "completion_tokens_details": {
                "reasoning_tokens": plan.reasoning_tokens,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }

    def validate_quirks(self, body: dict[str, Any]) -> ErrorReply | None:
        if body.get("stream_options") is not None and body.get("stream") is not True:
            return ErrorReply(
                400,
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                param="stream_options",
            )
        if not self.is_reasoning_model(body["model"]):
            return None
        if "max_tokens" in body:
            return ErrorReply(
                400,
                "Unsupported parameter: 'max_tokens' is not supported with this model. "
                "Use 'max_completion_tokens' instead.",
                param="max_tokens",
                code="unsupported_parameter",
            )
        temperature = body.get("temperature")
        if temperature is not None and temperature != 1:
            return ErrorReply(
                400,
                f"Unsupported value: 'temperature' does not support {temperature} with this "
                "model. Only the default (1) value is supported.",
                param="temperature",
                code="unsupported_value",
            )
        return None


class FakeMistral(OpenAICompatibleFake):
    """Mistral chat completions at ``http://127.0.0.1:PORT/v1``."""

    flavour = "mistral"
    embeddings: ClassVar[type[EmbeddingsEndpoint] | None] = MistralEmbeddings
    stream_usage: ClassVar[str] = "final"
    whole_tool_arguments: ClassVar[bool] = True

    def completion_id(self, n: int) -> str:
        return f"{n:032x}"

    def tool_call_id(self, n: int) -> str:
        return f"call{n:05d}"

    def unauthorized(self, key: str | None) -> web.Response:
        body = {"message": "Unauthorized", "request_id": f"{self.next_id():032x}"}
        return self.error_response(ErrorReply(401, body=body))

    def error_json(self, error: ErrorReply) -> object:
        inner: Any = super().error_json(error)
        return {"object": "error", **inner["error"]}

    def chunk_choice(self, delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        return {"index": 0, "delta": delta, "finish_reason": finish}

    def finish_delta(self) -> dict[str, Any]:
        return {"content": ""}

    def message_json(self, plan: Plan) -> dict[str, Any]:
        message = super().message_json(plan)
        if message["content"] is None:
            message["content"] = ""
        for index, call in enumerate(message.get("tool_calls", [])):
            call["index"] = index
        return {"tool_calls": None, **message, "prefix": False}

    def validate_quirks(self, body: dict[str, Any]) -> ErrorReply | None:
        options = body.get("stream_options")
        if isinstance(options, dict) and "include_usage" in options:
            detail = {
                "type": "extra_forbidden",
                "loc": ["body", "stream_options", "include_usage"],
                "msg": "Extra inputs are not permitted",
                "input": options["include_usage"],
            }
            return ErrorReply(
                422,
                body={
                    "object": "error",
                    "message": {"detail": [detail]},
                    "type": "invalid_request_error",
                    "param": None,
                    "code": None,
                },
            )
        for tool_id in _tool_ids(body["messages"]):
            if not _MISTRAL_TOOL_ID.match(tool_id):
                message = (
                    f"Tool call id was {tool_id} but must be a-z, A-Z, 0-9, with a length of 9."
                )
                return ErrorReply(400, message, type="invalid_function_call", code="3280")
        return None


def _tool_ids(messages: list[Any]) -> list[str]:
    ids: list[str] = []
    for message in messages:
        if not isinstance(message, dict):
            continue
        for call in message.get("tool_calls") or []:
            if isinstance(call, dict):
                ids.append(str(call.get("id")))
        if message.get("role") == "tool" and "tool_call_id" in message:
            ids.append(str(message["tool_call_id"]))
    return ids


class FakeTogether(OpenAICompatibleFake):
    """Together chat completions at ``http://127.0.0.1:PORT/v1``."""

    flavour = "together"
    embeddings: ClassVar[type[EmbeddingsEndpoint] | None] = TogetherEmbeddings
    stream_usage: ClassVar[str] = "final"
    usage_placeholder: ClassVar[bool] = True

    def completion_id(self, n: int) -> str:
        return f"fake{n:012x}-EWR"

    def unauthorized(self, key: str | None) -> web.Response:
        message = (
            "Invalid API key provided. You can find your API key at "
            "https://api.together.xyz/settings/api-keys."
        )
        return self.error_response(ErrorReply(401, message, code="invalid_api_key"))

    def chunk_choice(self, delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        return {
            "index": 0,
            "text": delta.get("content") or "",
            "logprobs": None,
            "finish_reason": finish,
            "seed": None,
            "delta": delta,
        }


class FakeDeepSeek(OpenAICompatibleFake):
    """DeepSeek chat completions at ``http://127.0.0.1:PORT`` (no ``/v1``)."""

    flavour = "deepseek"
    base_path: ClassVar[str] = ""
    chat_paths: ClassVar[frozenset[str]] = frozenset({"/chat/completions", "/v1/chat/completions"})
    stream_usage: ClassVar[str] = "finish_chunk"
    visible_reasoning: ClassVar[bool] = True

    def is_reasoning_model(self, model: str) -> bool:
        lowered = model.lower()
        return "reasoner" in lowered or "r1" in lowered

    def completion_id(self, n: int) -> str:
        return f"00000000-0000-4000-8000-{n:012x}"

    def tool_call_id(self, n: int) -> str:
        return f"call_0_{n:08x}-fake"

    def unauthorized(self, key: str | None) -> web.Response:
        if key is None:
            message = "Authentication Fails (auth header format should be Bearer sk-...)"
        else:
            message = f"Authentication Fails, Your api key: ****{key[-4:]} is invalid"
        body = openai_error(message, "authentication_error", code="invalid_request_error")
        return self.error_response(ErrorReply(401, body=body))

    def response_extras(self, plan: Plan) -> dict[str, Any]:
        return {"system_fingerprint": "fp_fake_prod"}

    def message_json(self, plan: Plan) -> dict[str, Any]:
        message = super().message_json(plan)
        if plan.reasoning:
            message["reasoning_content"] = plan.reasoning_text
        if message["content"] is None:
            message["content"] = ""
        return message

    def usage_json(self, plan: Plan) -> dict[str, Any]:
        usage: dict[str, Any] = {
            **super().usage_json(plan),
            "prompt_tokens_details": {"cached_tokens": plan.cached_tokens},
            "prompt_cache_hit_tokens": plan.cached_tokens,
            "prompt_cache_miss_tokens": plan.prompt_tokens - plan.cached_tokens,
        }
        if plan.reasoning_tokens:
            usage["completion_tokens_details"] = {"reasoning_tokens": plan.reasoning_tokens}
        return usage

    def validate_quirks(self, body: dict[str, Any]) -> ErrorReply | None:
        limit = body.get("max_tokens")
        ceiling = 65536 if self.is_reasoning_model(body["model"]) else 8192
        if limit is not None and (not isinstance(limit, int) or not 1 <= limit <= ceiling):
            return ErrorReply(
                400, f"Invalid max_tokens value, the valid range of max_tokens is [1, {ceiling}]"
            )
        return None
