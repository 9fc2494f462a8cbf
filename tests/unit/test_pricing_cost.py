"""A request's cost in US dollars: exact decimals rounded once to the micro-dollar, never a float sum."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from llm_gateway.pricing import MICRO, Price, format_usd
from llm_gateway.schemas.core import Usage

YAML_PRICE = Price(Decimal("0.15"), Decimal("0.60"), Decimal("0.075"))  # as `price:` in the YAML reads it


def test_a_large_request_costs_the_exact_decimal() -> None:
    # 234,567 fresh prompt tokens at $0.15, 1,000,000 cached at $0.075 and 89 completion at $0.60 per million:
    # $0.03518505 + $0.075 + $0.0000534 = $0.11023845, kept to the micro-dollar (half-even: 0.45 µ$ goes down).
    cost = YAML_PRICE.cost(Usage(prompt_tokens=1_234_567, completion_tokens=89, cached_tokens=1_000_000))
    assert cost == Decimal("0.110238")
    assert format_usd(cost) == "0.110238"
    assert cost.as_tuple().exponent == -6
    floats = (234_567 * 0.15 + 1_000_000 * 0.075 + 89 * 0.60) / 1_000_000
    assert Decimal(floats) != Decimal("0.11023845")  # what a float sum would have carried into the ledger


def test_rounding_is_half_even_at_the_micro_dollar() -> None:
    half = Price(Decimal("0.5"), Decimal(0))
    assert half.cost(Usage(prompt_tokens=1)) == Decimal("0.000000")  # 0.5 µ$ -> the even 0
    assert half.cost(Usage(prompt_tokens=3)) == Decimal("0.000002")  # 1.5 µ$ -> the even 2
    assert half.cost(Usage(prompt_tokens=5)) == Decimal("0.000002")  # 2.5 µ$ -> the even 2


def test_cached_tokens_cost_the_input_price_when_no_cached_price_is_set() -> None:
    price = Price(Decimal(2), Decimal(8))
    usage = Usage(prompt_tokens=1_000, completion_tokens=500, cached_tokens=400)
    assert price.cost(usage) == Decimal("0.006000")  # 1,000 x $2 + 500 x $8 per million


def test_more_cached_than_prompt_tokens_never_makes_a_negative_cost() -> None:
    assert YAML_PRICE.cost(Usage(prompt_tokens=10, cached_tokens=1_000)) == Decimal("0.000001")  # 10 x $0.075 / 1M


prices = st.decimals(min_value=0, max_value=1_000, places=4, allow_nan=False, allow_infinity=False)
tokens = st.integers(min_value=0, max_value=10_000_000)


@settings(max_examples=200, deadline=None)
@given(prices, prices, st.none() | prices, tokens, tokens, tokens)
def test_cost_equals_the_exact_rational_sum_rounded_once(
    input_price: Decimal,
    output_price: Decimal,
    cached_price: Decimal | None,
    prompt: int,
    completion: int,
    cached: int,
) -> None:
    price = Price(input_price, output_price, cached_price)
    cached = min(cached, prompt)
    exact = (
        Fraction(prompt - cached) * Fraction(input_price)
        + Fraction(cached) * Fraction(input_price if cached_price is None else cached_price)
        + Fraction(completion) * Fraction(output_price)
    ) / 1_000_000
    expected = (Decimal(exact.numerator) / Decimal(exact.denominator)).quantize(MICRO, rounding=ROUND_HALF_EVEN)
    assert price.cost(Usage(prompt, completion, cached)) == expected
