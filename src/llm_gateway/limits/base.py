"""What both admission backends share: the protocol, the Ticket, what settlement charges, refusals, the headers.

The rule itself (``Plan``, ``decide``, ``Outcome``) is in ``rule.py``: a backend reads its counters,
``decide`` (or its Lua twin) answers, ``Outcome.ticket()`` turns that into a Ticket or raises the
refusal, so the memory and Redis backends answer identically.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from llm_gateway import errors
from llm_gateway.auth.identity import Identity
from llm_gateway.limits.budget import Balance, Counts, ScopeKind, Unit
from llm_gateway.pricing import ReservePrice
from llm_gateway.schemas.core import Usage

# (kind, user / key / team id, "YYYY-MM") -> (tokens, nano-dollars) the ledger has charged to it that month.
LedgerTotals = Callable[[ScopeKind, str, str], Awaitable[tuple[int, int]]]
Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


async def no_ledger(kind: ScopeKind, subject: str, month: str) -> tuple[int, int]:
    """The ledger of a gateway without one: every rebuilt counter starts at zero."""
    return 0, 0


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
    """What the ``x-ratelimit-*`` headers say: the request rate and the token budget that bind most."""

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
    ``key_id`` / ``team_id`` are set when the key / the team has a budget of its own, which is
    charged too (the ledger's ``team_id`` is the identity's). ``reserved_nano`` is the reservation
    in nano-dollars (0 for an unpriced request).
    """

    id: str
    user_id: str
    key_id: str | None
    month: str
    prompt_tokens: int
    completion_cap: int  # per choice
    cap_set_by_gateway: bool
    state: LimitState
    degraded: bool = False  # admitted without counters (Redis down, fail-open): nothing reserved
    choices: int = 1  # the request's ``n``: each choice may write ``completion_cap`` tokens
    team_id: str | None = None
    reserved_nano: int = 0
    closed: bool = field(default=False, init=False)

    @property
    def completion_tokens_reserved(self) -> int:
        return self.choices * self.completion_cap

    @property
    def reserved_tokens(self) -> int:
        return self.prompt_tokens + self.choices * self.completion_cap

    @property
    def scopes(self) -> tuple[tuple[ScopeKind, str], ...]:
        """The budgets this ticket draws on, as (kind, subject), in the order of ``Plan.scopes``."""
        scopes: tuple[tuple[ScopeKind, str], ...] = (("user", self.user_id),)
        if self.key_id is not None:
            scopes += (("key", self.key_id),)
        if self.team_id is not None:
            scopes += (("team", self.team_id),)
        return scopes

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


def nano_to_charge(ticket: Ticket, usage: Usage | None, *, cached: bool, cost_nano: int | None) -> int:
    """The real cost when known; unknown usage costs the whole reservation; known usage of an unpriced model, 0."""
    if cached:
        return 0
    if cost_nano is not None:
        return max(0, cost_nano)
    return ticket.reserved_nano if usage is None else 0


class RequestRateExceeded(errors.RateLimited):
    """429 ``rate_limit_exceeded``, carrying the ``x-ratelimit-*`` headers as every answer does.

    ``team_id`` is set when the team's rate refused, else it was the credential's.
    """

    def __init__(
        self, message: str, *, retry_after_seconds: int, state: LimitState, team_id: str | None = None
    ) -> None:
        super().__init__(message, retry_after_seconds=retry_after_seconds)
        self.state = state
        self.team_id = team_id

    def headers(self) -> dict[str, str]:
        return {**self.state.headers(), **super().headers()}


class BudgetExceeded(errors.QuotaExceeded):
    """429 ``insufficient_quota``: a monthly budget cannot cover this request; nothing was reserved.

    ``kind``/``subject``/``unit`` name the budget that refused (``("team", "search", "usd")``).
    """

    def __init__(
        self,
        message: str,
        *,
        retry_after_seconds: int,
        state: LimitState,
        kind: ScopeKind = "user",
        subject: str = "",
        unit: Unit = "tokens",
    ) -> None:
        super().__init__(message, retry_after_seconds=retry_after_seconds)
        self.state = state
        self.kind, self.subject, self.unit = kind, subject, unit

    def headers(self) -> dict[str, str]:
        return {**self.state.headers(), **super().headers()}


class TokenBudgetExceeded(BudgetExceeded):
    """A monthly token budget (user, key or team) refused."""


class UsdBudgetExceeded(BudgetExceeded):
    """A monthly US-dollar budget (user, key or team) refused."""


class CounterReports:
    """``balance``, ``scope_balance`` and ``usd_balance`` over a backend's ``_read``, alike in both backends."""

    async def _read(self, kind: ScopeKind, subject: str, month: str) -> Counts:
        """A scope's month as the backend counts it, reservations included (the ledger's, if it has none)."""
        raise NotImplementedError

    async def balance(self, user_id: str, month: str, limit: int) -> Balance:
        """The user's token counters for the month, for ``/v1/usage``."""
        return await self.scope_balance("user", user_id, month, limit)

    async def scope_balance(self, kind: ScopeKind, subject: str, month: str, limit: int) -> Balance:
        """A user's, key's or team's token counters for the month."""
        counts = await self._read(kind, subject, month)
        return Balance(limit, counts.used, counts.reserved)

    async def usd_balance(self, kind: ScopeKind, subject: str, month: str, limit_nano: int) -> Balance:
        """A user's, key's or team's nano-dollar counters for the month."""
        counts = await self._read(kind, subject, month)
        return Balance(limit_nano, counts.used_nano, counts.reserved_nano)


class Admission(Protocol):
    """Request rates and budget reservations (tokens and US dollars) in one atomic step, then settlement."""

    async def admit(
        self,
        identity: Identity,
        *,
        prompt_tokens: int,
        max_completion_tokens: int | None,
        choices: int = 1,
        price: ReservePrice | None = None,
        now: datetime | None = None,
    ) -> Ticket: ...

    async def settle(
        self, ticket: Ticket, usage: Usage | None, *, cached: bool = False, cost_nano: int | None = None
    ) -> int: ...

    async def release(self, ticket: Ticket) -> None: ...

    async def balance(self, user_id: str, month: str, limit: int) -> Balance: ...

    async def scope_balance(self, kind: ScopeKind, subject: str, month: str, limit: int) -> Balance: ...

    async def usd_balance(self, kind: ScopeKind, subject: str, month: str, limit_nano: int) -> Balance: ...

    async def aclose(self) -> None: ...
