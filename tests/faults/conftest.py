"""Fixtures of the fault suite: fresh PostgreSQL databases, directed fake upstreams, and
real gateway processes (`python -m ai_service serve`), killed at the end of each test.

The suite needs PostgreSQL (`AI_SERVICE_TEST_DATABASES` must include `postgresql`)
and about 60 free connections on it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.faults.plans import PLANS, UPSTREAM_SENTINEL
from tests.support.databases import backends, create_postgres_database, drop_postgres_database
from tests.support.directed import DirectedOpenAI
from tests.support.invariants import Books
from tests.support.processes import GatewayProcess, free_port, gateway_env


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    skip = pytest.mark.skip(reason="the fault suite runs on PostgreSQL (AI_SERVICE_TEST_DATABASES)")
    if "postgresql" in backends():
        return
    for item in items:
        if here in item.path.parents:
            item.add_marker(skip)


@pytest.fixture
def fresh_db() -> Iterator[str]:
    """A database of its own for one test (migrated, seeded, test model priced)."""
    url = create_postgres_database()
    Books(url).price_test_model()
    yield url
    drop_postgres_database(url)


@pytest.fixture
def upstream() -> Iterator[DirectedOpenAI]:
    with DirectedOpenAI(UPSTREAM_SENTINEL, plans=PLANS) as fake:
        yield fake


Spawn = Callable[..., GatewayProcess]


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawn]:
    """Start gateway processes: spawn(db_url, upstream, instance_id, **env) -> GatewayProcess."""
    started: list[GatewayProcess] = []

    def make(
        db_url: str, upstream: DirectedOpenAI, instance_id: str, start: bool = True, **env: Any
    ) -> GatewayProcess:
        proc = GatewayProcess(
            gateway_env(
                db_url,
                instance_id,
                upstream.base_url,
                UPSTREAM_SENTINEL,
                **{k: str(v) for k, v in env.items()},
            ),
            tmp_path / f"{instance_id}.log",
            port=free_port(),
            name=instance_id,
        )
        started.append(proc)
        return proc.start() if start else proc

    yield make
    for proc in started:
        proc.kill()


# ---- one long-lived gateway for the per-request tests (matrix, security, fuzz) -----------


class Edge:
    """A gateway process with its database and fake upstream, shared by a package's tests."""

    def __init__(self, proc: GatewayProcess, upstream: DirectedOpenAI, books: Books) -> None:
        self.proc = proc
        self.upstream = upstream
        self.books = books
        self.url = proc.url


@pytest.fixture(scope="package")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    if "postgresql" not in backends():
        pytest.skip("the fault suite runs on PostgreSQL")
    url = create_postgres_database()
    books = Books(url)
    books.price_test_model()
    books.price_test_model("mistral")
    refused = free_port()  # nothing listens here: connections to it are refused
    with DirectedOpenAI(UPSTREAM_SENTINEL, plans=PLANS) as fake:
        proc = GatewayProcess(
            gateway_env(
                url,
                "edge",
                fake.base_url,
                UPSTREAM_SENTINEL,
                AI_SERVICE_MAX_BODY_BYTES="65536",
                AI_SERVICE_MAX_MESSAGES="64",
                AI_SERVICE_SETTLE_RETRY_SECONDS="5",
                MISTRAL_API_KEY=UPSTREAM_SENTINEL,
                MISTRAL_BASE_URL=f"http://127.0.0.1:{refused}/v1",
            ),
            tmp_path_factory.mktemp("edge") / "edge.log",
            name="edge",
        ).start()
        edge = Edge(proc, fake, books)
        try:
            yield edge
        finally:
            proc.stop(timeout=5)
            drop_postgres_database(url)
