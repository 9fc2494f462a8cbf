"""The ledger's rollups: ``usage_hourly`` and ``usage_daily``, summed as rows are written and rebuilt from the ledger.

The console's 30-day views would otherwise read every ledger row of the month (over a second at a million rows on
SQLite). The ledger's writer adds each batch it inserts to them in the same transaction, counting only the rows
the insert really wrote (``RETURNING``: a retried batch's duplicates add nothing), so they always agree with the
ledger. ``rebuild`` sums them from the ledger afresh (migration 0007 does the same, once).

Keys are upserted in sorted order, so two workers adding to the same hours and days never deadlock.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from functools import cache
from typing import Any, Protocol, cast

from sqlalchemy import Insert, Table, func, text
from sqlalchemy.ext.asyncio import AsyncConnection

from llm_gateway.pricing import MICRO, ZERO
from llm_gateway.store.tables import UsageDaily, UsageHourly

HOURLY = cast(Table, UsageHourly.__table__)
DAILY = cast(Table, UsageDaily.__table__)
_HOURLY_KEY = ("hour", "model_group", "provider", "upstream_model")
_DAILY_KEY = ("day", "user_id", "model_group", "month")
_SUMMED = ("requests", "prompt_tokens", "completion_tokens", "spend_usd")


class UsageRow(Protocol):
    """What the rollups read of a ledger row (``ledger_row.UsageRow``), named here so that neither module imports
    the other."""

    user_id: str
    month: str
    model_group: str
    provider: str | None
    upstream_model: str | None
    prompt_tokens: int
    completion_tokens: int
    cached: bool
    status: int
    created_at: datetime
    cost_usd: Decimal
    attempts: int


@dataclass(slots=True)
class _Sums:
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    spend_usd: Decimal = ZERO
    cache_hits: int = 0
    errors: int = 0
    fallbacks: int = 0
    last_error_at: datetime | None = None

    def add(self, row: UsageRow) -> None:
        self.requests += 1
        if row.cached:
            self.cache_hits += 1
        else:
            self.prompt_tokens += row.prompt_tokens
            self.completion_tokens += row.completion_tokens
            self.spend_usd += row.cost_usd.quantize(MICRO, rounding=ROUND_HALF_EVEN)  # as the ledger stores it
        if row.status >= 400:
            self.errors += 1
            at = _utc(row.created_at)
            self.last_error_at = at if self.last_error_at is None else max(self.last_error_at, at)
        elif row.attempts > 1:
            self.fallbacks += 1


def hour_of(moment: datetime) -> datetime:
    return _utc(moment).replace(minute=0, second=0, microsecond=0)


def day_of(moment: datetime, month: str) -> date:
    """The row's UTC day, no later than the last day of the month it was charged to."""
    year, number = int(month[:4]), int(month[5:7])
    last = date(year + number // 12, number % 12 + 1, 1) - timedelta(days=1)
    return min(_utc(moment).date(), last)


def sums(rows: Iterable[UsageRow]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A batch's additions to each rollup, one per key, in key order."""
    hourly: dict[tuple[Any, ...], _Sums] = {}
    daily: dict[tuple[Any, ...], _Sums] = {}
    for row in rows:
        provider, model = row.provider or "", row.upstream_model or ""
        hourly.setdefault((hour_of(row.created_at), row.model_group, provider, model), _Sums()).add(row)
        daily.setdefault((day_of(row.created_at, row.month), row.user_id, row.model_group, row.month), _Sums()).add(row)
    return (
        [_params(_HOURLY_KEY, key, found, hourly=True) for key, found in sorted(hourly.items())],
        [_params(_DAILY_KEY, key, found, hourly=False) for key, found in sorted(daily.items())],
    )


def _params(names: tuple[str, ...], key: tuple[Any, ...], found: _Sums, *, hourly: bool) -> dict[str, Any]:
    values = dict(zip(names, key, strict=True))
    for name in _SUMMED:
        values[name] = getattr(found, name)
    if hourly:
        values.update(
            cache_hits=found.cache_hits,
            errors=found.errors,
            fallbacks=found.fallbacks,
            last_error_at=found.last_error_at,
        )
    return values


async def add(connection: AsyncConnection, backend: str, rows: Sequence[UsageRow]) -> None:
    """Add rows just inserted into the ledger to both rollups, on the inserting transaction's connection."""
    if not rows:
        return
    hourly, daily = sums(rows)
    await connection.execute(upsert(backend, hourly=True), hourly)
    await connection.execute(upsert(backend, hourly=False), daily)


@cache
def upsert(backend: str, *, hourly: bool) -> Insert:
    """``INSERT … ON CONFLICT (key) DO UPDATE`` adding to what is there; built once per backend."""
    # Each dialect's module is imported on first use, as ``db.insert_ignoring_conflicts`` does.
    if backend == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        statement: Any = pg_insert(HOURLY if hourly else DAILY)
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        statement = sqlite_insert(HOURLY if hourly else DAILY)
    table = HOURLY if hourly else DAILY
    added = ("cache_hits", "errors", "fallbacks") if hourly else ()
    update: dict[str, Any] = {name: table.c[name] + statement.excluded[name] for name in (*_SUMMED, *added)}
    if hourly:
        mine, theirs = table.c.last_error_at, statement.excluded.last_error_at
        # The later of the two; PostgreSQL's greatest() skips a null, SQLite's two-argument max() does not.
        update["last_error_at"] = (
            func.greatest(mine, theirs)
            if backend == "postgresql"
            else func.max(func.coalesce(mine, theirs), func.coalesce(theirs, mine))
        )
    upserting: Insert = statement.on_conflict_do_update(
        index_elements=list(_HOURLY_KEY if hourly else _DAILY_KEY), set_=update
    )
    return upserting


async def rebuild(connection: AsyncConnection) -> None:
    """Sum both rollups from the whole ledger afresh (after a bulk load that bypassed the writer)."""
    await connection.execute(text("DELETE FROM usage_hourly"))
    await connection.execute(text("DELETE FROM usage_daily"))
    for statement in rebuild_sql(connection.dialect.name):
        await connection.execute(text(statement))


def rebuild_sql(backend: str) -> tuple[str, str]:
    """The two ``INSERT … SELECT`` that sum the ledger into the (empty) rollups, as the writer sums it."""
    if backend == "postgresql":
        hour = "date_trunc('hour', created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
        day = (
            "least((created_at AT TIME ZONE 'UTC')::date,"
            " (to_date(month, 'YYYY-MM') + interval '1 month' - interval '1 day')::date)"
        )
    else:  # SQLite keeps times as ISO text, in UTC
        hour = "substr(created_at, 1, 13) || ':00:00.000000'"
        day = "min(substr(created_at, 1, 10), date(month || '-01', '+1 month', '-1 day'))"
    charged = (
        "sum(CASE WHEN cached THEN 0 ELSE prompt_tokens END),"
        " sum(CASE WHEN cached THEN 0 ELSE completion_tokens END),"
        " sum(CASE WHEN cached THEN 0 ELSE cost_usd END)"
    )
    hourly = (
        "INSERT INTO usage_hourly (hour, model_group, provider, upstream_model, requests, prompt_tokens,"
        " completion_tokens, spend_usd, cache_hits, errors, fallbacks, last_error_at)"
        f" SELECT {hour}, model_group, coalesce(provider, ''), coalesce(upstream_model, ''), count(*), {charged},"
        " sum(CASE WHEN cached THEN 1 ELSE 0 END), sum(CASE WHEN status >= 400 THEN 1 ELSE 0 END),"
        " sum(CASE WHEN status < 400 AND attempts > 1 THEN 1 ELSE 0 END),"
        " max(CASE WHEN status >= 400 THEN created_at END)"
        " FROM usage_ledger GROUP BY 1, 2, 3, 4"
    )
    daily = (
        "INSERT INTO usage_daily (day, user_id, model_group, month, requests, prompt_tokens, completion_tokens,"
        f" spend_usd) SELECT {day}, user_id, model_group, month, count(*), {charged}"
        " FROM usage_ledger GROUP BY 1, 2, 3, 4"
    )
    return hourly, daily


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
