"""OpenAI's Responses API on the OpenAI fake: ``POST /v1/responses`` and ``GET /v1/responses/{id}``.

Request: ``model``, ``input`` (a string, or a list of items: messages with string
or ``input_text``/``output_text`` parts, ``function_call`` and
``function_call_output``), ``instructions``, function ``tools`` (flat:
``{"type": "function", "name", "parameters"}``), ``text.format``
(``json_schema`` needs ``name`` and ``schema``), ``reasoning.effort`` (reasoning
models only) and ``reasoning.summary``, ``max_output_tokens`` (at least 16),
``stream``, ``store`` (default true) and ``previous_response_id``. Unknown
fields (e.g. Chat Completions' ``messages``) are rejected as OpenAI does.

Answer: the ``response`` object (``id``, ``object: "response"``, ``created_at``,
``status`` ``completed`` or ``incomplete`` with ``incomplete_details.reason:
"max_output_tokens"``, ``model``, ``output``, the echoed settings and ``usage``:
``input_tokens``, ``input_tokens_details.cached_tokens``, ``output_tokens``,
``output_tokens_details.reasoning_tokens``, ``total_tokens``). Output items, in
order: a ``reasoning`` item (reasoning models, or ``Answer(reasoning=...)``;
its summary holds the reasoning text only when ``reasoning.summary`` is asked),
a ``message`` with one ``output_text`` part, then one ``function_call`` item per
tool call (``call_id``, ``name``, ``arguments``).

Stream: named SSE events whose data carry ``type`` and a ``sequence_number``
from 0: ``response.created``, ``response.in_progress``, then per output item
``response.output_item.added``, its content (``response.content_part.added``,
``response.output_text.delta``..., ``response.output_text.done``,
``response.content_part.done``; ``response.function_call_arguments.delta``...,
``response.function_call_arguments.done``;
``response.reasoning_summary_part.added``,
``response.reasoning_summary_text.delta``..., ``...text.done``,
``...part.done``), ``response.output_item.done``, and last
``response.completed`` (or ``response.incomplete``), the only event with usage.
No ``[DONE]``. An in-stream error is an ``error`` event.

Input tokens follow ``tokens.py`` as for a chat prompt: ``instructions`` count as
the system message, every message and ``function_call_output`` item as a
message, every ``function_call`` item as an empty message. With
``previous_response_id`` the stored conversation (its input and output items,
not its instructions) is counted before the new input.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .behaviours import Answer, ErrorReply
from .openai_compat import openai_error
from .server import Frame, dumps, sse
from .tokens import Plan, PlannedCall, make_plan, prompt_tokens

if TYPE_CHECKING:
    from .openai_compat import OpenAICompatibleFake

MIN_OUTPUT_TOKENS = 16
ROLES = ("assistant", "system", "developer", "user")
FIELDS = frozenset(
    {
        "background",
        "context_management",
        "conversation",
        "include",
        "input",
        "instructions",
        "max_output_tokens",
        "max_tool_calls",
        "metadata",
        "model",
        "parallel_tool_calls",
        "previous_response_id",
        "prompt",
        "prompt_cache_key",
        "prompt_cache_retention",
        "reasoning",
        "safety_identifier",
        "service_tier",
        "store",
        "stream",
        "stream_options",
        "temperature",
        "text",
        "tool_choice",
        "tools",
        "top_logprobs",
        "top_p",
        "truncation",
        "user",
    }
)


@dataclass(frozen=True)
class Stored:
    """A stored response and the conversation a follow-up continues."""

    response: dict[str, Any]
    conversation: tuple[dict[str, Any], ...]


class ResponseStore:
    """The responses created with ``store`` (thread-safe; one per fake)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[str, Stored] = {}

    def put(self, stored: Stored) -> None:
        with self._lock:
            self._items[stored.response["id"]] = stored

    def get(self, response_id: str) -> Stored | None:
        with self._lock:
            return self._items.get(response_id)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


def bad(message: str, param: str | None = None, code: str | None = None) -> ErrorReply:
    return ErrorReply(400, message, type="invalid_request_error", param=param, code=code)


def missing(param: str) -> ErrorReply:
    return bad(f"Missing required parameter: '{param}'.", param, "missing_required_parameter")


def input_items(value: object) -> list[Any]:
    """``input`` as a list of items (a string is one user message)."""
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": value}]
    return list(value) if isinstance(value, list) else []


def conversation_tokens(items: Sequence[Any], instructions: object = None) -> int:
    """The input tokens of ``items`` (and ``instructions``) by the chat prompt formula."""
    messages: list[dict[str, Any]] = []
    for item in items:
        kind = item.get("type", "message")
        if kind == "message":
            messages.append({"content": item.get("content")})
        elif kind == "function_call_output":
            messages.append({"content": item.get("output")})
        elif kind == "function_call":
            messages.append({})
    return prompt_tokens(messages, instructions)


class ResponsesEndpoint:
    """``POST /v1/responses`` of one request (it keeps that stream's error position)."""

    def __init__(self, fake: OpenAICompatibleFake, store: ResponseStore) -> None:
        self.fake = fake
        self.store = store
        self._error_sequence = 0
        self._response_id: str | None = None

    # ---- Surface -----------------------------------------------------------------

    def streaming(self, body: dict[str, Any]) -> bool:
        return body.get("stream") is True

    def validate(self, body: Any, headers: dict[str, str]) -> ErrorReply | None:
        for key in body:
            if key not in FIELDS:
                return bad(f"Unknown parameter: '{key}'.", key, "unknown_parameter")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return missing("model")
        if "input" not in body:
            return missing("input")
        return (
            self._check_limits(body)
            or self._check_reasoning(body)
            or self._check_tools(body.get("tools"))
            or self._check_format(body.get("text"))
            or self._check_input(body)
        )

    def answer_json(self, body: dict[str, Any], answer: Answer) -> dict[str, Any]:
        plan = self.plan(body, answer)
        response = self.response(body, plan, self.output(body, plan), final=True)
        self.remember(body, response)
        return response

    def answer_frames(self, body: dict[str, Any], answer: Answer) -> Sequence[Frame]:
        plan = self.plan(body, answer)
        output = self.output(body, plan)
        final = self.response(body, plan, output, final=True)
        self.remember(body, final)
        events: list[tuple[dict[str, Any], bool]] = []
        opening = self.response(body, plan, [], final=False)
        events.append(({"type": "response.created", "response": opening}, False))
        events.append(({"type": "response.in_progress", "response": opening}, False))
        calls = iter(plan.tool_calls)
        for index, item in enumerate(output):
            call = next(calls) if item["type"] == "function_call" else None
            events.extend(_item_events(index, item, plan, call))
        done = "response.completed" if final["status"] == "completed" else "response.incomplete"
        events.append(({"type": done, "response": final}, False))
        deltas = [i for i, (_, is_delta) in enumerate(events) if is_delta]
        after = answer.error_after
        if after is not None:
            self._error_sequence = deltas[after] if after < len(deltas) else len(events) - 1
        frames: list[Frame] = []
        for number, (event, is_delta) in enumerate(events):
            data = {"type": event["type"], "sequence_number": number, **event}
            frames.append((sse(data, event=event["type"]), is_delta))
        return frames

    def stream_error_frame(self, error: ErrorReply | None) -> bytes:
        error = error or ErrorReply(500)
        body: Any = self.fake.error_json(error)
        inner = body.get("error", body) if isinstance(body, dict) else {}
        data = {
            "type": "error",
            "code": inner.get("code") or inner.get("type"),
            "message": inner.get("message"),
            "param": inner.get("param"),
            "sequence_number": self._error_sequence,
        }
        return sse(data, event="error")

    # ---- checks ------------------------------------------------------------------

    def _check_limits(self, body: dict[str, Any]) -> ErrorReply | None:
        limit = body.get("max_output_tokens")
        if limit is not None and (not isinstance(limit, int) or limit < MIN_OUTPUT_TOKENS):
            return bad(
                "Invalid 'max_output_tokens': integer below minimum value. Expected a value "
                f">= {MIN_OUTPUT_TOKENS}, but got {limit} instead.",
                "max_output_tokens",
                "integer_below_min_value",
            )
        return None

    def _check_reasoning(self, body: dict[str, Any]) -> ErrorReply | None:
        reasoning = body.get("reasoning")
        if not isinstance(reasoning, dict) or reasoning.get("effort") is None:
            return None
        if not self.fake.is_reasoning_model(body["model"]):
            return bad(
                "Unsupported parameter: 'reasoning.effort' is not supported with this model.",
                "reasoning.effort",
                "unsupported_parameter",
            )
        return None

    def _check_tools(self, tools: object) -> ErrorReply | None:
        for index, tool in enumerate(tools if isinstance(tools, list) else []):
            if not isinstance(tool, dict):
                return bad(f"Invalid type for 'tools[{index}]': expected an object.")
            if tool.get("type") == "function" and not tool.get("name"):
                return missing(f"tools[{index}].name")
        return None

    def _check_format(self, text: object) -> ErrorReply | None:
        fmt = text.get("format") if isinstance(text, dict) else None
        if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
            return None
        for key in ("name", "schema"):
            if key not in fmt:
                return missing(f"text.format.{key}")
        return None

    def _check_input(self, body: dict[str, Any]) -> ErrorReply | None:
        value = body["input"]
        if not isinstance(value, str | list):
            return bad(
                "Invalid type for 'input': expected one of a string or array of input items.",
                "input",
                "invalid_type",
            )
        previous_id = body.get("previous_response_id")
        previous: tuple[dict[str, Any], ...] = ()
        if previous_id is not None:
            stored = self.store.get(str(previous_id))
            if stored is None:
                return bad(
                    f"Previous response with id '{previous_id}' not found.",
                    "previous_response_id",
                    "previous_response_not_found",
                )
            previous = stored.conversation
        calls = {str(i.get("call_id")) for i in previous if i.get("type") == "function_call"}
        for index, item in enumerate(input_items(value)):
            if not isinstance(item, dict):
                return bad(
                    f"Invalid type for 'input[{index}]': expected an input item.",
                    f"input[{index}]",
                    "invalid_type",
                )
            kind = item.get("type", "message")
            if kind == "message" and item.get("role") not in ROLES:
                supported = "'assistant', 'system', 'developer', and 'user'"
                return bad(
                    f"Invalid value: '{item.get('role')}'. Supported values are: {supported}.",
                    f"input[{index}].role",
                    "invalid_value",
                )
            if kind == "function_call":
                calls.add(str(item.get("call_id")))
            if kind == "function_call_output" and str(item.get("call_id")) not in calls:
                return bad(
                    "No tool call found for function call output with call_id "
                    f"{item.get('call_id')}.",
                    "input",
                )
        return None

    # ---- answers -----------------------------------------------------------------

    def previous(self, body: dict[str, Any]) -> tuple[dict[str, Any], ...]:
        previous_id = body.get("previous_response_id")
        stored = self.store.get(str(previous_id)) if previous_id is not None else None
        return stored.conversation if stored is not None else ()

    def reasons(self, body: dict[str, Any]) -> bool:
        reasoning = body.get("reasoning")
        effort = reasoning.get("effort") if isinstance(reasoning, dict) else None
        return self.fake.is_reasoning_model(body["model"]) and effort != "none"

    def plan(self, body: dict[str, Any], answer: Answer) -> Plan:
        items = [*self.previous(body), *input_items(body["input"])]
        limit = body.get("max_output_tokens")
        return make_plan(
            answer,
            default_chunks=self.fake.text_chunks,
            default_reasoning=self.fake.reasoning_chunks if self.reasons(body) else (),
            prompt=conversation_tokens(items, body.get("instructions")),
            limit=limit if isinstance(limit, int) else None,
            call_ids=(self.fake.tool_call_id(self.fake.next_id()) for _ in answer.tool_calls),
        )

    def output(self, body: dict[str, Any], plan: Plan) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        if plan.reasoning:
            reasoning = body.get("reasoning")
            summarise = isinstance(reasoning, dict) and reasoning.get("summary") is not None
            summary = [{"type": "summary_text", "text": plan.reasoning_text}] if summarise else []
            items.append({"id": self._id("rs"), "type": "reasoning", "summary": summary})
        if plan.chunks:
            part = {"type": "output_text", "annotations": [], "logprobs": [], "text": plan.text}
            items.append(
                {
                    "id": self._id("msg"),
                    "type": "message",
                    "status": "incomplete" if plan.truncated else "completed",
                    "content": [part],
                    "role": "assistant",
                }
            )
        for call in plan.tool_calls:
            items.append(
                {
                    "id": self._id("fc"),
                    "type": "function_call",
                    "status": "completed",
                    "arguments": call.arguments,
                    "call_id": call.id,
                    "name": call.name,
                }
            )
        return items

    def response(
        self, body: dict[str, Any], plan: Plan, output: list[dict[str, Any]], *, final: bool
    ) -> dict[str, Any]:
        status = "in_progress"
        if final:
            status = "incomplete" if plan.truncated else "completed"
        reasoning: dict[str, Any] = _mapping(body.get("reasoning"))
        default_effort = "medium" if self.fake.is_reasoning_model(body["model"]) else None
        text: dict[str, Any] = _mapping(body.get("text"))
        return {
            "id": self.response_id(),
            "object": "response",
            "created_at": self.fake.created,
            "status": status,
            "background": False,
            "completed_at": self.fake.created if status == "completed" else None,
            "error": None,
            "incomplete_details": {"reason": "max_output_tokens"}
            if status == "incomplete"
            else None,
            "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"),
            "max_tool_calls": body.get("max_tool_calls"),
            "model": body["model"],
            "output": output,
            "parallel_tool_calls": body.get("parallel_tool_calls", True),
            "previous_response_id": body.get("previous_response_id"),
            "reasoning": {
                "effort": reasoning.get("effort", default_effort),
                "summary": reasoning.get("summary"),
            },
            "service_tier": (plan.service_tier or "default") if final else "auto",
            "store": body.get("store", True),
            "temperature": body.get("temperature", 1.0),
            "text": {
                "format": text.get("format", {"type": "text"}),
                "verbosity": text.get("verbosity", "medium"),
            },
            "tool_choice": body.get("tool_choice", "auto"),
            "tools": [_echo_tool(tool) for tool in body.get("tools") or []],
            "top_p": body.get("top_p", 1.0),
            "truncation": body.get("truncation", "disabled"),
            "usage": self.usage(plan) if final else None,
            "user": body.get("user"),
            "metadata": body.get("metadata") or {},
        }

    def usage(self, plan: Plan) -> dict[str, Any]:
        details: dict[str, Any] = {"cached_tokens": plan.cached_tokens}
        if plan.cache_write_reported:
            details["cache_write_tokens"] = plan.cache_creation_tokens
        return {
            "input_tokens": plan.prompt_tokens,
            "input_tokens_details": details,
            "output_tokens": plan.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": plan.reasoning_tokens},
            "total_tokens": plan.prompt_tokens + plan.completion_tokens,
        }

    def remember(self, body: dict[str, Any], response: dict[str, Any]) -> None:
        if body.get("store", True) is False:
            return
        conversation = (*self.previous(body), *input_items(body["input"]), *response["output"])
        self.store.put(Stored(response, conversation))

    def response_id(self) -> str:
        """The same id for every event of one answer."""
        if self._response_id is None:
            self._response_id = self._id("resp")
        return self._response_id

    def _id(self, prefix: str) -> str:
        return f"{prefix}_fake{self.fake.next_id():044x}"


def _mapping(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _echo_tool(tool: Any) -> Any:
    if isinstance(tool, dict) and tool.get("type") == "function":
        return {"description": None, "strict": True, **tool}
    return tool


def _item_events(
    index: int, item: dict[str, Any], plan: Plan, call: PlannedCall | None
) -> Iterator[tuple[dict[str, Any], bool]]:
    where = {"item_id": item["id"], "output_index": index}
    kind = item["type"]
    if kind == "message":
        opening = {**item, "status": "in_progress", "content": []}
    elif kind == "function_call":
        opening = {**item, "status": "in_progress", "arguments": ""}
    else:
        opening = {**item, "summary": []}
    yield {"type": "response.output_item.added", "output_index": index, "item": opening}, False
    if kind == "message":
        part = item["content"][0]
        empty = {**part, "text": ""}
        at = {**where, "content_index": 0}
        yield {"type": "response.content_part.added", **at, "part": empty}, False
        for piece in plan.chunks:
            yield {"type": "response.output_text.delta", **at, "delta": piece, "logprobs": []}, True
        yield {"type": "response.output_text.done", **at, "text": plan.text, "logprobs": []}, False
        yield {"type": "response.content_part.done", **at, "part": part}, False
    elif call is not None:
        for fragment in call.fragments:
            yield (
                {"type": "response.function_call_arguments.delta", **where, "delta": fragment},
                True,
            )
        done = {"type": "response.function_call_arguments.done", **where}
        yield {**done, "arguments": call.arguments}, False
    elif item["summary"]:
        at = {**where, "summary_index": 0}
        part = {"type": "summary_text", "text": ""}
        yield {"type": "response.reasoning_summary_part.added", **at, "part": part}, False
        for piece in plan.reasoning:
            yield {"type": "response.reasoning_summary_text.delta", **at, "delta": piece}, True
        text = plan.reasoning_text
        yield {"type": "response.reasoning_summary_text.done", **at, "text": text}, False
        done = {**part, "text": text}
        yield {"type": "response.reasoning_summary_part.done", **at, "part": done}, False
    yield {"type": "response.output_item.done", "output_index": index, "item": item}, False


def retrieve(fake: OpenAICompatibleFake, store: ResponseStore, response_id: str) -> web.Response:
    """``GET /v1/responses/{id}``: the stored response, or OpenAI's 404."""
    stored = store.get(response_id)
    if stored is None:
        body = openai_error(f"Response with id '{response_id}' not found.")
        return fake.error_response(ErrorReply(404, body=body))
    return web.Response(body=dumps(stored.response), content_type="application/json")
