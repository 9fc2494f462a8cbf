"""The SQL database: async engine and sessions, and Alembic migrations run on that engine.

SQLite (aiosqlite) by default, PostgreSQL (asyncpg) for ``postgresql://`` URLs. Migrations
live inside the package (``llm_gateway.store:migrations``), so they run from an installed wheel.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, event, make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

log = logging.getLogger(__name__)

MIGRATIONS = "llm_gateway.store:migrations"
# Any fixed number: every gateway process and the CLI take this lock while migrating PostgreSQL.
_PG_MIGRATION_LOCK = 0x6C6C6D6777
CONNECT_TIMEOUT_SECONDS = 10.0
_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg", "postgres": "postgresql+asyncpg"}


def async_url(url: str) -> str:
    """``sqlite:///x.db`` -> ``sqlite+aiosqlite:///x.db``; ``postgresql://`` -> ``postgresql+asyncpg://``.

    A URL that already names a driver is kept; any other database is refused.
    """
    parsed = make_url(url)
    if "+" in parsed.drivername:
        backend = parsed.drivername.split("+", 1)[0]
        if backend not in _DRIVERS:
            raise ValueError(f"DATABASE_URL: unsupported database '{backend}' (use sqlite or postgresql)")
        return url
    driver = _DRIVERS.get(parsed.drivername)
    if driver is None:
        raise ValueError(f"DATABASE_URL: unsupported database '{parsed.drivername}' (use sqlite or postgresql)")
    return parsed.set(drivername=driver).render_as_string(hide_password=False)


def _sqlite_pragmas(dbapi_connection: Any, _: Any) -> None:
    # WAL lets the CLI write while a server reads; busy_timeout waits for a writer instead of failing.
    cursor = dbapi_connection.cursor()
    for pragma in ("journal_mode=WAL", "busy_timeout=5000", "foreign_keys=ON", "synchronous=NORMAL"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


class Database:
    """One engine and its session factory for the process; ``migrate()`` brings the schema to head."""

    def __init__(self, url: str) -> None:
        self.url = async_url(url)
        # asyncpg waits 60 s for a connection by default: a host that drops packets would hold requests that long.
        connect_args = {"timeout": CONNECT_TIMEOUT_SECONDS} if self.url.startswith("postgresql") else {}
        self.engine: AsyncEngine = create_async_engine(self.url, pool_pre_ping=True, connect_args=connect_args)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self.sessions: async_sessionmaker[AsyncSession] = async_sessionmaker(self.engine, expire_on_commit=False)

    @property
    def backend(self) -> str:
        return self.engine.dialect.name

    async def migrate(self) -> str | None:
        """Apply every pending migration; return the revision the database is at."""
        async with self.engine.connect() as connection:
            # Processes starting together on a fresh database: one migrates, the others wait and then
            # find nothing to do. Both locks end with the migration's transaction.
            if self.backend == "postgresql":
                await connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _PG_MIGRATION_LOCK})
            elif self.backend == "sqlite":
                await connection.exec_driver_sql("BEGIN IMMEDIATE")  # the write lock, taken up front
            await connection.run_sync(_upgrade)
            await connection.commit()
            return await connection.run_sync(_current_revision)

    async def wait_until_reachable(self, *, first_delay: float = 0.5, max_delay: float = 15.0) -> None:
        """Connect until the server answers, backing off after each failure, one log line per failure.

        A gateway started before its database (or during an outage) waits instead of crash-looping.
        SQLite is a local file: one that cannot be opened is a configuration error, left to fail at once.
        """
        if self.backend == "sqlite":
            return
        delay, attempt = first_delay, 1
        while True:
            try:
                async with self.engine.connect() as connection:
                    await connection.execute(text("SELECT 1"))
            except Exception as exc:  # refused, unknown host, starting up, bad password: all "not yet"
                log.warning(
                    "database unreachable at %s (attempt %d, %s: %s); retrying in %.1f s",
                    self.location,
                    attempt,
                    type(exc).__name__,
                    _first_line(exc),
                    delay,
                )
            else:
                if attempt > 1:
                    log.info("database reachable at %s after %d attempts", self.location, attempt)
                return
            await asyncio.sleep(delay)
            delay, attempt = min(delay * 2, max_delay), attempt + 1

    @property
    def location(self) -> str:
        """``host:port/database``: where the database is, for log lines (never the user or password)."""
        url = make_url(self.url)
        return f"{url.host or 'localhost'}:{url.port or 5432}/{url.database or ''}"

    async def revision(self) -> str | None:
        async with self.engine.connect() as connection:
            return await connection.run_sync(_current_revision)

    async def aclose(self) -> None:
        await self.engine.dispose()


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration, built in code: no ini file to ship or to find."""
    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    config.attributes["connection"] = connection
    return config


def head_revision() -> str | None:
    """The newest migration this package ships."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def _upgrade(connection: Connection) -> None:
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)  # one line per plugin: noise
    command.upgrade(alembic_config(connection), "head")


def _current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


@asynccontextmanager
async def open_database(url: str, *, migrate: bool = True, wait: bool = False) -> AsyncIterator[Database]:
    """The database, migrated to head, disposed of on exit; ``wait``: until the server is reachable."""
    database = Database(url)
    try:
        if wait:
            await database.wait_until_reachable()
        if migrate:
            revision = await database.migrate()
            log.info("database ready: backend=%s revision=%s", database.backend, revision)
        yield database
    finally:
        await database.aclose()


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else ""
