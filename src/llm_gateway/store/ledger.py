"""The usage ledger: one row per request, written in batches off the hot path.

It is the source of truth for usage: Redis counters lost in a restart are rebuilt from it.
``record()`` only appends to an in-memory queue; a background task inserts batches, keeps
rows queued (with backoff) while the database is down, and flushes everything at shutdown.
Each row carries its own id and inserts ignore duplicates, so a retried batch never counts twice.
Each row also carries its cost in US dollars and the user's team, so that a user's, a key's and a team's
month are each one indexed sum. Each batch is also added to the rollups the console reads (``rollups.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields
from decimal import Decimal
from typing import Literal, cast

from sqlalchemy import ColumnElement, Table, func, select
from sqlalchemy.exc import SQLAlchemyError

from llm_gateway.errors import ServiceUnavailable
from llm_gateway.pricing import ZERO, to_nano
from llm_gateway.store import rollups
from llm_gateway.store.db import Database, insert_ignoring_conflicts
from llm_gateway.store.ledger_row import UsageRow
from llm_gateway.store.tables import UsageRecord

log = logging.getLogger(__name__)
_USAGE_TABLE = cast(Table, UsageRecord.__table__)

# Whose month a sum is: a user's rows, a key's, or a team's (rows whose ``team_id`` is the team).
LedgerScope = Literal["user", "key", "team"]
_SUBJECT_COLUMN = {"user": UsageRecord.user_id, "key": UsageRecord.key_id, "team": UsageRecord.team_id}
_SUBJECT_FIELD = {"user": "user_id", "key": "key_id", "team": "team_id"}


@dataclass(slots=True)
class ModelUsage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    requests: int = 0
    spend_usd: Decimal = ZERO


@dataclass(slots=True)
class MonthReport:
    requests: int = 0
    used_tokens: int = 0
    spend_usd: Decimal = ZERO
    by_model: dict[str, ModelUsage] = field(default_factory=dict)


class UsageLedger:
    def __init__(
        self,
        database: Database,
        *,
        batch_size: int = 500,
        flush_interval: float = 0.25,
        max_queued: int = 200_000,
        max_backoff: float = 10.0,
    ) -> None:
        self._database = database
        # Built once: each flush reuses it (and SQLAlchemy's compiled form of it).
        self._insert_statement = insert_ignoring_conflicts(database.backend, _USAGE_TABLE).returning(_USAGE_TABLE.c.id)
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._max_queued = max_queued
        self._max_backoff = max_backoff
        self._queue: deque[UsageRow] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.dropped = 0
        self.written = 0
        self.failures = 0

    @property
    def queued(self) -> int:
        return len(self._queue)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="usage-ledger")

    def record(self, row: UsageRow) -> None:
        """Queue a row; never waits. Past ``max_queued`` (a database down for a long time) the oldest go."""
        if len(self._queue) >= self._max_queued:
            self._queue.popleft()
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.error("usage ledger queue full: %d rows dropped so far", self.dropped)
        self._queue.append(row)
        if len(self._queue) >= self._batch_size:
            self._wake.set()

    async def _run(self) -> None:
        backoff = self._flush_interval
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=backoff)
            self._wake.clear()
            backoff = self._flush_interval if await self.flush_once() else min(backoff * 2, self._max_backoff)

    async def flush_once(self) -> bool:
        """Write the rows queued when called, batch by batch; False (rows kept) when the database fails.

        Rows queued meanwhile wait for the next flush: chasing them would, under a steady trickle of
        requests, turn the writer into back-to-back inserts of a row or two each."""
        if not self._database.ready:  # rows kept, quietly: the database's own task logs its attempts
            return False
        pending = len(self._queue)
        while pending > 0:
            batch = [self._queue[i] for i in range(min(self._batch_size, pending))]
            try:
                await self._insert(batch)
            except Exception as exc:  # any database failure: keep the rows and try again later
                self.failures += 1
                log.warning(
                    "usage ledger write failed (%s: %s); %d rows kept for retry",
                    type(exc).__name__,
                    _first_line(exc),
                    len(self._queue),
                )
                return False
            for _ in batch:
                self._queue.popleft()
            self.written += len(batch)
            pending -= len(batch)
        return True

    async def _insert(self, rows: list[UsageRow]) -> None:
        # A Core insert on a connection (multi-row VALUES), not the ORM's bulk insert: same rows, a fraction of the
        # CPU on the event loop. It returns the ids it wrote (not a retried batch's duplicates), and the rollups
        # add those rows in the same transaction.
        async with self._database.engine.begin() as connection:
            written = set((await connection.execute(self._insert_statement, [_values(row) for row in rows])).scalars())
            await rollups.add(connection, self._database.backend, [row for row in rows if row.id in written])

    async def aclose(self, timeout: float = 10.0) -> None:
        """Stop the writer and flush what is queued, retrying for at most ``timeout`` seconds."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        delay = 0.1
        while self._queue:
            if await self.flush_once():
                continue
            if loop.time() + delay >= deadline:
                break
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
        if self._queue:
            log.error("usage ledger closed with %d rows unwritten", len(self._queue))

    # -- reading ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _reading(self) -> Iterator[None]:
        """A read of the database that fails is a 503 (rebuilding a budget, /v1/usage), never a 500."""
        self._database.require_ready("usage ledger")
        try:
            yield
        except (SQLAlchemyError, OSError) as exc:
            log.warning("usage ledger read failed: %s", type(exc).__name__)
            raise ServiceUnavailable("The usage ledger is unavailable; try again shortly.") from None

    def _pending(self, kind: LedgerScope, subject: str, month: str) -> Iterable[UsageRow]:
        attribute = _SUBJECT_FIELD[kind]
        return (r for r in self._queue if r.month == month and getattr(r, attribute) == subject)

    async def month_sums(self, kind: LedgerScope, subject: str, month: str) -> tuple[int, Decimal]:
        """Tokens and US dollars charged to a user, key or team in a month: written rows plus rows still queued.

        A cache hit is charged nothing, whatever its row says."""
        charged = UsageRecord.cached.is_(False)
        query = select(
            func.sum(UsageRecord.prompt_tokens + UsageRecord.completion_tokens), func.sum(UsageRecord.cost_usd)
        ).where(_in_month(kind, subject, month), charged)
        with self._reading():
            async with self._database.sessions() as session:
                tokens, usd = (await session.execute(query)).one()
        pending = list(self._pending(kind, subject, month))
        return (
            int(tokens or 0) + sum(r.charged_tokens for r in pending),
            (usd or ZERO) + sum((r.charged_usd for r in pending), ZERO),
        )

    async def month_totals(self, kind: LedgerScope, subject: str, month: str) -> tuple[int, int]:
        """(tokens, nano-dollars) charged that month: what the limits rebuild their counters from."""
        tokens, usd = await self.month_sums(kind, subject, month)
        return tokens, to_nano(usd)

    async def month_usage(self, user_id: str, month: str) -> int:
        """Tokens charged to a user in a month: written rows plus rows still queued here."""
        return (await self.month_sums("user", user_id, month))[0]

    async def key_month_usage(self, key_id: str, month: str) -> int:
        return (await self.month_sums("key", key_id, month))[0]

    async def month_report(self, subject: str, month: str, kind: LedgerScope = "user") -> MonthReport:
        """A user's (or a key's, or a team's) month by model group: what the usage reports show."""
        query = (
            select(
                UsageRecord.model_group,
                UsageRecord.cached,
                func.count(),
                func.sum(UsageRecord.prompt_tokens),
                func.sum(UsageRecord.completion_tokens),
                func.sum(UsageRecord.cost_usd),
            )
            .where(_in_month(kind, subject, month))
            .group_by(UsageRecord.model_group, UsageRecord.cached)
        )
        with self._reading():
            async with self._database.sessions() as session:
                rows = [
                    (group, bool(cached), int(n), int(p or 0), int(q or 0), usd or ZERO)
                    for group, cached, n, p, q, usd in (await session.execute(query)).all()
                ]
        rows += [
            (r.model_group, r.cached, 1, r.prompt_tokens, r.completion_tokens, r.cost_usd)
            for r in self._pending(kind, subject, month)
        ]
        report = MonthReport()
        for group, cached, count, prompt, completion, usd in rows:
            usage = report.by_model.setdefault(group, ModelUsage())
            usage.requests += count
            report.requests += count
            if not cached:  # a cache hit is served for free: it counts as a request, not as tokens or spend
                usage.prompt_tokens += prompt
                usage.completion_tokens += completion
                usage.spend_usd += usd
                report.used_tokens += prompt + completion
                report.spend_usd += usd
        return report


def _in_month(kind: LedgerScope, subject: str, month: str) -> ColumnElement[bool]:
    """The rows of one user's, key's or team's month: each kind has its index on (subject, month)."""
    return (_SUBJECT_COLUMN[kind] == subject) & (UsageRecord.month == month)


_COLUMNS = tuple(f.name for f in fields(UsageRow))


def _values(row: UsageRow) -> dict[str, object]:
    # Not dataclasses.asdict: it deep-copies every value, on every row.
    return {name: getattr(row, name) for name in _COLUMNS}


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else ""
