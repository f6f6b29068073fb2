"""The Responses API's response owners, written in groups (`services.response_owners`)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import event, func, insert, select

from ai_service.services.response_owners import TABLE, ResponseOwners
from ai_service.storage.db import make_engine
from ai_service.storage.models import ApiUser

pytestmark = pytest.mark.asyncio


async def users(engine: Any, *names: str) -> list[int]:
    ids = []
    async with engine.begin() as conn:
        for name in names:
            ids.append(await conn.scalar(insert(ApiUser).values(name=name).returning(ApiUser.id)))
    return ids


async def test_owners_queued_together_are_written_by_one_statement(db_url: str) -> None:
    engine = make_engine(db_url)
    tasks: set[asyncio.Task[Any]] = set()
    inserts: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "api_response_owners" in statement and statement.lstrip().upper().startswith("INSERT"):
            inserts.append(statement)

    try:
        alice, bob = await users(engine, "alice", "bob")
        event.listen(engine.sync_engine, "before_cursor_execute", seen)
        book = ResponseOwners(engine, lambda work: tasks.add(asyncio.ensure_future(work)))
        waits = [book.record(f"resp_{n}", alice if n % 2 else bob) for n in range(1, 12)]
        waits.append(book.record("resp_3", bob))  # a repeat keeps the first owner
        # before anything is written, this instance answers from memory
        assert await book.owns("resp_2", bob)
        assert not await book.owns("resp_2", alice)
        await asyncio.gather(*waits)
        assert len(inserts) == 1
        # one queued while a statement runs goes in the next
        first = book.record("resp_12", alice)
        await asyncio.sleep(0)  # the writer starts its statement
        second = book.record("resp_13", bob)
        assert await book.owns("resp_13", bob)
        await asyncio.gather(first, second)
        assert len(inserts) == 3
        async with engine.connect() as conn:
            count = await conn.scalar(select(func.count()).select_from(TABLE))
            owner = await conn.scalar(
                select(TABLE.c.user_id).where(TABLE.c.response_id == "resp_3")
            )
        assert (count, owner) == (13, alice)
        # a fresh book (another instance) reads the database
        other = ResponseOwners(engine, lambda work: tasks.add(asyncio.ensure_future(work)))
        assert await other.owns("resp_4", bob)
        assert not await other.owns("resp_4", alice)
        assert not await other.owns("resp_unknown", alice)
    finally:
        await engine.dispose()


async def test_an_id_recorded_before_keeps_its_owner_and_the_rest_are_written(
    db_url: str,
) -> None:
    engine = make_engine(db_url)
    tasks: set[asyncio.Task[Any]] = set()
    try:
        alice, bob = await users(engine, "alice", "bob")
        book = ResponseOwners(engine, lambda work: tasks.add(asyncio.ensure_future(work)))
        await book.record("resp_a", alice)
        await asyncio.gather(book.record("resp_a", bob), book.record("resp_b", bob))
        async with engine.connect() as conn:
            rows = dict((await conn.execute(select(TABLE.c.response_id, TABLE.c.user_id))).all())
        assert rows == {"resp_a": alice, "resp_b": bob}
    finally:
        await engine.dispose()


async def test_a_failed_write_only_hides_the_responses(db_url: str) -> None:
    engine = make_engine(db_url)
    tasks: set[asyncio.Task[Any]] = set()
    try:
        (alice,) = await users(engine, "alice")
        book = ResponseOwners(engine, lambda work: tasks.add(asyncio.ensure_future(work)))
        # a user that does not exist fails the statement (its foreign key): done, not raised
        await asyncio.gather(book.record("resp_x", alice), book.record("resp_y", alice + 999))
        assert not await book.owns("resp_x", alice)  # the group's statement failed whole
        await book.record("resp_z", alice)  # the next group is written
        assert await book.owns("resp_z", alice)
        async with engine.connect() as conn:
            count = await conn.scalar(select(func.count()).select_from(TABLE))
        assert count == 1
    finally:
        await engine.dispose()
