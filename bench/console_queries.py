"""The console's ledger queries at scale: a ledger of a million rows, each query timed (median of several runs).

    python bench/console_queries.py --rows 1000000 --backend sqlite|postgresql [--runs 7] [--keep]
        [--path /tmp/console-bench.db] [--server postgresql://postgres@127.0.0.1:5432/postgres]
        [--index-build] [--writes]

The ledger is 30 days ending now: 1,000 users (a few heavy, most light) in 100 teams with 1 to 3 keys each,
20 model groups over 6 providers (each group a primary deployment and a fallback), 4 endpoints, ~8% cache hits,
~2% errors, ~3% fallbacks, log-normal latencies. Rows go in by the database's bulk path (one ``executemany``
transaction on SQLite, ``COPY`` on PostgreSQL), after the schema is migrated to head, so every index is there.

SQLite: a file (``--path``), kept with ``--keep`` and then reused by the next run with the same ``--rows``.
PostgreSQL: a throw-away database on ``--server`` (trust auth), dropped at the end unless ``--keep``.
``--index-build`` also times dropping the console's indexes and building them again (what migration 0007 costs
on a ledger of that size); ``--writes`` times the ledger's batch insert (500 rows) with and without them.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import math
import os
import random
import sqlite3
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import asyncpg
from sqlalchemy import Table, delete, make_url, text

from llm_gateway.console.queries import ConsoleQueries, RequestFilters, decode_cursor
from llm_gateway.ids import new_id
from llm_gateway.store import rollups
from llm_gateway.store.db import Database, insert_ignoring_conflicts
from llm_gateway.store.ledger import UsageLedger
from llm_gateway.store.ledger_row import UsageRow
from llm_gateway.store.tables import UsageRecord

DAYS = 30
USERS = 1_000
TEAMS = 100
GROUPS = 20
PROVIDERS = ("openai", "anthropic", "groq", "mistral", "bedrock", "vertex")
ENDPOINTS = ("chat", "messages", "responses", "embeddings")
ENDPOINT_WEIGHTS = (0.70, 0.15, 0.10, 0.05)
ERROR_STATUSES = (429, 500, 502, 503, 504, 499)
CHUNK = 50_000
BENCH_DATABASE = "llm_gateway_console_bench"
CONSOLE_INDEXES = {
    "ix_usage_ledger_created_at": "created_at, id",
    "ix_usage_ledger_user_created": "user_id, created_at, id",
    "ix_usage_ledger_key_created": "key_id, created_at, id",
    "ix_usage_ledger_deployment": "provider, upstream_model, created_at, status, latency_ms",
    "ix_usage_ledger_endpoint": "endpoint",
}
COLUMNS = (
    "id",
    "request_id",
    "user_id",
    "key_id",
    "team_id",
    "month",
    "model_group",
    "endpoint",
    "provider",
    "upstream_model",
    "prompt_tokens",
    "completion_tokens",
    "cached",
    "status",
    "latency_ms",
    "cost_usd",
    "attempts",
    "created_at",
)


@dataclass(frozen=True)
class Deployment:
    provider: str
    model: str
    median_ms: float
    usd_per_million: Decimal


@dataclass(frozen=True)
class World:
    """Who the rows are about: users (weighted), their keys, teams, preferred groups, and the groups' chains."""

    users: list[str]
    weights: list[float]
    keys: dict[str, list[str]]
    teams: dict[str, str]
    groups: dict[str, list[str]]
    chains: dict[str, tuple[Deployment, Deployment]]


def build_world(rng: random.Random) -> World:
    users = [f"user-{n:04d}" for n in range(USERS)]
    weights = [1 / (rank + 1) ** 0.8 for rank in range(USERS)]  # a few heavy users, a long tail
    keys = {user: [f"k{n:04d}{k}" for k in range(rng.randint(1, 3))] for n, user in enumerate(users)}
    teams = {user: f"team-{rng.randrange(TEAMS):03d}" for user in users}
    names = [f"group-{n:02d}" for n in range(GROUPS)]
    groups = {user: rng.sample(names, rng.randint(1, 3)) for user in users}
    chains = {}
    for number, name in enumerate(names):
        primary, fallback = PROVIDERS[number % 6], PROVIDERS[(number + 1) % 6]
        price = Decimal(rng.choice(("0.15", "0.6", "2.5", "3", "10")))
        chains[name] = (
            Deployment(primary, f"{name}-{primary}", rng.uniform(300, 2000), price),
            Deployment(fallback, f"{name}-{fallback}", rng.uniform(300, 2000), price),
        )
    return World(users, weights, keys, teams, groups, chains)


def rows(world: World, count: int, now: datetime, rng: random.Random) -> Iterator[list[tuple[Any, ...]]]:
    """``count`` ledger rows in chunks, as tuples in ``COLUMNS`` order, times spread over ``DAYS`` days to now."""
    span = DAYS * 86_400
    chunk: list[tuple[Any, ...]] = []
    users = rng.choices(world.users, world.weights, k=count)
    # Oldest first, as a ledger is written: its rows lie in time order on disk.
    ages = sorted((rng.random() * span for _ in range(count)), reverse=True)
    for user, age in zip(users, ages, strict=True):
        at = now - timedelta(seconds=age)
        group = rng.choice(world.groups[user])
        primary, fallback = world.chains[group]
        endpoint = "embeddings" if group.endswith("19") else rng.choices(ENDPOINTS, ENDPOINT_WEIGHTS)[0]
        roll = rng.random()
        deployment: Deployment | None = primary
        cached, status, attempts = False, 200, 1
        if roll < 0.08:
            deployment, cached, attempts = None, True, 0
        elif roll < 0.10:
            status, attempts = rng.choice(ERROR_STATUSES), rng.choice((1, 2))
            deployment = primary if rng.random() < 0.3 else None  # most errors: every deployment failed
        elif roll < 0.13:
            deployment, attempts = fallback, 2
        prompt = 0 if cached else int(rng.lognormvariate(6, 1))
        completion = 0 if cached or endpoint == "embeddings" else int(rng.lognormvariate(5, 1))
        latency = 2 if cached else int(rng.lognormvariate(math.log(deployment.median_ms if deployment else 800), 0.5))
        cost = Decimal(0)
        if deployment is not None and status < 400:
            cost = (deployment.usd_per_million * (prompt + 3 * completion) / 1_000_000).quantize(Decimal("0.000001"))
        chunk.append(
            (
                new_id(),
                new_id(),
                user,
                rng.choice(world.keys[user]),
                world.teams[user],
                at.strftime("%Y-%m"),
                group,
                endpoint,
                deployment.provider if deployment else None,
                deployment.model if deployment else None,
                prompt,
                completion,
                cached,
                status,
                latency,
                cost,
                attempts,
                at,
            )
        )
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def fill_sqlite(path: Path, world: World, count: int, now: datetime, rng: random.Random) -> None:
    connection = sqlite3.connect(path)
    try:
        connection.execute("PRAGMA synchronous=OFF")
        statement = f"INSERT INTO usage_ledger ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
        for chunk in rows(world, count, now, rng):
            connection.executemany(statement, [_sqlite_values(row) for row in chunk])
            connection.commit()
    finally:
        connection.close()


def _sqlite_values(row: tuple[Any, ...]) -> tuple[Any, ...]:
    # As the ORM's types store them: micro-dollars, and naive UTC text.
    *head, cost, attempts, at = row
    return (*head, int(cost.scaleb(6)), attempts, at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f"))


async def fill_postgresql(url: str, world: World, count: int, now: datetime, rng: random.Random) -> None:
    connection = await asyncpg.connect(_plain(url))
    try:
        for chunk in rows(world, count, now, rng):
            await connection.copy_records_to_table("usage_ledger", records=chunk, columns=list(COLUMNS))
    finally:
        await connection.close()


def _plain(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def timed(runs: int, work: Callable[[], Awaitable[Any]]) -> tuple[float, float, Any]:
    """Median wall and CPU milliseconds of ``runs`` runs after one warm-up, and the last result.

    CPU is this process's, every thread's: all of SQLite's work (aiosqlite runs it on a thread here), none of
    PostgreSQL's server. On a machine shared with other work the wall time grows with the load; the CPU time
    does not."""
    result = await work()
    walls, cpus = [], []
    for _ in range(runs):
        started, cpu = time.perf_counter(), time.process_time()
        result = await work()
        walls.append((time.perf_counter() - started) * 1000)
        cpus.append((time.process_time() - cpu) * 1000)
    return statistics.median(walls), statistics.median(cpus), result


async def measure(database: Database, now: datetime, runs: int) -> list[tuple[str, float, str]]:
    queries = ConsoleQueries(database, clock=lambda: now)
    day, month = now - timedelta(days=1), now - timedelta(days=DAYS)
    heavy_month = (now - timedelta(days=DAYS // 2)).strftime("%Y-%m")
    results: list[tuple[str, float, str]] = []

    async def add(name: str, work: Callable[[], Awaitable[Any]], describe: Callable[[Any], str]) -> Any:
        wall, cpu, result = await timed(runs, work)
        results.append((name, wall, describe(result)))
        print(f"{name:40} {wall:8.1f} ms wall {cpu:8.1f} ms CPU   {describe(result)}", flush=True)
        return result

    await add("series 24 h by hour", lambda: queries.series(day, "hour"), lambda r: f"{len(r)} buckets")
    await add("series 30 days by day", lambda: queries.series(month, "day"), lambda r: f"{len(r)} buckets")
    await add("top_users 24 h", lambda: queries.top_users(day), lambda r: f"{len(r)} users")
    await add("top_users 30 days", lambda: queries.top_users(month), lambda r: f"{len(r)} users")
    await add("top_models 24 h", lambda: queries.top_models(day), lambda r: f"{len(r)} groups")
    await add("top_models 30 days", lambda: queries.top_models(month), lambda r: f"{len(r)} groups")
    await add("deployments 1 h", lambda: queries.deployments(now - timedelta(hours=1)), _deployments)
    await add("deployments 24 h", lambda: queries.deployments(day), _deployments)
    await add("deployments 30 days", lambda: queries.deployments(month), _deployments)
    await add(f"usage {heavy_month} (page)", lambda: queries.usage(heavy_month), lambda r: f"{len(r)} lines")
    await add(f"usage {heavy_month} one user", lambda: queries.usage(heavy_month, "user-0000"), _lines)
    await add(f"usage {heavy_month} CSV (all lines)", lambda: _all_lines(queries, heavy_month), lambda r: f"{r} lines")
    await add(f"users_month {heavy_month}", lambda: queries.users_month(heavy_month), lambda r: f"{len(r)} users")
    await add("distinct_values", queries.distinct_values, lambda r: ", ".join(f"{k} {len(v)}" for k, v in r.items()))
    first = await add("requests: first page", lambda: queries.requests(RequestFilters()), _page)
    cursor = first.next_cursor
    for _ in range(20):
        cursor = (await queries.requests(RequestFilters(), cursor=cursor)).next_cursor
    await add("requests: page 21", lambda: queries.requests(RequestFilters(), cursor=cursor), _page)
    middle = now - timedelta(days=DAYS // 2)
    deep = _cursor_at(middle)
    await add("requests: page at 15 days back", lambda: queries.requests(RequestFilters(), cursor=deep), _page)
    for label, filters in (
        ("a light user", RequestFilters(user_id="user-0999")),
        ("the heaviest user", RequestFilters(user_id="user-0000")),
        ("a key", RequestFilters(key_id="k05000")),
        ("a model group", RequestFilters(model_group="group-07")),
        ("a provider", RequestFilters(provider="groq")),
        ("status 500", RequestFilters(status=500)),
        ("cached", RequestFilters(cached=True)),
        ("endpoint embeddings", RequestFilters(endpoint="embeddings")),
        ("user + status 200 + chat", RequestFilters(user_id="user-0010", status=200, endpoint="chat")),
        ("status 418 (matches none)", RequestFilters(status=418)),
        ("user + status 418 (none)", RequestFilters(user_id="user-0000", status=418)),
    ):
        await add(f"requests: {label}", functools.partial(queries.requests, filters), _page)
    return results


def _cursor_at(moment: datetime) -> str:
    from llm_gateway.console.queries import encode_cursor

    cursor = encode_cursor(moment, "f" * 32)
    decode_cursor(cursor)
    return cursor


async def _all_lines(queries: ConsoleQueries, month: str) -> int:
    return sum([1 async for _ in queries.usage_lines(month)])


def _deployments(result: Any) -> str:
    busiest = result[0] if result else None
    sample = f", busiest p50 {busiest.p50_ms} p95 {busiest.p95_ms} ms" if busiest else ""
    return f"{len(result)} deployments{sample}"


def _lines(result: Any) -> str:
    return f"{len(result)} lines"


def _page(result: Any) -> str:
    return f"{len(result.rows)} rows, {'more' if result.next_cursor else 'end'}"


async def rebuild_indexes(database: Database) -> float:
    started = time.perf_counter()
    async with database.engine.begin() as connection:
        for name in CONSOLE_INDEXES:
            await connection.execute(text(f"DROP INDEX {name}"))
    started = time.perf_counter()
    async with database.engine.begin() as connection:
        for name, columns in CONSOLE_INDEXES.items():
            await connection.execute(text(f"CREATE INDEX {name} ON usage_ledger ({columns})"))
    return time.perf_counter() - started


async def time_writes(database: Database, world: World, now: datetime, rng: random.Random, *, before: bool) -> str:
    """Milliseconds per 500-row batch (median of 20): through the ledger's own writer (rows and rollups), or
    (``before``) as the writer inserted before revision 0007, rows alone. The rows are deleted after."""
    ledger = UsageLedger(database, batch_size=500)
    plain = insert_ignoring_conflicts(database.backend, ledger_table())
    durations, cpus, written = [], [], []
    for chunk in rows(world, 10_000, now, rng):
        for start in range(0, len(chunk), 500):
            # Written now, as a gateway writes: at the newest end of every time index.
            batch = [
                UsageRow(**dict(zip(COLUMNS, row, strict=True)) | {"created_at": now, "month": now.strftime("%Y-%m")})
                for row in chunk[start : start + 500]
            ]
            written += [row.id for row in batch]
            started, cpu = time.perf_counter(), time.process_time()
            if before:
                async with database.engine.begin() as connection:
                    await connection.execute(plain, [{c: getattr(r, c) for c in COLUMNS} for r in batch])
            else:
                for row in batch:
                    ledger.record(row)
                assert await ledger.flush_once()
            durations.append((time.perf_counter() - started) * 1000)
            cpus.append((time.process_time() - cpu) * 1000)
    async with database.engine.begin() as connection:
        for start in range(0, len(written), 1000):
            await connection.execute(
                delete(ledger_table()).where(ledger_table().c.id.in_(written[start : start + 1000]))
            )
        if not before:
            await rollups.rebuild(connection)
    return f"{statistics.median(durations):.1f} ms wall, {statistics.median(cpus):.1f} ms CPU"


def ledger_table() -> Table:
    return cast(Table, UsageRecord.__table__)


async def _analyze(url: str) -> None:
    connection = await asyncpg.connect(_plain(url))
    try:
        await connection.execute("VACUUM ANALYZE")
    finally:
        await connection.close()


async def _sizes(database: Database) -> str:
    async with database.engine.connect() as connection:
        counts = [
            f"{table} {(await connection.execute(text(f'SELECT count(*) FROM {table}'))).scalar():,} rows"
            for table in ("usage_hourly", "usage_daily")
        ]
    return "rollups: " + ", ".join(counts)


async def count_rows(database: Database) -> int:
    async with database.engine.connect() as connection:
        return int((await connection.execute(text("SELECT count(*) FROM usage_ledger"))).scalar() or 0)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--path", type=Path, default=Path("/tmp/console-bench.db"))
    parser.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--keep", action="store_true", help="keep the database (and reuse a SQLite file)")
    parser.add_argument("--index-build", action="store_true")
    parser.add_argument("--writes", action="store_true")
    args = parser.parse_args()
    rng = random.Random(17)
    world = build_world(rng)
    now = datetime.now(UTC).replace(microsecond=0)
    if args.backend == "sqlite":
        url = f"sqlite:///{args.path}"
        reuse = args.keep and args.path.exists()
        if not reuse:
            args.path.unlink(missing_ok=True)
    else:
        admin = await asyncpg.connect(_plain(args.server))
        try:
            found = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", BENCH_DATABASE)
            reuse = bool(found) and args.keep
            if found and not reuse:
                await admin.execute(f'DROP DATABASE "{BENCH_DATABASE}" WITH (FORCE)')
            if not reuse:
                await admin.execute(f'CREATE DATABASE "{BENCH_DATABASE}"')
        finally:
            await admin.close()
        url = make_url(args.server).set(database=BENCH_DATABASE).render_as_string(hide_password=False)
    database = Database(url)
    try:
        await database.migrate()
        if reuse and await count_rows(database) != args.rows:
            raise SystemExit(f"the kept ledger does not hold {args.rows:,} rows: run without --keep to build it anew")
        if reuse:
            print(f"reusing the ledger of {args.rows:,} rows")
            async with database.engine.connect() as connection:
                newest = (await connection.execute(text("SELECT max(created_at) FROM usage_ledger"))).scalar()
            now = _aware(newest) + timedelta(seconds=1)
        else:
            started = time.perf_counter()
            if args.backend == "sqlite":
                await database.aclose()
                fill_sqlite(args.path, world, args.rows, now, rng)
                database = Database(url)
            else:
                await fill_postgresql(url, world, args.rows, now, rng)
            print(f"built a ledger of {args.rows:,} rows in {time.perf_counter() - started:.0f} s")
            started = time.perf_counter()
            async with database.engine.begin() as connection:
                await rollups.rebuild(connection)
            print(f"summed the rollups from it in {time.perf_counter() - started:.1f} s")
            if args.backend == "postgresql":
                await _analyze(url)
            print(await _sizes(database))
        if args.index_build:
            print(f"console indexes built again in {await rebuild_indexes(database):.1f} s")
        print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        await measure(database, now, args.runs)
        print(f"load average after: {os.getloadavg()[0]:.1f}")
        if args.writes:
            now_ms = await time_writes(database, world, now, rng, before=False)
            async with database.engine.begin() as connection:
                for name in CONSOLE_INDEXES:
                    await connection.execute(text(f"DROP INDEX {name}"))
            before_ms = await time_writes(database, world, now, rng, before=True)
            print(f"ledger batch insert (500 rows): {now_ms} (rows, rollups, the console's indexes);", end=" ")
            print(f"{before_ms} before (rows alone, no console indexes)")
            async with database.engine.begin() as connection:
                for name, columns in CONSOLE_INDEXES.items():
                    await connection.execute(text(f"CREATE INDEX {name} ON usage_ledger ({columns})"))
    finally:
        await database.aclose()
        if args.backend == "postgresql" and not args.keep:
            admin = await asyncpg.connect(_plain(args.server))
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{BENCH_DATABASE}" WITH (FORCE)')
            finally:
                await admin.close()


def _aware(value: Any) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


if __name__ == "__main__":
    asyncio.run(main())
