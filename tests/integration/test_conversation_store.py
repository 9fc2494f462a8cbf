"""The conversation store on a real database: conversations as chains of turns, ownership, expiry, the
batched purge and its task, outages.

Runs once on SQLite and once on PostgreSQL; the outage tests break a SQLite file and stop a throw-away
PostgreSQL cluster.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import orjson
import pytest
from alembic import command
from sqlalchemy import Table, delete, event, func, insert, inspect, select, text, update

from llm_gateway.errors import ServiceUnavailable
from llm_gateway.store.conversations import MAX_CHAIN, PURGE_BATCH, ConversationStore, StoredResponse
from llm_gateway.store.db import HEAD_REVISION, Database, alembic_config, open_database
from llm_gateway.store.tables import StoredResponseRecord
from tests.identity_support import (
    database_url,  # noqa: F401 - the module-scoped fixture, one run per backend
    sibling_database,
    sqlite_url,
)
from tests.ledger_support import LEDGER, ledger_row_at_0002
from tests.services import PostgresServer

pytestmark = pytest.mark.integration

TABLE = cast(Table, StoredResponseRecord.__table__)
TTL = timedelta(days=30)
INPUT: list[dict[str, Any]] = [
    {"role": "system", "content": "Be brief."},
    {"type": "message", "role": "user", "content": [{"type": "input_text", "text": 'Grüße, 世界 \u0000 "q" \\ 🙂'}]},
]


def response(response_id: str, text: str = "Hello!") -> dict[str, Any]:
    """A Response object as the gateway answers it (trimmed to what matters here)."""
    return {
        "id": response_id,
        "object": "response",
        "created_at": 1_764_930_000,
        "status": "completed",
        "error": None,
        "model": "gpt-4o-mini",
        "output": [
            {
                "type": "message",
                "id": "msg_1",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
            },
            {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "f", "arguments": '{"a": 1}'},
        ],
        "temperature": 0.7,
        "top_p": 1.0,
        "metadata": {"k": "v"},
        "usage": {"input_tokens": 2**40, "output_tokens": 3, "total_tokens": 2**40 + 3},
    }


def row(
    response_id: str, *, owner: str = "alice", expires_at: datetime, previous_id: str | None = None
) -> dict[str, Any]:
    """A table row written directly, to put rows at any expiry without waiting for it. Its turn is
    ``turn(response_id)``."""
    items, output = turn(response_id)
    return {
        "id": response_id,
        "owner": owner,
        "provider": "openai",
        "native": False,
        "model_group": "gpt-4o-mini",
        "previous_id": previous_id,
        "input_items": items,
        "response": {"id": response_id, "output": output},
        "created_at": expires_at - TTL,
        "expires_at": expires_at,
    }


def turn(response_id: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A turn that names its response: the caller's input item, then the answer's output item."""
    return (
        [{"role": "user", "content": f"question for {response_id}"}],
        [{"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": response_id}]}],
    )


def history_of(*response_ids: str) -> list[dict[str, Any]]:
    """The history of a conversation made of these turns (see ``turn``), oldest first."""
    return [item for response_id in response_ids for part in turn(response_id) for item in part]


async def save_turn(
    store: ConversationStore, response_id: str, previous_id: str | None = None, *, owner: str = "alice"
) -> None:
    items, output = turn(response_id)
    await store.save(
        {"id": response_id, "object": "response", "output": output},
        owner=owner,
        provider="openai",
        native=False,
        model_group="g",
        input_items=items,
        previous_id=previous_id,
    )


def chain_rows(ids: list[str], expires_at: datetime) -> list[dict[str, Any]]:
    """Rows for a conversation of these turns, oldest first, each continuing the one before."""
    return [row(i, expires_at=expires_at, previous_id=p) for p, i in zip([None, *ids], ids, strict=False)]


async def expiries(database: Database) -> dict[str, datetime]:
    async with database.engine.connect() as connection:
        rows = (await connection.execute(select(TABLE.c.id, TABLE.c.expires_at))).all()
    return {response_id: expires_at for response_id, expires_at in rows}


async def write_rows(database: Database, rows: list[dict[str, Any]]) -> None:
    async with database.engine.begin() as connection:
        await connection.execute(insert(TABLE), rows)


async def stored_ids(database: Database) -> set[str]:
    async with database.engine.connect() as connection:
        return set((await connection.execute(select(TABLE.c.id))).scalars())


async def count_rows(database: Database) -> int:
    async with database.engine.connect() as connection:
        return int((await connection.execute(select(func.count()).select_from(TABLE))).scalar_one())


async def expire(database: Database, response_id: str) -> None:
    async with database.engine.begin() as connection:
        past = datetime.now(UTC) - timedelta(seconds=1)
        await connection.execute(update(TABLE).where(TABLE.c.id == response_id).values(expires_at=past))


async def eventually(condition: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:  # noqa: F811
    """The module's database, its responses table emptied: each test counts rows from nothing."""
    async with open_database(database_url) as opened:
        async with opened.engine.begin() as connection:
            await connection.execute(delete(TABLE))
        yield opened


@pytest.fixture
async def store(database: Database) -> AsyncIterator[ConversationStore]:
    conversations = ConversationStore(database, ttl=TTL)
    yield conversations
    await conversations.aclose()


async def test_a_saved_response_reads_back_whole_for_its_owner(store: ConversationStore) -> None:
    before = datetime.now(UTC)
    body = response("resp_round_trip")
    await store.save(body, owner="alice", provider="openai", native=True, model_group="gpt-4o-mini", input_items=INPUT)

    stored = await store.get("resp_round_trip", "alice")

    assert stored is not None
    assert stored == StoredResponse(
        id="resp_round_trip",
        owner="alice",
        provider="openai",
        native=True,
        model_group="gpt-4o-mini",
        input_items=INPUT,
        response=body,
        created_at=stored.created_at,
        expires_at=stored.created_at + TTL,
        previous_id=None,
        earlier=(),
    )
    assert stored.created_at.utcoffset() == timedelta(0) and stored.expires_at.utcoffset() == timedelta(0)
    assert before - timedelta(seconds=1) <= stored.created_at <= datetime.now(UTC)
    assert stored.history() == [*INPUT, *body["output"]]


async def test_json_is_stored_compact(store: ConversationStore, database: Database) -> None:
    body = response("resp_compact")
    await store.save(body, owner="alice", provider="groq", native=False, model_group="g", input_items=INPUT)
    async with database.engine.connect() as connection:
        query = text("SELECT CAST(response AS TEXT), CAST(input_items AS TEXT) FROM responses WHERE id = :id")
        raw_response, raw_input = (await connection.execute(query, {"id": "resp_compact"})).one()
    assert raw_response == orjson.dumps(body).decode()
    assert raw_input == orjson.dumps(INPUT).decode()


async def test_another_owner_can_neither_read_nor_delete(store: ConversationStore) -> None:
    await store.save(
        response("resp_private"), owner="alice", provider="openai", native=False, model_group="g", input_items=[]
    )

    assert await store.get("resp_private", "mallory") is None
    assert await store.get("resp_unknown", "alice") is None
    assert await store.delete("resp_private", "mallory") is False
    assert await store.delete("resp_unknown", "alice") is False
    assert await store.get("resp_private", "alice") is not None  # still there

    assert await store.delete("resp_private", "alice") is True
    assert await store.get("resp_private", "alice") is None
    assert await store.delete("resp_private", "alice") is False


async def test_an_expired_response_is_gone_for_reads_before_the_purge(
    store: ConversationStore, database: Database
) -> None:
    await store.save(
        response("resp_old"), owner="alice", provider="openai", native=False, model_group="g", input_items=[]
    )
    await expire(database, "resp_old")

    assert await store.get("resp_old", "alice") is None
    assert await store.delete("resp_old", "alice") is False
    assert await stored_ids(database) == {"resp_old"}  # left for the purge


async def test_a_duplicate_id_keeps_the_first_owners_response(store: ConversationStore, database: Database) -> None:
    first = response("resp_same", "alice's answer")
    await store.save(first, owner="alice", provider="openai", native=True, model_group="g", input_items=INPUT)
    await write_rows(database, [row("resp_mallory", owner="mallory", expires_at=datetime.now(UTC) + timedelta(days=1))])
    before = await expiries(database)
    await store.save(
        response("resp_same", "mallory's answer"),
        owner="mallory",
        provider="groq",
        native=False,
        model_group="h",
        input_items=[],
        previous_id="resp_mallory",
    )

    assert await store.get("resp_same", "mallory") is None
    stored = await store.get("resp_same", "alice")
    assert stored is not None and (stored.response, stored.provider, stored.input_items) == (first, "openai", INPUT)
    assert stored.previous_id is None
    assert await expiries(database) == before  # the refused row extends nothing either


# -- conversations: one row a turn, the chain read back in one query ---------------------------------


async def test_a_three_turn_conversation_reads_back_whole_and_in_order(store: ConversationStore) -> None:
    await save_turn(store, "resp_1")
    await save_turn(store, "resp_2", "resp_1")
    await save_turn(store, "resp_3", "resp_2")

    third = await store.get("resp_3", "alice")

    assert third is not None
    assert third.history() == history_of("resp_1", "resp_2", "resp_3")
    assert (third.previous_id, third.input_items, third.response["id"]) == ("resp_2", turn("resp_3")[0], "resp_3")
    assert third.earlier == (turn("resp_1"), turn("resp_2"))
    second = await store.get("resp_2", "alice")
    assert second is not None and second.history() == history_of("resp_1", "resp_2")
    first = await store.get("resp_1", "alice")
    assert first is not None and (first.previous_id, first.earlier) == (None, ())
    assert first.history() == history_of("resp_1")


async def test_storage_grows_linearly_with_the_turns(store: ConversationStore, database: Database) -> None:
    previous = None
    for number in range(50):
        response_id = f"resp_turn_{number:03d}"  # equal sizes: every turn's text is as long as the others
        output = [{"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "a" * 500}]}]
        await store.save(
            {"id": response_id, "object": "response", "output": output},
            owner="alice",
            provider="openai",
            native=False,
            model_group="g",
            input_items=[{"role": "user", "content": "q" * 1000}],
            previous_id=previous,
        )
        previous = response_id

    async with database.engine.connect() as connection:
        query = text("SELECT LENGTH(CAST(input_items AS TEXT)) + LENGTH(CAST(response AS TEXT)) FROM responses")
        sizes = (await connection.execute(query)).scalars().all()
    assert len(sizes) == 50 and len(set(sizes)) == 1  # the 50th turn costs what the first did
    assert 1500 < sizes[0] < 1700
    last = await store.get("resp_turn_049", "alice")
    assert last is not None and len(last.history()) == 100


async def test_a_link_to_another_owners_response_is_never_followed(
    store: ConversationStore, database: Database
) -> None:
    await save_turn(store, "resp_mallory", owner="mallory")
    await save_turn(store, "resp_alice")
    before = await expiries(database)

    await save_turn(store, "resp_alice_2", "resp_mallory")  # alice "continues" mallory's response
    await save_turn(store, "resp_mallory_2", "resp_alice", owner="mallory")  # and mallory alice's

    alices = await store.get("resp_alice_2", "alice")
    assert alices is not None and alices.history() == history_of("resp_alice_2")
    mallorys = await store.get("resp_mallory_2", "mallory")
    assert mallorys is not None and mallorys.history() == history_of("resp_mallory_2")
    after = await expiries(database)
    assert (after["resp_mallory"], after["resp_alice"]) == (before["resp_mallory"], before["resp_alice"])


@pytest.mark.parametrize("gone", ["deleted", "expired"])
async def test_a_gap_in_the_middle_leaves_the_turns_after_it(
    store: ConversationStore, database: Database, gone: str
) -> None:
    await write_rows(database, chain_rows(["resp_1", "resp_2", "resp_3", "resp_4"], datetime.now(UTC) + TTL))
    if gone == "deleted":
        assert await store.delete("resp_2", "alice") is True
    else:
        await expire(database, "resp_2")

    fourth = await store.get("resp_4", "alice")
    assert fourth is not None and fourth.history() == history_of("resp_3", "resp_4")
    assert fourth.earlier == (turn("resp_3"),)
    third = await store.get("resp_3", "alice")
    assert third is not None and (third.previous_id, third.history()) == ("resp_2", history_of("resp_3"))
    first = await store.get("resp_1", "alice")
    assert first is not None and first.history() == history_of("resp_1")


async def test_the_walk_stops_at_max_chain_turns(store: ConversationStore, database: Database) -> None:
    ids = [f"resp_{number:05d}" for number in range(MAX_CHAIN + 2)]
    expires_at = datetime.now(UTC) + timedelta(days=1)
    await write_rows(database, chain_rows(ids, expires_at))

    newest = await store.get(ids[-1], "alice")

    assert newest is not None and len(newest.earlier) == MAX_CHAIN - 1
    assert newest.history() == history_of(*ids[2:])  # the two oldest turns are out of reach

    await save_turn(store, "resp_next", ids[-1])  # extends only what a read of it reaches
    extended = {i for i, when in (await expiries(database)).items() if when > expires_at}
    assert extended == {"resp_next", *ids[3:]}


async def test_a_loop_of_links_is_cut_where_it_repeats(store: ConversationStore, database: Database) -> None:
    # Only an upstream that reuses a deleted response's id could make one.
    expires_at = datetime.now(UTC) + TTL
    await write_rows(
        database,
        [
            row("resp_a", expires_at=expires_at, previous_id="resp_b"),
            row("resp_b", expires_at=expires_at, previous_id="resp_a"),
        ],
    )

    looped = await store.get("resp_a", "alice")

    assert looped is not None and looped.history() == history_of("resp_b", "resp_a")


async def test_a_new_turn_keeps_its_conversation_alive(store: ConversationStore, database: Database) -> None:
    soon = datetime.now(UTC) + timedelta(seconds=1)
    await write_rows(
        database,
        [
            row("resp_gone", expires_at=datetime.now(UTC) - timedelta(seconds=1)),
            *chain_rows(["resp_1", "resp_2"], soon),
            row("resp_unrelated", expires_at=soon),
        ],
    )
    async with database.engine.begin() as connection:  # the conversation began with a response now expired
        await connection.execute(update(TABLE).where(TABLE.c.id == "resp_1").values(previous_id="resp_gone"))
    gone_before = (await expiries(database))["resp_gone"]

    await save_turn(store, "resp_3", "resp_2")

    kept = await expiries(database)
    assert kept["resp_1"] == kept["resp_2"] >= kept["resp_3"]
    assert kept["resp_1"] - kept["resp_3"] == TTL / 30  # the margin that spares the next turns the update
    assert kept["resp_gone"] == gone_before  # an expired ancestor is not brought back
    await asyncio.sleep(max(0.0, (soon - datetime.now(UTC)).total_seconds()) + 0.05)
    assert await store.purge_expired() == 2  # resp_gone and resp_unrelated
    assert await stored_ids(database) == {"resp_1", "resp_2", "resp_3"}
    third = await store.get("resp_3", "alice")
    assert third is not None and third.history() == history_of("resp_1", "resp_2", "resp_3")

    await save_turn(store, "resp_4", "resp_3")  # soon after: only the turn that needs it is written
    later = await expiries(database)
    assert (later["resp_1"], later["resp_2"]) == (kept["resp_1"], kept["resp_2"])
    assert later["resp_3"] - later["resp_4"] == TTL / 30


async def test_reading_the_200th_turn_is_one_query(store: ConversationStore, database: Database) -> None:
    ids = [f"resp_{number:03d}" for number in range(200)]
    await write_rows(database, chain_rows(ids, datetime.now(UTC) + TTL))
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    event.listen(database.engine.sync_engine, "before_cursor_execute", count)
    try:
        newest = await store.get(ids[-1], "alice")
    finally:
        event.remove(database.engine.sync_engine, "before_cursor_execute", count)

    assert len(statements) == 1 and statements[0].lstrip().upper().startswith("WITH RECURSIVE")
    assert newest is not None and newest.history() == history_of(*ids)


async def test_an_id_the_column_cannot_hold_is_not_stored(
    store: ConversationStore, database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="llm_gateway.store.conversations")
    await store.save(
        response("resp_" + "x" * 60), owner="alice", provider="odd", native=True, model_group="g", input_items=[]
    )
    await store.save({"output": []}, owner="alice", provider="odd", native=True, model_group="g", input_items=[])
    assert await count_rows(database) == 0
    assert [r.getMessage() for r in caplog.records] == [
        "response from odd not stored: its id is not a string of 1 to 64 characters"
    ] * 2

    await save_turn(store, "resp_ok", "resp_" + "x" * 60)  # a link no row can match is dropped, the turn kept
    stored = await store.get("resp_ok", "alice")
    assert stored is not None and (stored.previous_id, stored.history()) == (None, history_of("resp_ok"))


async def test_the_purge_removes_exactly_the_expired_rows_in_batches(
    store: ConversationStore, database: Database
) -> None:
    now = datetime.now(UTC)
    expired = [row(f"resp_gone_{i}", expires_at=now - timedelta(minutes=1 + i % 7)) for i in range(2 * PURGE_BATCH + 1)]
    live = [row(f"resp_live_{i}", expires_at=now + timedelta(minutes=5)) for i in range(5)]
    await write_rows(database, expired + live)
    deletes: list[str] = []
    event.listen(database.engine.sync_engine, "before_cursor_execute", lambda *a: deletes.append(a[2]))

    assert await store.purge_expired() == len(expired)

    assert await stored_ids(database) == {r["id"] for r in live}
    assert len([s for s in deletes if s.lstrip().upper().startswith("DELETE")]) == 3  # 1,000 + 1,000 + 1
    assert await store.purge_expired() == 0


async def test_the_background_task_purges_until_closed(database: Database) -> None:
    store = ConversationStore(database, ttl=TTL, purge_interval=0.05)
    past = datetime.now(UTC) - timedelta(seconds=1)
    await write_rows(database, [row("resp_a", expires_at=past), row("resp_b", expires_at=past)])
    store.start()
    task = store._task
    assert task is not None

    await eventually(lambda: _empty(database))

    await store.aclose()
    assert task.done() and not task.cancelled()
    await write_rows(database, [row("resp_c", expires_at=past)])
    await asyncio.sleep(0.3)
    assert await stored_ids(database) == {"resp_c"}  # nothing purges any more
    await store.aclose()  # a second close is harmless


async def _empty(database: Database) -> bool:
    return await count_rows(database) == 0


async def test_the_purge_task_survives_an_outage_without_spinning(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="llm_gateway.store.conversations")
    await write_rows(database, [row("resp_a", expires_at=datetime.now(UTC) - timedelta(seconds=1))])
    await database.engine.dispose()  # every connection from now on is a new one

    def refuse(*args: Any) -> None:
        raise OSError("connection refused")

    event.listen(database.engine.sync_engine, "do_connect", refuse)
    store = ConversationStore(database, ttl=TTL, purge_interval=0.1)
    store.start()
    try:
        await asyncio.sleep(1.0)
        failures = [r.getMessage() for r in caplog.records if "purge failed" in r.getMessage()]
        assert 3 <= len(failures) <= 12  # it goes on trying, about once per interval
        assert failures[0] == "conversation store purge failed (OSError, 1 in a row); retrying in 0.1 s"
        assert store._task is not None and not store._task.done()

        event.remove(database.engine.sync_engine, "do_connect", refuse)
        await eventually(lambda: _empty(database))
    finally:
        await store.aclose()


async def test_a_database_at_0003_with_ledger_rows_gains_the_table_and_keeps_the_rows(
    database_url: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    async with sibling_database(database_url, tmp_path) as fresh, open_database(fresh, migrate=False) as database:
        async with database.engine.begin() as connection:
            await connection.run_sync(lambda sync: command.upgrade(alembic_config(sync), "0003"))
            # The columns 0003 has, named one by one: today's ledger writes columns of later revisions.
            rows = [ledger_row_at_0002(n, request_id=f"req-{n}", endpoint="chat") for n in range(3)]
            await connection.execute(insert(LEDGER), rows)

        assert await database.migrate() == HEAD_REVISION  # what start-up runs

        store = ConversationStore(database)
        await store.save(
            response("resp_new"), owner="bob", provider="openai", native=True, model_group="g", input_items=[]
        )
        assert await store.get("resp_new", "bob") is not None
        async with database.engine.begin() as connection:
            requests = (await connection.execute(text("SELECT request_id FROM usage_ledger"))).scalars().all()
            assert sorted(requests) == ["req-0", "req-1", "req-2"]
            await connection.run_sync(lambda sync: command.downgrade(alembic_config(sync), "0003"))
            tables = await connection.run_sync(lambda sync: inspect(sync).get_table_names())
            assert "responses" not in tables and "usage_ledger" in tables
            assert len((await connection.execute(text("SELECT id FROM usage_ledger"))).all()) == 3


# -- outages: a 503 that names no URL, credential or SQL ----------------------------------------------

SECRET_PASSWORD = "pw-5ecret-never-shown"


async def assert_every_call_is_503(store: ConversationStore, caplog: pytest.LogCaptureFixture, *hidden: str) -> None:
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: store.save(
            response("resp_x"), owner="alice", provider="openai", native=False, model_group="g", input_items=[]
        ),
        lambda: store.get("resp_x", "alice"),
        lambda: store.delete("resp_x", "alice"),
    ]
    for call in calls:
        with pytest.raises(ServiceUnavailable) as raised:
            await call()
        assert str(raised.value) == "The conversation store is unavailable; try again shortly."
        assert raised.value.__cause__ is None and raised.value.__suppress_context__
    logged = caplog.text
    for secret in (SECRET_PASSWORD, *hidden):
        assert secret not in logged


async def test_a_broken_sqlite_file_is_503(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="llm_gateway")
    url = sqlite_url(tmp_path)
    async with open_database(url) as database:
        store = ConversationStore(database)
        await store.save(
            response("resp_x"), owner="alice", provider="openai", native=False, model_group="g", input_items=[]
        )
        await database.engine.dispose()
        for path in tmp_path.glob("gateway.db*"):
            path.unlink()
        (tmp_path / "gateway.db").write_bytes(b"this is not a database file, and never was" * 100)

        await assert_every_call_is_503(store, caplog, str(tmp_path))


async def test_a_stopped_postgresql_is_503(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="llm_gateway")
    server = PostgresServer().start()
    try:
        url = f"postgresql://postgres:{SECRET_PASSWORD}@127.0.0.1:{server.port}/postgres"
        async with open_database(url) as database:
            store = ConversationStore(database)
            await store.save(
                response("resp_x"), owner="alice", provider="openai", native=False, model_group="g", input_items=[]
            )
            server.stop()

            await assert_every_call_is_503(store, caplog, f"127.0.0.1:{server.port}")
    finally:
        server.stop()
