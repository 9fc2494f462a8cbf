"""Calendar months in UTC, the reservation rule, and the header values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from llm_gateway.limits import LimitState, budget, format_duration
from llm_gateway.limits.budget import Balance
from llm_gateway.pricing import ReservePrice


def test_month_is_utc() -> None:
    late_utc_minus_5 = datetime(2025, 1, 31, 22, 0, tzinfo=timezone(timedelta(hours=-5)))  # 03:00 UTC on Feb 1
    assert budget.month_of(budget.as_utc(late_utc_minus_5)) == "2025-02"
    assert budget.month_of(datetime(2025, 12, 31, 23, 59, 59)) == "2025-12"


def test_next_month_and_retry_after() -> None:
    assert budget.next_month_start(datetime(2025, 12, 15, tzinfo=UTC)) == datetime(2026, 1, 1, tzinfo=UTC)
    assert budget.seconds_until_next_month(datetime(2025, 1, 31, 23, 59, 59, tzinfo=UTC)) == 1
    assert budget.seconds_until_next_month(datetime(2025, 1, 31, 23, 59, 59, 500_000, tzinfo=UTC)) == 1
    assert budget.seconds_until_next_month(datetime(2025, 2, 1, tzinfo=UTC)) == 28 * 86_400


def test_month_keys_outlive_their_month_by_a_week() -> None:
    assert budget.month_keys_ttl_seconds(datetime(2025, 2, 10, tzinfo=UTC)) == 26 * 86_400


@pytest.mark.parametrize(
    ("available", "prompt", "max_tokens", "allowance", "cap"),
    [
        (1000, 100, 200, 4096, 200),  # the caller's max_tokens, whole
        (1000, 100, 900, 4096, 900),  # exactly fits
        (1000, 100, 901, 4096, None),  # never clamped behind the caller's back: refused
        (1000, 100, None, 4096, 900),  # no max_tokens: what is left...
        (100_000, 100, None, 4096, 4096),  # ...but at most the default allowance
        (100_000, 100, None, None, 99_900),  # allowance None: everything that is left
        (100, 100, None, 4096, None),  # not even one completion token left
        (0, 0, 0, 4096, 0),
    ],
)
def test_completion_allowance(
    available: int, prompt: int, max_tokens: int | None, allowance: int | None, cap: int | None
) -> None:
    assert budget.completion_cap(budget.token_room(available, prompt, 1), max_tokens, allowance) == cap


PRICE = ReservePrice(input_nano=150, output_nano=600)  # $0.15 / $0.60 per million tokens


@pytest.mark.parametrize(
    ("available_nano", "prompt", "choices", "price", "room"),
    [
        (1_000_000, 1000, 1, PRICE, (1_000_000 - 150_000) // 600),  # what is left after the prompt, per token
        (1_000_000, 1000, 4, PRICE, (1_000_000 - 150_000) // 2400),  # shared by every choice
        (100_000, 1000, 1, PRICE, (100_000 - 150_000) // 600),  # not even the prompt: negative, refused
        (1, 0, 1, None, None),  # an unpriced request is not bounded by a budget with something left...
        (0, 0, 1, None, -1),  # ...but a spent budget refuses it
        (0, 0, 1, PRICE, -1),
        (150_000, 1000, 1, ReservePrice(150, 0), None),  # free completions: any number, once the prompt fits
        (149_999, 1000, 1, ReservePrice(150, 0), -1),
    ],
)
def test_usd_room(available_nano: int, prompt: int, choices: int, price: ReservePrice | None, room: int | None) -> None:
    assert budget.usd_room(available_nano, prompt, choices, price) == room


def test_the_least_room_caps_the_completion_and_the_default_allowance_still_applies() -> None:
    usd = budget.usd_room(1_000_000, 1000, 1, PRICE)
    assert usd == 1416
    assert budget.completion_cap(min(usd, budget.token_room(10**6, 1000, 1)), None, 4096) == 1416
    assert budget.completion_cap(usd, 1416, 4096) == 1416  # the caller's max_tokens fits exactly
    assert budget.completion_cap(usd, 1417, 4096) is None  # one token more does not
    assert budget.completion_cap(None, 10**6, 4096) == 10**6  # no bound at all: the caller's number


def test_a_dollar_budget_in_nano_dollars() -> None:
    assert budget.limit_nano(Decimal("50")) == 50_000_000_000
    assert budget.limit_nano(Decimal("0.0000000001")) == 1  # rounded up, never to a budget of nothing
    assert budget.limit_nano(None) is None


def test_binding_balance_is_the_tightest() -> None:
    user, key = Balance(1000, 100, 0), Balance(300, 250, 0)
    assert budget.binding([user, key]) is key
    assert Balance(100, 90, 50).available == 0


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0ms"), (0.02, "20ms"), (1, "1s"), (1.5, "1.5s"), (12, "12s"), (360, "6m0s"), (119.6, "2m0s")],
)
def test_reset_durations_follow_openai(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_headers() -> None:
    state = LimitState(60, 59, 1.5, 1_000_000, 995_000)
    assert state.headers() == {
        "x-ratelimit-limit-requests": "60",
        "x-ratelimit-remaining-requests": "59",
        "x-ratelimit-reset-requests": "1.5s",
        "x-ratelimit-limit-tokens": "1000000",
        "x-ratelimit-remaining-tokens": "995000",
    }
