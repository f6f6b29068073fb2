"""Shared fixtures: databases (SQLite and PostgreSQL), fake upstreams, a live gateway."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ai_service.config import Settings
from tests.fakes.openai_flavours import FakeOpenAI
from tests.support.databases import PostgresDatabase, SqliteTemplate, backends
from tests.support.gateway import Gateway

UPSTREAM_KEY = "sk-upstream-test-0123456789"


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> SqliteTemplate:
    return SqliteTemplate(tmp_path_factory.mktemp("sqlite-template"))


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresDatabase]:
    db = PostgresDatabase()
    yield db
    db.drop()


@pytest.fixture(params=backends())
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        template: SqliteTemplate = request.getfixturevalue("sqlite_template")
        return template.fresh(tmp_path)
    database: PostgresDatabase = request.getfixturevalue("postgres")
    return database.fresh()


@pytest.fixture(scope="session")
def fake_openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(api_key=UPSTREAM_KEY) as fake:
        yield fake


@pytest.fixture
def openai_upstream(fake_openai: FakeOpenAI) -> FakeOpenAI:
    fake_openai.reset()
    return fake_openai


def make_settings(db_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": db_url,
        "key_cache_seconds": 0,
        "catalog_refresh_seconds": 0,
        "first_byte_timeout": 5,
        "stream_idle_timeout": 5,
        "retry_base_delay": 0.01,
        "retry_budget_seconds": 2,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def gateway_factory(db_url: str) -> Iterator[Callable[..., Gateway]]:
    started: list[Gateway] = []

    def make(span_exporter: Any = None, **overrides: Any) -> Gateway:
        gw = Gateway(make_settings(db_url, **overrides), span_exporter).start()
        started.append(gw)
        return gw

    yield make
    problems: list[str] = []
    for gw in started:
        if gw.thread.is_alive():
            problems += gw.books_problems()
        gw.stop()
    # after every test: nothing pending, nothing reserved, every balance == its ledger
    assert problems == []


@pytest.fixture
def gateway(gateway_factory: Callable[..., Gateway], openai_upstream: FakeOpenAI) -> Gateway:
    return gateway_factory(openai_api_key=UPSTREAM_KEY, openai_base_url=openai_upstream.base_url)
