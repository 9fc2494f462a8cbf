"""Alembic's entry point. The gateway passes an open connection in ``config.attributes``.

Run through ``Database.migrate()`` (start-up, ``llm-gateway db upgrade``); with the plain
``alembic`` command, set ``sqlalchemy.url`` and the same code runs on a fresh async engine.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from llm_gateway.store.db import async_url
from llm_gateway.store.tables import Base

target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    # Batch mode lets later migrations ALTER tables on SQLite too (it copies and swaps the table).
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_with_own_engine(url: str) -> None:
    engine = create_async_engine(async_url(url))
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
            await connection.commit()
    finally:
        await engine.dispose()


connection = context.config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("set sqlalchemy.url, or migrate with `llm-gateway db upgrade`")
    asyncio.run(_run_with_own_engine(url))
