"""The Chat Completions wire format shared by the OpenAI-shaped fakes.

``OpenAICompatibleFake`` speaks OpenAI's ``POST {base}/chat/completions``: the
``chat.completion`` object, ``chat.completion.chunk`` SSE events ending with
``data: [DONE]``, tool-call deltas (index/id/name first, then argument
fragments) and ``{"error": {message, type, param, code}}`` bodies. The
per-provider differences (paths, ids, usage fields, where stream usage goes,
extra fields, what is rejected) are class attributes and small hook methods
overridden in ``openai_flavours.py``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, ClassVar

from aiohttp import web

from .behaviours import Answer, ErrorReply
from .server import FakeServer, Frame, Surface, dumps, sse
from .tokens import Plan, make_plan, prompt_tokens, split_chunks

if TYPE_CHECKING:
    from .embeddings import EmbeddingsEndpoint

DONE = b"data: [DONE]\n\n"

# status -> (type, code, message) used when an ErrorReply leaves them unset.
ERROR_DEFAULTS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    402: ("invalid_request_error", "insufficient_balance", "Insufficient Balance"),
    403: ("permission_error", None, "You are not allowed to sample from this model."),
    404: ("invalid_request_error", "model_not_found", "The model does not exist."),
    422: ("invalid_request_error", None, "Invalid parameters."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached. Please try again later."),
    500: (
        "server_error",
        None,
        "The server had an error while processing your request. Sorry about that!",
    ),
    503: ("server_error", None, "The server is overloaded or not ready yet."),
}


def openai_error(
    message: str,
    kind: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
) -> dict[str, Any]:
    """Build OpenAI's error body verbatim."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def choices(body: dict[str, Any]) -> int:
    """``n``: how many answers are generated (the same answer each time, in the fake).

    Streams carry the deltas of the first answer only, but their usage counts all.
    """
    n = body.get("n")
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 1 else 1


class OpenAICompatibleFake(FakeServer):
    """An OpenAI-shaped provider. Subclasses set the class attributes and hooks."""

    flavour = "openai"
    base_path: ClassVar[str] = "/v1"
    chat_paths: ClassVar[frozenset[str]] = frozenset({"/v1/chat/completions"})
    # "separate": an extra chunk with choices [] only when include_usage (OpenAI);
    # "final": usage on the finish chunk always (Mistral, Together);
    # "finish_chunk": usage on the finish chunk always, ``usage: null`` on the
    # others when include_usage (DeepSeek).
    stream_usage: ClassVar[str] = "separate"
    usage_placeholder: ClassVar[bool] = False  # ``"usage": null`` on every other chunk
    visible_reasoning: ClassVar[bool] = False
    whole_tool_arguments: ClassVar[bool] = False

    # The provider's embeddings endpoint (``{base}/embeddings``), None when it has none.
    embeddings: ClassVar[type[EmbeddingsEndpoint] | None] = None

    def __init__(
        self,
        api_key: str = "test-key",
        *,
        text: str | None = None,
        reasoning_text: str = "Let me think about it.",
        delay: float = 0.0,
        host: str = "127.0.0.1",
    ) -> None:
        super().__init__(api_key, text=text, delay=delay, host=host)
        self.reasoning_text = reasoning_text
        self._chunks = split_chunks(self.text)
        self._reasoning_chunks = split_chunks(reasoning_text)

    @property
    def base_url(self) -> str:
        return self.origin + self.base_path

    @property
    def text_chunks(self) -> tuple[str, ...]:
        """The default answer's stream chunks."""
        return self._chunks

    @property
    def reasoning_chunks(self) -> tuple[str, ...]:
        """The default reasoning's chunks (used by reasoning models)."""
        return self._reasoning_chunks

    def surface(self, method: str, path: str) -> Surface | None:
        if (
            self.embeddings is not None
            and method == "POST"
            and path == self.base_path + "/embeddings"
        ):
            return self.embeddings(self)
        return super().surface(method, path)

    # ---- hooks -----------------------------------------------------------------

    def is_reasoning_model(self, model: str) -> bool:
        """Whether ``model`` thinks before answering (reasoning is added by default)."""
        return False

    def completion_id(self, n: int) -> str:
        return f"chatcmpl-fake{n:023d}"

    def tool_call_id(self, n: int) -> str:
        return f"call_fake{n:019d}"

    def unauthorized(self, key: str | None) -> web.Response:
        if key is None:
            message = (
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
            )
            return self.error_response(ErrorReply(401, body=openai_error(message, code=None)))
        masked = key[:3] + "*" * max(len(key) - 7, 0) + key[-4:]
        message = (
            f"Incorrect API key provided: {masked}. "
            "You can find your API key at https://platform.openai.com/account/api-keys."
        )
        return self.error_response(ErrorReply(401, message))

    def error_json(self, error: ErrorReply) -> object:
        kind, code, message = ERROR_DEFAULTS.get(error.status, ERROR_DEFAULTS[500])
        return {
            "error": {
                "message": error.message or message,
                "type": error.type or kind,
                "param": error.param,
                "code": error.code if error.code is not None else code,
            }
        }

    def validate_quirks(self, body: dict[str, Any]) -> ErrorReply | None:
        """The provider's own rejections beyond the common ones."""
        return None

    def usage_json(self, plan: Plan) -> dict[str, Any]:
        return {
            "prompt_tokens": plan.prompt_tokens,
            "completion_tokens": plan.completion_tokens,
            "total_tokens": plan.prompt_tokens + plan.completion_tokens,
        }

    def message_json(self, plan: Plan) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": plan.text or None}
        if plan.tool_calls:
            message["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                }
                for call in plan.tool_calls
            ]
        return message

    def response_extras(self, plan: Plan) -> dict[str, Any]:
        """Top-level fields added to the completion and every chunk."""
        return {}

    def chunk_choice(self, delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}

    def finish_delta(self) -> dict[str, Any]:
        return {}

    def stream_error_frame(self, error: ErrorReply | None) -> bytes:
        return sse(self.error_json(error or ErrorReply(500)))

    # ---- FakeServer interface ----------------------------------------------------

    def route(self, method: str, path: str) -> bool:
        return method == "POST" and path in self.chat_paths

    def not_found(self, method: str, path: str) -> web.Response:
        body = openai_error(f"Invalid URL ({method} {path})", code=None)
        return self.error_response(ErrorReply(404, body=body))

    def authenticate(self, headers: dict[str, str]) -> web.Response | None:
        scheme, _, key = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            return self.unauthorized(None)
        if key.strip() != self.api_key:
            return self.unauthorized(key.strip())
        return None

    def validate(self, body: Any, headers: dict[str, str]) -> ErrorReply | None:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return ErrorReply(400, "you must provide a model parameter")
        messages = body.get("messages")
        if messages is None:
            return ErrorReply(
                400,
                "Missing required parameter: 'messages'.",
                param="messages",
                code="missing_required_parameter",
            )
        if not isinstance(messages, list) or not messages:
            return ErrorReply(
                400,
                "Invalid 'messages': empty array. Expected an array with minimum length 1, "
                "but got an empty array instead.",
                param="messages",
                code="empty_array",
            )
        return self.validate_quirks(body)

    def error_response(self, error: ErrorReply) -> web.Response:
        headers = {"x-request-id": f"req_fake{self.next_id():012d}", **error.headers}
        if error.retry_after is not None:
            headers["Retry-After"] = f"{error.retry_after:g}"
        body = error.body if error.body is not None else self.error_json(error)
        return web.Response(
            status=error.status, body=dumps(body), content_type="application/json", headers=headers
        )

    def plan(self, body: dict[str, Any], answer: Answer) -> Plan:
        """The plan of one answer; with ``n`` answers, usage counts each one's output."""
        model = str(body.get("model"))
        limit = body.get("max_completion_tokens", body.get("max_tokens"))
        plan = make_plan(
            answer,
            default_chunks=self._chunks,
            default_reasoning=self._reasoning_chunks if self.is_reasoning_model(model) else (),
            prompt=prompt_tokens(body.get("messages")),
            limit=limit if isinstance(limit, int) else None,
            call_ids=(self.tool_call_id(self.next_id()) for _ in answer.tool_calls),
        )
        n = choices(body)
        if n == 1 or answer.usage is not None:
            return plan
        return replace(
            plan,
            completion_tokens=plan.completion_tokens * n,
            reasoning_tokens=plan.reasoning_tokens * n,
        )

    def finish_reason(self, plan: Plan) -> str:
        if plan.finish_reason is not None:
            return plan.finish_reason
        if plan.tool_calls:
            return "tool_calls"
        return "length" if plan.truncated else "stop"

    def answer_json(self, body: dict[str, Any], answer: Answer) -> dict[str, Any]:
        plan = self.plan(body, answer)
        return {
            "id": self.completion_id(self.next_id()),
            "object": "chat.completion",
            "created": self.created,
            "model": body["model"],
            "choices": [
                {
                    "index": index,
                    "message": self.message_json(plan),
                    "logprobs": None,
                    "finish_reason": self.finish_reason(plan),
                }
                for index in range(choices(body))
            ],
            "usage": self.usage_json(plan),
            **self.response_extras(plan),
        }

    def answer_frames(self, body: dict[str, Any], answer: Answer) -> Sequence[Frame]:
        plan = self.plan(body, answer)
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        null_usage = self.usage_placeholder or (include_usage and self.stream_usage != "final")
        head = {
            "id": self.completion_id(self.next_id()),
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": body["model"],
            **self.response_extras(plan),
        }

        def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
            data = {**head, "choices": [self.chunk_choice(delta, finish)]}
            if null_usage:
                data["usage"] = None
            return sse({**data, **extra})

        first: dict[str, Any] = {"role": "assistant", "content": "" if plan.chunks else None}
        if self.visible_reasoning and plan.reasoning:
            first["reasoning_content"] = ""
        frames: list[Frame] = [(chunk(first), False)]
        frames.extend((chunk(delta), True) for delta in self._deltas(plan))
        finish = self.finish_reason(plan)
        usage = self.usage_json(plan)
        if self.stream_usage == "separate":
            frames.append((chunk(self.finish_delta(), finish), False))
            if include_usage:
                frames.append((sse({**head, "choices": [], "usage": usage}), False))
        else:
            frames.append((chunk(self.finish_delta(), finish, usage=usage), False))
        frames.append((DONE, False))
        return frames

    def _deltas(self, plan: Plan) -> Iterator[dict[str, Any]]:
        if self.visible_reasoning:
            for piece in plan.reasoning:
                yield {"content": None, "reasoning_content": piece}
        for piece in plan.chunks:
            yield {"content": piece}
        for index, call in enumerate(plan.tool_calls):
            function = {"name": call.name, "arguments": ""}
            if self.whole_tool_arguments:
                function["arguments"] = call.arguments
            start = {"index": index, "id": call.id, "type": "function", "function": function}
            yield {"tool_calls": [start]}
            if not self.whole_tool_arguments:
                for fragment in call.fragments:
                    yield {"tool_calls": [{"index": index, "function": {"arguments": fragment}}]}
