"""Ledger rows as older schema revisions knew them, and databases left at such a revision: for migration tests.

Inserting such a row names only its columns (the ORM's table may have more, with no Python-side default),
so it writes to the old schema as a gateway of that revision did.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

from alembic import command
from sqlalchemy import Table

from llm_gateway.store.db import Database, alembic_config
from llm_gateway.store.tables import UsageRecord
from tests.identity_support import sibling_database

LEDGER = cast(Table, UsageRecord.__table__)
WRITTEN_AT = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)


def ledger_row_at_0002(number: int, **fields: object) -> dict[str, object]:
    """A row as revision 0002 knows it (no ``endpoint``, cost or team); ``fields`` override its values."""
    row: dict[str, object] = {
        "id": f"old{number}",
        "request_id": f"req-old-{number}",
        "user_id": "alice",
        "key_id": None,
        "month": "2026-11",
        "model_group": "gpt-4o-mini",
        "provider": "openai",
        "upstream_model": "gpt-4o-mini",
        "prompt_tokens": 10 * number,
        "completion_tokens": number,
        "cached": False,
        "status": 200,
        "latency_ms": 5,
        "created_at": WRITTEN_AT,
    }
    return row | fields


@contextlib.asynccontextmanager
async def database_at(revision: str, database_url: str, directory: Path) -> AsyncIterator[Database]:
    """A new database on ``database_url``'s backend, migrated up to ``revision`` only."""
    async with sibling_database(database_url, directory) as fresh:
        database = Database(fresh)
        try:
            async with database.engine.begin() as connection:
                await connection.run_sync(lambda sync: command.upgrade(alembic_config(sync), revision))
            yield database
        finally:
            await database.aclose()
