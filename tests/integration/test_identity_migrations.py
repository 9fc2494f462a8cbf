"""Migrations at start-up: Alembic runs only when the schema is behind; a database at head costs one query.

Runs once on SQLite and once on PostgreSQL.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Connection, inspect

from llm_gateway.store.db import HEAD_REVISION, Database, alembic_config, open_database
from tests.identity_support import (
    database_url,  # noqa: F401 - the module-scoped fixture, one run per backend
    sibling_database,
)

pytestmark = pytest.mark.integration

# Opens the database as the gateway does at start-up; prints the revision and whether Alembic was imported.
START_UP = """
import asyncio, json, sys
from llm_gateway.store.db import open_database

async def main(url):
    async with open_database(url, wait=True) as database:
        return await database.revision()

revision = asyncio.run(main(sys.argv[1]))
print(json.dumps({"revision": revision, "alembic": any(m.split(".")[0] == "alembic" for m in sys.modules)}))
"""


def start_up(url: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", START_UP, url], capture_output=True, text=True, timeout=120, check=True
    )
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return result


def tables(connection: Connection) -> list[str]:
    return sorted(inspect(connection).get_table_names())


async def test_a_fresh_database_is_migrated_then_later_starts_skip_alembic(database_url: str, tmp_path: Path) -> None:  # noqa: F811
    async with sibling_database(database_url, tmp_path) as fresh:
        assert start_up(fresh) == {"revision": HEAD_REVISION, "alembic": True}
        assert start_up(fresh) == {"revision": HEAD_REVISION, "alembic": False}


async def test_a_database_behind_head_is_brought_to_head(database_url: str, tmp_path: Path) -> None:  # noqa: F811
    async with sibling_database(database_url, tmp_path) as fresh:
        database = Database(fresh)
        try:
            async with database.engine.begin() as connection:
                await connection.run_sync(lambda sync: command.upgrade(alembic_config(sync), "0001"))
            assert await database.revision() == "0001"
            assert await database.migrate() == HEAD_REVISION
            async with database.engine.connect() as connection:
                assert "usage_ledger" in await connection.run_sync(tables)
        finally:
            await database.aclose()


async def test_a_database_never_migrated_has_no_revision(database_url: str, tmp_path: Path) -> None:  # noqa: F811
    async with sibling_database(database_url, tmp_path) as fresh:
        async with open_database(fresh, migrate=False) as database:
            assert await database.revision() is None
