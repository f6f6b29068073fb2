"""OpenAI's Responses API over a provider's chat API: the request, the answer, the stream.

For the providers whose upstream has no Responses API, a Responses body is
translated to a chat body (`to_chat`), sent and billed as chat is, and the
chat answer translated back: a `response` object (`response_object`) or the
Responses API's event sequence (`EventStream`), so that the SDKs' stream
helpers work. Pure functions and one state machine; no I/O.

Translated: `input` (a string, or message, `function_call`,
`function_call_output` and `reasoning` items), `instructions`, function
`tools` and `tool_choice`, `parallel_tool_calls`, `text.format` (structured
output), `reasoning.effort`, `max_output_tokens`, `temperature`, `top_p`,
`user` / `safety_identifier`, `stream`. Accepted and without effect (they
change nothing billed): `include`, `metadata` (echoed), `store` (nothing is
stored: the answer says `store: false`), `truncation`, `service_tier`,
`prompt_cache_key`, `prompt_cache_retention`, `max_tool_calls`,
`top_logprobs`, `stream_options`, `text.verbosity`, `reasoning.summary`.
Refused with a 400 naming the field: everything that needs the upstream's own
storage or tools (`previous_response_id`, `conversation`, `prompt`,
references to stored items, built-in tools, file inputs) and any unknown
field.
"""

from __future__ import annotations

import secrets
import time

from ai_service.errors import InvalidRequestError
from ai_service.providers.base import JsonObject, Usage

TRANSLATED = frozenset(
    {
        "input",
        "instructions",
        "max_output_tokens",
        "model",
        "parallel_tool_calls",
        "reasoning",
        "safety_identifier",
        "stream",
        "temperature",
        "text",
        "tool_choice",
        "tools",
        "top_p",
        "user",
    }
)
WITHOUT_EFFECT = frozenset(
    {
        "include",
        "max_tool_calls",
        "metadata",
        "prompt_cache_key",
        "prompt_cache_retention",
        "service_tier",
        "store",
        "stream_options",
        "top_logprobs",
        "truncation",
    }
)
STORED = {
    "previous_response_id": "responses on this path are not stored; send the whole "
    "conversation as input items",
    "conversation": "conversations are kept by OpenAI only",
    "prompt": "stored prompts are kept by OpenAI only",
    "background": "a background response is billed after the request ends",
    "context_management": "context management runs at OpenAI only",
}
ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}
DETAILS = frozenset({"low", "high", "auto"})


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(20)}"


def _refused(message: str, param: str | None) -> InvalidRequestError:
    return InvalidRequestError(message, param=param, code="unsupported_parameter")


def to_chat(body: JsonObject, provider: str) -> JsonObject:
    """The chat body of a Responses body for `provider`'s chat API.

    Raises `InvalidRequestError` naming the first field that cannot be
    translated (nothing has been reserved or sent).
    """
    for key, value in body.items():
        if key in TRANSLATED or key in WITHOUT_EFFECT or value is None:
            continue
        if key in STORED:
            raise _refused(
                f"'{key}' is not supported on the {provider} path's Responses API: {STORED[key]}.",
                key,
            )
        raise _refused(f"Unknown parameter: '{key}'.", key)
    chat: JsonObject = {"model": body["model"], "messages": messages(body)}
    tools = body.get("tools")
    if tools is not None:
        chat["tools"] = chat_tools(tools)
    choice = body.get("tool_choice")
    if choice is not None:
        chat["tool_choice"] = chat_tool_choice(choice)
    for key in ("parallel_tool_calls", "temperature", "top_p"):
        if body.get(key) is not None:
            chat[key] = body[key]
    limit = body.get("max_output_tokens")
    if limit is not None:
        chat["max_tokens"] = limit
    user = body.get("user") or body.get("safety_identifier")
    if isinstance(user, str):
        chat["user"] = user
    fmt = response_format(body.get("text"))
    if fmt is not None:
        chat["response_format"] = fmt
    reasoning = body.get("reasoning")
    if reasoning is not None:
        if not isinstance(reasoning, dict):
            raise InvalidRequestError("'reasoning' must be an object.", param="reasoning")
        effort = reasoning.get("effort")
        if effort is not None:
            chat["reasoning_effort"] = effort
    if body.get("stream") is True:
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    return chat


def messages(body: JsonObject) -> list[JsonObject]:
    """The chat messages of `instructions` and `input`."""
    out: list[JsonObject] = []
    instructions = body.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise InvalidRequestError("'instructions' must be a string.", param="instructions")
        if instructions:
            out.append({"role": "system", "content": instructions})
    inputs = body.get("input")
    if isinstance(inputs, str):
        out.append({"role": "user", "content": inputs})
        return out
    if not isinstance(inputs, list):
        raise InvalidRequestError(
            "'input' is required: a string or an array of input items.", param="input"
        )
    calling: JsonObject | None = None  # the assistant message that takes function calls
    for index, item in enumerate(inputs):
        param = f"input[{index}]"
        if not isinstance(item, dict):
            raise InvalidRequestError(f"{param} must be an input item (an object).", param=param)
        kind = item.get("type", "message")
        if kind == "message":
            message = input_message(item, param)
            out.append(message)
            calling = message if message["role"] == "assistant" else None
        elif kind == "function_call":
            call = function_call(item, param)
            if calling is None:
                calling = {"role": "assistant", "content": None}
                out.append(calling)
            calling.setdefault("tool_calls", []).append(call)
        elif kind == "function_call_output":
            out.append(tool_message(item, param))
            calling = None
        elif kind == "reasoning" or (
            kind == "item_reference" and str(item.get("id", "")).startswith("rs_")
        ):
            continue  # reasoning is the model's own: it does not go back to a chat API
        elif kind == "item_reference":
            raise _refused(
                f"{param}: item references are not supported on this path's Responses API "
                "(responses are not stored); send the item itself.",
                param,
            )
        else:
            raise _refused(
                f"{param}: input items of type '{str(kind)[:60]}' are not supported on this "
                "path's Responses API; it takes messages, function_call and "
                "function_call_output items.",
                param,
            )
    return out


def input_message(item: JsonObject, param: str) -> JsonObject:
    role = ROLES.get(item.get("role"))  # type: ignore[arg-type]
    if role is None:
        raise InvalidRequestError(
            f"{param}.role must be one of user, assistant, system, developer.",
            param=f"{param}.role",
        )
    content = item.get("content")
    if isinstance(content, str):
        return {"role": role, "content": content}
    if not isinstance(content, list):
        raise InvalidRequestError(
            f"{param}.content must be a string or an array of content parts.",
            param=f"{param}.content",
        )
    parts = [content_part(part, f"{param}.content[{i}]") for i, part in enumerate(content)]
    if role != "user" or all(part["type"] == "text" for part in parts):
        texts = [part.get("text", "") for part in parts if part["type"] == "text"]
        if role != "user" and len(texts) != len(parts):
            raise InvalidRequestError(
                f"{param}: images are accepted in user messages only.", param=f"{param}.content"
            )
        return {"role": role, "content": "".join(texts) if role != "user" else parts}
    return {"role": role, "content": parts}


def content_part(part: object, param: str) -> JsonObject:
    """A chat content part of a Responses content part."""
    if not isinstance(part, dict):
        raise InvalidRequestError(f"{param} must be a content part (an object).", param=param)
    kind = part.get("type")
    if kind in ("input_text", "output_text", "text"):
        text = part.get("text")
        if not isinstance(text, str):
            raise InvalidRequestError(f"{param}.text must be a string.", param=f"{param}.text")
        return {"type": "text", "text": text}
    if kind == "refusal":
        return {"type": "text", "text": str(part.get("refusal", ""))}
    if kind == "input_image":
        url = part.get("image_url")
        if not isinstance(url, str) or not url:
            raise _refused(
                f"{param}: images by file_id are not supported on this path; send "
                "image_url (a URL or a data URL).",
                param,
            )
        image: JsonObject = {"url": url}
        if part.get("detail") in DETAILS:
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    raise _refused(
        f"{param}: content parts of type '{str(kind)[:60]}' are not supported on this path's "
        "Responses API; it takes input_text and input_image.",
        param,
    )


def function_call(item: JsonObject, param: str) -> JsonObject:
    call_id, name, arguments = item.get("call_id"), item.get("name"), item.get("arguments")
    if not isinstance(call_id, str) or not isinstance(name, str):
        raise InvalidRequestError(
            f"{param}: a function_call item needs call_id and name.", param=param
        )
    if not isinstance(arguments, str):
        raise InvalidRequestError(
            f"{param}.arguments must be a string (JSON).", param=f"{param}.arguments"
        )
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def tool_message(item: JsonObject, param: str) -> JsonObject:
    call_id, output = item.get("call_id"), item.get("output")
    if not isinstance(call_id, str):
        raise InvalidRequestError(
            f"{param}: a function_call_output item needs call_id.", param=f"{param}.call_id"
        )
    if isinstance(output, list):
        parts = [content_part(p, f"{param}.output[{i}]") for i, p in enumerate(output)]
        if any(part["type"] != "text" for part in parts):
            raise _refused(f"{param}: a function's output may hold text only here.", param)
        output = "".join(part["text"] for part in parts)
    if not isinstance(output, str):
        raise InvalidRequestError(
            f"{param}.output must be a string or an array of content parts.",
            param=f"{param}.output",
        )
    return {"role": "tool", "tool_call_id": call_id, "content": output}


def chat_tools(tools: object) -> list[JsonObject]:
    if not isinstance(tools, list):
        raise InvalidRequestError("'tools' must be an array.", param="tools")
    out: list[JsonObject] = []
    for index, tool in enumerate(tools):
        param = f"tools[{index}]"
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind != "function":
            raise _refused(
                f"{param}: tools of type '{str(kind)[:60]}' are not supported on this path's "
                "Responses API; it takes function tools.",
                param,
            )
        assert isinstance(tool, dict)
        name = tool.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidRequestError(f"{param}.name is required.", param=f"{param}.name")
        function: JsonObject = {"name": name}
        for key in ("description", "parameters", "strict"):
            if tool.get(key) is not None:
                function[key] = tool[key]
        out.append({"type": "function", "function": function})
    return out


def chat_tool_choice(choice: object) -> object:
    if choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function":
        name = choice.get("name")
        if isinstance(name, str) and name:
            return {"type": "function", "function": {"name": name}}
    raise _refused(
        "'tool_choice' must be auto, none, required or a function on this path.", "tool_choice"
    )


def response_format(text: object) -> JsonObject | None:
    """Chat's `response_format` of the Responses API's `text.format`."""
    if text is None:
        return None
    if not isinstance(text, dict):
        raise InvalidRequestError("'text' must be an object.", param="text")
    fmt = text.get("format")
    if fmt is None:
        return None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        assert isinstance(fmt, dict)
        name, schema = fmt.get("name"), fmt.get("schema")
        if not isinstance(name, str) or not isinstance(schema, dict):
            raise InvalidRequestError(
                "text.format of type json_schema needs name and schema.", param="text.format"
            )
        spec: JsonObject = {"name": name, "schema": schema}
        for key in ("strict", "description"):
            if fmt.get(key) is not None:
                spec[key] = fmt[key]
        return {"type": "json_schema", "json_schema": spec}
    raise InvalidRequestError(
        "text.format.type must be text, json_object or json_schema.", param="text.format"
    )


def usage_object(usage: Usage) -> JsonObject:
    """The Responses API's `usage` of a normalized usage."""
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": usage.cache_read_tokens},
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.total_tokens,
    }


def skeleton(body: JsonObject, model: str, response_id: str | None = None) -> JsonObject:
    """The `response` object before any output: the settings it echoes."""
    reasoning = body.get("reasoning")
    text = body.get("text")
    fmt = text.get("format") if isinstance(text, dict) else None
    metadata = body.get("metadata")
    return {
        "id": response_id or new_id("resp"),
        "object": "response",
        "created_at": int(time.time()),
        "status": "in_progress",
        "background": False,
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "max_tool_calls": body.get("max_tool_calls"),
        "metadata": metadata if isinstance(metadata, dict) else {},
        "model": model,
        "output": [],
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": None,
        "reasoning": {
            "effort": reasoning.get("effort") if isinstance(reasoning, dict) else None,
            "summary": None,
        },
        "service_tier": "default",
        "store": False,
        "temperature": body.get("temperature", 1.0),
        "text": {"format": fmt if isinstance(fmt, dict) else {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_p": body.get("top_p", 1.0),
        "truncation": "disabled",
        "usage": None,
        "user": body.get("user"),
    }


INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def finished(response: JsonObject, finish_reason: object, usage: Usage | None) -> JsonObject:
    """`response` completed (or incomplete, by the chat finish reason), with its usage."""
    reason = INCOMPLETE.get(finish_reason) if isinstance(finish_reason, str) else None
    response["status"] = "incomplete" if reason else "completed"
    response["incomplete_details"] = {"reason": reason} if reason else None
    if usage is not None:
        response["usage"] = usage_object(usage)
    return response


def message_item(text: str, status: str = "completed", item_id: str | None = None) -> JsonObject:
    part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    return {
        "id": item_id or new_id("msg"),
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": [part],
    }


def reasoning_item(text: str, item_id: str | None = None) -> JsonObject:
    return {
        "id": item_id or new_id("rs"),
        "type": "reasoning",
        "summary": [],
        "content": [{"type": "reasoning_text", "text": text}],
    }


def call_item(call_id: str, name: str, arguments: str, item_id: str | None = None) -> JsonObject:
    return {
        "id": item_id or new_id("fc"),
        "type": "function_call",
        "status": "completed",
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
    }


def response_object(
    body: JsonObject, model: str, completion: JsonObject, usage: Usage
) -> JsonObject:
    """The `response` object of a chat completion (its first choice)."""
    choices = completion.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices else {}
    message = choice.get("message") if isinstance(choice, dict) else None
    message = message if isinstance(message, dict) else {}
    finish = choice.get("finish_reason") if isinstance(choice, dict) else None
    output: list[JsonObject] = []
    reasoning = message.get("reasoning_content")
    if isinstance(reasoning, str) and reasoning:
        output.append(reasoning_item(reasoning))
    content = message.get("content")
    if isinstance(content, str) and content:
        output.append(message_item(content, "incomplete" if finish == "length" else "completed"))
    calls = message.get("tool_calls")
    for call in calls if isinstance(calls, list) else ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            output.append(
                call_item(
                    str(call.get("id") or new_id("call")),
                    str(function.get("name", "")),
                    str(function.get("arguments") or ""),
                )
            )
    response = skeleton(body, model)
    response["output"] = output
    return finished(response, finish, usage)


class EventStream:
    """The Responses API's events of a chat stream, in order, without sequence numbers.

    `opening` gives `response.created` and `response.in_progress`; `feed`
    the events of one chat chunk (items opened, their deltas, items closed
    when the next begins); `closing` the `.done` events of the items still
    open and the final `response.completed` (or `response.incomplete`).
    """

    def __init__(self, response: JsonObject) -> None:
        self.response = response
        self.output: list[JsonObject] = []
        self.open: JsonObject | None = None  # the message or reasoning item being written
        self.calls: dict[int, JsonObject] = {}  # the function calls open, by chat index
        self.finish: object = None

    def opening(self) -> list[JsonObject]:
        snapshot = dict(self.response)
        return [
            {"type": "response.created", "response": snapshot},
            {"type": "response.in_progress", "response": snapshot},
        ]

    def feed(self, chunk: JsonObject) -> list[JsonObject]:
        choices = chunk.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            return []
        choice = choices[0]
        events: list[JsonObject] = []
        delta = choice.get("delta")
        if isinstance(delta, dict):
            reasoning = delta.get("reasoning_content")
            if isinstance(reasoning, str) and reasoning:
                events += self._text("reasoning", reasoning)
            content = delta.get("content")
            if isinstance(content, str) and content:
                events += self._text("message", content)
            calls = delta.get("tool_calls")
            for call in calls if isinstance(calls, list) else ():
                if isinstance(call, dict):
                    events += self._call(call)
        if choice.get("finish_reason"):
            self.finish = choice["finish_reason"]
        return events

    def closing(self, usage: Usage | None) -> list[JsonObject]:
        events = self._close_open()
        for index in sorted(self.calls):
            events += self._close_call(self.calls[index])
        self.calls.clear()
        response = dict(self.response)
        response["output"] = self.output
        finished(response, self.finish, usage)
        kind = "response.completed" if response["status"] == "completed" else "response.incomplete"
        return [*events, {"type": kind, "response": response}]

    # ---- items -------------------------------------------------------------------

    def _index(self, item: JsonObject) -> int:
        return self.output.index(item)

    def _text(self, kind: str, text: str) -> list[JsonObject]:
        events: list[JsonObject] = []
        item = self.open
        if item is None or item["type"] != kind:
            events += self._close_open()
            if kind == "message":
                item = message_item("", "in_progress")
                part: JsonObject = item["content"][0]
            else:
                item = reasoning_item("")
                part = item["content"][0]
            self.output.append(item)
            self.open = item
            events.append(
                {
                    "type": "response.output_item.added",
                    "output_index": self._index(item),
                    "item": {**item, "content": []},
                }
            )
            events.append(
                {
                    "type": "response.content_part.added",
                    "item_id": item["id"],
                    "output_index": self._index(item),
                    "content_index": 0,
                    "part": dict(part),
                }
            )
        part = item["content"][0]
        part["text"] += text
        event: JsonObject = {
            "type": "response.output_text.delta"
            if kind == "message"
            else "response.reasoning_text.delta",
            "item_id": item["id"],
            "output_index": self._index(item),
            "content_index": 0,
            "delta": text,
        }
        if kind == "message":
            event["logprobs"] = []
        events.append(event)
        return events

    def _close_open(self) -> list[JsonObject]:
        item, self.open = self.open, None
        if item is None:
            return []
        index, part = self._index(item), item["content"][0]
        done: JsonObject = {
            "type": "response.output_text.done"
            if item["type"] == "message"
            else "response.reasoning_text.done",
            "item_id": item["id"],
            "output_index": index,
            "content_index": 0,
            "text": part["text"],
        }
        if item["type"] == "message":
            done["logprobs"] = []
            item["status"] = "incomplete" if self.finish == "length" else "completed"
        return [
            done,
            {
                "type": "response.content_part.done",
                "item_id": item["id"],
                "output_index": index,
                "content_index": 0,
                "part": dict(part),
            },
            {"type": "response.output_item.done", "output_index": index, "item": item},
        ]

    def _call(self, call: JsonObject) -> list[JsonObject]:
        events: list[JsonObject] = []
        index = call.get("index", 0)
        index = index if isinstance(index, int) else 0
        function = call.get("function")
        function = function if isinstance(function, dict) else {}
        item = self.calls.get(index)
        if item is None:
            events += self._close_open()
            item = call_item(
                str(call.get("id") or new_id("call")), str(function.get("name") or ""), ""
            )
            item["status"] = "in_progress"
            self.output.append(item)
            self.calls[index] = item
            events.append(
                {
                    "type": "response.output_item.added",
                    "output_index": self._index(item),
                    "item": dict(item),
                }
            )
        elif function.get("name") and not item["name"]:
            item["name"] = str(function["name"])
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            item["arguments"] += arguments
            events.append(
                {
                    "type": "response.function_call_arguments.delta",
                    "item_id": item["id"],
                    "output_index": self._index(item),
                    "delta": arguments,
                }
            )
        return events

    def _close_call(self, item: JsonObject) -> list[JsonObject]:
        item["status"] = "completed"
        index = self._index(item)
        return [
            {
                "type": "response.function_call_arguments.done",
                "item_id": item["id"],
                "output_index": index,
                "name": item["name"],
                "arguments": item["arguments"],
            },
            {"type": "response.output_item.done", "output_index": index, "item": item},
        ]
