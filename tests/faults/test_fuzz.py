"""Fuzzing the public API from its OpenAPI spec (issue 6), with hypothesis.

The operations, their path and query parameters and the parameters' JSON
schemas come from the running gateway's `/ai/openapi.json`; values are drawn
from those schemas and, as often, from outside them. The chat endpoint takes
its body as raw bytes (the spec has no body schema for it), so its bodies come
from a strategy of the OpenAI Chat Completions shape, mutated. Headers (keys,
Idempotency-Key, X-Request-ID, Content-Type) are generated too. For every
request: no 500, no "database unavailable" while the database is up, and every
error in the OpenAI shape `{"error": {"message", "type", "param", "code"}}` (on the
Anthropic Messages API of every path, Anthropic's `{"type": "error", "error": {"type",
"message"}}`).
"""

from __future__ import annotations

import random
import re
import string
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st

from tests.faults.conftest import Edge
from tests.support.invariants import TEST_MODEL

pytestmark = pytest.mark.slow

Strategy = st.SearchStrategy[Any]
PROVIDERS = ["openai", "claude", "mistral", "llama", "deepseek", "v1"]
ROLES = ["system", "developer", "user", "assistant", "tool"]
SKIP = {"/ai/docs", "/ai/openapi.json"}
# the Messages API (on every path) and Claude's model list answer in Anthropic's shape
ANTHROPIC_SURFACE = re.compile(r"^/ai/(claude/v1/|[^/]+/v1/messages(/count_tokens)?$)")

# PostgreSQL cannot store NUL in text; that bug has its own tests in test_security.py, so
# the fuzzer leaves NUL out to look for others.
TEXT = st.text(
    st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=24
)
# header values as an HTTP client can send them (visible ASCII, no edge whitespace)
HEADER_TEXT = st.text(
    string.ascii_letters + string.digits + string.punctuation + " ", max_size=80
).map(str.strip)

LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    TEXT,
)
ANY_JSON = st.recursive(
    LEAF,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=10,
)


def mostly(rnd: random.Random, valid: Strategy, wild: Strategy, odds: float = 0.8) -> Strategy:
    """`valid` most of the time, else `wild` (the choice is uniform, unlike hypothesis's own
    choices, which lean to the first branch or to a few values once they were seen)."""
    return valid if rnd.random() < odds else wild


CONTENT_PART = st.one_of(
    st.fixed_dictionaries({"type": st.just("text"), "text": TEXT}),
    st.fixed_dictionaries(
        {"type": st.just("image_url"), "image_url": st.fixed_dictionaries({"url": TEXT})}
    ),
    ANY_JSON,
)


def message(rnd: random.Random) -> Strategy:
    return st.fixed_dictionaries(
        {
            "role": mostly(rnd, st.sampled_from(ROLES), ANY_JSON),
            "content": mostly(rnd, st.one_of(TEXT, st.lists(CONTENT_PART, max_size=3)), ANY_JSON),
        },
        optional={"name": ANY_JSON, "tool_calls": ANY_JSON, "tool_call_id": ANY_JSON},
    )


def chat_body(rnd: random.Random) -> Strategy:
    """An OpenAI Chat Completions body, each field valid or wild."""
    messages = st.lists(message(rnd), min_size=1, max_size=4)
    return st.fixed_dictionaries(
        {
            "model": mostly(rnd, st.sampled_from([TEST_MODEL, "gpt-5.4-mini", "gpt-4o"]), ANY_JSON),
            "messages": mostly(rnd, messages, ANY_JSON),
        },
        optional={
            "stream": mostly(rnd, st.booleans(), ANY_JSON),
            "max_tokens": mostly(rnd, st.integers(min_value=1, max_value=2**31), ANY_JSON),
            "max_completion_tokens": st.integers(min_value=-5, max_value=2**31),
            "temperature": mostly(rnd, st.floats(0, 2), ANY_JSON),
            "stream_options": st.fixed_dictionaries({"include_usage": ANY_JSON}),
            "n": ANY_JSON,
            "tools": ANY_JSON,
            "tool_choice": ANY_JSON,
            "response_format": ANY_JSON,
            "stop": ANY_JSON,
            "seed": ANY_JSON,
        },
    )


def raw_body(rnd: random.Random) -> Strategy:
    wild = st.one_of(ANY_JSON.map(orjson.dumps), st.binary(max_size=200))
    return mostly(rnd, chat_body(rnd).map(orjson.dumps), wild)


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    parameters: tuple[dict[str, Any], ...]


def operations(spec: dict[str, Any]) -> list[Operation]:
    found = []
    for path, methods in spec["paths"].items():
        if path in SKIP:
            continue
        for method, op in methods.items():
            found.append(Operation(method.upper(), path, tuple(op.get("parameters", ()))))
    return found


def from_schema(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values valid for a (simple) JSON schema of a parameter."""
    if "anyOf" in schema:
        return st.one_of(*(from_schema(s) for s in schema["anyOf"]))
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "integer":
        return st.integers(schema.get("minimum", -(2**40)), schema.get("maximum", 2**40))
    if kind == "number":
        return st.floats(allow_nan=False, allow_infinity=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if schema.get("format") == "date-time":
        return st.datetimes(timezones=st.just(__import__("datetime").UTC)).map(
            lambda d: d.isoformat()
        )
    return TEXT


def parameter_value(rnd: random.Random, param: dict[str, Any]) -> Strategy:
    """A value of the parameter's schema, or (one time in four) anything at all."""
    if param["name"] == "provider":
        valid: Strategy = st.sampled_from(PROVIDERS)
    else:
        valid = from_schema(param.get("schema", {}))
    wild = st.one_of(
        TEXT,
        st.integers(min_value=-(2**70), max_value=2**70),
        st.sampled_from(["", 0, -1, 2**31, 2**63 - 1, 2**63, -(2**63) - 1, 10**30]),
    )
    return mostly(rnd, valid, wild, 0.75)


@pytest.fixture(scope="module")
def fuzz_key(edge: Edge) -> str:
    return edge.books.create_user("fuzzer", "1000")


@pytest.fixture(scope="module")
def ops(edge: Edge) -> list[Operation]:
    """The operations of the running gateway's OpenAPI spec."""
    r = httpx.get(edge.url + "/ai/openapi.json", timeout=10)
    assert r.status_code == 200
    found = operations(r.json())
    assert {o.path for o in found} >= {"/ai/{provider}/chat/completions", "/ai/usage"}
    return found


@pytest.fixture(scope="module")
def http(edge: Edge) -> Any:
    with httpx.Client(base_url=edge.url, timeout=15) as client:
        yield client


def check(r: httpx.Response, where: str) -> None:
    assert r.status_code != 500, f"{where}: 500 {r.text[:300]}"
    assert "Traceback" not in r.text, where
    if r.status_code < 400:
        return
    if ANTHROPIC_SURFACE.match(r.request.url.path):
        body = r.json()
        assert body["type"] == "error", where
        assert set(body["error"]) == {"type", "message"}, f"{where}: {body}"
        assert "database is unavailable" not in body["error"]["message"], where
        return
    try:
        error = r.json()["error"]
    except (ValueError, KeyError, TypeError) as exc:
        raise AssertionError(
            f"{where}: {r.status_code} without an OpenAI error: {r.text[:300]}"
        ) from exc
    assert isinstance(error, dict) and set(error) == {"message", "type", "param", "code"}, error
    assert isinstance(error["message"], str) and isinstance(error["type"], str), error
    assert error["param"] is None or isinstance(error["param"], str), error
    assert error["code"] is None or isinstance(error["code"], str), error
    assert error["code"] != "service_unavailable", f"{where}: the database is up: {error}"


@settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_fuzz_the_public_api_from_its_openapi_spec(
    data: st.DataObject, ops: list[Operation], http: httpx.Client, fuzz_key: str
) -> None:
    rnd = data.draw(st.randoms(use_true_random=False), label="choices")
    # half of the examples on the chat endpoint, a sixth on the usage log, the rest anywhere
    roll = rnd.random()
    if roll < 0.5:
        op = next(o for o in ops if o.path == "/ai/{provider}/chat/completions")
    elif roll < 0.66:
        op = next(o for o in ops if o.path == "/ai/usage")
    else:
        op = rnd.choice(ops)
    path, query = op.path, {}
    for param in op.parameters:
        if param["in"] == "path":
            value = data.draw(parameter_value(rnd, param), label=param["name"])
            path = path.replace("{" + param["name"] + "}", quote(str(value), safe="") or "x")
        elif param["in"] == "query" and rnd.random() < 0.5:
            value = data.draw(parameter_value(rnd, param), label=param["name"])
            query[param["name"]] = str(value)
    auth = data.draw(
        mostly(
            rnd,
            st.sampled_from([{"X-API-Key": fuzz_key}, {"Authorization": f"Bearer {fuzz_key}"}]),
            st.one_of(
                st.just({}),
                HEADER_TEXT.map(lambda t: {"X-API-Key": t}),
                HEADER_TEXT.map(lambda t: {"Authorization": f"Bearer {t}".strip()}),
            ),
        ),
        label="auth",
    )
    headers = data.draw(
        st.fixed_dictionaries(
            {},
            optional={
                "Idempotency-Key": HEADER_TEXT,
                "X-Request-ID": HEADER_TEXT,
                "Content-Type": st.sampled_from(
                    ["application/json", "text/plain", "multipart/form-data", "x/y; charset=zz"]
                ),
            },
        ),
        label="headers",
    )
    headers.update(auth)
    content = None
    if op.method in ("POST", "PUT"):
        content = data.draw(raw_body(rnd), label="body")
    r = http.request(op.method, path, params=query, headers=headers, content=content)
    event(f"{op.method} {op.path} -> {r.status_code}")  # --hypothesis-show-statistics
    check(r, f"{op.method} {path}")
