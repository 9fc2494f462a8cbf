"""The ledger aggregates the console shows, on SQLite and PostgreSQL: every answer bounded, every read indexed.

Periods are read from the ledger's rollups (``store/rollups.py``): ``usage_hourly`` (by hour, model group and
deployment) for the series, top models and deployments, ``usage_daily`` (by day, user and model group) for top
users, the Usage and the Users pages. A period that does not start on an hour (a day, for top users) adds the
ledger's own rows before its first whole one, through the ``created_at`` index, so every figure is exact. The
Requests page and the latency percentiles read the ledger itself, through the indexes of migration 0007.

Each query names its bound: a series has one bucket per hour or day (zeros filled, at most ``MAX_BUCKETS``), a
period reaches back ``MAX_PERIOD`` at most, a top list has ``limit`` names, a page ``limit`` rows, the lists their
caps. Sums are grouped in SQL and only the groups come back to Python.

What a row counts as: tokens and spend are what was charged (a cache hit is charged nothing, whatever its row
says, as in ``store/ledger.py``); an error is a status of 400 or more; a fallback is an answer (status below 400)
after more than one upstream attempt. Times are UTC: hours, days and months start at UTC midnight.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import re
import typing
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import (
    Select,
    String,
    Table,
    bindparam,
    case,
    func,
    literal,
    literal_column,
    select,
    text,
    true,
    tuple_,
    type_coerce,
    union_all,
)
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.sql.elements import ColumnElement

from llm_gateway.errors import ServiceUnavailable
from llm_gateway.pricing import ZERO
from llm_gateway.store.db import Database
from llm_gateway.store.tables import UsageDaily, UsageHourly, UsageRecord, UsdAmount, User, UTCDateTime, utcnow

log = logging.getLogger(__name__)

MAX_BUCKETS = 1_000  # a series longer than this is refused (a month of hours is 744)
MAX_PERIOD = timedelta(days=93)  # a top list or the deployments reach back this far at most (a quarter)
MAX_TOP = 100  # the longest top list
MAX_DEPLOYMENTS = 100  # deployments listed, busiest first
LATENCY_SAMPLE = 500  # p50/p95 are over each deployment's most recent answers in the period, this many at most
MAX_PAGE = 500  # the most rows a Requests page holds
# A page under a filter that no index leads (provider, status, cached, endpoint, or several filters) reads at
# most this many rows of the index it walks; fewer matches than the page holds then end it early, with a cursor
# that goes on from where the reading stopped. This bounds a page whose filter matches rarely or never.
SCAN_LIMIT = 20_000
USAGE_LINES = 10_000  # the Usage page's lines at most; usage_lines() streams them all (the CSV)
USERS_MONTH = 10_000  # the Users page's users at most, biggest spenders first
DISTINCT_VALUES = 100  # values per filter list
_STEPS = {"hour": timedelta(hours=1), "day": timedelta(days=1)}
_MONTH = re.compile(r"\d{4}-(0[1-9]|1[0-2])")
_CURSOR_ID = re.compile(r"[0-9A-Za-z_.:-]{1,32}")
_CURSOR_SEPARATOR = "~"
_LEADS = ("key_id", "user_id")  # filters whose (column, created_at, id) index a page walks, in this order
_CHECKED = ("model_group", "provider", "status", "cached", "endpoint")  # checked on the rows read
# Each list's table and column, which an index leads: the ledger's deployment and endpoint indexes, the hourly
# rollup's model group index (every model group that was ever asked for has an hour there).
_DISTINCT = {
    "providers": ("usage_ledger", "provider"),
    "model_groups": ("usage_hourly", "model_group"),
    "endpoints": ("usage_ledger", "endpoint"),
}
_U = UsageRecord
_H = UsageHourly
_D = UsageDaily
_LEDGER = typing.cast(Table, UsageRecord.__table__)


@dataclass(frozen=True, slots=True)
class Bucket:
    """One hour (24-hour view) or one day (30-day view); ``start`` is its first instant, UTC."""

    start: datetime
    requests: int
    prompt_tokens: int
    completion_tokens: int
    spend_usd: Decimal
    cache_hits: int
    errors: int  # status >= 400
    fallbacks: int  # answered after more than one attempt


@dataclass(frozen=True, slots=True)
class Top:
    """A top user or model group over a period."""

    name: str
    requests: int
    tokens: int
    spend_usd: Decimal


@dataclass(frozen=True, slots=True)
class DeploymentStats:
    """A deployment (provider and upstream model) as the ledger saw it over a period.

    ``failures`` are requests it was answering that ended in an error (a stream broken after its first byte, an
    answer refused); tries that failed over to another deployment are not in the ledger, only the router knows.
    ``p50_ms``/``p95_ms``: the latency of its most recent ``LATENCY_SAMPLE`` answers (status below 400) in the
    period, interpolated as PostgreSQL's ``percentile_cont``; None when it answered none.
    """

    provider: str
    model: str
    requests: int
    failures: int
    p50_ms: int | None
    p95_ms: int | None
    last_failure_at: datetime | None


@dataclass(frozen=True, slots=True)
class UsageLine:
    """The Usage page and its CSV: a user's use of a model group on a day (UTC) of the month charged."""

    day: date
    user_id: str
    model_group: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    spend_usd: Decimal


@dataclass(frozen=True, slots=True)
class RequestFilters:
    """The Requests page's filters; None is "any"."""

    user_id: str | None = None
    key_id: str | None = None
    model_group: str | None = None
    provider: str | None = None
    status: int | None = None
    cached: bool | None = None
    endpoint: str | None = None


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One ledger row as the Requests page shows it (never a prompt or an answer: the ledger has none)."""

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
    """Rows newest first. ``next_cursor`` (opaque) goes on with older rows; None: there are none.

    A page may hold fewer rows than asked, even none, and still have a cursor: its filter matched fewer rows
    than that among the ``SCAN_LIMIT`` rows read (see ``SCAN_LIMIT``).
    """

    rows: list[LedgerEntry]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class UserMonth:
    """The Users page: a user's month (charged to it, as the budgets count) and the user's current team."""

    user_id: str
    team_id: str | None
    requests: int
    used_tokens: int
    spend_usd: Decimal


class ConsoleQueries:
    """The console's reads of the ledger. ``clock`` (UTC now) is for tests: it ends a series."""

    def __init__(self, database: Database, *, clock: Callable[[], datetime] = utcnow) -> None:
        self._database = database
        self._sqlite = database.backend == "sqlite"
        self._clock = clock

    # -- the Overview -------------------------------------------------------------------------

    async def series(self, since: datetime, bucket: Literal["hour", "day"]) -> list[Bucket]:
        """Every hour (or day) from the one holding ``since`` to the one holding now, zeros filled.

        The first bucket is whole: it counts from its start, before ``since``."""
        if bucket not in _STEPS:
            raise ValueError(f"bucket must be 'hour' or 'day', not {bucket!r}")
        step = _STEPS[bucket]
        first, last = _floor(since, bucket), _floor(self._clock(), bucket)
        count = (last - first) // step + 1
        if count > MAX_BUCKETS:
            raise ValueError(f"a series has at most {MAX_BUCKETS} buckets")
        if count < 1:
            return []
        key = self._bucket_key(bucket)
        query = (
            select(
                key,
                func.sum(_H.requests),
                func.sum(_H.prompt_tokens),
                func.sum(_H.completion_tokens),
                _summed_usd(_H.spend_usd),
                func.sum(_H.cache_hits),
                func.sum(_H.errors),
                func.sum(_H.fallbacks),
            )
            .where(_H.hour >= first, _H.hour < last + step)
            .group_by(key)
        )
        found = {self._bucket_start(row[0], bucket): row[1:] for row in await self._all(query)}
        buckets = []
        for number in range(count):
            start = first + number * step
            requests, prompt, completion, spend, hits, errors, fallbacks = found.get(start, _NO_SUMS)
            counts = (int(requests), int(prompt), int(completion))
            buckets.append(Bucket(start, *counts, spend, int(hits), int(errors), int(fallbacks)))
        return buckets

    async def top_users(self, since: datetime, limit: int = 10) -> list[Top]:
        """The users who spent most since ``since`` (then most tokens, most requests, by name).

        Whole days from ``usage_daily`` (a request on the day it was charged), the rest of ``since``'s day from the
        ledger."""
        since = self._since(since)
        boundary = _ceil(since, "day")
        whole = _rolled_top(_D, _D.user_id).where(_D.day >= boundary.date())
        return await self._top(whole, _raw_top(_U.user_id, since, boundary), limit)

    async def top_models(self, since: datetime, limit: int = 10) -> list[Top]:
        """The model groups that cost most since ``since`` (then most tokens, most requests, by name).

        Whole hours from ``usage_hourly``, the rest of ``since``'s hour from the ledger."""
        since = self._since(since)
        boundary = _ceil(since, "hour")
        whole = _rolled_top(_H, _H.model_group).where(_H.hour >= boundary)
        return await self._top(whole, _raw_top(_U.model_group, since, boundary), limit)

    async def _top(self, whole: Any, rest: Any, limit: int) -> list[Top]:
        if not 1 <= limit <= MAX_TOP:
            raise ValueError(f"limit must be 1 to {MAX_TOP}")
        both = union_all(whole, rest).subquery()
        requests, tokens = func.sum(both.c.requests), func.sum(both.c.tokens)
        spend = _summed_usd(both.c.spend)
        query = (
            select(both.c.name, requests, tokens, spend)
            .group_by(both.c.name)
            .order_by(spend.desc(), tokens.desc(), requests.desc(), both.c.name)
            .limit(limit)
        )
        return [Top(name, int(n), int(used), usd) for name, n, used, usd in await self._all(query)]

    async def deployments(self, since: datetime) -> list[DeploymentStats]:
        """Each deployment that answered since ``since``, busiest first (at most ``MAX_DEPLOYMENTS``).

        Counts from ``usage_hourly`` (whole hours) and the ledger (the rest of ``since``'s hour); latencies from
        the ledger's ``ix_usage_ledger_deployment`` index alone (it holds each row's status and latency)."""
        since = self._since(since)
        boundary = _ceil(since, "hour")
        failed = _U.status >= 400
        whole = (
            select(
                _H.provider.label("provider"),
                _H.upstream_model.label("model"),
                func.sum(_H.requests).label("requests"),
                func.sum(_H.errors).label("failures"),
                func.max(_H.last_error_at).label("last_failure"),
            )
            .where(_H.hour >= boundary, _H.provider != "")
            .group_by(_H.provider, _H.upstream_model)
        )
        rest = select(
            _U.provider,
            func.coalesce(_U.upstream_model, ""),
            literal(1),
            case((failed, 1), else_=0),
            case((failed, _U.created_at), else_=None),
        ).where(_U.created_at >= since, _U.created_at < boundary, _U.provider.is_not(None))
        both = union_all(whole, rest).subquery()
        requests = func.sum(both.c.requests)
        query = (
            select(
                both.c.provider,
                both.c.model,
                requests,
                func.sum(both.c.failures),
                type_coerce(func.max(both.c.last_failure), UTCDateTime()),
            )
            .group_by(both.c.provider, both.c.model)
            .order_by(requests.desc(), both.c.provider, both.c.model)
            .limit(MAX_DEPLOYMENTS)
        )
        with _reading():
            async with self._database.sessions() as session:
                groups = (await session.execute(query)).all()
                if not groups:
                    return []
                sampled = await session.execute(_latency_samples([(g[0], g[1]) for g in groups], since))
                samples: dict[int, list[int]] = {}
                for number, latency in sampled.all():
                    samples.setdefault(number, []).append(latency)
        stats = []
        for number, (provider, model, count, failures, last_failure) in enumerate(groups):
            latencies = sorted(samples.get(number, []))
            stats.append(
                DeploymentStats(
                    provider,
                    model,
                    int(count),
                    int(failures),
                    percentile(latencies, 50),
                    percentile(latencies, 95),
                    None if last_failure is None else _utc(last_failure),
                )
            )
        return stats

    # -- the Usage and Users pages ------------------------------------------------------------

    async def usage(self, month: str, user_id: str | None = None) -> list[UsageLine]:
        """A month's use by day, user and model group, in that order: the first ``USAGE_LINES`` lines.

        A page with ``USAGE_LINES`` lines may have more: ``usage_lines`` streams them all (the CSV)."""
        query = self._usage_query(month, user_id).limit(USAGE_LINES)
        return [_usage_line(row) for row in await self._all(query)]

    async def usage_lines(self, month: str, user_id: str | None = None) -> AsyncIterator[UsageLine]:
        """Every line of the month, streamed from the database in chunks (for the CSV download)."""
        query = self._usage_query(month, user_id)
        with _reading():
            async with self._database.sessions() as session:
                result = await session.stream(query.execution_options(yield_per=1000))
                async for rows in result.partitions():
                    for row in rows:
                        yield _usage_line(row)

    def _usage_query(self, month: str, user_id: str | None) -> Select[Any]:
        """``usage_daily``'s lines of the month, in its primary key's order (day, user, model group)."""
        start, end = month_bounds(month)
        return (
            select(_D.day, _D.user_id, _D.model_group, _D.requests, _D.prompt_tokens, _D.completion_tokens)
            .add_columns(_D.spend_usd)
            .where(
                _D.day >= start.date(),
                _D.day < end.date(),
                _D.month == month,
                _D.user_id == user_id if user_id is not None else true(),
            )
            .order_by(_D.day, _D.user_id, _D.model_group)
        )

    async def users_month(self, month: str) -> list[UserMonth]:
        """Each user's month (the rows charged to it), biggest spenders first, at most ``USERS_MONTH``."""
        start, end = month_bounds(month)
        spend = _summed_usd(_D.spend_usd)
        tokens = func.sum(_D.prompt_tokens + _D.completion_tokens)
        # Summed first, then joined: one lookup of the user's team per user.
        sums = (
            select(
                _D.user_id.label("user_id"),
                func.sum(_D.requests).label("requests"),
                tokens.label("tokens"),
                spend.label("spend"),
            )
            .where(_D.day >= start.date(), _D.day < end.date(), _D.month == month)
            .group_by(_D.user_id)
            .subquery()
        )
        query = (
            select(sums.c.user_id, User.team_id, sums.c.requests, sums.c.tokens, sums.c.spend)
            .outerjoin(User, User.id == sums.c.user_id)
            .order_by(sums.c.spend.desc(), sums.c.tokens.desc(), sums.c.user_id)
            .limit(USERS_MONTH)
        )
        return [
            UserMonth(user, team, int(requests), int(used), usd)
            for user, team, requests, used, usd in await self._all(query)
        ]

    # -- the Requests page --------------------------------------------------------------------

    async def requests(self, filters: RequestFilters, *, cursor: str | None = None, limit: int = 50) -> RequestPage:
        """Ledger rows newest first, keyset-paged on (created_at, id). A bad ``cursor`` is a ValueError."""
        if not 1 <= limit <= MAX_PAGE:
            raise ValueError(f"limit must be 1 to {MAX_PAGE}")
        older = _older_than(decode_cursor(cursor)) if cursor is not None else true()
        lead, rest = self._lead_and_rest(filters)
        newest_first = (_U.created_at.desc(), _U.id.desc())
        stop, more = None, False
        with _reading():
            async with self._database.sessions() as session:
                if rest:
                    # The SCAN_LIMIT-th row of the walked index below the cursor, and whether any is older (read
                    # from the index alone): the page reads no further, however rarely its filters match.
                    boundary = (
                        select(_U.created_at, _U.id)
                        .where(lead, older)
                        .order_by(*newest_first)
                        .offset(SCAN_LIMIT - 1)
                        .limit(2)
                    )
                    found = (await session.execute(boundary)).all()
                    stop, more = (found[0][0], found[0][1]) if found else None, len(found) == 2
                within = true() if stop is None else _key_column() >= _key(stop[0], stop[1])
                query = select(_LEDGER).where(lead, older, within, *rest).order_by(*newest_first).limit(limit + 1)
                rows = (await session.execute(query)).mappings().all()
        return _page([_entry_of(row) for row in rows], limit, stop if more else None)

    def _lead_and_rest(self, filters: RequestFilters) -> tuple[ColumnElement[bool], list[ColumnElement[bool]]]:
        """The filter whose ``(column, created_at, id)`` index a page walks (the key, else the user), and the
        filters checked on the rows it reads. On SQLite those are written ``+column`` so that its planner, which
        has no statistics, walks the right index rather than sort a provider's or a status's every row."""
        lead: ColumnElement[bool] | None = None
        rest: list[ColumnElement[bool]] = []
        for name in _LEADS:
            value = getattr(filters, name)
            if value is None:
                continue
            if lead is None:
                lead = _LEDGER.c[name] == value
            else:
                rest.append(self._checked(name) == value)
        for name in _CHECKED:
            value = getattr(filters, name)
            if value is not None:
                column = self._checked(name)
                rest.append(column.is_(value) if isinstance(value, bool) else column == value)
        return (true() if lead is None else lead), rest

    def _checked(self, name: str) -> ColumnElement[Any]:
        column = _LEDGER.c[name]
        return literal_column(f"+usage_ledger.{name}", column.type) if self._sqlite else column

    async def distinct_values(self) -> dict[str, list[str]]:
        """The values the filters offer: ``providers``, ``model_groups``, ``endpoints`` (``DISTINCT_VALUES`` each).

        Each list is read by skipping from value to the next through an index led by its column (a loose index
        scan), so it costs one index probe per value, however many rows the ledger has."""
        found: dict[str, list[str]] = {}
        with _reading():
            async with self._database.sessions() as session:
                for name, (table, column) in _DISTINCT.items():
                    rows = await session.execute(_distinct_sql(table, column), {"cap": DISTINCT_VALUES})
                    found[name] = [value for (value,) in rows.all()]
        return found

    # -- helpers ------------------------------------------------------------------------------

    async def _all(self, query: Select[Any]) -> Sequence[Any]:
        with _reading():
            async with self._database.sessions() as session:
                rows: Sequence[Any] = (await session.execute(query)).all()
        return rows

    def _bucket_key(self, bucket: str) -> ColumnElement[Any]:
        """The hour or day an hourly sum belongs to, UTC: text ``YYYY-MM-DD HH`` or ``YYYY-MM-DD`` on SQLite
        (which keeps times as ISO text), a timestamp on PostgreSQL."""
        if self._sqlite:
            return func.substr(_H.hour, 1, 13 if bucket == "hour" else 10)
        return func.date_trunc(bucket, func.timezone("UTC", _H.hour))

    def _bucket_start(self, key: Any, bucket: str) -> datetime:
        if isinstance(key, datetime):
            return key.replace(tzinfo=UTC)
        text_key = str(key) + (":00" if bucket == "hour" else "")
        return datetime.fromisoformat(text_key).replace(tzinfo=UTC)

    def _since(self, since: datetime) -> datetime:
        since = _utc(since)
        if since < self._clock() - MAX_PERIOD:
            raise ValueError(f"a period reaches back {MAX_PERIOD.days} days at most")
        return since


# -- cursors, months, percentiles -------------------------------------------------------------


def encode_cursor(created_at: datetime, row_id: str) -> str:
    """The key of the last row shown, as an opaque URL-safe string."""
    raw = f"{created_at.astimezone(UTC).isoformat()}{_CURSOR_SEPARATOR}{row_id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The (created_at, id) a cursor holds; ValueError for anything ``encode_cursor`` did not make."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        at_text, row_id = raw.split(_CURSOR_SEPARATOR)
        at = datetime.fromisoformat(at_text)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ValueError("bad cursor") from None
    if at.tzinfo is None or not _CURSOR_ID.fullmatch(row_id):
        raise ValueError("bad cursor")
    return at.astimezone(UTC), row_id


def month_bounds(month: str) -> tuple[datetime, datetime]:
    """``YYYY-MM`` -> its first instant and the next month's, UTC. ValueError for anything else."""
    if not isinstance(month, str) or not _MONTH.fullmatch(month):
        raise ValueError(f"a month is YYYY-MM, not {month!r}")
    year, number = int(month[:4]), int(month[5:])
    start = datetime(year, number, 1, tzinfo=UTC)
    end = datetime(year + number // 12, number % 12 + 1, 1, tzinfo=UTC)
    return start, end


def percentile(ordered: Sequence[int], percent: int) -> int | None:
    """The ``percent`` percentile of sorted values, linearly interpolated (as ``percentile_cont``), rounded."""
    if not ordered:
        return None
    below, rest = divmod(percent * (len(ordered) - 1), 100)
    low, high = ordered[below], ordered[min(below + 1, len(ordered) - 1)]
    return round(low + (high - low) * rest / 100)


def _latency_samples(deployments: Sequence[tuple[str, str]], since: datetime) -> Any:
    """Each deployment's most recent ``LATENCY_SAMPLE`` answers since ``since``: (deployment number, latency).

    Each sample is a range of ``ix_usage_ledger_deployment`` read from the index alone (it holds the status and
    the latency), newest first; one statement for all of them, written as text (building it from SQLAlchemy's
    expressions cost more than running it). Sorting is left to Python: a few milliseconds, where SQLite's window
    functions take ten times as long."""
    parts: list[str] = []
    values: dict[str, str] = {}
    for number, (provider, model) in enumerate(deployments):
        values[f"p{number}"] = provider
        if model:
            values[f"m{number}"] = model
        same_model = f"upstream_model = :m{number}" if model else "upstream_model IS NULL"
        parts.append(
            f"SELECT * FROM (SELECT {number} AS number, latency_ms AS latency FROM usage_ledger"
            f" WHERE provider = :p{number} AND {same_model} AND created_at >= :since AND status < 400"
            f" ORDER BY created_at DESC LIMIT {int(LATENCY_SAMPLE)}) AS sample{number}"
        )
    since_value = bindparam("since", since, type_=UTCDateTime())
    return text(" UNION ALL ".join(parts)).bindparams(since_value, **values)


def _floor(moment: datetime, bucket: str) -> datetime:
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    moment = moment.replace(minute=0, second=0, microsecond=0)
    return moment.replace(hour=0) if bucket == "day" else moment


def _ceil(moment: datetime, bucket: str) -> datetime:
    """The first whole hour (or day) at or after ``moment``."""
    floor = _floor(moment, bucket)
    return floor if floor == moment else floor + _STEPS[bucket]


def _summed_usd(column: Any) -> ColumnElement[Decimal]:
    """The sum of a ``UsdAmount`` column (0 for none), read back through ``UsdAmount``: exact dollars on both
    backends (micro-dollars summed as integers on SQLite)."""
    return type_coerce(func.coalesce(func.sum(column), 0), UsdAmount())


_NO_SUMS = (0, 0, 0, ZERO, 0, 0, 0)


def _rolled_top(rollup: Any, name: Any) -> Select[Any]:
    """A rollup's sums by ``name``, as a top list sums them (a ``where`` picks the period)."""
    return select(
        name.label("name"),
        func.sum(rollup.requests).label("requests"),
        func.sum(rollup.prompt_tokens + rollup.completion_tokens).label("tokens"),
        func.sum(rollup.spend_usd).label("spend"),
    ).group_by(name)


def _raw_top(column: Any, since: datetime, boundary: datetime) -> Select[Any]:
    """The ledger's rows from ``since`` to the first whole hour or day, as a top list sums them."""
    charged = _U.cached.is_(False)
    return (
        select(
            column,
            func.count(),
            func.sum(case((charged, _U.prompt_tokens + _U.completion_tokens), else_=0)),
            func.sum(case((charged, _U.cost_usd), else_=0)),
        )
        .where(_U.created_at >= since, _U.created_at < boundary)
        .group_by(column)
    )


def _usage_line(row: Any) -> UsageLine:
    day, user, group, requests, prompt, completion, spend = row
    return UsageLine(day, user, group, requests, prompt, completion, spend)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _key_column() -> Any:
    return tuple_(_U.created_at, _U.id)


def _key(at: datetime, row_id: str) -> Any:
    return tuple_(literal(at, UTCDateTime()), literal(row_id, String()))


def _older_than(key: tuple[datetime, str]) -> ColumnElement[bool]:
    """Rows below a page's last (created_at, id): a range of the walked index, on both backends."""
    return _key_column() < _key(*key)  # type: ignore[no-any-return]


def _page(entries: list[LedgerEntry], limit: int, stopped_at: tuple[datetime, str] | None) -> RequestPage:
    """A page of ``limit`` rows out of the ``limit + 1`` read (the extra one says there are older rows), or of
    what a reading cut short found, going on from where it stopped."""
    if len(entries) > limit:
        last = entries[limit - 1]
        return RequestPage(entries[:limit], encode_cursor(last.created_at, last.id))
    return RequestPage(entries, encode_cursor(*stopped_at) if stopped_at is not None else None)


_ENTRY_FIELDS = tuple(LedgerEntry.__dataclass_fields__)


def _entry_of(values: Any) -> LedgerEntry:
    return LedgerEntry(**{name: values[name] for name in _ENTRY_FIELDS})


def _distinct_sql(table: str, column: str) -> Any:
    """A loose index scan: the smallest value, then the smallest above it, and so on, ``:cap`` values at most."""
    return text(
        f"WITH RECURSIVE found(value, n) AS ("
        f" SELECT min({column}), 1 FROM {table}"
        f" UNION ALL"
        f" SELECT (SELECT min({column}) FROM {table} WHERE {column} > found.value), n + 1"
        f" FROM found WHERE found.value IS NOT NULL AND n < :cap"
        f") SELECT value FROM found WHERE value IS NOT NULL ORDER BY value"
    )


@contextlib.contextmanager
def _reading() -> Iterator[None]:
    """A read that fails is a 503 for the page, never a 500 (as ``store/ledger.py`` reads)."""
    try:
        yield
    except (SQLAlchemyError, OSError) as exc:
        log.warning("console query failed: %s", type(exc).__name__)
        raise ServiceUnavailable("The usage ledger is unavailable; try again shortly.") from None
