"""The docs' examples run against a gateway on SQLite (they are about the API, not the database)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.databases import SqliteTemplate


@pytest.fixture
def db_url(sqlite_template: SqliteTemplate, tmp_path: Path) -> str:
    return sqlite_template.fresh(tmp_path)
