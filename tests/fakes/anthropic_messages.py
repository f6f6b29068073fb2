"""A fake of Anthropic's Messages API (``POST /v1/messages``), base URL ``http://127.0.0.1:PORT``.

Auth is ``x-api-key`` (or ``Authorization: Bearer``, which the current SDK
sends) plus a required ``anthropic-version`` header. Answers are
``{"id", "type": "message", "role", "model", "content": [...], "stop_reason",
"stop_sequence", "usage": {input_tokens, output_tokens, cache_creation_input_tokens,
cache_read_input_tokens}}``; streams are named SSE events: ``message_start``,
``content_block_start``, ``ping``, ``content_block_delta`` (``text_delta``,
``input_json_delta`` with ``partial_json``, ``thinking_delta``),
``content_block_stop``, ``message_delta`` (stop reason and cumulative
``usage.output_tokens``), ``message_stop``, or an ``error`` event. Errors are
``{"type": "error", "error": {"type", "message"}, "request_id"}``, with 529
``overloaded_error``. Rejections are in ``anthropic_rules.py``. With tools, the
input tokens include the tool-use system prompt Anthropic adds (``tool_prompt``).
With ``Usage(cache_1h_tokens=...)`` the usage also splits the cache writes by TTL
(``cache_creation.ephemeral_5m_input_tokens``/``ephemeral_1h_input_tokens``).
With a ``web_search_*`` tool the model searches first (``server_tool_use`` and
``web_search_tool_result`` blocks, ``usage.server_tool_use.web_search_requests``,
the loop's input counted as ``anthropic_search`` says).

``POST /v1/messages/count_tokens`` (same headers) answers ``{"input_tokens": n}``:
the input tokens the same body would be billed on ``/v1/messages``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from aiohttp import web

from .anthropic_rules import check_body, check_count_body, check_tools, invalid
from .anthropic_search import Loop, plan_searches
from .behaviours import Answer, ErrorReply
from .limits import Verdict, anthropic_headers
from .server import FakeServer, Frame, Surface, dumps, sse
from .tokens import Plan, make_plan, prompt_tokens, split_chunks

# Anthropic's tool-use system prompt of the Claude 4 models, added to the input tokens
# when tools are given: tool choice auto or none, any or tool
TOOL_PROMPT_AUTO, TOOL_PROMPT_FORCED = 346, 313


def tool_prompt(body: dict[str, Any]) -> int:
    """The hidden tool-use system prompt's tokens, as Anthropic bills them."""
    if not body.get("tools"):
        return 0
    choice = body.get("tool_choice")
    forced = isinstance(choice, dict) and choice.get("type") in ("any", "tool")
    return TOOL_PROMPT_FORCED if forced else TOOL_PROMPT_AUTO


# status -> (error type, default message)
ERROR_TYPES: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    402: ("billing_error", "Your credit balance is too low to access the Anthropic API."),
    403: ("permission_error", "Your API key does not have permission to use the resource."),
    404: ("not_found_error", "Not found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of requests has exceeded your rate limit."),
    500: ("api_error", "Internal server error"),
    504: ("timeout_error", "Request timed out."),
    529: ("overloaded_error", "Overloaded"),
}


class FakeAnthropic(FakeServer):
    """Anthropic Messages API; ``answer.reasoning`` becomes a ``thinking`` block."""

    flavour = "anthropic"

    def __init__(
        self,
        api_key: str = "test-key",
        *,
        text: str | None = None,
        delay: float = 0.0,
        host: str = "127.0.0.1",
    ) -> None:
        super().__init__(api_key, text=text, delay=delay, host=host)
        self._chunks = split_chunks(self.text)

    def route(self, method: str, path: str) -> bool:
        return method == "POST" and path == "/v1/messages"

    def surface(self, method: str, path: str) -> Surface | None:
        if method == "POST" and path == "/v1/messages/count_tokens":
            return CountTokens(self)
        return super().surface(method, path)

    def not_found(self, method: str, path: str) -> web.Response:
        return self.error_response(ErrorReply(404, "Not Found"))

    def authenticate(self, headers: dict[str, str]) -> web.Response | None:
        # ``x-api-key`` is the documented header; the current official SDK sends the
        # key as ``Authorization: Bearer``, so that is accepted too.
        key = headers.get("x-api-key")
        scheme, _, bearer = headers.get("authorization", "").partition(" ")
        if key is None and scheme.lower() == "bearer" and bearer.strip():
            if bearer.strip() != self.api_key:
                return self.error_response(ErrorReply(401, "Invalid bearer token"))
        elif not key:
            return self.error_response(ErrorReply(401, "x-api-key header is required"))
        elif key != self.api_key:
            return self.error_response(ErrorReply(401, "invalid x-api-key"))
        if "anthropic-version" not in headers:
            return self.error_response(invalid("anthropic-version: header is required"))
        return None

    def validate(self, body: Any, headers: dict[str, str]) -> ErrorReply | None:
        return check_body(body) or check_tools(body.get("tools"), headers.get("anthropic-beta", ""))

    def error_json(self, error: ErrorReply) -> dict[str, Any]:
        kind, message = ERROR_TYPES.get(error.status, ERROR_TYPES[500])
        return {"type": error.type or kind, "message": error.message or message}

    def limit_headers(self, verdict: Verdict) -> dict[str, str]:
        return anthropic_headers(verdict)

    def error_response(self, error: ErrorReply) -> web.Response:
        request_id = f"req_fake{self.next_id():016d}"
        headers = {"request-id": request_id, **error.headers}
        if error.retry_after is not None:
            headers["retry-after"] = f"{error.retry_after:g}"
        body = error.body
        if body is None:
            body = {"type": "error", "error": self.error_json(error), "request_id": request_id}
        return web.Response(
            status=error.status, body=dumps(body), content_type="application/json", headers=headers
        )

    def stream_error_frame(self, error: ErrorReply | None) -> bytes:
        data = {"type": "error", "error": self.error_json(error or ErrorReply(529))}
        return sse(data, event="error")

    # ---- answers ---------------------------------------------------------------

    def plan(self, body: dict[str, Any], answer: Answer) -> Plan:
        return self.planned(body, answer)[0]

    def planned(self, body: dict[str, Any], answer: Answer) -> tuple[Plan, Loop, int]:
        """The answer's plan (its usage including the searches), its searches, and the
        input of its first sampling (what ``message_start`` reports)."""
        prompt = prompt_tokens(body.get("messages"), body.get("system")) + tool_prompt(body)
        plan = make_plan(
            answer,
            default_chunks=self._chunks,
            default_reasoning=(),
            prompt=prompt,
            limit=body["max_tokens"],
            call_ids=(f"toolu_01Fake{self.next_id():012d}" for _ in answer.tool_calls),
        )
        ids = (f"srvtoolu_01Fake{self.next_id():012d}" for _ in range(1_000))
        loop = plan_searches(body, answer, ids)
        usage = answer.usage
        first = plan.prompt_tokens
        if loop.searches:
            if usage is None or usage.prompt_tokens is None:
                plan = replace(plan, prompt_tokens=loop.input_tokens(prompt))
                first = prompt
            if usage is None or usage.completion_tokens is None:
                plan = replace(plan, completion_tokens=plan.completion_tokens + loop.output_tokens)
        return plan, loop, first

    def stop_reason(self, plan: Plan) -> str:
        if plan.finish_reason is not None:
            return plan.finish_reason
        if plan.tool_calls:
            return "tool_use"
        return "max_tokens" if plan.truncated else "end_turn"

    def usage_json(
        self, plan: Plan, output_tokens: int, input_tokens: int | None = None
    ) -> dict[str, Any]:
        return {
            "input_tokens": plan.prompt_tokens if input_tokens is None else input_tokens,
            "cache_creation_input_tokens": plan.cache_creation_tokens,
            "cache_read_input_tokens": plan.cached_tokens,
            "output_tokens": output_tokens,
            "service_tier": plan.service_tier or "standard",
            **(
                {
                    "cache_creation": {
                        "ephemeral_5m_input_tokens": plan.cache_creation_tokens
                        - plan.cache_1h_tokens,
                        "ephemeral_1h_input_tokens": plan.cache_1h_tokens,
                    }
                }
                if plan.cache_1h_tokens is not None
                else {}
            ),
        }

    def message_json(
        self, body: dict[str, Any], plan: Plan, content: list[Any], loop: Loop
    ) -> dict[str, Any]:
        return {
            "id": f"msg_01Fake{self.next_id():016d}",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": content,
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {**self.usage_json(plan, plan.completion_tokens), **loop.usage()},
        }

    def answer_json(self, body: dict[str, Any], answer: Answer) -> dict[str, Any]:
        plan, loop, _first = self.planned(body, answer)
        content: list[dict[str, Any]] = []
        if plan.reasoning:
            content.append(_thinking_block(plan.reasoning_text))
        content.extend(loop.blocks())
        if plan.chunks:
            content.append({"type": "text", "text": plan.text})
        content.extend(_tool_block(call.id, call.name, call.arguments) for call in plan.tool_calls)
        message = self.message_json(body, plan, content, loop)
        message["stop_reason"] = self.stop_reason(plan)
        return message

    def answer_frames(self, body: dict[str, Any], answer: Answer) -> Sequence[Frame]:
        plan, loop, first = self.planned(body, answer)
        start = self.message_json(body, plan, [], Loop(offered=False))
        start["usage"] = self.usage_json(plan, 1, first)
        frames: list[Frame] = [
            (sse({"type": "message_start", "message": start}, "message_start"), False)
        ]
        blocks: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
        if plan.reasoning:
            deltas = [{"type": "thinking_delta", "thinking": piece} for piece in plan.reasoning]
            deltas.append({"type": "signature_delta", "signature": "fake-signature"})
            blocks.append(({"type": "thinking", "thinking": "", "signature": ""}, deltas))
        for search in loop.searches:
            deltas = [{"type": "input_json_delta", "partial_json": f} for f in search.fragments]
            blocks.append((search.use_block(streamed=True), deltas))
            blocks.append((search.result_block(), []))
        if plan.chunks:
            deltas = [{"type": "text_delta", "text": piece} for piece in plan.chunks]
            blocks.append(({"type": "text", "text": ""}, deltas))
        for call in plan.tool_calls:
            start_block = {"type": "tool_use", "id": call.id, "name": call.name, "input": {}}
            deltas = [{"type": "input_json_delta", "partial_json": f} for f in call.fragments]
            blocks.append((start_block, deltas))
        for index, (block, deltas) in enumerate(blocks):
            event = {"type": "content_block_start", "index": index, "content_block": block}
            frames.append((sse(event, "content_block_start"), False))
            if index == 0:
                frames.append((sse({"type": "ping"}, "ping"), False))
            for delta in deltas:
                event = {"type": "content_block_delta", "index": index, "delta": delta}
                frames.append((sse(event, "content_block_delta"), True))
            event = {"type": "content_block_stop", "index": index}
            frames.append((sse(event, "content_block_stop"), False))
        usage: dict[str, Any] = {"output_tokens": plan.completion_tokens}
        if loop.offered:  # the loop's cumulative usage, as Anthropic reports it at the end
            usage = {**self.usage_json(plan, plan.completion_tokens), **loop.usage()}
        final = {
            "type": "message_delta",
            "delta": {"stop_reason": self.stop_reason(plan), "stop_sequence": None},
            "usage": usage,
        }
        frames.append((sse(final, "message_delta"), False))
        frames.append((sse({"type": "message_stop"}, "message_stop"), False))
        return frames


class CountTokens:
    """``POST /v1/messages/count_tokens``: the input tokens of a Messages request."""

    def __init__(self, fake: FakeAnthropic) -> None:
        self.fake = fake

    def streaming(self, body: dict[str, Any]) -> bool:
        return False

    def validate(self, body: Any, headers: dict[str, str]) -> ErrorReply | None:
        return check_count_body(body)

    def answer_json(self, body: dict[str, Any], answer: Answer) -> dict[str, Any]:
        """``Answer(usage=Usage(prompt_tokens=n))`` replaces the count."""
        if answer.usage is not None and answer.usage.prompt_tokens is not None:
            return {"input_tokens": answer.usage.prompt_tokens}
        counted = prompt_tokens(body.get("messages"), body.get("system")) + tool_prompt(body)
        return {"input_tokens": counted}

    def answer_frames(self, body: dict[str, Any], answer: Answer) -> Sequence[Frame]:
        raise NotImplementedError("token counts are never streamed")

    def stream_error_frame(self, error: ErrorReply | None) -> bytes:
        return self.fake.stream_error_frame(error)


def _thinking_block(text: str) -> dict[str, Any]:
    return {"type": "thinking", "thinking": text, "signature": "fake-signature"}


def _tool_block(tool_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"type": "tool_use", "id": tool_id, "name": name, "input": json.loads(arguments)}
