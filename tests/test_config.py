"""Settings: prefix, provider variables, YAML file, placeholder secrets, URL mapping."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from ai_service.config import Settings
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
