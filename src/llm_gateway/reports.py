"""A month of usage and spend for a caller or a team: what ``/v1/usage``, ``/admin/usage``, ``GET /admin/teams/{id}``
and ``llm-gateway usage`` / ``teams show`` answer.

The ledger (the source of truth) gives what was used and spent; the limits give what requests in flight hold
(``reserved``), so that ``remaining = budget - used - reserved`` is what the next request can have. A caller
may draw on several budgets (the user's, a key's own, the team's): the top-level token and dollar figures are
those of the binding budget of each unit (the least left), and ``user``/``key``/``team`` show each budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from typing import Any, Protocol

from pydantic import BaseModel, Field

from llm_gateway.auth.identity import Identity
from llm_gateway.limits.budget import Balance
from llm_gateway.pricing import MICRO, ZERO, to_nano
from llm_gateway.schemas.money import Usd
from llm_gateway.store.ledger import LedgerScope, MonthReport, UsageLedger

_NANO_PER_USD = Decimal(1_000_000_000)


def _omitted_when_none() -> Any:
    """A figure that only some callers have (a budget they do not have): absent from the JSON, not null."""
    return Field(None, exclude_if=lambda value: value is None)


class ModelUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    requests: int
    spend_usd: Usd


class BudgetUsage(BaseModel):
    """One budget holder's month: token figures when it has a token budget, dollar ones when it has a dollar budget."""

    budget_tokens: int | None = _omitted_when_none()
    used_tokens: int
    reserved_tokens: int | None = _omitted_when_none()
    remaining_tokens: int | None = _omitted_when_none()
    spend_usd: Usd
    budget_usd: Usd | None = _omitted_when_none()
    reserved_usd: Usd | None = _omitted_when_none()
    remaining_usd: Usd | None = _omitted_when_none()


class UsageReport(BaseModel):
    """A user's month. ``requests``, ``spend_usd`` and ``by_model`` are the user's own; the budget figures are the
    binding budget's. ``key``, ``user`` and ``team`` appear when more than one budget applies."""

    user_id: str
    month: str
    team_id: str | None = _omitted_when_none()
    budget_tokens: int
    used_tokens: int
    reserved_tokens: int
    remaining_tokens: int
    requests: int
    spend_usd: Usd
    budget_usd: Usd | None = _omitted_when_none()  # present when a US dollar budget applies
    reserved_usd: Usd | None = _omitted_when_none()
    remaining_usd: Usd | None = _omitted_when_none()
    by_model: dict[str, ModelUsage]
    key: BudgetUsage | None = _omitted_when_none()
    user: BudgetUsage | None = _omitted_when_none()
    team: BudgetUsage | None = _omitted_when_none()


class ScopeMonth(BudgetUsage):
    """A team's month (``GET /admin/teams/{id}``): its members' requests since they joined it, by model group."""

    month: str
    requests: int
    by_model: dict[str, ModelUsage]


class LiveReservations(Protocol):
    """What requests in flight hold, from the limits (``Admission``); ``reserved`` is all a report reads."""

    async def balance(self, user_id: str, month: str, limit: int) -> Balance: ...

    async def scope_balance(self, kind: LedgerScope, subject: str, month: str, limit: int) -> Balance: ...

    async def usd_balance(self, kind: LedgerScope, subject: str, month: str, limit_nano: int) -> Balance: ...


class NoReservations:
    """For a reader that cannot see the counters (the CLI without ``REDIS_URL``): nothing shows as reserved."""

    async def balance(self, user_id: str, month: str, limit: int) -> Balance:
        return Balance(limit, 0, 0)

    async def scope_balance(self, kind: LedgerScope, subject: str, month: str, limit: int) -> Balance:
        return Balance(limit, 0, 0)

    async def usd_balance(self, kind: LedgerScope, subject: str, month: str, limit_nano: int) -> Balance:
        return Balance(limit_nano, 0, 0)


@dataclass(frozen=True, slots=True)
class Holder:
    """Whoever holds budgets: a user, a key or a team, and its budgets (None: no such budget)."""

    kind: LedgerScope
    subject: str
    budget_tokens: int | None
    budget_usd: Decimal | None

    @property
    def has_budget(self) -> bool:
        return self.budget_tokens is not None or self.budget_usd is not None


def holders(identity: Identity) -> list[Holder]:
    """The budgets a caller draws on: always the user's; the key's and the team's when they set any."""
    found = [Holder("user", identity.user_id, identity.monthly_token_budget, identity.monthly_budget_usd)]
    if identity.key_id is not None:
        found.append(Holder("key", identity.key_id, identity.key_token_budget, identity.key_budget_usd))
    if identity.team_id is not None:
        found.append(Holder("team", identity.team_id, identity.team_token_budget, identity.team_budget_usd))
    return [holder for holder in found if holder.kind == "user" or holder.has_budget]


async def budget_usage(
    holder: Holder, month: str, used_tokens: int, spend: Decimal, live: LiveReservations
) -> BudgetUsage:
    """One holder's figures: what the ledger says was used, what requests in flight hold, what is left."""
    usage = BudgetUsage(used_tokens=used_tokens, spend_usd=spend)
    if holder.budget_tokens is not None:
        budget = holder.budget_tokens
        if holder.kind == "user":
            balance = await live.balance(holder.subject, month, budget)
        else:
            balance = await live.scope_balance(holder.kind, holder.subject, month, budget)
        usage.budget_tokens, usage.reserved_tokens = budget, balance.reserved
        usage.remaining_tokens = max(0, budget - used_tokens - balance.reserved)
    if holder.budget_usd is not None:
        dollars = holder.budget_usd
        held = await live.usd_balance(holder.kind, holder.subject, month, to_nano(dollars))
        reserved = _micro_ceiling(held.reserved)  # rounded up: what is left is never overstated
        usage.budget_usd, usage.reserved_usd = dollars, reserved
        usage.remaining_usd = max(ZERO, dollars - spend - reserved)
    return usage


async def caller_report(identity: Identity, month: str, ledger: UsageLedger, live: LiveReservations) -> UsageReport:
    """A user's month as they (``/v1/usage``, with their key) or an operator (``/admin/usage``) see it."""
    mine = await ledger.month_report(identity.user_id, month)
    found = holders(identity)
    each: list[BudgetUsage] = []
    for holder in found:
        used, spend = (
            (mine.used_tokens, mine.spend_usd)
            if holder.kind == "user"
            else await ledger.month_sums(holder.kind, holder.subject, month)
        )
        each.append(await budget_usage(holder, month, used, spend, live))
    tokens = min((u for u in each if u.remaining_tokens is not None), key=lambda u: _int(u.remaining_tokens))
    dollars = [u for u in each if u.remaining_usd is not None]
    usd = min(dollars, key=lambda u: u.remaining_usd or ZERO) if dollars else None
    by_holder = {holder.kind: usage for holder, usage in zip(found, each, strict=True)} if len(found) > 1 else {}
    return UsageReport(
        user_id=identity.user_id,
        month=month,
        team_id=identity.team_id,
        budget_tokens=_int(tokens.budget_tokens),
        used_tokens=tokens.used_tokens,
        reserved_tokens=_int(tokens.reserved_tokens),
        remaining_tokens=_int(tokens.remaining_tokens),
        requests=mine.requests,
        spend_usd=mine.spend_usd,
        budget_usd=usd.budget_usd if usd else None,
        reserved_usd=usd.reserved_usd if usd else None,
        remaining_usd=usd.remaining_usd if usd else None,
        by_model=by_model(mine),
        **by_holder,
    )


async def team_month(
    team_id: str,
    budget_tokens: int | None,
    budget_usd: Decimal | None,
    month: str,
    ledger: UsageLedger,
    live: LiveReservations,
) -> ScopeMonth:
    """A team's month: its rows in the ledger, against its own budgets."""
    report = await ledger.month_report(team_id, month, kind="team")
    holder = Holder("team", team_id, budget_tokens, budget_usd)
    usage = await budget_usage(holder, month, report.used_tokens, report.spend_usd, live)
    return ScopeMonth(month=month, requests=report.requests, by_model=by_model(report), **dict(usage))


def by_model(report: MonthReport) -> dict[str, ModelUsage]:
    return {
        name: ModelUsage(
            prompt_tokens=u.prompt_tokens,
            completion_tokens=u.completion_tokens,
            requests=u.requests,
            spend_usd=u.spend_usd,
        )
        for name, u in sorted(report.by_model.items())
    }


def _micro_ceiling(nano: int) -> Decimal:
    return (Decimal(nano) / _NANO_PER_USD).quantize(MICRO, rounding=ROUND_CEILING)


def _int(value: int | None) -> int:
    assert value is not None  # the user always has a token budget
    return value
