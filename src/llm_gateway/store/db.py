"""The SQL database: async engine and sessions, and Alembic migrations run on that engine.

SQLite (aiosqlite) by default, PostgreSQL (asyncpg) for ``postgresql://`` URLs. Migrations
live inside the package (``llm_gateway.store:migrations``), so they run from an installed wheel.
Alembic (~300 ms to import) is imported only when the schema is behind: a database already at
``HEAD_REVISION`` is recognised with one query, which is every start-up but the first.
A server started while PostgreSQL is down opens it in the background (``open_database(background=True)``):
until it is reached and migrated, ``Database.ready`` is False and every store answers 503 without touching it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import Connection, Insert, event, inspect, make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from llm_gateway.errors import ServiceUnavailable

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
# A server opening PostgreSQL in the background waits this long for the first attempt before it takes traffic:
# long enough that a database that is up is ready before the first request, short enough to bind the port at once.
FIRST_ATTEMPT_WAIT_SECONDS = 2.0
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
        self._ready = True  # False only while ``open_database(background=True)`` has not reached it yet
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

    @property
    def ready(self) -> bool:
        """Whether the schema is known to be at head, so queries may run (they may still fail: an outage)."""
        return self._ready

    def require_ready(self, store: str) -> None:
        """503 at once while the database has never been reached: its tables may not even exist yet."""
        if not self._ready:
            raise ServiceUnavailable(f"The {store} is unavailable: the database is not reachable yet; try again soon.")

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

        SQLite is a local file: one that cannot be opened is a configuration error, left to fail at once.
        """
        if self.backend != "sqlite":
            await self._retry(self._ping, first_delay=first_delay, max_delay=max_delay)

    async def connect_and_migrate(
        self, *, first_delay: float = 0.5, max_delay: float = 15.0, attempted: asyncio.Event | None = None
    ) -> None:
        """Migrate until it works, backing off after each failure (one log line each), then be ``ready``;
        ``attempted`` is set once the first attempt has ended, whichever way."""
        await self._retry(self._migrate_logged, first_delay=first_delay, max_delay=max_delay, attempted=attempted)
        self._ready = True

    async def connect_in_background(self) -> asyncio.Task[None]:
        """``connect_and_migrate`` in a task, ``ready`` False until it is done; returns once the first attempt
        has ended, or after ``FIRST_ATTEMPT_WAIT_SECONDS`` (a host that drops packets takes longer to refuse)."""
        self._ready = False
        attempted = asyncio.Event()
        task = asyncio.create_task(self.connect_and_migrate(attempted=attempted), name="database-connect")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(attempted.wait(), FIRST_ATTEMPT_WAIT_SECONDS)
        return task

    async def _retry(
        self,
        step: Callable[[], Awaitable[object]],
        *,
        first_delay: float,
        max_delay: float,
        attempted: asyncio.Event | None = None,
    ) -> None:
        """A server started before its database (or during an outage) waits instead of crash-looping."""
        delay, attempt = first_delay, 1
        while True:
            try:
                await step()
            except Exception as exc:  # refused, unknown host, starting up, bad password: all "not yet"
                log.warning(
                    "database unavailable at %s (attempt %d, %s: %s); retrying in %.1f s",
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
            finally:
                if attempted is not None:
                    attempted.set()
            await asyncio.sleep(delay)
            delay, attempt = min(delay * 2, max_delay), attempt + 1

    async def _ping(self) -> None:
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def _migrate_logged(self) -> None:
        revision = await self.migrate()
        log.info("database ready: backend=%s revision=%s", self.backend, revision)

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
async def open_database(
    url: str, *, migrate: bool = True, wait: bool = False, background: bool = False
) -> AsyncIterator[Database]:
    """The database, migrated to head, disposed of on exit; ``wait``: until the server is reachable.

    ``background`` (a server's lifespan): PostgreSQL is connected to and migrated by a task, retried with
    backoff, while the caller goes on at once, ``ready`` False until it is done; the first attempt is
    given ``FIRST_ATTEMPT_WAIT_SECONDS``, so that a database that is up is ready before any request.
    SQLite is a local file: opened at once, and one that cannot be is an error, as without ``background``.
    """
    database = Database(url)
    task: asyncio.Task[None] | None = None
    try:
        if background and migrate and database.backend != "sqlite":
            task = await database.connect_in_background()
        else:
            if wait:
                await database.wait_until_reachable()
            if migrate:
                await database._migrate_logged()
        yield database
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await database.aclose()


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else ""
