"""Monthly token budgets: calendar arithmetic and the reservation rule, as pure functions.

A budget is counted per calendar month in UTC (``YYYY-MM``). Admission reserves
``prompt estimate + completion allowance``; settlement replaces the reservation with the
provider-reported usage. ``lua/admit.lua`` applies the same rule inside Redis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

# Month counters outlive their month by a week: a long request admitted on the 31st still
# settles into the right month, and an operator can still read last month's counters.
MONTH_KEY_GRACE = timedelta(days=7)

ScopeKind = Literal["user", "key"]


def as_utc(now: datetime) -> datetime:
    """An aware UTC datetime; a naive one is taken to be UTC already."""
    return now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)


def month_of(now: datetime) -> str:
    return f"{now.year:04d}-{now.month:02d}"


def next_month_start(now: datetime) -> datetime:
    now = as_utc(now)
    year, month = (now.year + 1, 1) if now.month == 12 else (now.year, now.month + 1)
    return datetime(year, month, 1, tzinfo=UTC)


def seconds_until_next_month(now: datetime) -> int:
    """The ``Retry-After`` of a budget refusal: the budget is whole again at the next month."""
    return max(1, math.ceil((next_month_start(now) - as_utc(now)).total_seconds()))


def month_keys_ttl_seconds(now: datetime) -> int:
    """How long this month's counters are kept (Redis EXPIRE). Relative, so an injected clock stays consistent."""
    return max(1, math.ceil((next_month_start(now) + MONTH_KEY_GRACE - as_utc(now)).total_seconds()))


@dataclass(frozen=True, slots=True)
class BudgetScope:
    """One budget a request draws on: the user's, and the key's when the key has its own cap."""

    kind: ScopeKind
    subject: str
    limit: int


# Not frozen: built on every admission, and a frozen dataclass's __init__ costs a setattr call per field.
@dataclass(slots=True)
class Balance:
    """A scope's counters for the month. ``reserved`` is held by requests in flight."""

    limit: int
    used: int
    reserved: int

    @property
    def available(self) -> int:
        return max(0, self.limit - self.used - self.reserved)


def completion_allowance(
    available: int,
    prompt_tokens: int,
    max_completion_tokens: int | None,
    default_allowance: int | None,
    choices: int = 1,
) -> int | None:
    """The completion tokens to reserve per choice (and cap upstream), or None when the budget cannot cover them.

    Every choice (``n``) may write the whole cap, so ``choices`` caps are reserved. With
    ``max_tokens`` the caller's number is reserved whole: clamping it silently would truncate
    answers the caller sized on purpose. Without it the gateway caps each choice at its share of
    what is left, but at most ``default_allowance`` (None: everything that is left) -- otherwise
    one request would reserve the whole month and block every concurrent one.
    """
    choices = max(1, choices)
    if max_completion_tokens is not None:
        return max_completion_tokens if prompt_tokens + choices * max_completion_tokens <= available else None
    cap = (available - prompt_tokens) // choices
    if default_allowance is not None:
        cap = min(cap, default_allowance)
    return cap if cap >= 1 else None


def binding(balances: list[Balance]) -> Balance:
    """The balance that limits the request: the one with the least left (the ``-tokens`` headers describe it)."""
    return min(balances, key=lambda balance: balance.available)
