"""Admission semantics, run against both backends: the in-process one and Redis (same assertions).

The clock is injected (``now=``) everywhere, so windows and months are exact.
"""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from llm_gateway.auth.identity import Identity
from llm_gateway.limits import Admission, RequestRateExceeded, Ticket, TokenBudgetExceeded
from llm_gateway.schemas.core import Usage
from tests.admission_support import Factory, Ledger

NOW = datetime(2025, 3, 14, 12, 0, 0, tzinfo=UTC)  # on a minute boundary
MONTH = "2025-03"


def person(
    *, rpm: int = 1000, budget: int = 2000, key_id: str | None = None, key_budget: int | None = None
) -> Identity:
    kind = "api_key" if key_id else "jwt"
    return Identity("alice", kind, rpm, budget, key_id=key_id, key_token_budget=key_budget)


async def admit_or_none(limits: Admission, who: Identity, **kwargs: Any) -> Ticket | None:
    try:
        return await limits.admit(who, **kwargs)
    except TokenBudgetExceeded:
        return None


async def test_admission_reserves_and_describes_the_headers(make_limits: Factory) -> None:
    limits = make_limits()
    ticket = await limits.admit(person(rpm=60), prompt_tokens=120, max_completion_tokens=300, now=NOW)

    assert (ticket.user_id, ticket.month, ticket.prompt_tokens, ticket.completion_cap) == ("alice", MONTH, 120, 300)
    assert not ticket.cap_set_by_gateway and not ticket.degraded
    assert ticket.headers() == {
        "x-ratelimit-limit-requests": "60",
        "x-ratelimit-remaining-requests": "59",
        "x-ratelimit-reset-requests": "2m0s",
        "x-ratelimit-limit-tokens": "2000",
        "x-ratelimit-remaining-tokens": "1580",
    }
    balance = await limits.balance("alice", MONTH, 2000)
    assert (balance.used, balance.reserved) == (0, 420)


async def test_100_concurrent_requests_against_a_budget_for_20(make_limits: Factory) -> None:
    """Every admission lands before any settles: without the reservation all 100 would pass."""
    limits = make_limits()
    who = person(budget=2000)
    tickets = await asyncio.gather(
        *(admit_or_none(limits, who, prompt_tokens=50, max_completion_tokens=50, now=NOW) for _ in range(100))
    )
    admitted = [t for t in tickets if t is not None]
    assert len(admitted) == 20

    await asyncio.gather(*(limits.settle(t, Usage(50, 50)) for t in admitted))
    balance = await limits.balance("alice", MONTH, 2000)
    assert (balance.used, balance.reserved) == (2000, 0)  # overshoot: 0 tokens


async def test_concurrent_traffic_never_overspends_and_overshoot_is_bounded_by_the_estimate(
    make_limits: Factory,
) -> None:
    """Admit, wait, settle, interleaved. Usage below the reservation never overspends; a prompt
    estimate 10% low overspends by at most that error on the requests in flight."""
    limits = make_limits()
    rng = random.Random(4)
    served: list[int] = []

    async def request(estimate: int, actual_prompt: int) -> None:
        ticket = await admit_or_none(limits, who, prompt_tokens=estimate, max_completion_tokens=50, now=NOW)
        if ticket is None:
            return
        await asyncio.sleep(rng.random() / 100)
        completion = rng.randint(1, 50) if actual_prompt <= estimate else 50  # the worst case: every answer full
        served.append(await limits.settle(ticket, Usage(actual_prompt, completion)))

    who = person(budget=2000)
    await asyncio.gather(*(request(50, 50) for _ in range(100)))
    assert sum(served) <= 2000

    who = Identity("bob", "jwt", 1000, 2000)
    served.clear()
    await asyncio.gather(*(request(50, 55) for _ in range(100)))
    overshoot = max(0, sum(served) - 2000)
    in_flight_error = 5 * 20  # 5 tokens of estimation error per request, at most 20 in flight
    assert overshoot <= in_flight_error
    print(f"measured overshoot with a 10% low prompt estimate: {overshoot} tokens")


async def test_no_max_tokens_caps_the_completion_at_the_allowance_or_what_is_left(make_limits: Factory) -> None:
    limits = make_limits(completion_allowance=500)
    first = await limits.admit(person(budget=2000), prompt_tokens=100, max_completion_tokens=None, now=NOW)
    assert (first.completion_cap, first.cap_set_by_gateway) == (500, True)

    limits = make_limits(completion_allowance=None)
    whole = await limits.admit(Identity("bob", "jwt", 60, 2000), prompt_tokens=100, max_completion_tokens=None, now=NOW)
    assert whole.completion_cap == 1900  # DESIGN.md literally: what the budget has left


async def test_refused_requests_consume_nothing(make_limits: Factory) -> None:
    limits = make_limits()
    who = person(budget=1000)
    held = await limits.admit(who, prompt_tokens=100, max_completion_tokens=800, now=NOW)
    for _ in range(5):
        with pytest.raises(TokenBudgetExceeded):
            await limits.admit(who, prompt_tokens=100, max_completion_tokens=100, now=NOW)
    balance = await limits.balance("alice", MONTH, 1000)
    assert (balance.used, balance.reserved) == (0, 900)

    await limits.release(held)  # an upstream failure charges nothing
    balance = await limits.balance("alice", MONTH, 1000)
    assert (balance.used, balance.reserved) == (0, 0)
    assert (await limits.admit(who, prompt_tokens=100, max_completion_tokens=900, now=NOW)).reserved_tokens == 1000


async def test_quota_refusal_says_when_and_carries_headers(make_limits: Factory) -> None:
    limits = make_limits()
    with pytest.raises(TokenBudgetExceeded) as refused:
        await limits.admit(person(budget=100), prompt_tokens=90, max_completion_tokens=20, now=NOW)
    error = refused.value
    assert (error.status_code, error.code, error.type) == (429, "insufficient_quota", "insufficient_quota")
    assert error.retry_after_seconds == 17 * 86_400 + 12 * 3600  # until 2025-04-01 00:00 UTC
    assert error.headers()["retry-after"] == str(error.retry_after_seconds)
    assert error.headers()["x-ratelimit-remaining-tokens"] == "100"
    assert "monthly token budget 100" in error.message


async def test_rate_limit_counts_per_identity_and_reopens_as_the_window_slides(make_limits: Factory) -> None:
    limits = make_limits()
    who = person(rpm=3, budget=10**9)
    for _ in range(3):
        await limits.admit(who, prompt_tokens=1, max_completion_tokens=1, now=NOW)
    with pytest.raises(RequestRateExceeded) as refused:
        await limits.admit(who, prompt_tokens=1, max_completion_tokens=1, now=NOW + timedelta(seconds=10))
    error = refused.value
    # The 3 requests become the previous window at 12:01; one slot frees when 1/3 of it has passed.
    assert error.retry_after_seconds == 70
    assert (error.code, error.headers()["x-ratelimit-remaining-requests"]) == ("rate_limit_exceeded", "0")
    other_key = Identity("alice", "api_key", 3, 10**9, key_id="k2")  # per credential
    await limits.admit(other_key, prompt_tokens=1, max_completion_tokens=1, now=NOW)

    with pytest.raises(RequestRateExceeded):
        await limits.admit(who, prompt_tokens=1, max_completion_tokens=1, now=NOW + timedelta(seconds=79))
    await limits.admit(who, prompt_tokens=1, max_completion_tokens=1, now=NOW + timedelta(seconds=80))


async def test_budget_refusals_do_not_count_toward_the_rate(make_limits: Factory) -> None:
    limits = make_limits()
    who = person(rpm=2, budget=100)
    for _ in range(5):
        with pytest.raises(TokenBudgetExceeded):
            await limits.admit(who, prompt_tokens=90, max_completion_tokens=20, now=NOW)
    await limits.admit(who, prompt_tokens=10, max_completion_tokens=10, now=NOW)
    await limits.admit(who, prompt_tokens=10, max_completion_tokens=10, now=NOW)


async def test_zero_rate_limit_admits_nothing(make_limits: Factory) -> None:
    with pytest.raises(RequestRateExceeded):
        await make_limits().admit(person(rpm=0), prompt_tokens=1, max_completion_tokens=1, now=NOW)


async def test_settle_charges_once(make_limits: Factory) -> None:
    limits = make_limits()
    ticket = await limits.admit(person(), prompt_tokens=100, max_completion_tokens=100, now=NOW)
    assert await limits.settle(ticket, Usage(80, 30)) == 110
    assert await limits.settle(ticket, Usage(80, 30)) == 0
    await limits.release(ticket)
    balance = await limits.balance("alice", MONTH, 2000)
    assert (balance.used, balance.reserved) == (110, 0)


async def test_cached_answers_cost_nothing_and_unknown_usage_costs_the_reservation(make_limits: Factory) -> None:
    limits = make_limits()
    cached = await limits.admit(person(), prompt_tokens=100, max_completion_tokens=100, now=NOW)
    unknown = await limits.admit(person(), prompt_tokens=100, max_completion_tokens=100, now=NOW)
    assert await limits.settle(cached, Usage(100, 40), cached=True) == 0
    assert await limits.settle(unknown, None) == 200
    balance = await limits.balance("alice", MONTH, 2000)
    assert (balance.used, balance.reserved) == (200, 0)


async def test_month_rollover(make_limits: Factory) -> None:
    limits = make_limits()
    who = person(budget=1000)
    last_second = datetime(2025, 1, 31, 23, 59, 59, tzinfo=UTC)
    late = await limits.admit(who, prompt_tokens=500, max_completion_tokens=500, now=last_second)
    with pytest.raises(TokenBudgetExceeded) as refused:
        await limits.admit(who, prompt_tokens=10, max_completion_tokens=10, now=last_second)
    assert refused.value.retry_after_seconds == 1

    february = await limits.admit(
        who, prompt_tokens=500, max_completion_tokens=500, now=last_second + timedelta(seconds=1)
    )
    assert (late.month, february.month) == ("2025-01", "2025-02")
    await limits.settle(late, Usage(500, 400))  # settled in February, charged to January
    assert (await limits.balance("alice", "2025-01", 1000)).used == 900
    assert (await limits.balance("alice", "2025-02", 1000)).used == 0


async def test_counters_start_from_the_ledger(make_limits: Factory) -> None:
    ledger = Ledger({("user", "alice", MONTH): (1900, 0)})
    limits = make_limits(ledger_totals=ledger)
    ticket = await limits.admit(person(budget=2000), prompt_tokens=50, max_completion_tokens=None, now=NOW)
    assert ticket.completion_cap == 50 and ticket.state.tokens_remaining == 0
    with pytest.raises(TokenBudgetExceeded):
        await limits.admit(person(budget=2000), prompt_tokens=1, max_completion_tokens=1, now=NOW)
    assert ledger.calls == [("user", "alice", MONTH)]  # read once per user-month, not per request


async def test_a_key_budget_caps_the_key_inside_its_user(make_limits: Factory) -> None:
    ledger = Ledger({("key", "k1", MONTH): (100, 0)})
    limits = make_limits(ledger_totals=ledger)
    capped = person(budget=2000, key_id="k1", key_budget=500)
    ticket = await limits.admit(capped, prompt_tokens=100, max_completion_tokens=300, now=NOW)
    assert (ticket.key_id, ticket.state.tokens_limit, ticket.state.tokens_remaining) == ("k1", 500, 0)
    with pytest.raises(TokenBudgetExceeded):
        await limits.admit(capped, prompt_tokens=10, max_completion_tokens=10, now=NOW)
    # The user's other key draws on what the user has left.
    other = await limits.admit(person(budget=2000, key_id="k2"), prompt_tokens=100, max_completion_tokens=100, now=NOW)
    assert other.state.tokens_remaining == 2000 - 400 - 200

    await limits.settle(ticket, Usage(100, 50))
    balance = await limits.balance("alice", MONTH, 2000)
    assert (balance.used, balance.reserved) == (150, 200)
    assert ("key", "k1", MONTH) in ledger.calls and len(ledger.calls) == 2  # the user's and the key's, once


async def test_a_lost_ticket_frees_its_hold_after_the_reservation_ttl(make_limits: Factory) -> None:
    limits = make_limits(reservation_ttl_seconds=60)
    who = person(budget=1000)
    await limits.admit(who, prompt_tokens=500, max_completion_tokens=500, now=NOW)  # never settled
    with pytest.raises(TokenBudgetExceeded):
        await limits.admit(who, prompt_tokens=500, max_completion_tokens=500, now=NOW + timedelta(seconds=59))
    ticket = await limits.admit(who, prompt_tokens=500, max_completion_tokens=500, now=NOW + timedelta(seconds=61))
    assert ticket.state.tokens_remaining == 0


# -- every choice is reserved (n) ---------------------------------------------------------------


async def test_every_choice_is_reserved_with_max_tokens(make_limits: Factory) -> None:
    """n=128, max_tokens=1000 on a 2,000-token budget was admitted and charged 128,005: n was ignored."""
    limits = make_limits()
    who = person(budget=2000)
    assert await admit_or_none(limits, who, prompt_tokens=5, max_completion_tokens=1000, choices=128, now=NOW) is None
    ticket = await limits.admit(who, prompt_tokens=5, max_completion_tokens=600, choices=3, now=NOW)
    assert (ticket.completion_cap, ticket.choices, ticket.reserved_tokens) == (600, 3, 1805)
    assert (await limits.balance("alice", MONTH, 2000)).reserved == 1805
    # What is left (195) cannot hold another request of one choice of 600.
    assert await admit_or_none(limits, who, prompt_tokens=5, max_completion_tokens=600, now=NOW) is None


async def test_without_max_tokens_each_choice_gets_its_share_of_what_is_left(make_limits: Factory) -> None:
    limits = make_limits(completion_allowance=4096)
    ticket = await limits.admit(person(budget=2000), prompt_tokens=5, max_completion_tokens=None, choices=4, now=NOW)
    assert (ticket.completion_cap, ticket.cap_set_by_gateway) == ((2000 - 5) // 4, True)
    assert ticket.reserved_tokens <= 2000
    assert (await limits.balance("alice", MONTH, 2000)).reserved == ticket.reserved_tokens


async def test_a_settled_multi_choice_ticket_frees_its_whole_hold(make_limits: Factory) -> None:
    limits = make_limits()
    ticket = await limits.admit(person(budget=5000), prompt_tokens=10, max_completion_tokens=100, choices=8, now=NOW)
    assert ticket.reserved_tokens == 810
    await limits.settle(ticket, Usage(10, 400))
    balance = await limits.balance("alice", MONTH, 5000)
    assert (balance.used, balance.reserved) == (410, 0)
