"""Claude Code itself (`claude -p`, the npm package `@anthropic-ai/claude-code`) against the
gateway, unchanged: `ANTHROPIC_BASE_URL=<gateway>/ai/claude` passes its Messages API
requests to Anthropic (the fake), `<gateway>/ai/mistral` translates them to Mistral's chat
API; each answer is charged the usage the fake reported, at the catalog price.

The package comes from `.venv/node/node_modules` (`make install`), or the folder named by
`AI_SERVICE_TEST_NODE_MODULES`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ai_service.billing.pricing import cost
from ai_service.providers.base import Usage
from tests.conftest import UPSTREAM_KEY
from tests.fakes.anthropic_messages import FakeAnthropic
from tests.fakes.openai_flavours import FakeMistral
from tests.fakes.server import FakeServer
from tests.support.gateway import Gateway

ROOT = Path(__file__).resolve().parents[2]
NODE_MODULES = Path(
    os.environ.get("AI_SERVICE_TEST_NODE_MODULES", ROOT / ".venv/node/node_modules")
)


@pytest.fixture
def upstreams() -> Iterator[dict[str, FakeServer]]:
    with (
        FakeAnthropic(api_key=UPSTREAM_KEY) as claude,
        FakeMistral(api_key=UPSTREAM_KEY) as mistral,
    ):
        yield {"claude": claude, "mistral": mistral}


@pytest.fixture
def gw(gateway_factory: Callable[..., Gateway], upstreams: dict[str, FakeServer]) -> Gateway:
    return gateway_factory(
        anthropic_api_key=UPSTREAM_KEY,
        anthropic_base_url=upstreams["claude"].base_url,
        mistral_api_key=UPSTREAM_KEY,
        mistral_base_url=upstreams["mistral"].base_url,
    )


@pytest.mark.parametrize(
    ("path", "model", "upstream_path"),
    [
        ("claude", "claude-sonnet-4-5-20250929", "/v1/messages"),
        ("mistral", "mistral-large-latest", "/v1/chat/completions"),
    ],
)
def test_claude_code_answers_through_the_gateway_and_is_charged(
    gw: Gateway,
    upstreams: dict[str, FakeServer],
    tmp_path: Path,
    path: str,
    model: str,
    upstream_path: str,
) -> None:
    claude = NODE_MODULES / ".bin" / "claude"
    if shutil.which("node") is None or not claude.exists():
        pytest.fail(f"node or @anthropic-ai/claude-code is missing in {NODE_MODULES}: make install")
    key = gw.create_user("alice", "10")
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "ANTHROPIC_BASE_URL": f"{gw.url}/ai/{path}",
        "ANTHROPIC_API_KEY": key,
        "ANTHROPIC_MODEL": model,
        "ANTHROPIC_DEFAULT_HAIKU_MODEL": model,
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "NO_PROXY": "127.0.0.1,localhost",
    }
    result = subprocess.run(
        [str(claude), "-p", "Say hello", "--output-format", "json"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    answer = json.loads(result.stdout)
    flavour = "anthropic" if path == "claude" else "mistral"
    assert answer["is_error"] is False and answer["result"] == f"Hello from {flavour}!"
    gw.wait_settled()
    rows = gw.requests()
    assert rows and all((r.surface, r.status) == ("messages", "ok") for r in rows)
    price = gw.state.catalog.current.resolve(path, model).price
    for row in rows:
        usage = Usage(input_tokens=row.prompt_tokens, output_tokens=row.completion_tokens)
        assert row.cost == cost(usage, price) > 0
    assert {(r.method, r.path) for r in upstreams[path].requests} == {("POST", upstream_path)}
    reported = answer["usage"]
    assert reported["input_tokens"] == sum(r.prompt_tokens for r in rows)
    assert reported["output_tokens"] == sum(r.completion_tokens for r in rows)
