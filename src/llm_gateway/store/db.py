"""The SQL database: async engine and sessions, and Alembic migrations run on that engine.

SQLite (aiosqlite) by default, PostgreSQL (asyncpg) for ``postgresql://`` URLs. Migrations
live inside the package (``llm_gateway.store:migrations``), so they run from an installed wheel.
Alembic (~300 ms to import) is imported only when the schema is behind: a database already at
``HEAD_REVISION`` is recognised with one query, which is every start-up but the first.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import Connection, Insert, event, inspect, make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger(__name__)

MIGRATIONS = "llm_gateway.store:migrations"
# The newest migration in migrations/versions/. A new migration must update it (a test compares it
# with Alembic's head): a database at this revision skips Alembic altogether at start-up.
HEAD_REVISION = "0007"
VERSION_TABLE = "alembic_version"  # Alembic's default, where it keeps the revision a database is at
# Any fixed number: every gateway process and the CLI take this lock while migrating PostgreSQL.
_PG_MIGRATION_LOCK = 0x6C6C6D6777
CONNECT_TIMEOUT_SECONDS = 10.0
SQLITE_BUSY_TIMEOUT_MS = 30_000
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
    # WAL lets the CLI write while a server reads; busy_timeout waits for a writer instead of failing: long
    # enough for a migration another worker is running at start-up (seconds, on a slow or busy disk).
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    if _journal_mode(cursor) != "wal":
        # WAL is a property of the file, switched to once, under an exclusive lock that fails at once
        # (no busy wait) when another process has just switched the new file and is migrating it.
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError:
            if _journal_mode(cursor) != "wal":
                raise
    for pragma in ("foreign_keys=ON", "synchronous=NORMAL"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _json_text(value: Any) -> str:
    # JSON columns hold whole conversations: orjson's compact form (no spaces after separators, unlike
    # json.dumps), several times faster. Everything stored was parsed by orjson, so it serializes back.
    return orjson.dumps(value).decode()


def _journal_mode(cursor: Any) -> str:
    cursor.execute("PRAGMA journal_mode")
    return str(cursor.fetchone()[0]).lower()


class Database:
    """One engine and its session factory for the process; ``migrate()`` brings the schema to head."""

    def __init__(self, url: str) -> None:
        self.url = async_url(url)
        # asyncpg waits 60 s for a connection by default: a host that drops packets would hold requests that long.
        connect_args = {"timeout": CONNECT_TIMEOUT_SECONDS} if self.url.startswith("postgresql") else {}
        self.engine: AsyncEngine = create_async_engine(
            self.url,
            pool_pre_ping=True,
            connect_args=connect_args,
            json_serializer=_json_text,
            json_deserializer=orjson.loads,
        )
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self.sessions: async_sessionmaker[AsyncSession] = async_sessionmaker(self.engine, expire_on_commit=False)

    @property
    def backend(self) -> str:
        return self.engine.dialect.name

    async def migrate(self) -> str | None:
        """Apply every pending migration; return the revision the database is at."""
        if await self.revision() == HEAD_REVISION:
            return HEAD_REVISION
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
        """The revision the database is at; None for a database never migrated."""
        async with self.engine.connect() as connection:
            return await connection.run_sync(_current_revision)

    async def aclose(self) -> None:
        await self.engine.dispose()


def insert_ignoring_conflicts(backend: str, target: Any, index_elements: Sequence[str] = ("id",)) -> Insert:
    """``INSERT … ON CONFLICT DO NOTHING`` for ``backend`` (``Database.backend``).

    Each dialect's module is imported here, on first use, so that a process loads only the one it
    talks to (PostgreSQL's costs ~70 ms of start-up and ~2 MB).
    """
    if backend == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(target).on_conflict_do_nothing(index_elements=list(index_elements))
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(target).on_conflict_do_nothing(index_elements=list(index_elements))


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration, built in code: no ini file to ship or to find."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    config.attributes["connection"] = connection
    return config


def head_revision() -> str | None:
    """The newest migration this package ships, as Alembic finds it (``HEAD_REVISION`` must agree)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def _upgrade(connection: Connection) -> None:
    from alembic import command

    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)  # one line per plugin: noise
    command.upgrade(alembic_config(connection), "head")


def _current_revision(connection: Connection) -> str | None:
    """What Alembic's ``MigrationContext.get_current_revision()`` answers, read without importing Alembic."""
    if not inspect(connection).has_table(VERSION_TABLE):
        return None
    versions = connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
    # More than one row would be branches, which this package never has: left for Alembic to sort out.
    return versions[0] if len(versions) == 1 else None


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
