"""Admission inside one process (the embedded shape): the Redis rule, on plain dicts.

Atomicity comes from the event loop: between reading the counters and reserving there is no
``await``, so no other task interleaves. One event loop per instance; not thread-safe. Several
processes would each count alone, which is why the app refuses workers > 1 without Redis.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime

from llm_gateway.auth.identity import Identity
from llm_gateway.limits.base import (
    Clock,
    CounterReports,
    LedgerTotals,
    Ticket,
    nano_to_charge,
    no_ledger,
    tokens_to_charge,
    utcnow,
)
from llm_gateway.limits.budget import ScopeKind
from llm_gateway.limits.rule import Plan, decide
from llm_gateway.pricing import ReservePrice
from llm_gateway.schemas.core import Usage

CounterKey = tuple[ScopeKind, str, str]  # (kind, subject, month)


@dataclass(slots=True)
class _Window:
    """An identity's two fixed windows; ``previous`` is the window right before ``index``."""

    index: int
    current: int = 0
    previous: int = 0

    def advance(self, index: int) -> None:
        if index > self.index:
            self.previous = self.current if index == self.index + 1 else 0
            self.current = 0
            self.index = index


@dataclass(slots=True)
class _Counter:
    """One scope's month: tokens and nano-dollars used and held by requests in flight, and those holds by ticket id."""

    used: int
    used_nano: int = 0
    reserved: int = 0
    reserved_nano: int = 0
    holds: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # ticket id -> (tokens, nano, deadline ms)
    # No hold expires before this (a lower bound): the scan of every hold runs only when one may have.
    earliest_deadline: int = 0

    def hold(self, ticket_id: str, tokens: int, nano: int, deadline: int) -> None:
        self.reserved += tokens
        self.reserved_nano += nano
        self.holds[ticket_id] = (tokens, nano, deadline)
        if not self.earliest_deadline or deadline < self.earliest_deadline:
            self.earliest_deadline = deadline

    def reclaim(self, now_ms: int) -> None:
        """Drop holds whose request can no longer be running (a task that died without settling)."""
        if not self.holds or now_ms < self.earliest_deadline:
            return
        for ticket_id in [tid for tid, (_, _, deadline) in self.holds.items() if deadline <= now_ms]:
            self._free(ticket_id)
        self.earliest_deadline = min((deadline for _, _, deadline in self.holds.values()), default=0)

    def settle(self, ticket_id: str, tokens: int, nano: int) -> None:
        self._free(ticket_id)
        self.used += tokens
        self.used_nano += nano

    def _free(self, ticket_id: str) -> None:
        hold = self.holds.pop(ticket_id, None)
        if hold is not None:
            self.reserved = max(0, self.reserved - hold[0])
            self.reserved_nano = max(0, self.reserved_nano - hold[1])


class MemoryLimits(CounterReports):
    """``Admission`` for the embedded shape. Counters start from ``ledger_totals`` at first use per scope-month.

    ``completion_allowance``: the completion reserved (and sent upstream as ``max_tokens``) when
    the caller sets none; None reserves everything the budgets have room for. ``reservation_ttl_seconds``
    should exceed the longest request (REQUEST_TIMEOUT_SECONDS): a hold older than that is
    released, so a lost ticket cannot pin a budget for the rest of the month.
    """

    def __init__(
        self,
        *,
        ledger_totals: LedgerTotals = no_ledger,
        completion_allowance: int | None = 4096,
        reservation_ttl_seconds: float = 960.0,
        window_seconds: float = 60.0,
        clock: Clock = utcnow,
    ) -> None:
        self._ledger = ledger_totals
        self._allowance = completion_allowance
        self._ttl_ms = int(reservation_ttl_seconds * 1000)
        self._window_ms = int(window_seconds * 1000)
        self._clock = clock
        self._windows: dict[str, _Window] = {}
        self._counters: dict[CounterKey, _Counter] = {}
        self._loading: dict[CounterKey, asyncio.Lock] = {}
        self._pruned_window = 0
        self._pruned_month = ""

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
        counters = [await self._read(scope.kind, scope.subject, plan.month) for scope in plan.scopes]
        # No await from here on: the check and the reservation are one step for the event loop.
        self._prune(plan)
        for counter in counters:
            counter.reclaim(plan.now_ms)
        windows = [self._window(scope.key, plan.window) for scope in plan.rates]
        rates = [(window.current, window.previous) for window in windows]
        outcome = decide(plan, rates, counters, self._allowance)
        if outcome.cap is not None:
            deadline = plan.now_ms + self._ttl_ms
            for window in windows:
                window.current += 1
            for counter in counters:
                counter.hold(plan.ticket_id, outcome.tokens, outcome.nano, deadline)
        return outcome.ticket()

    async def settle(
        self, ticket: Ticket, usage: Usage | None, *, cached: bool = False, cost_nano: int | None = None
    ) -> int:
        """Charge the usage and its cost (all that was reserved when unknown, nothing when cached); once."""
        if not ticket.close():
            return 0
        charge = tokens_to_charge(ticket, usage, cached=cached)
        self._finish(ticket, charge, nano_to_charge(ticket, usage, cached=cached, cost_nano=cost_nano))
        return charge

    async def release(self, ticket: Ticket) -> None:
        """The request failed upstream: charge nothing, free the hold."""
        if ticket.close():
            self._finish(ticket, 0, 0)

    async def aclose(self) -> None:
        return None

    def _finish(self, ticket: Ticket, tokens: int, nano: int) -> None:
        for kind, subject in ticket.scopes:
            counter = self._counters.get((kind, subject, ticket.month))
            # A counter pruned since admission (months ago) is the ledger's business now.
            if counter is not None:
                counter.settle(ticket.id, tokens, nano)

    def _window(self, key: str, index: int) -> _Window:
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = _Window(index)
        window.advance(index)
        return window

    async def _read(self, kind: ScopeKind, subject: str, month: str) -> _Counter:
        key: CounterKey = (kind, subject, month)
        counter = self._counters.get(key)
        if counter is not None:
            return counter
        # One ledger read per scope-month, however many requests arrive while it runs.
        lock = self._loading.setdefault(key, asyncio.Lock())
        async with lock:
            counter = self._counters.get(key)
            if counter is None:
                tokens, nano = await self._ledger(kind, subject, month)
                counter = self._counters[key] = _Counter(used=max(0, int(tokens)), used_nano=max(0, int(nano)))
        self._loading.pop(key, None)
        return counter

    def _prune(self, plan: Plan) -> None:
        """Forget windows older than the previous one and months older than the previous one."""
        if plan.window > self._pruned_window:
            self._pruned_window = plan.window
            self._windows = {k: w for k, w in self._windows.items() if w.index >= plan.window - 1}
        if plan.month > self._pruned_month:
            self._pruned_month = plan.month
            year, month = int(plan.month[:4]), int(plan.month[5:])
            previous = f"{year - 1:04d}-12" if month == 1 else f"{year:04d}-{month - 1:02d}"
            self._counters = {k: c for k, c in self._counters.items() if k[2] >= previous}
