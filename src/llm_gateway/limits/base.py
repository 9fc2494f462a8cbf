"""What both admission backends share: the protocol, the Ticket, refusals and the header state.

A backend turns its counters into an ``Outcome``; ``Outcome.ticket()`` turns that into a
Ticket or raises the refusal, so the memory and Redis backends answer identically.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from llm_gateway import errors
from llm_gateway.auth.identity import Identity
from llm_gateway.ids import new_id
from llm_gateway.limits import budget, rate
from llm_gateway.limits.budget import Balance, BudgetScope, ScopeKind
from llm_gateway.schemas.core import Usage

# (user id or key id, "YYYY-MM") -> tokens the ledger has charged to it that month.
LedgerUsage = Callable[[str, str], Awaitable[int]]
Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


async def no_ledger(subject: str, month: str) -> int:
    """The ledger of a gateway without one: every rebuilt counter starts at zero."""
    return 0


def format_duration(seconds: float) -> str:
    """OpenAI's reset format: ``20ms``, ``12s``, ``1.5s``, ``6m0s``."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    if seconds < 60:
        return f"{round(seconds, 3):g}s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest}s"


# Not frozen: built on every admission, and a frozen dataclass's __init__ costs a setattr call per field.
@dataclass(slots=True)
class LimitState:
    """What the ``x-ratelimit-*`` headers say. The ``tokens`` pair is the monthly budget that binds."""

    requests_limit: int
    requests_remaining: int
    requests_reset_seconds: float
    tokens_limit: int
    tokens_remaining: int

    def headers(self) -> dict[str, str]:
        return {
            "x-ratelimit-limit-requests": str(self.requests_limit),
            "x-ratelimit-remaining-requests": str(self.requests_remaining),
            "x-ratelimit-reset-requests": format_duration(self.requests_reset_seconds),
            "x-ratelimit-limit-tokens": str(self.tokens_limit),
            "x-ratelimit-remaining-tokens": str(self.tokens_remaining),
        }


@dataclass(slots=True, eq=False)
class Ticket:
    """An admitted request's reservation, to be settled or released exactly once.

    ``completion_cap`` is the completion allowance reserved. When ``cap_set_by_gateway`` the
    caller sent no ``max_tokens`` and the pipeline must send ``max_tokens = completion_cap``
    upstream, or the reservation would not bound the answer. Usage is charged to ``month``
    (the month of admission), also when the request ends after midnight on the 1st.
    """

    id: str
    user_id: str
    key_id: str | None  # set when the key has a budget of its own, which is charged too
    month: str
    prompt_tokens: int
    completion_cap: int  # per choice
    cap_set_by_gateway: bool
    state: LimitState
    degraded: bool = False  # admitted without counters (Redis down, fail-open): nothing reserved
    choices: int = 1  # the request's ``n``: each choice may write ``completion_cap`` tokens
    closed: bool = field(default=False, init=False)

    @property
    def completion_tokens_reserved(self) -> int:
        return self.choices * self.completion_cap

    @property
    def reserved_tokens(self) -> int:
        return self.prompt_tokens + self.choices * self.completion_cap

    @property
    def scopes(self) -> tuple[tuple[ScopeKind, str], ...]:
        """The budgets this ticket draws on, as (kind, subject)."""
        return (("user", self.user_id),) if self.key_id is None else (("user", self.user_id), ("key", self.key_id))

    def headers(self) -> dict[str, str]:
        return self.state.headers()

    def close(self) -> bool:
        """Mark settled; False when it already was (settle and release are then no-ops)."""
        if self.closed:
            return False
        self.closed = True
        return True


def tokens_to_charge(ticket: Ticket, usage: Usage | None, *, cached: bool) -> int:
    """Cached answers cost nothing; unknown usage costs the whole reservation (never less than was allowed)."""
    if cached:
        return 0
    if usage is None:
        return ticket.reserved_tokens
    return max(0, usage.prompt_tokens) + max(0, usage.completion_tokens)


class RequestRateExceeded(errors.RateLimited):
    """429 ``rate_limit_exceeded``, carrying the ``x-ratelimit-*`` headers as every answer does."""

    def __init__(self, message: str, *, retry_after_seconds: int, state: LimitState) -> None:
        super().__init__(message, retry_after_seconds=retry_after_seconds)
        self.state = state

    def headers(self) -> dict[str, str]:
        return {**self.state.headers(), **super().headers()}


class TokenBudgetExceeded(errors.QuotaExceeded):
    """429 ``insufficient_quota``: the month's budget cannot cover this request; nothing was reserved."""

    def __init__(self, message: str, *, retry_after_seconds: int, state: LimitState) -> None:
        super().__init__(message, retry_after_seconds=retry_after_seconds)
        self.state = state

    def headers(self) -> dict[str, str]:
        return {**self.state.headers(), **super().headers()}


# Not frozen: built on every admission, and a frozen dataclass's __init__ costs a setattr call per field.
@dataclass(slots=True)
class Plan:
    """One admission's inputs, resolved once: the clock read, the month, the window, the scopes."""

    identity: Identity
    prompt_tokens: int
    max_completion_tokens: int | None
    choices: int
    now: datetime
    now_ms: int
    month: str
    window: int
    elapsed_ms: int
    window_ms: int
    scopes: tuple[BudgetScope, ...]
    ticket_id: str

    @classmethod
    def build(
        cls,
        identity: Identity,
        *,
        prompt_tokens: int,
        max_completion_tokens: int | None,
        now: datetime,
        window_ms: int,
        choices: int = 1,
    ) -> Plan:
        now = budget.as_utc(now)
        now_ms = int(now.timestamp() * 1000)
        window, elapsed = rate.position(now_ms, window_ms)
        scopes = [BudgetScope("user", identity.user_id, identity.monthly_token_budget)]
        if identity.key_id is not None and identity.key_token_budget is not None:
            scopes.append(BudgetScope("key", identity.key_id, identity.key_token_budget))
        return cls(
            identity=identity,
            prompt_tokens=max(0, prompt_tokens),
            max_completion_tokens=None if max_completion_tokens is None else max(0, max_completion_tokens),
            choices=max(1, choices),
            now=now,
            now_ms=now_ms,
            month=budget.month_of(now),
            window=window,
            elapsed_ms=elapsed,
            window_ms=window_ms,
            scopes=tuple(scopes),
            ticket_id=new_id(),
        )

    def counts(self, current: int, previous: int) -> rate.WindowCounts:
        return rate.WindowCounts(current, previous, self.elapsed_ms, self.window_ms)

    def degraded_ticket(self, default_allowance: int | None) -> Ticket:
        """Fail-open: admit without counters. The headers then show the limits, not what is left."""
        user_limit = self.identity.monthly_token_budget
        cap = self.max_completion_tokens
        if cap is None:
            cap = default_allowance if default_allowance is not None else max(1, user_limit - self.prompt_tokens)
        limit = self.identity.rate_limit_per_minute
        state = LimitState(limit, limit, 0.0, user_limit, user_limit)
        return self.make_ticket(cap, state, degraded=True)

    def make_ticket(self, cap: int, state: LimitState, *, degraded: bool = False) -> Ticket:
        key_scope = len(self.scopes) > 1
        return Ticket(
            id=self.ticket_id,
            user_id=self.identity.user_id,
            key_id=self.identity.key_id if key_scope else None,
            month=self.month,
            prompt_tokens=self.prompt_tokens,
            completion_cap=cap,
            cap_set_by_gateway=self.max_completion_tokens is None,
            state=state,
            degraded=degraded,
            choices=self.choices,
        )


# Not frozen: built on every admission, and a frozen dataclass's __init__ costs a setattr call per field.
@dataclass(slots=True)
class Outcome:
    """A backend's verdict. ``current`` counts this request when admitted; ``balances`` follow ``plan.scopes``."""

    plan: Plan
    current: int
    previous: int
    balances: tuple[Balance, ...]
    cap: int | None = None  # the completion allowance reserved; None when refused
    rate_refused: bool = False

    def ticket(self) -> Ticket:
        """The Ticket of an admitted request, or raise the refusal."""
        plan, identity = self.plan, self.plan.identity
        limit = identity.rate_limit_per_minute
        counts = plan.counts(self.current, self.previous)
        bound = budget.binding(list(self.balances))
        state = LimitState(
            requests_limit=limit,
            requests_remaining=rate.remaining(limit, counts),
            requests_reset_seconds=rate.reset_ms(counts) / 1000,
            tokens_limit=bound.limit,
            tokens_remaining=bound.available,
        )
        if self.rate_refused:
            wait_ms = rate.retry_after_ms(limit, counts)
            raise RequestRateExceeded(
                f"Rate limit reached for requests per minute: limit {limit}. "
                f"Please try again in {format_duration(wait_ms / 1000)}.",
                retry_after_seconds=-(-wait_ms // 1000),
                state=state,
            )
        if self.cap is None:
            raise TokenBudgetExceeded(
                self._quota_message(bound),
                retry_after_seconds=budget.seconds_until_next_month(plan.now),
                state=state,
            )
        return plan.make_ticket(self.cap, state)

    def _quota_message(self, bound: Balance) -> str:
        plan = self.plan
        wanted = "" if plan.max_completion_tokens is None else f" + max_tokens {plan.max_completion_tokens}"
        if plan.choices > 1:
            wanted += f" for each of n={plan.choices} choices"
        return (
            f"You exceeded your current quota: monthly token budget {bound.limit} for {plan.month}, "
            f"{bound.used} used and {bound.reserved} reserved by requests in flight; this request needs "
            f"prompt ~{plan.prompt_tokens}{wanted} tokens. The budget resets on "
            f"{budget.next_month_start(plan.now):%Y-%m-%d} 00:00 UTC."
        )


def decide(
    plan: Plan, current: int, previous: int, balances: tuple[Balance, ...], default_allowance: int | None
) -> Outcome:
    """The admission rule (``lua/admit.lua`` is its twin): rate first, then the reservation.

    A refused request reserves nothing and is not counted toward the rate, whichever limit
    refused it: it cost nothing upstream, and a caller whose ``max_tokens`` did not fit should
    be able to retry at once with a smaller one without having burnt a request slot.
    """
    if not rate.admits(plan.identity.rate_limit_per_minute, plan.counts(current, previous)):
        return Outcome(plan, current, previous, balances, rate_refused=True)
    available = min(balance.available for balance in balances)
    cap = budget.completion_allowance(
        available, plan.prompt_tokens, plan.max_completion_tokens, default_allowance, plan.choices
    )
    if cap is None:
        return Outcome(plan, current, previous, balances)
    reserved = plan.prompt_tokens + plan.choices * cap
    after = tuple(Balance(b.limit, b.used, b.reserved + reserved) for b in balances)
    return Outcome(plan, current + 1, previous, after, cap=cap)


class Admission(Protocol):
    """Requests-per-minute check and budget reservation in one atomic step, then settlement."""

    async def admit(
        self,
        identity: Identity,
        *,
        prompt_tokens: int,
        max_completion_tokens: int | None,
        choices: int = 1,
        now: datetime | None = None,
    ) -> Ticket: ...

    async def settle(self, ticket: Ticket, usage: Usage | None, *, cached: bool = False) -> int: ...

    async def release(self, ticket: Ticket) -> None: ...

    async def balance(self, user_id: str, month: str, limit: int) -> Balance: ...

    async def aclose(self) -> None: ...
