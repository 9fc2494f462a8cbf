"""What a request costs in US dollars: exact decimals, never a float sum.

A ``Price`` is per million tokens (as providers publish them). A request's cost is prompt, cached-prompt and
completion tokens times it, exact, rounded once to micro-dollars (``MICRO``). Budget counters (``limits/``)
hold whole nano-dollars (``to_nano``): integers every backend adds exactly, Redis's Lua included, with room
for a budget of millions of dollars below 2^53. What the gateway reserves before it knows the cost is
the token reservation at the most expensive price of a group's chain (``ReservePrice``), rounded up.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Decimal

from llm_gateway.schemas.core import Usage

MICRO = Decimal("0.000001")  # costs are kept to the micro-dollar
_PER_TOKEN_NANO = Decimal(1_000)  # nano-dollars per token for a price of $1 per million tokens
_NANO_PER_USD = Decimal(1_000_000_000)
ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Price:
    """US dollars per million tokens. ``cached_input_per_mtok`` None: cached prompt tokens cost the input price."""

    input_per_mtok: Decimal
    output_per_mtok: Decimal
    cached_input_per_mtok: Decimal | None = None

    def cost(self, usage: Usage) -> Decimal:
        """Exact cost of ``usage`` (its ``cached_tokens`` are part of ``prompt_tokens``), in micro-dollars."""
        cached = min(max(0, usage.cached_tokens), max(0, usage.prompt_tokens))
        fresh = max(0, usage.prompt_tokens) - cached
        cached_price = self.input_per_mtok if self.cached_input_per_mtok is None else self.cached_input_per_mtok
        total = (
            fresh * self.input_per_mtok + cached * cached_price + max(0, usage.completion_tokens) * self.output_per_mtok
        )
        return (total / 1_000_000).quantize(MICRO, rounding=ROUND_HALF_EVEN)

    def reserve(self) -> ReservePrice:
        """This price per token in whole nano-dollars, rounded up (a reservation never falls short of the cost)."""
        return ReservePrice(_nano_per_token(self.input_per_mtok), _nano_per_token(self.output_per_mtok))


@dataclass(frozen=True, slots=True)
class ReservePrice:
    """Nano-dollars per token that admission reserves: input (prompt) and output (completion)."""

    input_nano: int
    output_nano: int

    def reservation(self, prompt_tokens: int, completion_tokens: int) -> int:
        """Nano-dollars to reserve for so many tokens."""
        return prompt_tokens * self.input_nano + completion_tokens * self.output_nano

    @staticmethod
    def most_expensive(prices: list[ReservePrice]) -> ReservePrice | None:
        """The dearest of each side: what a request whose deployment is not yet known may cost at most."""
        if not prices:
            return None
        return ReservePrice(max(p.input_nano for p in prices), max(p.output_nano for p in prices))


def _nano_per_token(per_mtok: Decimal) -> int:
    return int((per_mtok * _PER_TOKEN_NANO).to_integral_value(rounding=ROUND_CEILING))


def to_nano(usd: Decimal) -> int:
    """Whole nano-dollars (what the budget counters hold), rounded up."""
    return int((usd * _NANO_PER_USD).to_integral_value(rounding=ROUND_CEILING))


def from_nano(nano: int) -> Decimal:
    """Nano-dollars as US dollars, to the micro-dollar (for reports and headers)."""
    return (Decimal(nano) / _NANO_PER_USD).quantize(MICRO, rounding=ROUND_HALF_EVEN)


def format_usd(amount: Decimal) -> str:
    """``0.000123`` — always six decimals, never an exponent."""
    return f"{amount.quantize(MICRO, rounding=ROUND_HALF_EVEN):f}"
