"""Monthly budgets in tokens and in US dollars: calendar arithmetic and the reservation rule, as pure functions.

A budget is counted per calendar month in UTC (``YYYY-MM``), per user, per key (when it has a
budget of its own) and per team. Admission reserves ``prompt estimate + completion allowance``
tokens and, when the request is priced, those tokens at the most expensive price of its chain in
nano-dollars; settlement replaces the reservation with the usage and the real cost.
``lua/admit.lua`` applies the same rule inside Redis: integers only, so both agree to the unit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Literal, Protocol

from llm_gateway.pricing import ReservePrice, to_nano

# Month counters outlive their month by a week: a long request admitted on the 31st still
# settles into the right month, and an operator can still read last month's counters.
MONTH_KEY_GRACE = timedelta(days=7)

ScopeKind = Literal["user", "key", "team"]
Unit = Literal["tokens", "usd"]


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


@lru_cache(maxsize=4096)
def limit_nano(usd: Decimal | None) -> int | None:
    """A US-dollar budget as the counters hold it (whole nano-dollars); cached, it is read on every admission."""
    return None if usd is None else max(0, to_nano(usd))


# Not frozen: built on every admission, and a frozen dataclass's __init__ costs a setattr call per field.
@dataclass(slots=True)
class BudgetScope:
    """One holder of budgets a request draws on: the user, the key (its own cap), the team.

    ``tokens`` and ``nano`` are its monthly budgets (None: none in that unit). A scope counts both
    units whatever it enforces, so its spend can be reported and a budget set mid-month starts right.
    """

    kind: ScopeKind
    subject: str
    tokens: int | None
    nano: int | None


class Counts(Protocol):
    """A scope's month as a backend holds it (``ScopeCounts``, or the in-process counter itself)."""

    used: int
    reserved: int
    used_nano: int
    reserved_nano: int


# Not frozen: built on every admission, and a frozen dataclass's __init__ costs a setattr call per field.
@dataclass(slots=True)
class ScopeCounts:
    """A scope's month as the counters hold it: tokens and nano-dollars, used and reserved by requests in flight."""

    used: int
    reserved: int
    used_nano: int = 0
    reserved_nano: int = 0


def after(counts: Counts, tokens: int, nano: int) -> ScopeCounts:
    """The counts once a reservation of ``tokens`` and ``nano`` is held."""
    return ScopeCounts(counts.used, counts.reserved + tokens, counts.used_nano, counts.reserved_nano + nano)


# Not frozen: built on every admission, and a frozen dataclass's __init__ costs a setattr call per field.
@dataclass(slots=True)
class Balance:
    """A budget's counters for the month, in tokens or nano-dollars. ``reserved`` is held by requests in flight."""

    limit: int
    used: int
    reserved: int

    @property
    def available(self) -> int:
        return max(0, self.limit - self.used - self.reserved)


def token_room(available: int, prompt_tokens: int, choices: int) -> int:
    """Completion tokens per choice a token budget with ``available`` left can still reserve (negative: none)."""
    return (available - prompt_tokens) // choices


def usd_room(available_nano: int, prompt_tokens: int, choices: int, price: ReservePrice | None) -> int | None:
    """Completion tokens per choice a US-dollar budget can still pay for at ``price``; None: any number.

    A budget with nothing left refuses every request, an unpriced one too (-1): spent is spent.
    """
    if available_nano <= 0:
        return -1
    if price is None:
        return None
    left = available_nano - prompt_tokens * price.input_nano
    if price.output_nano <= 0:
        return None if left >= 0 else -1
    return left // (choices * price.output_nano)


def completion_cap(room: int | None, max_completion_tokens: int | None, default_allowance: int | None) -> int | None:
    """The completion tokens to reserve per choice (and cap upstream), or None when the budgets cannot cover them.

    ``room`` is the least any budget can pay for, per choice (``token_room``, ``usd_room``). With
    ``max_tokens`` the caller's number is reserved whole: clamping it silently would truncate answers
    the caller sized on purpose. Without it the gateway caps each choice at what every budget has
    room for, but at most ``default_allowance`` (None: everything) -- otherwise one request would
    reserve the whole month and block every concurrent one.
    """
    if max_completion_tokens is not None:
        return max_completion_tokens if room is None or max_completion_tokens <= room else None
    cap = room if room is not None else default_allowance
    if cap is None:
        return None  # nothing bounds the answer: not reachable, a user always has a token budget
    if default_allowance is not None:
        cap = min(cap, default_allowance)
    return cap if cap >= 1 else None


def binding(balances: list[Balance]) -> Balance:
    """The balance that limits the request: the one with the least left (the ``-tokens`` headers describe it)."""
    return min(balances, key=lambda balance: balance.available)
