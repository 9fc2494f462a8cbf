"""The ledger aggregates the console's pages show (STAND-IN: piece Q's ``console/queries.py`` replaces this file).

Trivially correct and unindexed: rows are read in the period and summed in Python, which is fine for the
console's tests and small ledgers, not for a million rows. The interface is the one in the console spec.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import Executable, func, select

from llm_gateway.pricing import ZERO
from llm_gateway.store.db import Database
from llm_gateway.store.tables import UsageRecord, User


@dataclass(frozen=True, slots=True)
class Bucket:
    start: datetime
    requests: int
    prompt_tokens: int
    completion_tokens: int
    spend_usd: Decimal
    cache_hits: int
    errors: int
    fallbacks: int


@dataclass(frozen=True, slots=True)
class Top:
    name: str
    requests: int
    tokens: int
    spend_usd: Decimal


@dataclass(frozen=True, slots=True)
class DeploymentStats:
    provider: str
    model: str
    requests: int
    failures: int
    p50_ms: int | None
    p95_ms: int | None
    last_failure_at: datetime | None


@dataclass(frozen=True, slots=True)
class UsageLine:
    day: date
    user_id: str
    model_group: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    spend_usd: Decimal


@dataclass(frozen=True, slots=True)
class RequestFilters:
    user_id: str | None = None
    key_id: str | None = None
    model_group: str | None = None
    provider: str | None = None
    status: int | None = None
    cached: bool | None = None
    endpoint: str | None = None


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    id: str
    created_at: datetime
    request_id: str
    user_id: str
    key_id: str | None
    team_id: str | None
    model_group: str
    endpoint: str
    provider: str | None
    upstream_model: str | None
    status: int
    cached: bool
    prompt_tokens: int
    completion_tokens: int
    cost_usd: Decimal
    latency_ms: int
    attempts: int


@dataclass(frozen=True, slots=True)
class RequestPage:
    rows: list[LedgerEntry]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class UserMonth:
    user_id: str
    team_id: str | None
    requests: int
    used_tokens: int
    spend_usd: Decimal


_R = UsageRecord
USAGE_LINES = 10_000  # the Usage page's lines at most; usage_lines() gives them all (the CSV)


def _floor(moment: datetime, bucket: Literal["hour", "day"]) -> datetime:
    moment = moment.astimezone(UTC)
    if bucket == "day":
        return moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return moment.replace(minute=0, second=0, microsecond=0)


def _charged(cached: bool, prompt: int, completion: int, cost: Decimal) -> tuple[int, Decimal]:
    return (0, ZERO) if cached else (prompt + completion, cost)


class ConsoleQueries:
    def __init__(self, database: Database) -> None:
        self._database = database

    async def _rows(self, query: Executable) -> Sequence[Any]:
        async with self._database.sessions() as session:
            rows: Sequence[Any] = (await session.execute(query)).all()
            return rows

    async def series(self, since: datetime, bucket: Literal["hour", "day"]) -> list[Bucket]:
        step = timedelta(hours=1) if bucket == "hour" else timedelta(days=1)
        first, now = _floor(since, bucket), datetime.now(UTC)
        sums: dict[datetime, list[Any]] = {}
        start = first
        while start <= now:
            sums[start] = [0, 0, 0, ZERO, 0, 0, 0]
            start += step
        query = select(_R.created_at, _R.prompt_tokens, _R.completion_tokens, _R.cost_usd, _R.cached, _R.status)
        for created, prompt, completion, cost, cached, status in await self._rows(query.where(_R.created_at >= first)):
            row = sums.get(_floor(created, bucket))
            if row is None:
                continue
            row[0] += 1
            if not cached:
                row[1] += prompt
                row[2] += completion
                row[3] += cost
            row[4] += 1 if cached else 0
            row[5] += 1 if status >= 400 else 0
        return [Bucket(start, *values) for start, values in sums.items()]

    async def _top(self, column: Any, since: datetime, limit: int) -> list[Top]:
        query = select(column, _R.prompt_tokens, _R.completion_tokens, _R.cost_usd, _R.cached)
        totals: dict[str, list[Any]] = {}
        for name, prompt, completion, cost, cached in await self._rows(query.where(_R.created_at >= since)):
            tokens, spend = _charged(cached, prompt, completion, cost)
            total = totals.setdefault(name, [0, 0, ZERO])
            total[0] += 1
            total[1] += tokens
            total[2] += spend
        ranked = sorted(totals.items(), key=lambda item: (-item[1][0], item[0]))[:limit]
        return [Top(name, *values) for name, values in ranked]

    async def top_users(self, since: datetime, limit: int = 10) -> list[Top]:
        return await self._top(_R.user_id, since, limit)

    async def top_models(self, since: datetime, limit: int = 10) -> list[Top]:
        return await self._top(_R.model_group, since, limit)

    async def deployments(self, since: datetime) -> list[DeploymentStats]:
        query = select(_R.provider, _R.upstream_model, _R.status, _R.latency_ms, _R.created_at, _R.cached)
        rows = await self._rows(query.where(_R.created_at >= since, _R.provider.is_not(None)))
        found: dict[tuple[str, str], list[Any]] = {}
        for provider, model, status, latency, created, cached in rows:
            entry = found.setdefault((provider, model or ""), [[], 0, None])
            if not cached:
                entry[0].append(latency)
            if status >= 400:
                entry[1] += 1
                entry[2] = created if entry[2] is None or created > entry[2] else entry[2]
        stats = []
        for (provider, model), (latencies, failures, last) in sorted(found.items()):
            latencies.sort()
            stats.append(
                DeploymentStats(
                    provider,
                    model,
                    len(latencies) or failures,
                    failures,
                    _percentile(latencies, 50),
                    _percentile(latencies, 95),
                    last,
                )
            )
        return stats

    async def usage(self, month: str, user_id: str | None = None) -> list[UsageLine]:
        query = select(
            _R.created_at, _R.user_id, _R.model_group, _R.prompt_tokens, _R.completion_tokens, _R.cost_usd, _R.cached
        ).where(_R.month == month)
        if user_id is not None:
            query = query.where(_R.user_id == user_id)
        lines: dict[tuple[date, str, str], list[Any]] = {}
        for created, user, group, prompt, completion, cost, cached in await self._rows(query):
            line = lines.setdefault((created.astimezone(UTC).date(), user, group), [0, 0, 0, ZERO])
            line[0] += 1
            if not cached:
                line[1] += prompt
                line[2] += completion
                line[3] += cost
        return [UsageLine(*key, *values) for key, values in sorted(lines.items())][:USAGE_LINES]

    async def usage_lines(self, month: str, user_id: str | None = None) -> AsyncIterator[UsageLine]:
        """Every line of the month (the CSV download)."""
        for line in await self.usage(month, user_id):
            yield line

    async def requests(self, filters: RequestFilters, *, cursor: str | None = None, limit: int = 50) -> RequestPage:
        query = select(_R).order_by(_R.created_at.desc(), _R.id.desc()).limit(limit + 1)
        for column, value in (
            (_R.user_id, filters.user_id),
            (_R.key_id, filters.key_id),
            (_R.model_group, filters.model_group),
            (_R.provider, filters.provider),
            (_R.status, filters.status),
            (_R.cached, filters.cached),
            (_R.endpoint, filters.endpoint),
        ):
            if value is not None:
                query = query.where(column == value)
        if cursor:
            at, row_id = _read_cursor(cursor)
            query = query.where((_R.created_at < at) | ((_R.created_at == at) & (_R.id < row_id)))
        async with self._database.sessions() as session:
            records = list((await session.scalars(query)).all())
        rows = [_entry(record) for record in records[:limit]]
        more = len(records) > limit
        return RequestPage(rows, _cursor(rows[-1]) if more and rows else None)

    async def users_month(self, month: str) -> list[UserMonth]:
        query = (
            select(
                _R.user_id,
                User.team_id,
                _R.cached,
                func.count(),
                func.sum(_R.prompt_tokens + _R.completion_tokens),
                func.sum(_R.cost_usd),
            )
            .outerjoin(User, User.id == _R.user_id)
            .where(_R.month == month)
            .group_by(_R.user_id, User.team_id, _R.cached)
        )
        months: dict[str, list[Any]] = {}
        for user, team, cached, count, tokens, spend in await self._rows(query):
            entry = months.setdefault(user, [team, 0, 0, ZERO])
            entry[1] += int(count)
            if not cached:
                entry[2] += int(tokens or 0)
                entry[3] += spend or ZERO
        return [UserMonth(user, *values) for user, values in sorted(months.items())]

    async def distinct_values(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for name, column in (("providers", _R.provider), ("model_groups", _R.model_group), ("endpoints", _R.endpoint)):
            query = select(column).where(column.is_not(None)).distinct().order_by(column).limit(200)
            found[name] = [str(value) for (value,) in await self._rows(query)]
        return found


def _percentile(values: list[int], percent: int) -> int | None:
    if not values:
        return None
    return values[min(len(values) - 1, (len(values) * percent + 99) // 100 - 1)]


def _entry(record: UsageRecord) -> LedgerEntry:
    return LedgerEntry(
        id=record.id,
        created_at=record.created_at,
        request_id=record.request_id,
        user_id=record.user_id,
        key_id=record.key_id,
        team_id=record.team_id,
        model_group=record.model_group,
        endpoint=record.endpoint,
        provider=record.provider,
        upstream_model=record.upstream_model,
        status=record.status,
        cached=record.cached,
        prompt_tokens=record.prompt_tokens,
        completion_tokens=record.completion_tokens,
        cost_usd=record.cost_usd,
        latency_ms=record.latency_ms,
        attempts=1,  # the ledger's ``attempts`` column comes with piece Q's migration
    )


def _cursor(entry: LedgerEntry) -> str:
    return base64.urlsafe_b64encode(f"{entry.created_at.isoformat()}|{entry.id}".encode()).decode()


def _read_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        at, _, row_id = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        return datetime.fromisoformat(at), row_id
    except ValueError:
        raise ValueError("bad cursor") from None
