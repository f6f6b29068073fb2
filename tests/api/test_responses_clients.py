"""Clients whose default is the Responses API, unchanged, through the gateway: the Vercel
AI SDK's default OpenAI provider and the OpenAI Agents SDK's default model (Node), and
LangChain's `ChatOpenAI(use_responses_api=True)`, each call charged the usage the fake
reported; the Node clients also on Claude's path, where the Responses API is translated to
Anthropic's Messages API.

The npm packages come from `.venv/node/node_modules` (`make install`), or the folder
named by `AI_SERVICE_TEST_NODE_MODULES`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ai_service.billing.pricing import cost
from ai_service.providers.base import Usage
from tests.conftest import UPSTREAM_KEY
from tests.fakes.anthropic_messages import FakeAnthropic
from tests.fakes.openai_flavours import FakeOpenAI
from tests.support.gateway import Gateway

ROOT = Path(__file__).resolve().parents[2]
NODE_MODULES = Path(
    os.environ.get("AI_SERVICE_TEST_NODE_MODULES", ROOT / ".venv/node/node_modules")
)
MODEL = "gpt-5.4-mini"
CLAUDE = "claude-3-5-sonnet-20241022"

VERCEL = """
import { createOpenAI } from "@ai-sdk/openai";
import { generateText, streamText } from "ai";

const openai = createOpenAI({ baseURL: process.env.BASE, apiKey: process.env.KEY });
const answer = await generateText({ model: openai("MODEL"), prompt: "Say hello" });
console.log(JSON.stringify({ text: answer.text, usage: answer.usage }));
const stream = streamText({ model: openai("MODEL"), prompt: "Count to three" });
let text = "";
for await (const piece of stream.textStream) text += piece;
console.log(JSON.stringify({ text, usage: await stream.usage }));
"""

AGENTS = """
import OpenAI from "openai";
import { Agent, run, setDefaultOpenAIClient, setTracingDisabled } from "@openai/agents";

setTracingDisabled(true);
setDefaultOpenAIClient(new OpenAI({ baseURL: process.env.BASE, apiKey: process.env.KEY }));
const agent = new Agent({ name: "greeter", instructions: "Be brief.", model: "MODEL" });
const answer = await run(agent, "Say hello");
console.log(JSON.stringify({ text: answer.finalOutput }));
const streamed = await run(agent, "Say hello", { stream: true });
let text = "";
for await (const piece of streamed.toTextStream()) text += piece;
await streamed.completed;
console.log(JSON.stringify({ text }));
"""


def run_node(
    code: str,
    packages: tuple[str, ...],
    gateway: Gateway,
    tmp_path: Path,
    path: str = "openai",
    model: str = MODEL,
) -> list[dict[str, Any]]:
    node = shutil.which("node")
    missing = [p for p in packages if not (NODE_MODULES / p).is_dir()]
    if node is None or missing:
        pytest.fail(
            f"node or the npm packages {missing} are missing in {NODE_MODULES}: make install"
        )
    (tmp_path / "node_modules").symlink_to(NODE_MODULES)
    script = tmp_path / "client.mjs"
    script.write_text(code.replace("MODEL", model))
    key = gateway.create_user("alice", "10")
    env = {"PATH": os.environ["PATH"], "BASE": f"{gateway.url}/ai/{path}", "KEY": key}
    result = subprocess.run(
        [node, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def assert_charged(gateway: Gateway, fake: FakeOpenAI) -> list[tuple[int, int]]:
    """Every call went to the Responses API and was charged its reported usage."""
    assert {(r.method, r.path) for r in fake.requests} == {("POST", "/v1/responses")}
    price = gateway.state.catalog.current.resolve("openai", MODEL).price
    rows = sorted(gateway.requests(), key=lambda r: r.stream)
    assert [(r.surface, r.status, r.stream) for r in rows] == [
        ("responses", "ok", False),
        ("responses", "ok", True),
    ]
    for row in rows:
        usage = Usage(input_tokens=row.prompt_tokens, output_tokens=row.completion_tokens)
        assert row.cost == cost(usage, price) > 0
        assert row.usage_estimated is False
    return [(r.prompt_tokens, r.completion_tokens) for r in rows]


def test_the_vercel_ai_sdks_default_provider(
    gateway: Gateway, openai_upstream: FakeOpenAI, tmp_path: Path
) -> None:
    answers = run_node(VERCEL, ("ai", "@ai-sdk/openai"), gateway, tmp_path)
    assert [a["text"] for a in answers] == ["Hello from openai!", "Hello from openai!"]
    counted = assert_charged(gateway, openai_upstream)
    assert [(a["usage"]["inputTokens"], a["usage"]["outputTokens"]) for a in answers] == counted
    assert answers[0]["usage"]["outputTokenDetails"]["reasoningTokens"] > 0


def test_the_openai_agents_sdks_default_model(
    gateway: Gateway, openai_upstream: FakeOpenAI, tmp_path: Path
) -> None:
    answers = run_node(AGENTS, ("openai", "@openai/agents"), gateway, tmp_path)
    assert [a["text"] for a in answers] == ["Hello from openai!", "Hello from openai!"]
    assert_charged(gateway, openai_upstream)
    assert openai_upstream.last_request.body["instructions"] == "Be brief."


def test_langchain_with_the_responses_api(gateway: Gateway, openai_upstream: FakeOpenAI) -> None:
    from langchain_openai import ChatOpenAI

    key = gateway.create_user("alice", "10")
    chat = ChatOpenAI(
        model=MODEL,
        base_url=f"{gateway.url}/ai/openai",
        api_key=key,  # type: ignore[arg-type]
        use_responses_api=True,
        max_retries=0,
    )
    answer = chat.invoke("Say hello")
    assert "Hello from openai!" in answer.text
    streamed = "".join(piece.text for piece in chat.stream("Say hello"))
    assert streamed == "Hello from openai!"
    assert_charged(gateway, openai_upstream)


@pytest.fixture
def claude(gateway_factory: Callable[..., Gateway]) -> Iterator[tuple[Gateway, FakeAnthropic]]:
    with FakeAnthropic(api_key=UPSTREAM_KEY) as fake:
        yield (
            gateway_factory(anthropic_api_key=UPSTREAM_KEY, anthropic_base_url=fake.base_url),
            fake,
        )


@pytest.mark.parametrize(
    ("code", "packages"),
    [(VERCEL, ("ai", "@ai-sdk/openai")), (AGENTS, ("openai", "@openai/agents"))],
    ids=["vercel-ai-sdk", "openai-agents"],
)
def test_the_node_clients_on_a_translated_path(
    claude: tuple[Gateway, FakeAnthropic], tmp_path: Path, code: str, packages: tuple[str, ...]
) -> None:
    gateway, fake = claude
    answers = run_node(code, packages, gateway, tmp_path, "claude", CLAUDE)
    assert [a["text"] for a in answers] == ["Hello from anthropic!", "Hello from anthropic!"]
    assert {(r.method, r.path) for r in fake.requests} == {("POST", "/v1/messages")}
    price = gateway.state.catalog.current.resolve("claude", CLAUDE).price
    rows = sorted(gateway.requests(), key=lambda r: r.stream)
    assert [(r.surface, r.status, r.stream) for r in rows] == [
        ("responses", "ok", False),
        ("responses", "ok", True),
    ]
    for row in rows:
        usage = Usage(input_tokens=row.prompt_tokens, output_tokens=row.completion_tokens)
        assert row.cost == cost(usage, price) > 0
        assert row.usage_estimated is False
    for answer, row in zip(answers, rows, strict=True):
        if "usage" in answer:
            reported = (answer["usage"]["inputTokens"], answer["usage"]["outputTokens"])
            assert reported == (row.prompt_tokens, row.completion_tokens)
