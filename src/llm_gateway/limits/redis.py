"""Admission shared by every gateway process through Redis: one Lua script, one round trip.

Keys (``prefix`` first): ``rate:<rate_key>:<window>`` and ``rate:team:<team id>:<window>``
(counters, expire after two windows), ``budget:<user>:<YYYY-MM>`` / ``keybudget:<key id>:<YYYY-MM>`` /
``teambudget:<team id>:<YYYY-MM>`` (hashes ``used``/``reserved`` in tokens, ``used_nano``/``reserved_nano``
in nano-dollars) and ``…:holds`` (a sorted set of the holds in flight, ``<ticket>:<tokens>:<nano>`` by
deadline); month keys expire a week after their month. Scripts run by EVALSHA; on NOSCRIPT (a
restarted Redis) the client sends EVAL, which loads it. The gateway's client is a pipelined connection
(``store/resp.py``); redis-py's asyncio client works as well (tests, the CLI).

A budget hash that Redis lost is rebuilt from the ledger before anything is admitted against
it, so a Redis restart never hands out a fresh budget. The clock is the gateway's (injected),
not Redis's ``TIME``: hosts are expected to run NTP, and tests can move to the next month.

When Redis is unreachable (or slower than ``timeout_seconds``) ``on_redis_error`` decides:
``"closed"`` (default) answers 503 -- the point of budgets is that they hold, and an outage
must not turn into unlimited spend on every process at once; ``"open"`` admits without
counting (``ticket.degraded``), for deployments that value availability over the budget.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from datetime import datetime
from functools import cache, partial
from importlib import resources
from typing import TYPE_CHECKING, Any, Literal

from llm_gateway import errors
from llm_gateway.auth.identity import Identity
from llm_gateway.limits import budget
from llm_gateway.limits.base import (
    Clock,
    CounterReports,
    LedgerTotals,
    LimitState,
    Ticket,
    nano_to_charge,
    no_ledger,
    tokens_to_charge,
    utcnow,
)
from llm_gateway.limits.budget import BudgetScope, ScopeCounts, ScopeKind
from llm_gateway.limits.rule import Outcome, Plan, Refusal
from llm_gateway.pricing import ReservePrice
from llm_gateway.schemas.core import Usage

if TYPE_CHECKING:  # redis-py itself only once a client exists (it is slow to import)
    from redis.asyncio import Redis

    from llm_gateway.store.resp import PipelinedRedis

logger = logging.getLogger(__name__)

ADMITTED, RATE_REFUSED, TOKENS_REFUSED, BUDGET_MISSING, USD_REFUSED = 0, 1, 2, 3, 4
_REFUSALS: dict[int, Literal["rate", "tokens", "usd"]] = {
    RATE_REFUSED: "rate",
    TOKENS_REFUSED: "tokens",
    USD_REFUSED: "usd",
}
_HASHES: dict[ScopeKind, str] = {"user": "budget", "key": "keybudget", "team": "teambudget"}
_FIELDS = ["used", "reserved", "used_nano", "reserved_nano"]


@cache
def unavailable_errors() -> tuple[type[BaseException], ...]:
    """What "Redis is not there" looks like; anything else (a script error) is a bug and propagates."""
    from redis import exceptions

    return (
        exceptions.ConnectionError,  # includes BusyLoadingError (a restarting Redis)
        exceptions.TimeoutError,
        exceptions.ReadOnlyError,  # a replica after failover
        OSError,
        TimeoutError,  # our own bound (asyncio.timeout)
    )


@cache
def lua_source(name: str) -> str:
    """A script shipped as package data in ``llm_gateway/limits/lua/``."""
    return resources.files("llm_gateway.limits").joinpath("lua", name).read_text(encoding="utf-8")


class RedisLimits(CounterReports):
    """``Admission`` for the shared shape. The client is the caller's (it closes it).

    ``ledger_totals(kind, subject, month)`` returns the tokens and nano-dollars the ledger has charged
    that user, key or team that month; it is read only when Redis has no counter for it.
    See ``MemoryLimits`` for ``completion_allowance`` and ``reservation_ttl_seconds``.
    """

    def __init__(
        self,
        client: Redis | PipelinedRedis,
        prefix: str = "llmgw:",
        *,
        ledger_totals: LedgerTotals = no_ledger,
        on_redis_error: Literal["open", "closed"] = "closed",
        timeout_seconds: float = 0.5,
        completion_allowance: int | None = 4096,
        reservation_ttl_seconds: float = 960.0,
        window_seconds: float = 60.0,
        clock: Clock = utcnow,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._ledger = ledger_totals
        self._fail_open = on_redis_error == "open"
        self._timeout = timeout_seconds
        self._allowance = completion_allowance
        self._ttl_ms = int(reservation_ttl_seconds * 1000)
        self._window_ms = int(window_seconds * 1000)
        self._clock = clock
        self._redis_down = unavailable_errors()
        self._admit_script = client.register_script(lua_source("admit.lua"))
        self._settle_script = client.register_script(lua_source("settle.lua"))
        self._init_script = client.register_script(lua_source("init_budget.lua"))
        self._rebuilds: dict[str, asyncio.Future[None]] = {}
        self._rebuilt_at: dict[str, float] = {}  # hash -> monotonic time its last rebuild finished
        self._orphans: set[asyncio.Future[None]] = set()  # releases of admissions whose caller was cancelled
        self._last_warning = 0.0

    async def admit(
        self,
        identity: Identity,
        *,
        prompt_tokens: int,
        max_completion_tokens: int | None,
        choices: int = 1,
        price: ReservePrice | None = None,
        now: datetime | None = None,
    ) -> Ticket:
        plan = Plan.build(
            identity,
            prompt_tokens=prompt_tokens,
            max_completion_tokens=max_completion_tokens,
            choices=choices,
            price=price,
            now=now or self._clock(),
            window_ms=self._window_ms,
        )
        keys, args = self._admit_call(plan)
        for _ in range(3):
            sent = time.monotonic()
            try:
                reply = [int(value) for value in await self._admit_once(plan, keys, args)]
            except self._redis_down as exc:
                return self._unavailable(plan, exc)
            if reply[0] == BUDGET_MISSING:
                await self._rebuild(plan, missing=reply[1], since=sent)
                continue
            return _outcome(plan, reply).ticket()
        # Only if the counters vanish again between rebuild and admission, three times over.
        raise errors.ServiceUnavailable("Budget counters could not be initialised; try again shortly.")

    async def settle(
        self, ticket: Ticket, usage: Usage | None, *, cached: bool = False, cost_nano: int | None = None
    ) -> int:
        """Charge the usage and its cost (the whole reservation when unknown, nothing when cached), free the hold; once.

        Shielded: a caller cancelled mid-settlement (a client that went away) still pays.
        """
        if not ticket.close():
            return 0
        charge = tokens_to_charge(ticket, usage, cached=cached)
        nano = nano_to_charge(ticket, usage, cached=cached, cost_nano=cost_nano)
        await asyncio.shield(self._finish(ticket, charge, nano))
        return charge

    async def release(self, ticket: Ticket) -> None:
        """The request failed upstream: charge nothing, free the hold."""
        if ticket.close():
            await asyncio.shield(self._finish(ticket, 0, 0))

    async def aclose(self) -> None:
        while self._orphans:
            await asyncio.gather(*list(self._orphans), return_exceptions=True)

    async def _read(self, kind: ScopeKind, subject: str, month: str) -> ScopeCounts:
        """A scope's month as Redis holds it (reservations included); the ledger's when Redis has none or is down."""
        values: list[Any]
        try:
            async with asyncio.timeout(self._timeout):
                values = await self._client.hmget(self._hash(kind, subject, month), _FIELDS)
        except self._redis_down as exc:
            self._warn("usage read", exc)
            values = [None]
        if values[0] is None:
            tokens, nano = await self._ledger(kind, subject, month)
            return ScopeCounts(max(0, int(tokens)), 0, max(0, int(nano)), 0)
        return ScopeCounts(*(int(value or 0) for value in values))

    def _hash(self, kind: ScopeKind, subject: str, month: str) -> str:
        return f"{self._prefix}{_HASHES[kind]}:{subject}:{month}"

    def _admit_call(self, plan: Plan) -> tuple[list[str], list[str | int]]:
        keys: list[str] = []
        for scope in plan.rates:
            rate_key = f"{self._prefix}rate:{scope.key}:"
            keys += [f"{rate_key}{plan.window}", f"{rate_key}{plan.window - 1}"]
        limits: list[str | int] = []
        for budget_scope in plan.scopes:
            hash_key = self._hash(budget_scope.kind, budget_scope.subject, plan.month)
            keys += [hash_key, f"{hash_key}:holds"]
            limits += [_or_none(budget_scope.tokens), _or_none(budget_scope.nano)]
        price = plan.price
        args: list[str | int] = [
            len(plan.rates),
            plan.window_ms,
            plan.elapsed_ms,
            plan.now_ms,
            plan.rates[0].limit,
            plan.rates[1].limit if len(plan.rates) > 1 else -1,
            plan.prompt_tokens,
            _or_none(plan.max_completion_tokens),
            _or_none(self._allowance),
            plan.choices,
            0 if price is None else price.input_nano,
            0 if price is None else price.output_nano,
            plan.ticket_id,
            plan.now_ms + self._ttl_ms,
            budget.month_keys_ttl_seconds(plan.now),
            *limits,
        ]
        return keys, args

    async def _admit_once(self, plan: Plan, keys: list[str], args: list[str | int]) -> Any:
        """Run the admission script; if the caller is cancelled while it runs, release what it reserved.

        Once sent, the script runs in Redis whatever happens here: without this, a request cancelled
        at that moment (its client gone) would hold its reservation until the hold expires.
        """
        call = asyncio.ensure_future(self._run(self._admit_script, keys, args))
        try:
            return await asyncio.shield(call)
        except asyncio.CancelledError:
            call.add_done_callback(partial(self._release_orphan, plan))
            raise

    def _release_orphan(self, plan: Plan, call: asyncio.Future[Any]) -> None:
        if call.cancelled() or call.exception() is not None:
            return
        status, _detail, cap, *_ = (int(value) for value in call.result())
        if status == ADMITTED:
            ticket = plan.make_ticket(cap, LimitState(0, 0, 0.0, 0, 0))
            task = asyncio.ensure_future(self.release(ticket))
            self._orphans.add(task)
            task.add_done_callback(self._orphans.discard)

    async def _rebuild(self, plan: Plan, *, missing: int, since: float) -> None:
        """Initialise the missing month hashes from the ledger (first writer wins, across processes).

        Within a process one ledger read per hash is in flight at a time, however many requests
        found it missing: after a flush under load the database sees one query per user, not per request.
        A hash this process rebuilt after ``since`` (when the admission that found it missing was sent)
        is not read again: that admission only raced the rebuild, and its retry will find the hash.
        """
        for i, scope in enumerate(plan.scopes):
            if not missing & (1 << i):
                continue
            hash_key = self._hash(scope.kind, scope.subject, plan.month)
            if self._rebuilt_at.get(hash_key, -math.inf) >= since:
                continue
            task = self._rebuilds.get(hash_key)
            if task is None:
                task = asyncio.ensure_future(self._init_from_ledger(scope, plan, hash_key))
                self._rebuilds[hash_key] = task
                task.add_done_callback(partial(self._rebuild_done, hash_key))
            await asyncio.shield(task)

    def _rebuild_done(self, hash_key: str, _: asyncio.Future[None]) -> None:
        self._rebuilds.pop(hash_key, None)
        self._rebuilt_at[hash_key] = time.monotonic()
        if len(self._rebuilt_at) > 10_000:  # bounded: an old entry only saves a ledger read
            self._rebuilt_at.clear()

    async def _init_from_ledger(self, scope: BudgetScope, plan: Plan, hash_key: str) -> None:
        tokens, nano = await self._ledger(scope.kind, scope.subject, plan.month)
        ttl = budget.month_keys_ttl_seconds(plan.now)
        try:
            await self._run(
                self._init_script, [hash_key, f"{hash_key}:holds"], [max(0, int(tokens)), max(0, int(nano)), ttl]
            )
        except self._redis_down as exc:
            self._warn("budget rebuild", exc)  # the next admit() attempt meets the outage and decides

    async def _finish(self, ticket: Ticket, charge: int, nano: int) -> None:
        keys: list[str] = []
        for kind, subject in ticket.scopes:
            hash_key = self._hash(kind, subject, ticket.month)
            keys += [hash_key, f"{hash_key}:holds"]
        held, held_nano = ticket.reserved_tokens, ticket.reserved_nano
        try:
            await self._run(
                self._settle_script, keys, [f"{ticket.id}:{held}:{held_nano}", held, held_nano, charge, nano]
            )
        except self._redis_down as exc:
            # The hold expires by itself; the ledger row still carries the usage.
            self._warn(f"settlement of {charge} tokens for {ticket.user_id}", exc)

    async def _run(self, script: Any, keys: list[str], args: list[str | int]) -> Any:
        async with asyncio.timeout(self._timeout):
            return await script(keys=keys, args=args)

    def _unavailable(self, plan: Plan, exc: BaseException) -> Ticket:
        self._warn("admission", exc)
        if self._fail_open:
            return plan.degraded_ticket(self._allowance)
        raise errors.ServiceUnavailable("Rate limits and budgets are unavailable; try again shortly.") from exc

    def _warn(self, what: str, exc: BaseException) -> None:
        # At most one line every 10 s: an outage must not become a log flood on the hot path.
        if time.monotonic() - self._last_warning >= 10:
            self._last_warning = time.monotonic()
            logger.warning("redis unavailable during %s: %s", what, type(exc).__name__)


def _or_none(value: int | None) -> int:
    """Lua's "none": -1."""
    return -1 if value is None else value


def _outcome(plan: Plan, reply: list[int]) -> Outcome:
    """``admit.lua``'s reply as the Outcome ``decide`` would have made of the same counters."""
    status, detail, cap = reply[0], reply[1], reply[2]
    rest = reply[3:]
    rates = len(plan.rates)
    counts = [(rest[2 * r], rest[2 * r + 1]) for r in range(rates)]
    scopes = rest[2 * rates :]
    counters = [ScopeCounts(*scopes[4 * i : 4 * i + 4]) for i in range(len(plan.scopes))]
    if status == ADMITTED:
        tokens, nano = plan.reservation(cap)
        return Outcome(plan, counts, counters, cap, tokens=tokens, nano=nano)
    refusal: Refusal = (_REFUSALS[status], detail - 1)
    return Outcome(plan, counts, counters, refusal=refusal)
