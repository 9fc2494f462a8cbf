"""The ledger's ``endpoint`` column: migration 0003 on a ledger that already holds rows, and rows written with it.

Runs once on SQLite and once on PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import pytest
from alembic import command
from sqlalchemy import Connection, Table, insert, inspect, select, text

from llm_gateway.store.db import HEAD_REVISION, Database, alembic_config
from llm_gateway.store.ledger import UsageLedger
from llm_gateway.store.ledger_row import UsageRow
from llm_gateway.store.tables import UsageRecord
from tests.identity_support import (
    database_url,  # noqa: F401 - the module-scoped fixture, one run per backend
    sibling_database,
)
from tests.ledger_support import ledger_row_at_0002

pytestmark = pytest.mark.integration

LEDGER = cast(Table, UsageRecord.__table__)
MONTH = "2026-11"
WRITTEN_AT = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)


def old_row(number: int) -> dict[str, object]:
    """A row as revision 0002 knows it: no ``endpoint``."""
    return ledger_row_at_0002(number, month=MONTH, created_at=WRITTEN_AT)


def endpoint_column(connection: Connection) -> dict[str, object] | None:
    columns = {column["name"]: column for column in inspect(connection).get_columns("usage_ledger")}
    return dict(columns["endpoint"]) if "endpoint" in columns else None


async def endpoints(database: Database) -> dict[str, str]:
    async with database.engine.connect() as connection:
        result = await connection.execute(select(UsageRecord.id, UsageRecord.endpoint).order_by(UsageRecord.id))
        return {row_id: endpoint for row_id, endpoint in result.all()}


async def test_a_ledger_at_0002_with_rows_is_migrated_and_its_rows_are_chat(
    database_url: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    async with sibling_database(database_url, tmp_path) as fresh:
        database = Database(fresh)
        try:
            async with database.engine.begin() as connection:
                await connection.run_sync(lambda sync: command.upgrade(alembic_config(sync), "0002"))
                # The insert names only the columns given (``endpoint`` has no Python-side default), so
                # the ORM's table, which already has the new column, writes to the 0002 schema.
                await connection.execute(insert(LEDGER), [old_row(1), old_row(2)])
            assert await database.revision() == "0002"

            assert await database.migrate() == HEAD_REVISION  # what start-up runs

            assert await endpoints(database) == {"old1": "chat", "old2": "chat"}
            async with database.engine.connect() as connection:
                column = await connection.run_sync(endpoint_column)
            assert column is not None and column["nullable"] is False
            assert "chat" in str(column["default"])
        finally:
            await database.aclose()


async def test_rows_carry_their_endpoint_and_writers_that_name_none_write_chat(
    database_url: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    async with sibling_database(database_url, tmp_path) as fresh:
        database = Database(fresh)
        try:
            await database.migrate()
            ledger = UsageLedger(database)
            ledger.record(
                UsageRow(request_id="req-m", user_id="bob", month=MONTH, model_group="claude", endpoint="messages")
            )
            ledger.record(UsageRow(request_id="req-c", user_id="bob", month=MONTH, model_group="gpt-4o-mini"))
            assert await ledger.flush_once()
            async with database.engine.connect() as connection:
                result = await connection.execute(select(UsageRecord.request_id, UsageRecord.endpoint))
                assert dict(result.all()) == {"req-m": "messages", "req-c": "chat"}
        finally:
            await database.aclose()


async def test_0003_downgrades_keeping_the_rows(database_url: str, tmp_path: Path) -> None:  # noqa: F811
    async with sibling_database(database_url, tmp_path) as fresh:
        database = Database(fresh)
        try:
            await database.migrate()
            ledger = UsageLedger(database)
            ledger.record(
                UsageRow(request_id="req-m", user_id="bob", month=MONTH, model_group="claude", endpoint="messages")
            )
            assert await ledger.flush_once()
            async with database.engine.begin() as connection:
                await connection.run_sync(lambda sync: command.downgrade(alembic_config(sync), "0002"))
                assert await connection.run_sync(endpoint_column) is None
                ids = (await connection.execute(text("SELECT request_id FROM usage_ledger"))).scalars().all()
            assert ids == ["req-m"]
            assert await database.revision() == "0002"
        finally:
            await database.aclose()
