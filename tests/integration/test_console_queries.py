"""The console's ledger queries (``console/queries.py``) and the rollups they read (``store/rollups.py``), against
small ledgers of known rows, written through the ledger's own writer.

Runs once on SQLite and once on PostgreSQL. The clock is fixed at ``NOW``; every time is UTC.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select, text

from llm_gateway.console import queries as console
from llm_gateway.console.queries import (
    Bucket,
    ConsoleQueries,
    RequestFilters,
    Top,
    UsageLine,
    UserMonth,
    decode_cursor,
    encode_cursor,
    percentile,
)
from llm_gateway.store import rollups
from llm_gateway.store.db import HEAD_REVISION, Database, open_database
from llm_gateway.store.ledger import UsageLedger
from llm_gateway.store.ledger_row import UsageRow
from llm_gateway.store.tables import Team, UsageDaily, UsageHourly, UsageRecord, User
from tests.identity_support import (
    database_url,  # noqa: F401 - the module-scoped fixture, one run per backend
    sibling_database,
)
from tests.ledger_support import LEDGER, database_at, ledger_row_at_0002

pytestmark = pytest.mark.integration

NOW = datetime(2026, 12, 2, 10, 30, tzinfo=UTC)
ZERO = Decimal("0")


@pytest.fixture
async def database(database_url: str, tmp_path: Path) -> AsyncIterator[Database]:  # noqa: F811
    async with sibling_database(database_url, tmp_path) as fresh, open_database(fresh) as opened:
        yield opened


@pytest.fixture
def queries(database: Database) -> ConsoleQueries:
    return ConsoleQueries(database, clock=lambda: NOW)


_numbers = iter(range(1, 10**9))


def row(at: datetime, **fields: Any) -> UsageRow:
    """A row written at ``at`` (charged to its month), by ``ann`` on ``gpt`` answered by openai unless told."""
    number = next(_numbers)
    values: dict[str, Any] = {
        "id": f"row{number:08d}",
        "request_id": f"req{number}",
        "user_id": "ann",
        "month": at.astimezone(UTC).strftime("%Y-%m"),
        "model_group": "gpt",
        "provider": "openai",
        "upstream_model": "gpt-4o",
        "created_at": at,
    }
    return UsageRow(**(values | fields))


async def write(database: Database, *rows: UsageRow) -> list[UsageRow]:
    ledger = UsageLedger(database, batch_size=7)  # several batches: the rollups add up across them
    for each in rows:
        ledger.record(each)
    assert await ledger.flush_once()
    return list(rows)


def at(text_: str) -> datetime:
    return datetime.fromisoformat(text_).replace(tzinfo=UTC)


# -- the rollups --------------------------------------------------------------------------------


async def rollup_rows(database: Database) -> tuple[list[Any], list[Any]]:
    async with database.engine.connect() as connection:
        hourly = (await connection.execute(select(UsageHourly.__table__).order_by(*UsageHourly.__table__.c))).all()
        daily = (await connection.execute(select(UsageDaily.__table__).order_by(*UsageDaily.__table__.c))).all()
    return [tuple(r) for r in hourly], [tuple(r) for r in daily]


async def test_the_rollups_the_writer_keeps_are_what_a_rebuild_from_the_ledger_sums(database: Database) -> None:
    rows = [
        row(at("2026-12-02 09:10:00.123456"), prompt_tokens=10, completion_tokens=5, cost_usd=Decimal("0.000001")),
        row(at("2026-12-02 09:59:59.999999"), cached=True, prompt_tokens=7, cost_usd=Decimal("9"), attempts=0),
        row(at("2026-12-02 10:00:00"), status=502, provider=None, upstream_model=None, attempts=3),
        row(at("2026-12-02 10:01:00"), status=500, latency_ms=9),
        row(at("2026-12-02 10:02:00"), status=200, attempts=2, cost_usd=Decimal("0.1"), user_id="bob"),
        row(at("2026-12-01 00:00:05"), month="2026-11", prompt_tokens=3),  # charged to November, written after
        row(at("2026-11-30 23:59:59"), month="2026-11", model_group="claude", provider="anthropic"),
    ]
    rows += [row(at("2026-12-02 09:30:00"), cost_usd=Decimal("0.1"), prompt_tokens=1) for _ in range(10)]
    await write(database, *rows)
    again = UsageLedger(database)
    for each in rows[:5]:  # a batch retried after its commit: nothing counts twice
        again.record(each)
    assert await again.flush_once()

    kept = await rollup_rows(database)
    async with database.engine.begin() as connection:
        await rollups.rebuild(connection)
    assert await rollup_rows(database) == kept

    async with database.sessions() as session:
        nine = await session.get(UsageHourly, (at("2026-12-02 09:00"), "gpt", "openai", "gpt-4o"))
        ten_failed = await session.get(UsageHourly, (at("2026-12-02 10:00"), "gpt", "", ""))
        late = await session.get(UsageDaily, (date(2026, 11, 30), "ann", "gpt", "2026-11"))
    assert nine is not None and ten_failed is not None and late is not None
    assert (nine.requests, nine.prompt_tokens, nine.completion_tokens, nine.cache_hits) == (12, 20, 5, 1)
    assert nine.spend_usd == Decimal("1.000001")  # ten dimes and a micro-dollar, exactly; the hit costs nothing
    assert (ten_failed.requests, ten_failed.errors, ten_failed.fallbacks) == (1, 1, 0)
    assert ten_failed.last_error_at == at("2026-12-02 10:00")
    assert (late.requests, late.prompt_tokens) == (1, 3)  # counted on November's last day, as its budget


# -- the series ---------------------------------------------------------------------------------


async def test_a_24_hour_series_has_every_hour_with_zeros_filled(database: Database, queries: ConsoleQueries) -> None:
    await write(
        database,
        row(at("2026-12-01 10:59:59"), prompt_tokens=1000),  # before the first bucket
        row(at("2026-12-01 11:00:00"), prompt_tokens=10, completion_tokens=5, cost_usd=Decimal("0.000003")),
        row(at("2026-12-01 11:45:00"), cached=True, attempts=0, prompt_tokens=99, cost_usd=Decimal("1")),
        row(at("2026-12-02 10:05:00"), status=500, cost_usd=Decimal("0")),
        row(at("2026-12-02 10:20:00"), attempts=2, completion_tokens=4, cost_usd=Decimal("0.1")),
        row(at("2026-12-02 10:29:00"), status=503, attempts=2, provider=None, upstream_model=None),
        # Another zone's wall clock: 12:10 at +02:00 is 10:10 UTC.
        row(datetime(2026, 12, 2, 12, 10, tzinfo=timezone(timedelta(hours=2))), cost_usd=Decimal("0.2")),
    )
    series = await queries.series(NOW - timedelta(hours=23, minutes=30), "hour")

    assert len(series) == 24
    assert [b.start for b in series] == [at("2026-12-01 11:00") + timedelta(hours=h) for h in range(24)]
    assert series[0] == Bucket(at("2026-12-01 11:00"), 2, 10, 5, Decimal("0.000003"), 1, 0, 0)
    assert series[-1] == Bucket(at("2026-12-02 10:00"), 4, 0, 4, Decimal("0.3"), 0, 2, 1)
    assert all(b == Bucket(b.start, 0, 0, 0, ZERO, 0, 0, 0) for b in series[1:-1])
    assert all(isinstance(b.spend_usd, Decimal) for b in series)


async def test_a_30_day_series_has_every_day_across_a_month_boundary(
    database: Database, queries: ConsoleQueries
) -> None:
    await write(
        database,
        row(at("2026-11-02 00:00:00"), prompt_tokens=1),
        row(at("2026-11-30 23:59:59.999999"), prompt_tokens=2),
        row(at("2026-12-01 00:00:00"), prompt_tokens=4),
        row(at("2026-12-01 00:00:05"), month="2026-11", prompt_tokens=8),  # charged to November: a December day
        row(at("2026-12-02 10:29:59"), prompt_tokens=16),
    )
    series = await queries.series(NOW - timedelta(days=30), "day")

    assert [b.start for b in series] == [at("2026-11-02") + timedelta(days=d) for d in range(31)]
    tokens = {b.start.date(): b.prompt_tokens for b in series if b.requests}
    assert tokens == {date(2026, 11, 2): 1, date(2026, 11, 30): 2, date(2026, 12, 1): 12, date(2026, 12, 2): 16}
    assert sum(b.requests for b in series) == 5


async def test_a_series_refuses_a_bucket_it_does_not_know_and_one_too_long(queries: ConsoleQueries) -> None:
    with pytest.raises(ValueError, match="bucket"):
        await queries.series(NOW, "week")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at most"):
        await queries.series(NOW - timedelta(hours=console.MAX_BUCKETS), "hour")
    assert len(await queries.series(NOW - timedelta(hours=console.MAX_BUCKETS - 1), "hour")) == console.MAX_BUCKETS
    assert await queries.series(NOW + timedelta(days=2), "day") == []


# -- top users and models -----------------------------------------------------------------------


async def test_top_users_order_by_spend_then_tokens_then_requests_then_name(
    database: Database, queries: ConsoleQueries
) -> None:
    day = at("2026-12-01 12:00")
    await write(
        database,
        row(day, user_id="cheap", prompt_tokens=5000),
        row(day, user_id="dear", cost_usd=Decimal("2.000001")),
        row(day, user_id="dear", cost_usd=Decimal("0.1"), prompt_tokens=1, completion_tokens=2),
        row(day, user_id="busy", cost_usd=Decimal("1")),
        row(day, user_id="busy", cached=True, cost_usd=Decimal("5"), prompt_tokens=7),  # charged nothing
        row(day, user_id="abe", cost_usd=Decimal("1")),
        row(day, user_id="zed", cost_usd=Decimal("1")),
        row(day, user_id="zed", cost_usd=Decimal("0")),
    )
    top = await queries.top_users(NOW - timedelta(days=30))
    assert top == [
        Top("dear", 2, 3, Decimal("2.100001")),
        Top("busy", 2, 0, Decimal("1")),
        Top("zed", 2, 0, Decimal("1")),
        Top("abe", 1, 0, Decimal("1")),
        Top("cheap", 1, 5000, ZERO),
    ]
    assert [t.name for t in await queries.top_users(NOW - timedelta(days=30), limit=2)] == ["dear", "busy"]
    with pytest.raises(ValueError):
        await queries.top_users(NOW, limit=0)
    with pytest.raises(ValueError):
        await queries.top_users(NOW, limit=console.MAX_TOP + 1)
    with pytest.raises(ValueError, match="back"):
        await queries.top_users(NOW - console.MAX_PERIOD - timedelta(seconds=1))


async def test_top_lists_count_from_since_exactly_within_its_hour_and_day(
    database: Database, queries: ConsoleQueries
) -> None:
    since = at("2026-12-01 10:30")  # NOW - 24 h: a partial hour, and a partial day
    await write(
        database,
        row(at("2026-12-01 10:29:59"), user_id="before", model_group="early", cost_usd=Decimal("9")),
        row(at("2026-12-01 10:30:00"), user_id="first", model_group="m1", cost_usd=Decimal("1")),
        row(at("2026-12-01 10:59:00"), user_id="first", model_group="m1", cost_usd=Decimal("1")),
        row(at("2026-12-01 23:00:00"), user_id="late", model_group="m2", cost_usd=Decimal("3")),
        row(at("2026-12-02 00:00:00"), user_id="first", model_group="m2", cost_usd=Decimal("0.5")),
    )
    users = await queries.top_users(since)
    assert users == [Top("late", 1, 0, Decimal("3")), Top("first", 3, 0, Decimal("2.5"))]
    models = await queries.top_models(since)
    assert models == [Top("m2", 2, 0, Decimal("3.5")), Top("m1", 2, 0, Decimal("2"))]
    on_the_hour = await queries.top_models(at("2026-12-01 11:00"))
    assert on_the_hour == [Top("m2", 2, 0, Decimal("3.5"))]


async def test_top_models_sum_tokens_charged(database: Database, queries: ConsoleQueries) -> None:
    await write(
        database,
        row(at("2026-12-02 09:00"), model_group="a", prompt_tokens=10, completion_tokens=1),
        row(at("2026-12-02 09:00"), model_group="a", cached=True, prompt_tokens=10, completion_tokens=1),
        row(at("2026-12-02 09:00"), model_group="b", prompt_tokens=100),
    )
    assert await queries.top_models(NOW - timedelta(hours=24)) == [Top("b", 1, 100, ZERO), Top("a", 2, 11, ZERO)]


# -- deployments --------------------------------------------------------------------------------


async def test_deployments_count_failures_and_give_percentiles_of_recent_answers(
    database: Database, queries: ConsoleQueries
) -> None:
    rows = [row(at("2026-12-02 09:00") + timedelta(minutes=m), latency_ms=10 * (m + 1)) for m in range(5)]
    rows += [
        row(at("2026-12-02 09:30"), status=500, latency_ms=99_999),  # failures: no latency
        row(at("2026-12-02 10:10"), status=502, latency_ms=99_999),
        row(at("2026-12-02 09:10"), provider="anthropic", upstream_model="claude", latency_ms=7),
        row(at("2026-12-02 09:11"), cached=True, provider=None, upstream_model=None, attempts=0),  # no deployment
        row(at("2026-12-02 09:12"), status=503, provider=None, upstream_model=None),
        row(at("2026-11-01 09:00"), provider="old", upstream_model="gone"),  # before the period
    ]
    await write(database, *rows)

    stats = await queries.deployments(NOW - timedelta(hours=24))

    assert [(s.provider, s.model, s.requests, s.failures) for s in stats] == [
        ("openai", "gpt-4o", 7, 2),
        ("anthropic", "claude", 1, 0),
    ]
    openai, anthropic = stats
    assert (openai.p50_ms, openai.p95_ms) == (30, 48)  # of 10, 20, 30, 40, 50: as percentile_cont
    assert openai.last_failure_at == at("2026-12-02 10:10")
    assert (anthropic.p50_ms, anthropic.p95_ms, anthropic.last_failure_at) == (7, 7, None)


async def test_deployment_latency_is_over_the_most_recent_answers_only(
    database: Database, queries: ConsoleQueries, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(console, "LATENCY_SAMPLE", 3)
    start = at("2026-12-02 09:00")
    await write(database, *(row(start + timedelta(seconds=s), latency_ms=1000 + s) for s in range(10)))
    [openai] = await queries.deployments(at("2026-12-02 09:00"))
    assert (openai.requests, openai.p50_ms, openai.p95_ms) == (10, 1008, 1009)  # of 1007, 1008, 1009


async def test_deployments_count_the_partial_first_hour_exactly(database: Database, queries: ConsoleQueries) -> None:
    await write(
        database,
        row(at("2026-12-01 10:29"), status=500),
        row(at("2026-12-01 10:31"), status=500),
        row(at("2026-12-01 11:00")),
    )
    [openai] = await queries.deployments(at("2026-12-01 10:30"))
    assert (openai.requests, openai.failures, openai.last_failure_at) == (2, 1, at("2026-12-01 10:31"))


async def test_percentiles_interpolate_as_postgresql_does(database: Database) -> None:
    values = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9]
    ordered = sorted(values)
    assert percentile([], 50) is None
    assert percentile([42], 95) == 42
    assert percentile([10, 20, 30, 40, 50], 95) == 48
    if database.backend != "postgresql":
        return
    async with database.engine.connect() as connection:
        found = (
            await connection.execute(
                text(
                    "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY v), percentile_cont(0.95) WITHIN GROUP"
                    " (ORDER BY v) FROM unnest(CAST(:values AS int[])) AS v"
                ),
                {"values": values},
            )
        ).one()
    assert (percentile(ordered, 50), percentile(ordered, 95)) == (round(found[0]), round(found[1]))


# -- usage and users ----------------------------------------------------------------------------


async def test_usage_is_by_day_user_and_model_group_in_the_month_charged(
    database: Database, queries: ConsoleQueries
) -> None:
    await write(
        database,
        row(at("2026-10-31 23:59:59"), month="2026-10", prompt_tokens=1000),
        row(at("2026-11-01 00:00:00"), prompt_tokens=1, completion_tokens=2, cost_usd=Decimal("0.000001")),
        row(at("2026-11-01 08:00:00"), prompt_tokens=1, completion_tokens=2, cost_usd=Decimal("0.000002")),
        row(at("2026-11-01 09:00:00"), cached=True, prompt_tokens=50, cost_usd=Decimal("3")),
        row(at("2026-11-01 09:00:00"), user_id="bob", model_group="claude", prompt_tokens=4),
        row(at("2026-11-01 09:00:00"), user_id="bob", model_group="another", prompt_tokens=5),
        row(at("2026-11-30 23:59:59"), prompt_tokens=6),
        row(at("2026-12-01 00:00:05"), month="2026-11", prompt_tokens=7),  # on November's last day
        row(at("2026-12-01 00:00:06"), prompt_tokens=2000),  # December's
    )
    november = await queries.usage("2026-11")
    assert november == [
        UsageLine(date(2026, 11, 1), "ann", "gpt", 3, 2, 4, Decimal("0.000003")),
        UsageLine(date(2026, 11, 1), "bob", "another", 1, 5, 0, ZERO),
        UsageLine(date(2026, 11, 1), "bob", "claude", 1, 4, 0, ZERO),
        UsageLine(date(2026, 11, 30), "ann", "gpt", 2, 13, 0, ZERO),
    ]
    assert [line.model_group for line in await queries.usage("2026-11", user_id="bob")] == ["another", "claude"]
    assert await queries.usage("2026-11", user_id="nobody") == []
    assert [line async for line in queries.usage_lines("2026-11")] == november
    assert [line.prompt_tokens for line in await queries.usage("2026-12")] == [2000]
    assert [line.prompt_tokens for line in await queries.usage("2026-10")] == [1000]
    for bad in ("2026-13", "2026-1", "26-11", "2026-11-01", ""):
        with pytest.raises(ValueError):
            await queries.usage(bad)


async def test_usage_stops_at_its_cap_and_the_lines_go_on(
    database: Database, queries: ConsoleQueries, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(console, "USAGE_LINES", 3)
    await write(database, *(row(at(f"2026-11-{d:02d} 12:00")) for d in range(1, 6)))
    assert [line.day.day for line in await queries.usage("2026-11")] == [1, 2, 3]
    assert [line.day.day async for line in queries.usage_lines("2026-11")] == [1, 2, 3, 4, 5]


async def test_users_month_sums_each_user_next_to_their_team(database: Database, queries: ConsoleQueries) -> None:
    async with database.sessions.begin() as session:
        session.add(Team(id="red"))
        session.add_all([User(id="ann", team_id="red"), User(id="bob")])
    await write(
        database,
        row(at("2026-11-03 10:00"), prompt_tokens=10, cost_usd=Decimal("0.5")),
        row(at("2026-11-04 10:00"), model_group="other", completion_tokens=5, cost_usd=Decimal("0.25")),
        row(at("2026-11-04 11:00"), cached=True, prompt_tokens=10, cost_usd=Decimal("1")),
        row(at("2026-11-05 10:00"), user_id="bob", prompt_tokens=1, cost_usd=Decimal("2")),
        row(at("2026-11-05 10:00"), user_id="carol", prompt_tokens=100),  # never stored as a user
        row(at("2026-12-01 00:00:01"), month="2026-11", user_id="carol", prompt_tokens=1),
        row(at("2026-12-01 10:00"), user_id="ann", cost_usd=Decimal("50")),
    )
    assert await queries.users_month("2026-11") == [
        UserMonth("bob", None, 1, 1, Decimal("2")),
        UserMonth("ann", "red", 3, 15, Decimal("0.75")),
        UserMonth("carol", None, 2, 101, ZERO),
    ]
    assert await queries.users_month("2026-10") == []
    with pytest.raises(ValueError):
        await queries.users_month("November")


# -- the Requests page --------------------------------------------------------------------------


async def pages(queries: ConsoleQueries, filters: RequestFilters, limit: int) -> list[list[str]]:
    found, cursor = [], None
    while True:
        page = await queries.requests(filters, cursor=cursor, limit=limit)
        found.append([entry.id for entry in page.rows])
        if page.next_cursor is None:
            return found
        cursor = page.next_cursor


async def test_paging_gives_every_row_once_newest_first(database: Database, queries: ConsoleQueries) -> None:
    start = at("2026-12-01 09:00")
    rows = [row(start + timedelta(minutes=n // 3)) for n in range(23)]  # three rows share each time
    await write(database, *rows)
    expected = [r.id for r in sorted(rows, key=lambda r: (r.created_at, r.id), reverse=True)]

    found = await pages(queries, RequestFilters(), limit=5)
    assert [len(page) for page in found] == [5, 5, 5, 5, 3]
    assert [entry for page in found for entry in page] == expected
    assert await pages(queries, RequestFilters(), limit=23) == [expected]


async def test_a_page_shows_each_rows_fields(database: Database, queries: ConsoleQueries) -> None:
    [written] = await write(
        database,
        row(
            at("2026-12-02 09:00:00.000001"),
            key_id="k1",
            team_id="red",
            endpoint="messages",
            status=200,
            prompt_tokens=3,
            completion_tokens=4,
            cost_usd=Decimal("0.123456"),
            latency_ms=321,
            attempts=2,
        ),
    )
    page = await queries.requests(RequestFilters())
    assert page.next_cursor is None
    [entry] = page.rows
    assert entry == console.LedgerEntry(
        id=written.id,
        created_at=at("2026-12-02 09:00:00.000001"),
        request_id=written.request_id,
        user_id="ann",
        key_id="k1",
        team_id="red",
        model_group="gpt",
        endpoint="messages",
        provider="openai",
        upstream_model="gpt-4o",
        status=200,
        cached=False,
        prompt_tokens=3,
        completion_tokens=4,
        cost_usd=Decimal("0.123456"),
        latency_ms=321,
        attempts=2,
    )


FILTERED = [
    ("user", RequestFilters(user_id="bob"), {"b1", "b2"}),
    ("key", RequestFilters(key_id="k2"), {"b2", "c1"}),
    ("model group", RequestFilters(model_group="claude"), {"c1", "c2"}),
    ("provider", RequestFilters(provider="anthropic"), {"c1"}),
    ("status", RequestFilters(status=500), {"b2", "e1"}),
    ("cached", RequestFilters(cached=True), {"h1"}),
    ("not cached", RequestFilters(cached=False), {"a1", "b1", "b2", "c1", "c2", "e1"}),
    ("endpoint", RequestFilters(endpoint="embeddings"), {"e1"}),
    ("user and key", RequestFilters(user_id="bob", key_id="k2"), {"b2"}),
    ("user and status", RequestFilters(user_id="bob", status=500), {"b2"}),
    ("group, provider and cached", RequestFilters(model_group="claude", provider="anthropic", cached=False), {"c1"}),
    ("everything", RequestFilters("bob", "k2", "gpt", "openai", 500, False, "chat"), {"b2"}),
    ("nothing matches", RequestFilters(user_id="bob", endpoint="embeddings"), set()),
]


@pytest.mark.parametrize(("filters", "expected"), [(f, e) for _, f, e in FILTERED], ids=[n for n, _, _ in FILTERED])
async def test_each_filter_alone_and_combined(
    database: Database, queries: ConsoleQueries, filters: RequestFilters, expected: set[str]
) -> None:
    start = at("2026-12-01 09:00")
    await write(
        database,
        row(start, id="a1", key_id="k1"),
        row(start + timedelta(seconds=1), id="b1", user_id="bob", key_id="k3"),
        row(start + timedelta(seconds=2), id="b2", user_id="bob", key_id="k2", status=500),
        row(start + timedelta(seconds=3), id="c1", model_group="claude", provider="anthropic", key_id="k2"),
        row(start + timedelta(seconds=4), id="c2", model_group="claude", provider=None, upstream_model=None),
        row(start + timedelta(seconds=5), id="h1", cached=True, provider=None, upstream_model=None),
        row(start + timedelta(seconds=6), id="e1", endpoint="embeddings", status=500),
    )
    found = await pages(queries, filters, limit=1)
    flat = [entry for page in found for entry in page]
    assert set(flat) == expected
    assert len(flat) == len(expected)


async def test_a_rare_filter_reads_a_bounded_stretch_per_page_and_still_finds_every_match(
    database: Database, queries: ConsoleQueries, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(console, "SCAN_LIMIT", 4)
    start = at("2026-12-01 09:00")
    rows = [row(start + timedelta(seconds=n), status=418 if n in (1, 2, 9) else 200) for n in range(12)]
    await write(database, *rows)
    # Pages read 4 rows each, newest first: rows 11-8 hold 9; rows 7-4 none; rows 3-0 hold 2 and 1.
    found = await pages(queries, RequestFilters(status=418), limit=5)
    assert found == [[rows[9].id], [], [rows[2].id, rows[1].id]]
    found = await pages(queries, RequestFilters(status=418, user_id="ann"), limit=1)
    assert [entry for page in found for entry in page] == [rows[9].id, rows[2].id, rows[1].id]


async def test_a_bad_cursor_or_limit_is_a_value_error(database: Database, queries: ConsoleQueries) -> None:
    naive = base64.urlsafe_b64encode(b"2026-12-01T09:00:00~abc").decode()
    for cursor in ("", "not a cursor!", "bm9wZQ", encode_cursor(NOW, "x" * 33), naive, "%%%"):
        with pytest.raises(ValueError, match="cursor"):
            await queries.requests(RequestFilters(), cursor=cursor)
    for limit in (0, console.MAX_PAGE + 1):
        with pytest.raises(ValueError, match="limit"):
            await queries.requests(RequestFilters(), limit=limit)
    assert decode_cursor(encode_cursor(NOW, "row1")) == (NOW, "row1")


# -- the filters' lists -------------------------------------------------------------------------


async def test_distinct_values_list_each_value_once_in_order(
    database: Database, queries: ConsoleQueries, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert await queries.distinct_values() == {"providers": [], "model_groups": [], "endpoints": []}
    start = at("2026-12-01 09:00")
    await write(
        database,
        row(start, provider="openai", model_group="gpt", endpoint="chat"),
        row(start, provider="anthropic", model_group="claude", endpoint="messages"),
        row(start, provider=None, upstream_model=None, model_group="gpt", endpoint="chat"),
        row(start, provider="groq", model_group="llama", endpoint="responses"),
        row(start, provider="openai", model_group="embed", endpoint="embeddings"),
    )
    assert await queries.distinct_values() == {
        "providers": ["anthropic", "groq", "openai"],
        "model_groups": ["claude", "embed", "gpt", "llama"],
        "endpoints": ["chat", "embeddings", "messages", "responses"],
    }
    monkeypatch.setattr(console, "DISTINCT_VALUES", 2)
    assert (await queries.distinct_values())["model_groups"] == ["claude", "embed"]


async def test_the_attempts_column_reads_1_for_rows_written_before_it(database: Database) -> None:
    async with database.engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO usage_ledger (id, request_id, user_id, month, model_group, prompt_tokens,"
                " completion_tokens, cached, status, latency_ms, created_at)"
                " VALUES ('old', 'r', 'ann', '2026-12', 'gpt', 0, 0, false, 200, 1, '2026-12-01 00:00:00')"
            )
        )
    async with database.sessions() as session:
        assert await session.scalar(select(UsageRecord.attempts)) == 1


async def test_migrating_a_ledger_to_0007_sums_its_rows_into_the_rollups(
    database_url: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    async with database_at("0005", database_url, tmp_path) as database:
        rows = [
            ledger_row_at_0002(1, created_at=at("2026-11-02 09:30"), cost_usd=Decimal("0.25")),
            ledger_row_at_0002(
                2, created_at=at("2026-11-02 09:45"), status=500, provider=None, upstream_model=None, cost_usd=ZERO
            ),
            ledger_row_at_0002(3, created_at=at("2026-12-01 00:00:05"), cached=True, cost_usd=ZERO),  # November's
        ]
        async with database.engine.begin() as connection:
            await connection.execute(insert(LEDGER), rows)
        assert await database.migrate() == HEAD_REVISION

        queries = ConsoleQueries(database, clock=lambda: NOW)
        assert await queries.usage("2026-11") == [
            UsageLine(date(2026, 11, 2), "alice", "gpt-4o-mini", 2, 30, 3, Decimal("0.25")),
            UsageLine(date(2026, 11, 30), "alice", "gpt-4o-mini", 1, 0, 0, ZERO),
        ]
        series = await queries.series(at("2026-11-02 09:00"), "hour")
        assert series[0] == Bucket(at("2026-11-02 09:00"), 2, 30, 3, Decimal("0.25"), 0, 1, 0)
        entries = (await queries.requests(RequestFilters())).rows
        assert [entry.attempts for entry in entries] == [1, 1, 1]  # unknown before 0007: read as 1
        kept = await rollup_rows(database)
        async with database.engine.begin() as connection:
            await rollups.rebuild(connection)
        assert await rollup_rows(database) == kept
