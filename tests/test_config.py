"""Settings: prefix, provider variables, YAML file, placeholder secrets, URL mapping."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from ai_service.config import Settings
from ai_service.providers import PATHS, REGISTRY, configured
from ai_service.providers.base import ChatRequest
from ai_service.storage.db import async_url


def test_environment_prefix_and_provider_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AI_SERVICE_PORT", "9090")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://claude.local")
    settings = Settings()
    assert settings.port == 9090
    assert settings.provider_credentials("openai") == ("https://api.openai.com/v1", "sk-openai")
    assert settings.provider_credentials("claude") == ("http://claude.local", None)
    assert settings.provider_credentials("llama")[0] == "https://api.together.xyz/v1"


@pytest.mark.parametrize("path", list(REGISTRY))
@pytest.mark.parametrize("prefix", ["", "AI_SERVICE_"])
def test_every_registered_provider_reads_its_own_variables(
    monkeypatch: pytest.MonkeyPatch, path: str, prefix: str
) -> None:
    spec = REGISTRY[path]
    assert Settings().provider_credentials(path) == (spec.default_url, None)
    monkeypatch.setenv(prefix + spec.key_variable, f"sk-{path}")
    monkeypatch.setenv(prefix + spec.url_variable, f"http://{path}.local")
    settings = Settings()
    assert settings.provider_credentials(path) == (f"http://{path}.local", f"sk-{path}")
    adapter = configured(settings)[path]
    assert adapter.name == path
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    upstream = adapter.build_request(ChatRequest(body, "m", stream=False, max_output_tokens=16))
    assert upstream.url.startswith(f"http://{path}.local/")


def test_provider_settings_keep_their_names_in_arguments_and_yaml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "ai.yaml"
    config.write_text("anthropic_base_url: http://claude.yaml\nmistral_api_key: sk-mistral\n")
    monkeypatch.setenv("AI_SERVICE_CONFIG", str(config))
    settings = Settings(together_api_key="sk-together")
    assert settings.provider_credentials("claude") == ("http://claude.yaml", None)
    assert settings.provider_credentials("mistral")[1] == "sk-mistral"
    assert settings.provider_credentials("llama")[1] == "sk-together"
    assert set(configured(settings)) == {"mistral", "llama"}


def test_paths_are_the_registry_and_its_aliases() -> None:
    assert dict(PATHS) == {name: name for name in REGISTRY} | {"v1": "openai"}
    assert list(REGISTRY) == ["openai", "claude", "mistral", "llama", "deepseek"]


def test_yaml_file_with_environment_winning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "ai.yaml"
    config.write_text("port: 7000\nhost: 0.0.0.0\nmax_messages: 12\n")
    monkeypatch.setenv("AI_SERVICE_CONFIG", str(config))
    monkeypatch.setenv("AI_SERVICE_PORT", "7001")
    settings = Settings()
    assert (settings.port, settings.host, settings.max_messages) == (7001, "0.0.0.0", 12)


def test_placeholder_admin_key_is_refused() -> None:
    with pytest.raises(ValidationError):
        Settings(admin_key="changeme")
    assert Settings(admin_key="x" * 32).admin_key is not None


def test_default_database_is_local_sqlite() -> None:
    assert Settings().database_url.startswith("sqlite:///")


@pytest.mark.parametrize(
    ("plain", "mapped"),
    [
        ("sqlite:///ai.db", "sqlite+aiosqlite:///ai.db"),
        ("postgresql://u:p@h:5432/db", "postgresql+asyncpg://u:p@h:5432/db"),
        ("postgres://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgresql+asyncpg://u@h/db", "postgresql+asyncpg://u@h/db"),
    ],
)
def test_plain_urls_map_to_async_drivers(plain: str, mapped: str) -> None:
    assert async_url(plain) == mapped
