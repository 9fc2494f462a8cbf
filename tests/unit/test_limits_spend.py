"""US-dollar budgets, team budgets and team rates in the one admission step, on both backends (same assertions).

Prices are whole nano-dollars per token (``ReservePrice``); the clock is injected everywhere.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from llm_gateway.auth.identity import Identity
from llm_gateway.limits import (
    Admission,
    BudgetExceeded,
    RequestRateExceeded,
    Ticket,
    TokenBudgetExceeded,
    UsdBudgetExceeded,
)
from llm_gateway.limits import memory as memory_limits
from llm_gateway.limits import redis as redis_limits
from llm_gateway.limits.budget import Counts, ScopeCounts, ScopeKind, Unit
from llm_gateway.limits.rule import Outcome, Plan
from llm_gateway.pricing import Price, ReservePrice, to_nano
from llm_gateway.schemas.core import Usage
from tests.admission_support import Factory, Ledger

NOW = datetime(2026, 12, 5, 12, 0, 0, tzinfo=UTC)  # on a minute boundary
MONTH = "2026-12"
PRICE = ReservePrice(input_nano=1000, output_nano=4000)  # $1 / $4 per million tokens
BIG = 10**9
SCOPES: list[tuple[ScopeKind, str]] = [("user", "alice"), ("key", "k1"), ("team", "search")]


def member(
    *,
    user: str = "alice",
    key_id: str | None = "k1",
    rpm: int = 1000,
    tokens: int = BIG,
    usd: str | None = None,
    key_tokens: int | None = None,
    key_usd: str | None = None,
    team_tokens: int | None = None,
    team_usd: str | None = None,
    team_rpm: int | None = None,
    team: str | None = "search",
) -> Identity:
    """A caller of team ``search`` through key ``k1``; every budget and rate as given (None: none)."""
    return Identity(
        user,
        "api_key" if key_id else "jwt",
        rpm,
        tokens,
        key_id=key_id,
        key_token_budget=key_tokens,
        monthly_budget_usd=None if usd is None else Decimal(usd),
        key_budget_usd=None if key_usd is None else Decimal(key_usd),
        team_id=team,
        team_token_budget=team_tokens,
        team_budget_usd=None if team_usd is None else Decimal(team_usd),
        team_rate_limit_per_minute=team_rpm,
    )


async def admit(limits: Admission, who: Identity, **kwargs: Any) -> Ticket:
    kwargs.setdefault("prompt_tokens", 100)
    kwargs.setdefault("max_completion_tokens", 100)
    kwargs.setdefault("price", PRICE)
    return await limits.admit(who, now=NOW, **kwargs)


async def admit_or_none(limits: Admission, who: Identity, **kwargs: Any) -> Ticket | None:
    try:
        return await admit(limits, who, **kwargs)
    except BudgetExceeded:
        return None


# -- every level refuses, and says which ----------------------------------------------------------

ONE_REQUEST = {"tokens": 200, "usd": "0.0005"}  # 100 + 100 tokens; 100 x 1000 + 100 x 4000 nano-dollars
LEVELS = [
    ("user", "alice", "tokens", {"tokens": 200}),
    ("key", "k1", "tokens", {"key_tokens": 200}),
    ("team", "search", "tokens", {"team_tokens": 200}),
    ("user", "alice", "usd", {"usd": "0.0005"}),
    ("key", "k1", "usd", {"key_usd": "0.0005"}),
    ("team", "search", "usd", {"team_usd": "0.0005"}),
]


@pytest.mark.parametrize(("kind", "subject", "unit", "budgets"), LEVELS, ids=[f"{k}-{u}" for k, _, u, _ in LEVELS])
async def test_each_budget_refuses_and_the_refusal_names_it(
    make_limits: Factory, kind: ScopeKind, subject: str, unit: Unit, budgets: dict[str, Any]
) -> None:
    limits = make_limits()
    who = member(rpm=2, **budgets)
    first = await admit(limits, who)  # exactly the budget
    assert (first.reserved_tokens, first.reserved_nano) == (200, 500_000)

    with pytest.raises(BudgetExceeded) as refused:
        await admit(limits, who, prompt_tokens=1, max_completion_tokens=0)
    error = refused.value
    assert (error.kind, error.subject, error.unit) == (kind, subject, unit)
    assert isinstance(error, TokenBudgetExceeded if unit == "tokens" else UsdBudgetExceeded)
    assert (error.status_code, error.code, error.type) == (429, "insufficient_quota", "insufficient_quota")
    assert error.retry_after_seconds == (datetime(2027, 1, 1, tzinfo=UTC) - NOW).total_seconds()
    if unit == "tokens":
        assert f"monthly token budget 200 of {kind} '{subject}' for {MONTH}: 0 used and 200 reserved" in error.message
    else:
        assert f"monthly US-dollar budget of {kind} '{subject}' ($0.000500) for {MONTH}: $0.00 spent" in error.message
    assert error.message.endswith("It resets on 2027-01-01 00:00 UTC.")

    # Refused, it reserved nothing anywhere and did not count toward the rate (limit 2: one left).
    assert error.headers()["x-ratelimit-remaining-requests"] == "1"
    for scope_kind, scope_subject in SCOPES:
        tokens = await limits.scope_balance(scope_kind, scope_subject, MONTH, BIG)
        nano = await limits.usd_balance(scope_kind, scope_subject, MONTH, BIG)
        drawn = scope_kind == "user" or scope_kind == kind  # a key / team without a budget is not counted
        assert (tokens.reserved, nano.reserved) == ((200, 500_000) if drawn else (0, 0)), scope_kind


async def test_the_dollar_refusal_message(make_limits: Factory) -> None:
    """What was spent (the ledger's), what requests in flight hold, what this one may cost, when it resets."""
    price = ReservePrice(input_nano=0, output_nano=10_000)  # $10 per million completion tokens
    ledger = Ledger({("team", "search", MONTH): (0, to_nano(Decimal("49.95")))})
    limits = make_limits(ledger_totals=ledger)
    who = member(team_usd="50")
    await admit(limits, who, prompt_tokens=0, max_completion_tokens=3000, price=price)  # $0.03 in flight
    with pytest.raises(UsdBudgetExceeded) as refused:
        await admit(limits, who, prompt_tokens=0, max_completion_tokens=4000, price=price)
    assert refused.value.message == (
        "You exceeded your current quota: monthly US-dollar budget of team 'search' ($50.000000) for 2026-12: "
        "$49.95 spent, $0.03 reserved by requests in flight; this request may cost up to $0.04. "
        "It resets on 2027-01-01 00:00 UTC."
    )
    # Without max_tokens the gateway's cap shrinks to what is left ($0.02): 2000 tokens.
    ticket = await admit(limits, who, prompt_tokens=0, max_completion_tokens=None, price=price)
    assert (ticket.completion_cap, ticket.reserved_nano) == (2000, 20_000_000)
    with pytest.raises(UsdBudgetExceeded) as refused:
        await admit(limits, who, prompt_tokens=0, max_completion_tokens=None, price=price)
    assert "$0.05 reserved by requests in flight; this request needs at least $0.00001." in refused.value.message


async def test_a_spent_dollar_budget_refuses_even_an_unpriced_request(make_limits: Factory) -> None:
    ledger = Ledger({("user", "alice", MONTH): (0, to_nano(Decimal("5")))})
    limits = make_limits(ledger_totals=ledger)
    with pytest.raises(UsdBudgetExceeded):
        await admit(limits, member(usd="5"), price=None)
    # With something left, an unpriced request is admitted and reserves no dollars.
    ticket = await admit(limits, member(usd="5.01"), price=None)
    assert ticket.reserved_nano == 0


async def test_the_token_headers_describe_the_binding_token_budget_on_a_dollar_refusal(make_limits: Factory) -> None:
    limits = make_limits()
    who = member(tokens=5000, team_tokens=1000, key_usd="0.0005")
    await admit(limits, who)
    with pytest.raises(UsdBudgetExceeded) as refused:
        await admit(limits, who)
    headers = refused.value.headers()
    assert (headers["x-ratelimit-limit-tokens"], headers["x-ratelimit-remaining-tokens"]) == ("1000", "800")


# -- the team: one budget and one rate for all its members ----------------------------------------


async def test_members_of_a_team_share_its_token_and_dollar_budgets(make_limits: Factory) -> None:
    limits = make_limits()
    ann = member(user="ann", key_id="ka", team_tokens=1000, team_usd="0.001")
    bob = member(user="bob", key_id="kb", team_tokens=1000, team_usd="0.001")
    tickets = [await admit(limits, who) for who in (ann, bob)]  # $0.0005 each: the team's dollar is spent
    assert [t.team_id for t in tickets] == ["search", "search"]
    with pytest.raises(UsdBudgetExceeded) as refused:
        await admit(limits, ann)
    assert refused.value.kind == "team"
    assert (await limits.scope_balance("team", "search", MONTH, 1000)).reserved == 400
    other_team = replace(bob, team_id="ads")
    assert (await admit(limits, other_team)).team_id == "ads"


async def test_a_team_rate_limit_counts_every_member_and_names_the_team(make_limits: Factory) -> None:
    limits = make_limits()
    members = [member(user=f"u{i}", key_id=f"k{i}", team_rpm=3) for i in range(4)]
    tickets = [await admit(limits, who) for who in members[:3]]
    assert tickets[0].team_id is None  # a team rate without a team budget: the team's counters are not charged
    assert [t.headers()["x-ratelimit-remaining-requests"] for t in tickets] == ["2", "1", "0"]
    with pytest.raises(RequestRateExceeded) as refused:
        await admit(limits, members[3])
    error = refused.value
    assert error.team_id == "search" and error.code == "rate_limit_exceeded"
    assert error.message.startswith("Rate limit reached for requests per minute of team 'search': limit 3. ")
    assert error.retry_after_seconds == 80  # 1/3 of the next window must pass
    assert error.headers()["x-ratelimit-limit-requests"] == "3"
    # Refused by the team, it did not count toward its own credential's rate (limit 1 here).
    alone = replace(members[3], rate_limit_per_minute=1, team_id=None)
    await admit(limits, alone)
    # A credential rate refusal does not count toward the team's either: the team's fourth request still fits 4.
    with pytest.raises(RequestRateExceeded) as refused:
        await admit(limits, replace(members[3], rate_limit_per_minute=1, team_rate_limit_per_minute=4))
    assert refused.value.team_id is None
    await admit(limits, replace(members[2], team_rate_limit_per_minute=4))
    with pytest.raises(RequestRateExceeded):
        await admit(limits, replace(members[2], team_rate_limit_per_minute=4))


# -- settlement in dollars ------------------------------------------------------------------------


async def test_settle_charges_the_real_cost_everywhere_and_frees_the_reservation(make_limits: Factory) -> None:
    limits = make_limits()
    who = member(usd="1", key_usd="1", team_usd="1")
    ticket = await admit(limits, who)
    assert ticket.scopes == (("user", "alice"), ("key", "k1"), ("team", "search"))
    for kind, subject in SCOPES:
        balance = await limits.usd_balance(kind, subject, MONTH, 10**9)
        assert (balance.used, balance.reserved) == (0, 500_000)
    assert await limits.settle(ticket, Usage(100, 20), cost_nano=123_456) == 120
    assert await limits.settle(ticket, Usage(100, 20), cost_nano=123_456) == 0  # once
    for kind, subject in SCOPES:
        balance = await limits.usd_balance(kind, subject, MONTH, 10**9)
        assert (balance.used, balance.reserved, balance.available) == (123_456, 0, 10**9 - 123_456)
        assert (await limits.scope_balance(kind, subject, MONTH, BIG)).used == 120


@pytest.mark.parametrize(
    ("usage", "cached", "cost", "charged"),
    [
        (None, False, None, 500_000),  # unknown usage: the whole reservation
        (Usage(100, 20), False, None, 0),  # known usage, no price: nothing
        (Usage(100, 20), True, 999, 0),  # a cached answer: nothing
        (None, False, 7, 7),  # the cost, when the pipeline knows it
    ],
)
async def test_what_settlement_charges_in_dollars(
    make_limits: Factory, usage: Usage | None, cached: bool, cost: int | None, charged: int
) -> None:
    limits = make_limits()
    ticket = await admit(limits, member(team_usd="1"))
    await limits.settle(ticket, usage, cached=cached, cost_nano=cost)
    for kind in ("user", "team"):
        balance = await limits.usd_balance(kind, "alice" if kind == "user" else "search", MONTH, 10**9)
        assert (balance.used, balance.reserved) == (charged, 0)


async def test_release_frees_everything(make_limits: Factory) -> None:
    limits = make_limits()
    who = member(usd="0.0005", team_tokens=200)
    ticket = await admit(limits, who)
    assert await admit_or_none(limits, who) is None
    await limits.release(ticket)
    await limits.release(ticket)  # once
    for kind, subject in SCOPES[::2]:
        assert (await limits.usd_balance(kind, subject, MONTH, 1)).reserved == 0
        assert (await limits.scope_balance(kind, subject, MONTH, 1)).reserved == 0
    assert await admit(limits, who)


# -- the completion cap the gateway chooses fits every budget -------------------------------------


async def test_the_gateways_cap_shrinks_to_fit_a_dollar_budget(make_limits: Factory) -> None:
    limits = make_limits(completion_allowance=4096)
    who = member(usd="0.001")  # 1,000,000 nano-dollars: the prompt takes 100,000, 4,000 per completion token
    ticket = await admit(limits, who, max_completion_tokens=None)
    assert (ticket.completion_cap, ticket.cap_set_by_gateway, ticket.reserved_nano) == (225, True, 1_000_000)
    await limits.release(ticket)

    three = await admit(limits, who, max_completion_tokens=None, choices=3)  # every choice may write the cap
    assert (three.completion_cap, three.reserved_nano) == (75, 100_000 + 3 * 75 * 4000)
    await limits.release(three)

    # The caller's max_tokens is never clamped: the whole reservation must fit.
    assert await admit_or_none(limits, who, max_completion_tokens=226) is None
    assert (await admit(limits, who, max_completion_tokens=225)).reserved_nano == 1_000_000


async def test_the_least_room_of_all_budgets_sets_the_cap(make_limits: Factory) -> None:
    limits = make_limits(completion_allowance=4096)
    who = member(tokens=10_000, key_usd="0.01", team_usd="0.002", team_tokens=1000)
    ticket = await admit(limits, who, max_completion_tokens=None)
    # team tokens: 1000 - 100 = 900; team dollars: (2,000,000 - 100,000) // 4000 = 475; the key's: 2475
    assert ticket.completion_cap == 475
    with pytest.raises(BudgetExceeded) as refused:
        await admit(limits, who, max_completion_tokens=None)
    assert (refused.value.kind, refused.value.unit) == ("team", "usd")


# -- rebuilt from the ledger ----------------------------------------------------------------------


async def test_dollar_counters_start_from_the_ledger(make_limits: Factory) -> None:
    ledger = Ledger(
        {
            ("user", "alice", MONTH): (150, 400_000),
            ("key", "k1", MONTH): (50, 300_000),
            ("team", "search", MONTH): (1000, 2_000_000),
        }
    )
    limits = make_limits(ledger_totals=ledger)
    who = member(usd="0.001", key_usd="0.001", team_usd="0.0025")
    ticket = await admit(limits, who, max_completion_tokens=None)
    assert ticket.reserved_nano == 500_000  # the team's room: 2,500,000 - 2,000,000
    assert sorted(ledger.calls) == sorted([("user", "alice", MONTH), ("key", "k1", MONTH), ("team", "search", MONTH)])
    team = await limits.usd_balance("team", "search", MONTH, 2_500_000)
    assert (team.used, team.reserved, team.available) == (2_000_000, 500_000, 0)
    assert (await limits.scope_balance("team", "search", MONTH, 5000)).used == 1000
    assert await admit_or_none(limits, who, max_completion_tokens=None) is None
    assert len(ledger.calls) == 3  # read once per scope-month


# -- concurrency: the sum of reservations never exceeds the budget ---------------------------------

CHAIN = [Price(Decimal("1"), Decimal("4")), Price(Decimal("0.15"), Decimal("0.6"), Decimal("0.075"))]
RESERVE = ReservePrice.most_expensive([price.reserve() for price in CHAIN])
assert RESERVE == PRICE


async def thirty_at_once(limits: Admission, rng: random.Random, *, prompt_error: int, worst: bool) -> tuple[int, int]:
    """30 admissions at once against a team budget that fits 10 reservations (500,000 nano-dollars each), then
    settled: at the dearest deployment with every answer full (``worst``), else at a random deployment of the
    chain with random usage; the prompt ``prompt_error`` tokens longer than estimated. (admitted, spent)."""
    who = member(team_usd="0.005")
    tickets = await asyncio.gather(*(admit_or_none(limits, who) for _ in range(30)))  # prompt ~100, max_tokens 100
    admitted = [ticket for ticket in tickets if ticket is not None]
    reserved = sum(ticket.reserved_nano for ticket in admitted)
    assert (await limits.usd_balance("team", "search", MONTH, 5_000_000)).reserved == reserved
    costs: list[int] = []

    async def settle(ticket: Ticket) -> None:
        await asyncio.sleep(rng.random() / 100)
        if worst:
            price, usage = CHAIN[0], Usage(100 + prompt_error, 100)
        else:
            price, usage = rng.choice(CHAIN), Usage(100 + prompt_error, rng.randint(1, 100), rng.choice([0, 50]))
        cost = to_nano(price.cost(usage))  # whichever deployment of the chain answered
        costs.append(cost)
        await limits.settle(ticket, usage, cost_nano=cost)

    await asyncio.gather(*(settle(ticket) for ticket in admitted))
    balance = await limits.usd_balance("team", "search", MONTH, 5_000_000)
    assert (balance.used, balance.reserved) == (sum(costs), 0)
    return len(admitted), sum(costs)


@pytest.mark.parametrize(("prompt_error", "worst"), [(0, True), (10, True), (0, False), (10, False)])
async def test_30_concurrent_requests_against_a_small_dollar_budget(
    make_limits: Factory, prompt_error: int, worst: bool
) -> None:
    """The sum of admitted reservations never exceeds the budget. Usage within the reservation, priced at most
    at the chain's dearest price, never overspends (but for Price.cost's rounding to the micro-dollar: at most
    500 nano-dollars up); a prompt estimate short by ``prompt_error`` tokens overspends by at most that error."""
    admitted, spent = await thirty_at_once(
        make_limits(), random.Random(16 + prompt_error), prompt_error=prompt_error, worst=worst
    )
    assert admitted == 10
    bound = admitted * (prompt_error * PRICE.input_nano + 500)
    assert spent <= 5_000_000 + bound
    if worst:  # exact prices: the budget is spent to the nano-dollar, the overshoot is exactly the error
        assert spent - 5_000_000 == admitted * prompt_error * PRICE.input_nano
    print(f"\n30 at once, prompt error {prompt_error}, worst {worst}: spent {spent} of 5,000,000 nano-dollars")


async def test_control_without_the_dollar_reservation_the_budget_is_overrun(
    make_limits: Factory, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """The same 30 requests when admission checks what was spent but not what is reserved: all 30 pass."""
    if request.node.callspec.params["make_limits"] == "memory":
        original = memory_limits.decide

        def check_only(plan: Plan, rates: Any, counts: Sequence[Counts], allowance: int | None) -> Outcome:
            unreserved = [ScopeCounts(c.used, c.reserved, c.used_nano, 0) for c in counts]
            return original(plan, rates, unreserved, allowance)

        monkeypatch.setattr(memory_limits, "decide", check_only)
    else:
        lua_source = redis_limits.lua_source
        source = lua_source("admit.lua")
        patched = source.replace("nano_limit - used_nano[i] - reserved_nano[i]", "nano_limit - used_nano[i]")
        assert patched != source
        monkeypatch.setattr(
            redis_limits, "lua_source", lambda name: patched if name == "admit.lua" else lua_source(name)
        )
    admitted, spent = await thirty_at_once(make_limits(), random.Random(0), prompt_error=0, worst=True)
    assert admitted == 30 and spent == 3 * 5_000_000


async def test_a_month_later_the_dollar_budget_is_whole_again(make_limits: Factory) -> None:
    limits = make_limits()
    who = member(usd="0.0005")
    late = await admit(limits, who)
    assert await admit_or_none(limits, who) is None
    january = await limits.admit(
        who, prompt_tokens=100, max_completion_tokens=100, price=PRICE, now=datetime(2027, 1, 1, tzinfo=UTC)
    )
    await limits.settle(late, Usage(100, 100), cost_nano=500_000)  # settled in January, charged to December
    assert (await limits.usd_balance("user", "alice", MONTH, 1)).used == 500_000
    assert (await limits.usd_balance("user", "alice", "2027-01", 1)).reserved == january.reserved_nano
