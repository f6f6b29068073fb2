"""The code examples of README.md and docs/*.md, run against a local gateway.

An example is a fenced block right after a `<!-- test: expect="TEXT" -->`
line; it passes when it exits 0 and prints TEXT. `http://127.0.0.1:8080` is
replaced by the test gateway's address, and `AI_SERVICE_KEY` (a user's key with
a balance) and `AI_SERVICE_ADMIN_KEY` are in its environment. The upstreams are
the fake OpenAI and Anthropic servers. `sh` blocks run in bash, `python` blocks
in this interpreter, `js` blocks in Node (with the `openai` package from
`.venv/node/node_modules`, or `AI_SERVICE_TEST_NODE_MODULES`).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ai_service.config import Settings
from ai_service.providers import REGISTRY
from tests.conftest import UPSTREAM_KEY
from tests.fakes.anthropic_messages import FakeAnthropic
from tests.fakes.openai_flavours import FakeOpenAI
from tests.support.gateway import Gateway

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", ROOT / "docs" / "user-guide.md", ROOT / "docs" / "operations.md"]
ADMIN_KEY = "docs-admin-key-0123456789abcdef"
DOC_URL = "http://127.0.0.1:8080"
MARK = re.compile(r'^<!-- test: expect="((?:[^"\\]|\\.)*)" -->$')
NODE_MODULES = Path(
    os.environ.get("AI_SERVICE_TEST_NODE_MODULES", ROOT / ".venv/node/node_modules")
)


@dataclass(frozen=True)
class Example:
    file: str
    line: int
    lang: str
    code: str
    expect: str

    @property
    def id(self) -> str:
        return f"{self.file}:{self.line}"


def examples(path: Path) -> list[Example]:
    """The marked examples of one Markdown file."""
    lines = path.read_text().splitlines()
    found: list[Example] = []
    for n, line in enumerate(lines):
        mark = MARK.match(line.strip())
        if mark is None:
            continue
        fence = lines[n + 1]
        assert fence.startswith("```"), f"{path.name}:{n + 1}: a test mark must precede a fence"
        end = lines.index("```", n + 2)
        expect = mark.group(1).replace('\\"', '"')
        code = "\n".join(lines[n + 2 : end]) + "\n"
        found.append(Example(str(path.relative_to(ROOT)), n + 2, fence[3:].strip(), code, expect))
    return found


ALL = [example for path in DOCS for example in examples(path)]


def test_the_docs_have_their_examples_marked() -> None:
    by_file: dict[str, set[str]] = {}
    for example in ALL:
        by_file.setdefault(example.file, set()).add(example.lang)
    assert by_file["docs/user-guide.md"] == {"sh", "python", "js"}
    assert by_file["README.md"] == {"sh", "python"}
    assert by_file["docs/operations.md"] == {"sh", "python"}
    assert len(ALL) >= 16


@pytest.fixture
def docs_gateway(
    gateway_factory: Callable[..., Gateway], openai_upstream: FakeOpenAI
) -> Iterator[Gateway]:
    with FakeAnthropic(api_key=UPSTREAM_KEY) as anthropic:
        yield gateway_factory(
            admin_key=ADMIN_KEY,
            openai_api_key=UPSTREAM_KEY,
            openai_base_url=openai_upstream.base_url,
            anthropic_api_key=UPSTREAM_KEY,
            anthropic_base_url=anthropic.base_url,
        )


def command(example: Example, workdir: Path) -> list[str]:
    if example.lang == "sh":
        if shutil.which("curl") is None:
            pytest.fail("curl is not installed")
        return ["bash", "-euo", "pipefail", "-c", example.code]
    if example.lang == "python":
        if (
            "langchain_openai" in example.code
            and importlib.util.find_spec("langchain_openai") is None
        ):
            pytest.fail("langchain-openai is not installed: run make install")
        script = workdir / "example.py"
        script.write_text(example.code)
        return [sys.executable, str(script)]
    if example.lang == "js":
        node = shutil.which("node")
        if node is None or not (NODE_MODULES / "openai").is_dir():
            pytest.fail(
                f"node or the openai npm package is missing in {NODE_MODULES}: run make install"
            )
        (workdir / "node_modules").symlink_to(NODE_MODULES)
        script = workdir / "example.mjs"
        script.write_text(example.code)
        return [node, str(script)]
    raise AssertionError(f"{example.id}: no runner for ```{example.lang}")


@pytest.mark.parametrize("example", ALL, ids=[e.id for e in ALL])
def test_example_runs(example: Example, docs_gateway: Gateway, tmp_path: Path) -> None:
    key = docs_gateway.create_user("alice", "10")
    # an example that talks to a server talks to the gateway (a verification of a
    # webhook's signature talks to none)
    assert DOC_URL in example.code or "://" not in example.code, f"{example.id}: {DOC_URL}"
    code = example.code.replace(DOC_URL, docs_gateway.url)
    runnable = Example(example.file, example.line, example.lang, code, example.expect)
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "AI_SERVICE_KEY": key,
        "AI_SERVICE_ADMIN_KEY": ADMIN_KEY,
        "NO_PROXY": "127.0.0.1,localhost",
    }
    result = subprocess.run(
        command(runnable, tmp_path),
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = result.stdout
    assert result.returncode == 0, f"{example.id} failed:\n{output}\n{result.stderr}"
    assert example.expect in output, f"{example.id} printed:\n{output}\n{result.stderr}"
    assert "Traceback" not in result.stderr


def test_every_setting_is_documented() -> None:
    text = (ROOT / "docs" / "operations.md").read_text()
    missing = []
    for name, field in Settings.model_fields.items():
        names = [f"AI_SERVICE_{name.upper()}"]
        alias = field.validation_alias
        if alias is not None:
            names = [str(choice) for choice in getattr(alias, "choices", [alias])]
        if not any(f"`{n}`" in text for n in names):
            missing.append(name)
    assert missing == []


def test_every_provider_is_documented() -> None:
    providers = (ROOT / "docs" / "providers.md").read_text()
    operations = (ROOT / "docs" / "operations.md").read_text()
    readme = (ROOT / "README.md").read_text()
    for path, spec in REGISTRY.items():
        assert f"`/ai/{path}`" in providers, path
        assert f"`{spec.key_variable}`" in readme, path
        for variable in (spec.key_variable, spec.url_variable):
            assert f"${variable}" in providers or f"`{variable}`" in providers, variable
            assert f"`{variable}`" in operations, variable
        assert f"`{spec.default_url}`" in operations, path


def test_readme_links_the_docs() -> None:
    readme = (ROOT / "README.md").read_text()
    for target in re.findall(r"\]\(((?:docs/)[^)#]+)\)", readme):
        assert (ROOT / target).is_file(), target
    for doc in ("docs/user-guide.md", "docs/operations.md", "docs/catalog.md"):
        assert f"]({doc})" in readme, doc
