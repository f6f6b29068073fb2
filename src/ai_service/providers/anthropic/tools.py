"""OpenAI `tools`, `tool_choice` and `parallel_tool_calls` -> Anthropic `tools` and `tool_choice`.

- A function tool `{"type": "function", "function": {"name", "description",
  "parameters"}}` becomes `{"name", "description", "input_schema"}`; a tool
  without `parameters` gets the empty object schema. `strict` has no Anthropic
  counterpart and is dropped; `cache_control` on a tool is kept. Other tool
  types are a 400.
- `tool_choice`: "auto" -> `{"type": "auto"}`, "required" -> `{"type": "any"}`,
  "none" -> `{"type": "none"}`, `{"type": "function", "function": {"name"}}` ->
  `{"type": "tool", "name"}`; `{"type": "allowed_tools", "allowed_tools":
  {"mode", "tools"}}` narrows `tools` to the listed functions with mode
  auto/required.
- `parallel_tool_calls: false` -> `disable_parallel_tool_use: true` on the
  tool choice (an `auto` choice is created when the client gave none; not
  applicable to `none`).
- Without tools, `tool_choice` is dropped: Anthropic rejects it alone.

With tools, Anthropic adds a tool-use system prompt the body does not show and
bills its tokens (`tool_prompt_tokens`, from Anthropic's table per model and
tool choice; the largest count for a model not in the table).
"""

from __future__ import annotations

import re
from typing import Any

from ai_service.errors import InvalidRequestError
from ai_service.providers.base import JsonObject

_CHOICE_STRINGS: dict[str, JsonObject] = {
    "auto": {"type": "auto"},
    "required": {"type": "any"},
    "none": {"type": "none"},
}
_ALLOWED_MODES = {"auto": "auto", "required": "any"}

# Anthropic's tool-use system prompt, in tokens: (tool choice auto or none, any or tool)
_TOOL_PROMPTS: tuple[tuple[re.Pattern[str], tuple[int, int]], ...] = (
    (re.compile(r"claude-3-opus"), (530, 281)),
    (re.compile(r"claude-3-sonnet"), (159, 235)),
    (re.compile(r"claude-3-(5-)?haiku"), (264, 340)),
    (re.compile(r"claude-3-[57]-sonnet|claude-(opus|sonnet|haiku)-\d"), (346, 313)),
)
_TOOL_PROMPT_MAX = (530, 340)


def tool_prompt_tokens(model: str, body: JsonObject) -> int:
    """The tokens of the system prompt Anthropic adds to a Messages `body` with tools."""
    if not body.get("tools"):
        return 0
    name = model.lower()
    counts = next((c for pattern, c in _TOOL_PROMPTS if pattern.match(name)), _TOOL_PROMPT_MAX)
    choice = body.get("tool_choice")
    return counts[1] if forces_tool_use(choice) else counts[0]


def translate_tools(body: dict[str, Any]) -> tuple[list[JsonObject], JsonObject | None]:
    """Anthropic `tools` and `tool_choice` (None: omit) for the client's body.

    Raises `InvalidRequestError` for malformed tools or tool_choice.
    """
    raw_tools = body.get("tools")
    if raw_tools is None:
        return [], None
    if not isinstance(raw_tools, list):
        raise InvalidRequestError("tools must be an array", param="tools")
    tools = [_tool(tool, f"tools[{i}]") for i, tool in enumerate(raw_tools)]
    if not tools:
        return [], None
    choice, allowed = _tool_choice(body.get("tool_choice"))
    if allowed is not None:
        tools = [tool for tool in tools if tool["name"] in allowed]
        if not tools:
            raise InvalidRequestError(
                "allowed_tools names none of the tools", param="tool_choice.allowed_tools"
            )
    if body.get("parallel_tool_calls") is False:
        choice = dict(choice or {"type": "auto"})
        if choice["type"] != "none":
            choice["disable_parallel_tool_use"] = True
    return tools, choice


def forces_tool_use(choice: JsonObject | None) -> bool:
    """True when the choice makes the model call a tool (`any` or a named tool)."""
    return choice is not None and choice["type"] in ("any", "tool")


def _tool(tool: object, where: str) -> JsonObject:
    if not isinstance(tool, dict) or tool.get("type", "function") != "function":
        raise InvalidRequestError("only function tools are supported", param=f"{where}.type")
    function = tool.get("function")
    if not isinstance(function, dict):
        raise InvalidRequestError("a function tool needs a function object", param=where)
    name = function.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidRequestError("a function tool needs a name", param=f"{where}.function.name")
    schema = function.get("parameters")
    if schema is None:
        schema = {"type": "object", "properties": {}}
    elif not isinstance(schema, dict):
        raise InvalidRequestError(
            "function parameters must be a JSON Schema object", param=f"{where}.function.parameters"
        )
    out: JsonObject = {"name": name}
    description = function.get("description")
    if isinstance(description, str) and description:
        out["description"] = description
    out["input_schema"] = schema
    if isinstance(tool.get("cache_control"), dict):
        out["cache_control"] = tool["cache_control"]
    return out


def _tool_choice(choice: object) -> tuple[JsonObject | None, set[str] | None]:
    if choice is None:
        return None, None
    if isinstance(choice, str):
        if choice in _CHOICE_STRINGS:
            return dict(_CHOICE_STRINGS[choice]), None
        raise InvalidRequestError(f"unknown tool_choice {choice!r}", param="tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "function":
        function = choice.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        if isinstance(name, str) and name:
            return {"type": "tool", "name": name}, None
        raise InvalidRequestError("tool_choice needs function.name", param="tool_choice.function")
    if isinstance(choice, dict) and choice.get("type") == "allowed_tools":
        return _allowed_tools(choice.get("allowed_tools"))
    raise InvalidRequestError("unsupported tool_choice", param="tool_choice")


def _allowed_tools(spec: object) -> tuple[JsonObject, set[str]]:
    where = "tool_choice.allowed_tools"
    if not isinstance(spec, dict) or spec.get("mode") not in _ALLOWED_MODES:
        raise InvalidRequestError("allowed_tools needs mode auto or required", param=where)
    names: set[str] = set()
    for entry in spec.get("tools") or []:
        function = entry.get("function") if isinstance(entry, dict) else None
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(name, str):
            raise InvalidRequestError("allowed_tools entries name functions", param=where)
        names.add(name)
    return {"type": _ALLOWED_MODES[spec["mode"]]}, names
