"""The admission rule both backends apply (``lua/admit.lua`` is its twin): ``Plan``, ``decide``, ``Outcome``.

One step decides for every limit that applies: the credential's and the team's request rates, then
the token and US-dollar budgets of the user, the key and the team. A refused request reserves
nothing and is not counted toward any rate, whichever limit refused it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Literal

from llm_gateway.auth.identity import Identity
from llm_gateway.ids import new_id
from llm_gateway.limits import budget, rate
from llm_gateway.limits.base import (
    BudgetExceeded,
    LimitState,
    RequestRateExceeded,
    Ticket,
    TokenBudgetExceeded,
    UsdBudgetExceeded,
    format_duration,
)
from llm_gateway.limits.budget import Balance, BudgetScope, Counts
from llm_gateway.pricing import ReservePrice, format_usd, from_nano

# What refused, and which of the plan's rates / scopes: ("rate", 1) is the team's rate.
Refusal = tuple[Literal["rate", "tokens", "usd"], int]
RateCounts = tuple[int, int]  # a rate window pair: (current, previous)


# Not frozen: built on every admission, and a frozen dataclass's __init__ costs a setattr call per field.
@dataclass(slots=True)
class RateScope:
    """A requests-per-minute limit: the credential's (``team_id`` None) or the team's. ``key`` names its counter."""

    key: str
    limit: int
    team_id: str | None = None


# Not frozen: built on every admission, and a frozen dataclass's __init__ costs a setattr call per field.
@dataclass(slots=True)
class Plan:
    """One admission's inputs, resolved once: the clock read, the month, the window, the rates, the scopes."""

    identity: Identity
    prompt_tokens: int
    max_completion_tokens: int | None
    choices: int
    price: ReservePrice | None
    now: datetime
    now_ms: int
    month: str
    window: int
    elapsed_ms: int
    window_ms: int
    rates: tuple[RateScope, ...]
    scopes: tuple[BudgetScope, ...]  # the user's first, then the key's, then the team's
    key_id: str | None  # the key's, when its budgets are drawn on (a scope of its own)
    team_id: str | None  # the team's, likewise
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
        price: ReservePrice | None = None,
    ) -> Plan:
        now = budget.as_utc(now)
        now_ms = int(now.timestamp() * 1000)
        window, elapsed = rate.position(now_ms, window_ms)
        scopes, key_id, team_id = _scopes(identity)
        return cls(
            identity=identity,
            prompt_tokens=max(0, prompt_tokens),
            max_completion_tokens=None if max_completion_tokens is None else max(0, max_completion_tokens),
            choices=max(1, choices),
            price=price,
            now=now,
            now_ms=now_ms,
            month=budget.month_of(now),
            window=window,
            elapsed_ms=elapsed,
            window_ms=window_ms,
            rates=_rates(identity),
            scopes=scopes,
            key_id=key_id,
            team_id=team_id,
            ticket_id=new_id(),
        )

    def counts(self, current: int, previous: int) -> rate.WindowCounts:
        return rate.WindowCounts(current, previous, self.elapsed_ms, self.window_ms)

    def reservation(self, cap: int) -> tuple[int, int]:
        """(tokens, nano-dollars) reserved for a completion cap of ``cap`` per choice."""
        completion = self.choices * cap
        nano = 0 if self.price is None else self.price.reservation(self.prompt_tokens, completion)
        return self.prompt_tokens + completion, nano

    def room(self, counts: Sequence[Counts]) -> tuple[int | None, Refusal]:
        """The completion tokens per choice every budget still has room for, and the budget with the least."""
        prompt, choices = self.prompt_tokens, self.choices
        least: int | None = None
        refusal: Refusal = ("tokens", 0)
        for i, scope in enumerate(self.scopes):
            count = counts[i]
            if scope.tokens is not None:
                room = budget.token_room(max(0, scope.tokens - count.used - count.reserved), prompt, choices)
                if least is None or room < least:
                    least, refusal = room, ("tokens", i)
            if scope.nano is not None:
                left = max(0, scope.nano - count.used_nano - count.reserved_nano)
                room_usd = budget.usd_room(left, prompt, choices, self.price)
                if room_usd is not None and (least is None or room_usd < least):
                    least, refusal = room_usd, ("usd", i)
        return least, refusal

    def degraded_ticket(self, default_allowance: int | None) -> Ticket:
        """Fail-open: admit without counters. The headers then show the limits, not what is left."""
        user_limit = self.identity.monthly_token_budget
        cap = self.max_completion_tokens
        if cap is None:
            cap = default_allowance if default_allowance is not None else max(1, user_limit - self.prompt_tokens)
        limit = self.identity.rate_limit_per_minute
        state = LimitState(limit, limit, 0.0, user_limit, user_limit)
        return self.make_ticket(cap, state, degraded=True)

    def make_ticket(self, cap: int, state: LimitState, *, degraded: bool = False, nano: int | None = None) -> Ticket:
        """The Ticket of a reservation of ``cap`` per choice (``nano``: its nano-dollars, when already known)."""
        return Ticket(
            id=self.ticket_id,
            user_id=self.identity.user_id,
            key_id=self.key_id,
            month=self.month,
            prompt_tokens=self.prompt_tokens,
            completion_cap=cap,
            cap_set_by_gateway=self.max_completion_tokens is None,
            state=state,
            degraded=degraded,
            choices=self.choices,
            team_id=self.team_id,
            reserved_nano=self.reservation(cap)[1] if nano is None else nano,
        )


def _rates(identity: Identity) -> tuple[RateScope, ...]:
    credential = RateScope(identity.rate_key, identity.rate_limit_per_minute)
    if identity.team_id is None or identity.team_rate_limit_per_minute is None:
        return (credential,)
    return credential, RateScope(f"team:{identity.team_id}", identity.team_rate_limit_per_minute, identity.team_id)


def _scopes(identity: Identity) -> tuple[tuple[BudgetScope, ...], str | None, str | None]:
    """The budget scopes, and the key and team ids of those drawn on."""
    scopes: tuple[BudgetScope, ...] = (
        BudgetScope("user", identity.user_id, identity.monthly_token_budget, _nano(identity.monthly_budget_usd)),
    )
    key, team = identity.key_id, identity.team_id
    if key is not None and (identity.key_token_budget is not None or identity.key_budget_usd is not None):
        scopes += (BudgetScope("key", key, identity.key_token_budget, _nano(identity.key_budget_usd)),)
    else:
        key = None
    if team is not None and (identity.team_token_budget is not None or identity.team_budget_usd is not None):
        scopes += (BudgetScope("team", team, identity.team_token_budget, _nano(identity.team_budget_usd)),)
    else:
        team = None
    return scopes, key, team


def _nano(usd: Decimal | None) -> int | None:
    return None if usd is None else budget.limit_nano(usd)


def decide(plan: Plan, rates: Sequence[RateCounts], counts: Sequence[Counts], default_allowance: int | None) -> Outcome:
    """The admission rule: every rate first, then the reservation against every budget.

    A refused request reserves nothing and is not counted toward the rate, whichever limit
    refused it: it cost nothing upstream, and a caller whose ``max_tokens`` did not fit should
    be able to retry at once with a smaller one without having burnt a request slot.
    """
    for i, scope in enumerate(plan.rates):
        if not rate.admits(scope.limit, plan.counts(*rates[i])):
            return Outcome(plan, rates, counts, refusal=("rate", i))
    room, refusal = plan.room(counts)
    cap = budget.completion_cap(room, plan.max_completion_tokens, default_allowance)
    if cap is None:
        return Outcome(plan, rates, counts, refusal=refusal)
    tokens, nano = plan.reservation(cap)
    return Outcome(
        plan,
        [(current + 1, previous) for current, previous in rates],
        [budget.after(count, tokens, nano) for count in counts],
        cap,
        tokens=tokens,
        nano=nano,
    )


# Not frozen: built on every admission, and a frozen dataclass's __init__ costs a setattr call per field.
@dataclass(slots=True)
class Outcome:
    """A backend's verdict: the counters after the reservation when admitted (``cap``), as found when refused."""

    plan: Plan
    rates: Sequence[RateCounts]  # follow ``plan.rates``
    counts: Sequence[Counts]  # follow ``plan.scopes``
    cap: int | None = None  # the completion allowance reserved per choice; None when refused
    refusal: Refusal | None = None
    tokens: int = 0  # reserved, when admitted
    nano: int = 0

    def ticket(self) -> Ticket:
        """The Ticket of an admitted request, or raise the refusal."""
        state = self._state()
        if self.refusal is None and self.cap is not None:
            return self.plan.make_ticket(self.cap, state, nano=self.nano)
        what, index = self.refusal or ("tokens", 0)
        if what == "rate":
            raise self._rate_refusal(index, state)
        raise self._budget_refusal(what, index, state)

    def _state(self) -> LimitState:
        """The headers: the rate with the fewest requests left, the token budget with the fewest tokens left."""
        plan = self.plan
        counts = plan.counts(*self.rates[0])
        state = LimitState(plan.rates[0].limit, rate.remaining(plan.rates[0].limit, counts), 0.0, 0, 0)
        state.requests_reset_seconds = rate.reset_ms(counts) / 1000
        for i in range(1, len(plan.rates)):  # the team's
            counts = plan.counts(*self.rates[i])
            remaining = rate.remaining(plan.rates[i].limit, counts)
            if remaining < state.requests_remaining:
                state.requests_limit, state.requests_remaining = plan.rates[i].limit, remaining
                state.requests_reset_seconds = rate.reset_ms(counts) / 1000
        bound: int | None = None  # the token budget with the least left (the user's always counts tokens)
        for i, scope in enumerate(plan.scopes):
            if scope.tokens is not None:
                left = max(0, scope.tokens - self.counts[i].used - self.counts[i].reserved)
                if bound is None or left < bound:
                    state.tokens_limit, state.tokens_remaining, bound = scope.tokens, left, left
        return state

    def _balance(self, index: int, unit: Literal["tokens", "usd"]) -> Balance:
        scope, count = self.plan.scopes[index], self.counts[index]
        if unit == "tokens":
            return Balance(scope.tokens or 0, count.used, count.reserved)
        return Balance(scope.nano or 0, count.used_nano, count.reserved_nano)

    def _rate_refusal(self, index: int, state: LimitState) -> RequestRateExceeded:
        plan = self.plan
        pairs = zip(plan.rates, self.rates, strict=True)
        waits = [rate.retry_after_ms(scope.limit, plan.counts(*counts)) for scope, counts in pairs]
        wait_ms = max(waits)  # every rate that refuses must have room again
        scope = plan.rates[index]
        of = "" if scope.team_id is None else f" of team '{scope.team_id}'"
        return RequestRateExceeded(
            f"Rate limit reached for requests per minute{of}: limit {scope.limit}. "
            f"Please try again in {format_duration(wait_ms / 1000)}.",
            retry_after_seconds=-(-wait_ms // 1000),
            state=state,
            team_id=scope.team_id,
        )

    def _budget_refusal(self, unit: Literal["tokens", "usd"], index: int, state: LimitState) -> BudgetExceeded:
        plan = self.plan
        scope, balance = plan.scopes[index], self._balance(index, unit)
        who = f"{scope.kind} '{scope.subject}'"
        resets = f"{budget.next_month_start(plan.now):%Y-%m-%d} 00:00 UTC"
        if unit == "tokens":
            wanted = "" if plan.max_completion_tokens is None else f" + max_tokens {plan.max_completion_tokens}"
            if plan.choices > 1:
                wanted += f" for each of n={plan.choices} choices"
            message = (
                f"You exceeded your current quota: monthly token budget {balance.limit} of {who} for {plan.month}: "
                f"{balance.used} used and {balance.reserved} reserved by requests in flight; this request needs "
                f"prompt ~{plan.prompt_tokens}{wanted} tokens. It resets on {resets}."
            )
            error: type[BudgetExceeded] = TokenBudgetExceeded
        else:
            if plan.max_completion_tokens is None:
                cost = f"needs at least {dollars(plan.reservation(1)[1])}"
            else:
                cost = f"may cost up to {dollars(plan.reservation(plan.max_completion_tokens)[1])}"
            message = (
                f"You exceeded your current quota: monthly US-dollar budget of {who} "
                f"(${format_usd(from_nano(balance.limit))}) for {plan.month}: {dollars(balance.used)} spent, "
                f"{dollars(balance.reserved)} reserved by requests in flight; this request {cost}. "
                f"It resets on {resets}."
            )
            error = UsdBudgetExceeded
        return error(
            message,
            retry_after_seconds=budget.seconds_until_next_month(plan.now),
            state=state,
            kind=scope.kind,
            subject=scope.subject,
            unit=unit,
        )


def dollars(nano: int) -> str:
    """Nano-dollars for a person: ``$49.98``, ``$0.000123``, exact (at least two decimals, no trailing zeros)."""
    whole, _, fraction = f"{Decimal(nano).scaleb(-9):f}".partition(".")
    return f"${whole}.{fraction.rstrip('0').ljust(2, '0')}"
